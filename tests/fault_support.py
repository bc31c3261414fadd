"""Support for the end-to-end fault, hostile-input and security tests: real processes and what to read from them.

`SampleApp` is the sample application as a process that a test may kill and
start again on the same port; `Dashboard` and `Sidecar` wrap `python -m app`
processes started with the `run_app` fixture and read their HTTP APIs and
/metrics; `LoopThread` runs in-process servers (a `SidecarServer`, a counting
backend, a relay) on an event loop of their own, so plain synchronous tests
and hypothesis can drive them over real sockets. Everything is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from tests.conftest import ROOT, AppProcess, app_env, free_port, wait_for_port

T = TypeVar("T")
RunApp = Callable[..., AppProcess]


# --- waiting and reading ----------------------------------------------------------------


def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition",
               every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout}s")
        time.sleep(every)


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(port: int, path: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 10.0) -> Reply:
    """One request on a fresh connection; blocking."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, *, timeout: float = 5.0, until_close: bool = True) -> bytes:
    """Send raw bytes, then read until the server closes (or `timeout`). Blocking."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            if not until_close and b"\r\n\r\n" in received:
                break
        return bytes(received)


def ws_handshake(port: int, path: str = "/ws", headers: dict[str, str] | None = None,
                 timeout: float = 5.0) -> tuple[int, bytes]:
    """A WebSocket opening handshake on a raw socket: (status, the answer's head)."""
    key = base64.b64encode(os.urandom(16)).decode()
    host = [] if "Host" in (headers or {}) else [f"Host: 127.0.0.1:{port}"]
    lines = [f"GET {path} HTTP/1.1", *host, "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    head = raw_exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode(), timeout=timeout, until_close=False)
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, head.split(b"\r\n\r\n", 1)[0]


def tracebacks(text: str) -> list[str]:
    """Lines that show an exception escaped to a log."""
    return [line for line in text.splitlines() if "Traceback (most recent call last)" in line
            or re.search(r"\b(ERROR|CRITICAL)\b", line)]


# --- what Linux says about a process ------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards `wanted` (children inherit it); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# --- real processes ------------------------------------------------------------------------


class SampleApp:
    """`python -m app.demo.sampleapp` on a fixed port: started, killed and started again by the test."""

    def __init__(self, port: int | None = None, log: Path | None = None) -> None:
        self.port = port or free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SampleApp:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.demo.sampleapp", "--host", "127.0.0.1", "--port", str(self.port),
             "--fail-rate", "0"], cwd=ROOT, env=app_env(), stdout=out, stderr=subprocess.STDOUT)
        if self.log:
            out.close()  # type: ignore[union-attr]
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@dataclass
class Dashboard:
    proc: AppProcess
    port: int
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.proc.pid

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return fetch(self.port, path, headers=headers)

    def json(self, path: str, headers: dict[str, str] | None = None) -> Any:
        reply = self.get(path, headers)
        assert reply.status == 200, (path, reply.status, reply.body[:300])
        return reply.json()

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> Reply:
        sent = {"Content-Type": "application/json"}
        sent.update(headers or {})
        return fetch(self.port, path, "POST", body, sent)

    def pod(self, name: str) -> dict[str, Any] | None:
        """The pod's entry in GET /stats, or None."""
        return next((p for p in self.json("/stats") if p["pod"] == name), None)

    def counted(self, name: str) -> tuple[int, int]:
        """(exchanges counted, exchanges the sidecar reported dropped) for one pod."""
        pod = self.pod(name)
        return (0, 0) if pod is None else (pod["total"], pod["dropped"])

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.get("/metrics").body.decode(), name, **labels)


def start_dashboard(run_app: RunApp, *extra: str, port: int | None = None, data: str = ":memory:",
                    env: dict[str, str] | None = None) -> Dashboard:
    port = port or free_port()
    args = ["--mode", "dashboard", "--host", "127.0.0.1", "--port", str(port), "--data", data, *extra]
    return Dashboard(run_app(args, wait_ports=[port], env=env), port, args, dict(env or {}))


def restart_dashboard(run_app: RunApp, old: Dashboard) -> Dashboard:
    """The same dashboard (port, flags, data) in a new process; the old one must have stopped."""
    assert old.proc.proc.poll() is not None, "stop the old dashboard first"
    return Dashboard(run_app(old.args, wait_ports=[old.port], env=old.env or None), old.port, old.args, old.env)


@dataclass
class Sidecar:
    proc: AppProcess
    port: int
    admin_port: int
    pod: str

    @property
    def pid(self) -> int:
        return self.proc.proc.pid

    def get(self, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> Reply:
        return fetch(self.port, path, headers=headers, timeout=timeout)

    def metrics_text(self) -> str:
        return fetch(self.admin_port, "/metrics").body.decode()

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics_text(), name, **labels)


