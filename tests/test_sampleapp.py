"""The sample application: every route over real sockets, and the process's start and stop."""

from __future__ import annotations

import json
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from typing import Any

import pytest
import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from app.core import routes
from app.demo.sampleapp import ASSETS, SampleSettings, _parse, make_app
from tests.conftest import ROOT, app_env

UUID = "0b9d2f7e-3c1a-4e5b-9f6d-2a8c7e1b4d30"


@pytest.fixture
def app() -> tornado.web.Application:
    return make_app(SampleSettings(slow_min_ms=20, slow_max_ms=60, fail_rate=0.3, seed=7))


@pytest.fixture
def fetch(http_server: object, http_port: int) -> Any:
    client = AsyncHTTPClient()

    async def get(path: str, **kwargs: Any) -> HTTPResponse:
        kwargs.setdefault("raise_error", False)
        return await client.fetch(f"http://127.0.0.1:{http_port}{path}", **kwargs)

    return get


@pytest.mark.gen_test(timeout=10)
async def test_index_and_health(fetch: Any) -> None:
    index = await fetch("/")
    assert index.code == 200 and b"/static/logo.png" in index.body
    health = await fetch("/healthz", headers={"User-Agent": "kube-probe/1.30"})
    assert (health.code, health.body) == (200, b"ok\n")


@pytest.mark.gen_test(timeout=10)
async def test_fast_json_route(fetch: Any) -> None:
    response = await fetch("/api/items?page=3")
    assert response.code == 200
    body = json.loads(response.body)
    assert body["page"] == 3 and len(body["items"]) == 10
    assert (await fetch("/api/items?page=x")).code == 400


@pytest.mark.gen_test(timeout=10)
async def test_id_bearing_routes(fetch: Any) -> None:
    user = await fetch("/users/42")
    assert user.code == 200 and json.loads(user.body)["id"] == 42
    assert (await fetch("/users/5000")).code == 404  # some 4xx in the demo's mix
    order = await fetch(f"/orders/{UUID}")
    assert order.code == 200 and json.loads(order.body)["id"] == UUID
    created = await fetch("/orders", method="POST", body='{"item": 1}')
    assert created.code == 201
    location = created.headers["Location"]
    assert re.fullmatch(r"/orders/[0-9a-f-]{36}", location)
    assert (await fetch(location)).code == 200
    # The paths the demo sends are ones the sidecar's templating folds into one route each.
    assert routes.template("/users/42") == "/users/{id}"
    assert routes.template(location) == "/orders/{id}"


@pytest.mark.gen_test(timeout=10)
async def test_slow_route_waits(fetch: Any) -> None:
    started = time.monotonic()
    fixed = await fetch("/slow?ms=150")
    assert fixed.code == 200 and time.monotonic() - started >= 0.15
    assert json.loads(fixed.body)["slept_ms"] == 150
    started = time.monotonic()
    drawn = await fetch("/slow")
    elapsed_ms = (time.monotonic() - started) * 1000
    assert 20 <= json.loads(drawn.body)["slept_ms"] <= 60 and elapsed_ms >= 20
    assert (await fetch("/slow?ms=99999999")).code == 400


@pytest.mark.gen_test(timeout=20)
async def test_failing_route(fetch: Any) -> None:
    assert (await fetch("/fail?p=1")).code == 500
    assert (await fetch("/fail?p=0")).code == 200
    codes = [(await fetch("/fail")).code for _ in range(200)]
    assert set(codes) == {200, 500}
    assert 0.15 < codes.count(500) / len(codes) < 0.45  # the configured 0.3, seeded
    assert (await fetch("/fail?p=2")).code == 400


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        at += 12 + length
    return chunks


@pytest.mark.gen_test(timeout=10)
async def test_static_files_are_real_and_revalidate(fetch: Any) -> None:
    logo = await fetch("/static/logo.png")
    assert logo.code == 200 and logo.headers["Content-Type"] == "image/png"
    chunks = _png_chunks(logo.body)
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert len(zlib.decompress(chunks[1][1])) == height * (1 + 3 * width)
    for name, (content_type, _) in ASSETS.items():
        response = await fetch(f"/static/{name}")
        assert (response.code, response.headers["Content-Type"]) == (200, content_type)
    etag = (await fetch("/static/style.css")).headers.get("Etag")
    assert etag
    again = await fetch("/static/style.css", headers={"If-None-Match": etag})
    assert again.code == 304 and again.body == b""
    assert (await fetch("/static/missing.js")).code == 404


@pytest.mark.gen_test(timeout=10)
async def test_echo_and_download(fetch: Any) -> None:
    body = bytes(range(256)) * 1000
    echoed = await fetch("/echo", method="POST", body=body, headers={"Content-Type": "application/x-test"})
    assert echoed.body == body and echoed.headers["Content-Type"] == "application/x-test"
    download = await fetch("/download?bytes=200001")
    assert download.code == 200 and len(download.body) == 200001
    assert "Etag" not in download.headers
    assert (await fetch("/download?bytes=0")).body == b""


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "app.demo.sampleapp", *args], cwd=ROOT, env=app_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_process_serves_and_stops_cleanly_on_sigterm() -> None:
    with _start("--host", "127.0.0.1", "--port", "0", "--seed", "1") as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            assert match, line
            port = int(match.group(1))
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert conn.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
                # An idle keep-alive connection must not hold the shutdown up.
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=10) == 0
            assert "Traceback" not in proc.stdout.read()
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
        finally:
            if proc.poll() is None:
                proc.kill()


def test_process_reports_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with _start("--host", "127.0.0.1", "--port", str(port)) as proc:
            output, _ = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in output and "Traceback" not in output


@pytest.mark.parametrize("args", [["--port", "70000"], ["--fail-rate", "3"], ["--port", "x"]])
def test_process_refuses_bad_flags(args: list[str]) -> None:
    with _start("--host", "127.0.0.1", *args) as proc:
        output, _ = proc.communicate(timeout=10)
    assert proc.returncode == 2 and "Traceback" not in output


def test_port_comes_from_the_environment_and_the_flag_wins() -> None:
    assert _parse([], {"PORT": "9123"})[1] == 9123
    assert _parse(["--port", "9124"], {"PORT": "9123"})[1] == 9124
    assert _parse([], {})[1] == 8087  # the sidecar's default target port
