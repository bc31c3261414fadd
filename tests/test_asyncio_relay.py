"""bench/asyncio_relay.py, the bench's relay on asyncio transports: bytes pass unchanged both ways, a half-close
is passed on, and a large stream keeps its order, on the default loop and on uvloop's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, app_env, free_port, wait_for_port
from tests.proxy_support import Peer, RawBackend, read_all


def reverse_after_eof(peer: Peer) -> None:
    """Answers only after the client's end of file: the relay must have passed it on."""
    peer.read_until_close()
    peer.send(bytes(peer.received)[::-1])


@pytest.fixture(params=["default", "uvloop"])
def relay(request: pytest.FixtureRequest) -> Iterator[int]:
    app = RawBackend(reverse_after_eof)
    port = free_port()
    argv = [sys.executable, "-m", "bench.asyncio_relay", "--port", str(port), "--target-port", str(app.port)]
    if request.param == "uvloop":
        argv.append("--uvloop")
    proc = subprocess.Popen(argv, cwd=ROOT, env=app_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc=proc)
        yield port
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        app.close()
    assert b"Traceback" not in err, err.decode()


@pytest.mark.parametrize("size", [1, 5000, 8 << 20])
def test_bytes_pass_both_ways_and_a_half_close_is_passed_on(relay: int, size: int) -> None:
    data = os.urandom(size)
    with socket.create_connection(("127.0.0.1", relay), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # the app answers only once it sees this
        assert read_all(sock, timeout=10) == data[::-1]
