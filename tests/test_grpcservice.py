"""The demo's gRPC service, served by grpcio and called by grpcio's own client (raw bytes, no protobuf)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")  # the `demo` and `test` extras install it

from app.demo.grpcservice import SERVICE, STOCK, InventorySettings, _parse, start_server  # noqa: E402
from tests.conftest import ROOT, app_env, free_port, wait_for_port  # noqa: E402


@pytest.fixture
def channel() -> Iterator[Any]:
    port = free_port()
    server = start_server("127.0.0.1", port, InventorySettings(fail_rate=0.0, slow_rate=0.0, seed=1))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield ch
    finally:
        server.stop(grace=None).wait()


def code_of(channel: Any, method: str, request: bytes, timeout: float = 5.0) -> tuple[Any, bytes | str]:
    try:
        return grpc.StatusCode.OK, channel.unary_unary(f"/{SERVICE}/{method}")(request, timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()


def test_calls_succeed_and_fail_with_the_codes_real_services_use(channel: Any) -> None:
    assert code_of(channel, "GetItem", b"42") == (grpc.StatusCode.OK, b'{"item": 42, "stock": 0}')
    assert code_of(channel, "GetItem", b"901") == (grpc.StatusCode.NOT_FOUND, "no item 901")
    assert code_of(channel, "GetItem", b"abc")[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(channel, "Reserve", b"5:2") == (grpc.StatusCode.OK, b'{"item": 5, "reserved": 2}')
    assert code_of(channel, "Reserve", f"5:{STOCK + 1}".encode())[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert code_of(channel, "Reserve", b"194:1")[0] == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(channel, "Restock", b"1")[0] == grpc.StatusCode.UNIMPLEMENTED


def test_watch_streams_its_updates(channel: Any) -> None:
    updates = list(channel.unary_stream(f"/{SERVICE}/Watch")(b"4", timeout=5))
    assert len(updates) == 4 and updates[0].startswith(b'{"update": 0')


def test_failures_and_slow_calls_come_at_their_rates() -> None:
    port = free_port()
    server = start_server("127.0.0.1", port, InventorySettings(fail_rate=1.0, slow_rate=1.0, slow_s=0.5, seed=1))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            assert code_of(ch, "GetItem", b"1")[0] == grpc.StatusCode.UNAVAILABLE
            assert code_of(ch, "Reserve", b"1:1", timeout=0.1)[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        server.stop(grace=None).wait()


def test_the_command_line_serves_and_stops_on_sigterm() -> None:
    assert _parse(["--port", "1", "--fail-rate", "0.2"])[2].fail_rate == 0.2
    with pytest.raises(SystemExit):
        _parse(["--port", "1", "--fail-rate", "2"])
    port = free_port()
    # --fail-rate 0: by default 5% of GetItem calls fail on purpose (UNAVAILABLE), which made this test
    # fail about once in twenty runs.
    proc = subprocess.Popen([sys.executable, "-m", "app.demo.grpcservice", "--port", str(port), "--fail-rate", "0"],
                            cwd=ROOT, env=app_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc=proc)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            assert code_of(ch, "GetItem", b"7")[0] == grpc.StatusCode.OK
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        output = proc.stdout.read().decode() if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
    assert f"{SERVICE} (gRPC) on 127.0.0.1:{port}" in output and "Traceback" not in output