def start_sidecar(run_app: RunApp, target_port: int, dashboard: str = "", *extra: str,
                  pod: str = "shop-7-x2k9q", env: dict[str, str] | None = None) -> Sidecar:
    port, admin_port = free_port(), free_port()
    args = ["--mode", "sidecar", "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin_port),
            "--target-port", str(target_port), "--pod", pod, "--stats-interval", "0.2",
            "--resources-interval", "0.5", *extra]
    if dashboard:
        args += ["--dashboard", dashboard]
    return Sidecar(run_app(args, wait_ports=[port, admin_port], env=env), port, admin_port, pod)


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when there are none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# --- in-process servers on an event loop of their own -----------------------------------------


class LoopThread:
    """An asyncio loop in a daemon thread; `call(fn)` runs `fn()` on it, `run(coro_fn)` awaits `coro_fn()` there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro_fn: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
        async def call() -> T:
            return await coro_fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        async def call() -> T:
            return fn()

        return self.run(call, timeout)

    def close(self) -> None:
        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_rest)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


MARK = "X-Counted-By"  # the header the counting backend sets on every answer its handler gives


class _Counting(RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

    def initialize(self, seen: list[tuple[str, str, int]]) -> None:
        self.seen = seen

    def prepare(self) -> None:
        self.seen.append((self.request.method or "", self.request.uri or "", len(self.request.body)))
        self.set_header(MARK, str(len(self.seen)))
        self.finish(f"{self.request.method} {self.request.uri} {len(self.request.body)}\n")


class CountingBackend:
    """A real Tornado HTTP server that remembers every request its handler saw: (method, uri, body bytes).

    Its HTTP parser is not the sidecar's, so a request smuggled past the
    sidecar's framing shows up here as a request the sidecar never reported.
    Tornado's own error answers (400 on a bad head) carry no `MARK`.
    """

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.seen: list[tuple[str, str, int]] = []
        self.port = free_port()
        app = Application([(r".*", _Counting, {"seen": self.seen})], log_function=lambda handler: None)

        def listen() -> HTTPServer:
            server = HTTPServer(app, idle_connection_timeout=30)
            server.listen(self.port, "127.0.0.1")
            return server

        self.server = loop.call(listen)

    def close(self) -> None:
        self.loop.call(self.server.stop)
        self.loop.run(self.server.close_all_connections)


class AckLosingRelay:
    """Forwards POSTs to a real dashboard; can lose the acknowledgement of the next /stats batch and then
    hold every later one (503, not forwarded) until `release()`: a batch stored but whose ack never came back."""

    def __init__(self, loop: LoopThread, target: str) -> None:
        self.loop = loop
        self.target = target
        self.port = free_port()
        self.lose_next = False
        self.holding = False
        self.lost: list[str] = []  # ids of batches stored whose ack was lost
        self.answers: list[tuple[str, int, Any]] = []  # (batch id, status, the dashboard's answer)
        relay = self

        class Handler(RequestHandler):
            async def post(self) -> None:
                await relay._post(self)

        app = Application([(r".*", Handler)], log_function=lambda handler: None)

        def listen() -> HTTPServer:
            server = HTTPServer(app)
            server.listen(self.port, "127.0.0.1")
            return server

        self.server = loop.call(listen)
        self.client = loop.call(lambda: AsyncHTTPClient(force_instance=True))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lose_one_ack_then_hold(self) -> None:
        self.lose_next = True

    def release(self) -> None:
        self.holding = False

    async def _post(self, handler: RequestHandler) -> None:
        stats = handler.request.path.endswith("/stats")
        if stats and self.holding:
            handler.set_status(503)
            handler.finish({"error": "held by the test relay"})
            return
        try:
            reply = await self.client.fetch(self.target + handler.request.path, method="POST",
                                            body=handler.request.body, headers=handler.request.headers,
                                            raise_error=False, request_timeout=5)
        except OSError:  # the dashboard is down
            handler.set_status(502)
            handler.finish({"error": "the dashboard is down"})
            return
        status = reply.code if reply.code != 599 else 502
        if stats:
            batch = json.loads(handler.request.body).get("batch", "")
            answer = json.loads(reply.body) if reply.body else None
            self.answers.append((batch, status, answer))
            if self.lose_next and status == 200:
                self.lose_next, self.holding = False, True
                self.lost.append(batch)
                status = 500
        handler.set_status(status)
        handler.finish(reply.body or b"")

    def close(self) -> None:
        self.loop.call(self.server.stop)
        self.client.close()


# --- sending traffic -------------------------------------------------------------------------


class KeepAliveClient:
    """One keep-alive HTTP/1.1 connection that times each request (ms)."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.latencies: list[float] = []
        self.statuses: list[int] = []

    def get(self, path: str, headers: dict[str, str] | None = None) -> bytes:
        started = time.perf_counter()
        self.conn.request("GET", path, headers=headers or {})
        response = self.conn.getresponse()
        body = response.read()
        self.latencies.append((time.perf_counter() - started) * 1000)
        self.statuses.append(response.status)
        return body

    def get_many(self, paths: Iterable[str]) -> None:
        for path in paths:
            self.get(path)

    def close(self) -> None:
        self.conn.close()


def user_paths(n: int, start: int = 0) -> list[str]:
    return [f"/users/{(start + i) % 900 + 1}" for i in range(n)]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
