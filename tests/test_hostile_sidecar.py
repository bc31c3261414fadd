"""Hostile clients against the sidecar: generated framing, request smuggling, header floods, idle hordes.

The backend is a real Tornado HTTP server that counts the requests its
handler sees: its parser is not the sidecar's, so a request smuggled past the
sidecar's framing shows up as a request nobody reported. The fuzz drives an
in-process `SidecarServer` (its counters are read directly); the abuse cases
drive a real `python -m app --mode sidecar` process and read its log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import selectors
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tornado.netutil import bind_sockets

from app.core.wire import Sample
from app.options import SidecarConfig
from sidecar.proxy import SidecarServer
from tests.conftest import AppProcess, app_env, free_port, wait_for_port
from tests.fault_support import (
    MARK,
    CountingBackend,
    KeepAliveClient,
    LoopThread,
    SampleApp,
    eventually,
    median,
    open_fds,
    raise_fd_limit,
    raw_exchange,
    rss_bytes,
    start_sidecar,
    tracebacks,
    user_paths,
)

# --- generated requests through an in-process sidecar --------------------------------------------------------


class ErrorLog(logging.Handler):
    """Every record at ERROR or above, from any thread and any logger."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass(repr=False)
class Bench:
    """A SidecarServer in front of a CountingBackend, each on a loop of its own."""

    proxy_loop: LoopThread
    backend: CountingBackend
    server: SidecarServer
    port: int
    samples: list[Sample]
    errors: ErrorLog

    def __repr__(self) -> str:  # hypothesis prints the fixture with a failing example: keep it short
        return f"<Bench sidecar :{self.port} -> app :{self.backend.port}, {len(self.samples)} samples>"

    def settled(self) -> bool:
        counters = self.server.counters
        return counters.connections_open == 0 and counters.exchanges_in_flight == 0

    def head_pending(self) -> bool:
        """A connection holds an unfinished request head (it will never be forwarded as it is)."""
        return any(c.tracker.head_started is not None for c in list(self.server._connections))


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    backend_loop, proxy_loop = LoopThread(), LoopThread()
    backend = CountingBackend(backend_loop)
    samples: list[Sample] = []
    config = SidecarConfig(target_host="127.0.0.1", target_port=backend.port, header_timeout=1.0, idle_timeout=1.0,
                           max_header_bytes=8192)

    server, port = proxy_loop.call(lambda: listening_sidecar(backend.port, samples.append, config))
    try:
        yield Bench(proxy_loop, backend, server, port, samples, errors)
    finally:
        proxy_loop.call(server.stop)
        proxy_loop.call(server.close_all)
        backend.close()
        proxy_loop.close()
        backend_loop.close()
        logging.getLogger().removeHandler(errors)


TOKEN = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                min_size=1, max_size=12)
STANDARD_METHOD = st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH"])
METHOD = st.one_of(STANDARD_METHOD, STANDARD_METHOD, STANDARD_METHOD, TOKEN)
TARGET = st.one_of(
    st.builds(lambda p, q: "/" + p + (f"?{q}" if q else ""), st.text(alphabet="abc/-_.%0123456789", max_size=20),
              st.text(alphabet="a=&b%20", max_size=10)),
    st.sampled_from(["*", "http://app/x?y=1", "/a#frag", "//", "/%00", "/\u00e9".encode().decode("latin-1")]),
)
HEADER_VALUE = st.one_of(
    st.sampled_from(["x", "", " padded ", "a\tb", "\x80\xff obs-text", "close", "keep-alive", "chunked", "5"]),
    st.text(alphabet="abcXYZ019 ,;=\t\"", max_size=20),
)
GOOD_FRAMING = st.sampled_from([
    [], ["Content-Length: {n}"], ["Transfer-Encoding: chunked"], ["Expect: 100-continue", "Content-Length: {n}"],
    ["Connection: close"], ["Content-Length: {n}, {n}"], ["Transfer-Encoding: gzip, chunked"],
    ["Connection: Upgrade", "Upgrade: websocket"],
])
BAD_FRAMING = st.sampled_from([
    ["Content-Length: {n}", "Transfer-Encoding: chunked"], ["Content-Length: {n}", "Content-Length: {m}"],
    ["Content-Length: +{n}"], ["Transfer-Encoding: chunked, gzip"], ["Transfer-Encoding: identity"],
    ["Transfer-Encoding : chunked"], ["Transfer-Encoding:\r\n chunked"], ["Content-Length: {n}\r\n\tx"],
    ["Content-Length: 99999999999999999999999"], ["Content-Length: {m}"],
])


@st.composite
def chunked_body(draw: st.DrawFn, body: bytes, good: bool) -> bytes:
    pieces = draw(st.lists(st.integers(1, 8), max_size=4))
    out, pos = b"", 0
    for size in pieces:
        part = body[pos:pos + size]
        if not part:
            break
        ext = draw(st.sampled_from([b"", b";a=b", b";x", b";y=\"z\""]))
        out += b"%x%s\r\n%s\r\n" % (len(part), ext, part)
        pos += size
    trailers = [b"", b"T: v\r\n"] if good else [b"", b"Bad Trailer\r\n", b"T: v\n"]
    return out + b"0\r\n" + draw(st.sampled_from(trailers)) + b"\r\n"


@st.composite
def request(draw: st.DrawFn, good: bool = True) -> bytes:
    """One request: `good` ones are well framed (the app must see each); others have bad framing."""
    method, target = draw(METHOD), draw(TARGET)
    versions = ["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0"] if good else \
        ["HTTP/1.1", "HTTP/2.0", "HTTP/1.1 ", "http/1.1"]
    version = draw(st.sampled_from(versions))
    body = draw(st.binary(max_size=24))
    framing = draw(GOOD_FRAMING if good else st.one_of(GOOD_FRAMING, BAD_FRAMING))
    chunked = any("chunked" in h for h in framing)
    if good and chunked:
        version = "HTTP/1.1"
    framing = [h.format(n=len(body), m=len(body) + 3) for h in framing]
    names = st.sampled_from(["User-Agent", "Accept", "X-Thing", "Cookie", "Authorization"])
    extra = [f"{name}: {value}" for name, value in draw(st.lists(st.tuples(names, HEADER_VALUE), max_size=4))]
    host = ["Host: app"] if good or draw(st.booleans()) else []  # Tornado, the app here, insists on one
    lines = [f"{method} {target} {version}", *draw(st.permutations([*host, *framing, *extra]))]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if chunked and (good or draw(st.booleans())):
        return head + draw(chunked_body(body, good))
    if not framing or not any("Content-Length" in h for h in framing):
        return head
    return head + body


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """Small corruptions that turn a good message into a borderline one."""
    for _ in range(draw(st.integers(1, 2))):
        if not data:
            break
        i = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "bare-lf", "nul", "cut"]))
        if op == "insert":
            junk = draw(st.sampled_from([b"\r\n", b" ", b"\t", b":", b"\x00", b"\n", b"\r", b"0"]))
            data = data[:i] + junk + data[i:]
        elif op == "delete":
            data = data[:i] + data[i + 1:]
        elif op == "bare-lf":
            data = data.replace(b"\r\n", b"\n", 1)
        elif op == "nul":
            data = data[:i] + b"\x00" + data[i:]
        else:
            data = data[:i]
    return data


INPUTS = st.one_of(
    st.lists(request(), min_size=1, max_size=3).map(b"".join),  # well framed, pipelined
    st.tuples(request(), request(good=False)).map(b"".join),  # a good one, then a borderline one
    st.lists(request(), min_size=1, max_size=2).map(b"".join).flatmap(mutated),
    st.binary(min_size=1, max_size=200),
)


def exchange_through(bench: Bench, data: bytes) -> bytes:
    """Send `data`, wait until the sidecar has nothing more to do with it, then hang up and read the rest."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", bench.port), timeout=5) as sock:
        sock.sendall(data)
        sock.setblocking(False)
        quiet_since = time.monotonic()
        deadline = quiet_since + 3
        closed = False
        seen = (len(bench.samples), len(bench.backend.seen))
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                chunk = None
            except ConnectionResetError:
                closed = True
                break
            if chunk == b"":
                closed = True
                break
            now_seen = (len(bench.samples), len(bench.backend.seen))
            if chunk or now_seen != seen:
                received += chunk or b""
                seen, quiet_since = now_seen, time.monotonic()
            in_flight = bench.server.counters.exchanges_in_flight
            if in_flight == 0 or (in_flight == 1 and bench.head_pending()):
                if time.monotonic() - quiet_since > 0.005:
                    break
            elif time.monotonic() - quiet_since > 0.05:  # waiting on a body that will not come
                break
            time.sleep(0.002)
        if not closed:
            sock.setblocking(True)
            sock.settimeout(3)
            sock.shutdown(socket.SHUT_WR)
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except (ConnectionResetError, TimeoutError):
                pass
    return bytes(received)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=INPUTS)
def test_generated_requests_end_cleanly_and_nothing_is_smuggled(bench: Bench, data: bytes) -> None:
    samples_before, seen_before = len(bench.samples), len(bench.backend.seen)
    answer = exchange_through(bench, data)
    eventually(bench.settled, timeout=5, what=f"sidecar settled after {data!r}")
    new = bench.samples[samples_before:]
    handled = len(bench.backend.seen) - seen_before
    answered = sum(1 for s in new if s["response"]["status"] == 200)
    cut_before_answer = sum(1 for s in new if s["response"]["status"] == 0 and s["error"] != "bad_request")
    # Every request the app's own parser found was one the sidecar framed and reported.
    assert answered <= handled <= answered + cut_before_answer, (data, new, bench.backend.seen[seen_before:])
    # Every answer of the app's handler that reached the client belongs to a reported exchange (no orphans).
    assert answer.count(MARK.encode()) == answered, (data, answer, new)
    refused = [s for s in new if s["error"] == "bad_request"]
    event(f"app handled {min(handled, 3)}{'+' if handled > 3 else ''}, refused {len(refused)}")
    event(f"statuses {sorted(set(s['response']['status'] for s in new))}")
    assert len(refused) <= 1 and all(s["response"]["status"] in (0, 400, 431) for s in refused)
    assert bench.errors.records == [], bench.errors.records


def test_after_the_fuzz_the_sidecar_still_serves_and_holds_no_connections(bench: Bench) -> None:
    fds = open_fds(os.getpid())
    answer = raw_exchange(bench.port, b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and MARK.encode() in answer
    eventually(bench.settled, what="settled")
    assert open_fds(os.getpid()) <= fds + 2  # no upstream socket left behind by any of the generated inputs
    assert bench.errors.records == []


# --- generated responses: whatever the app sends, the client gets exactly that ------------------------------


class RawResponder:
    """A TCP server in a thread that reads a request head, sends `response` as it is, and closes."""

    def __init__(self) -> None:
        self.response = b""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                head = b""
                try:
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    response = self.response
                    for i in range(0, len(response), 7):  # in small writes, so the sidecar sees it cut up
                        conn.sendall(response[i:i + 7])
                except OSError:
                    pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(5)


@dataclass(repr=False)
class Responding:
    app: RawResponder
    server: SidecarServer
    port: int
    samples: list[Sample]

    def __repr__(self) -> str:
        return f"<sidecar :{self.port} -> raw app :{self.app.port}>"


@pytest.fixture(scope="module")
def responder() -> Iterator[Responding]:
    loop = LoopThread()
    app = RawResponder()
    samples: list[Sample] = []
    server, port = loop.call(lambda: listening_sidecar(app.port, samples.append))
    try:
        yield Responding(app, server, port, samples)
    finally:
        loop.call(server.stop)
        loop.call(server.close_all)
        app.close()
        loop.close()


@st.composite
def response(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([b"200 OK", b"204 No Content", b"304 Not Modified", b"404 Not Found", b"500 x",
                                   b"100 Continue", b"101 Switching Protocols", b"200", b"999 odd", b"20 short"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"ICY"]))
    body = draw(st.binary(max_size=40))
    framing = draw(st.sampled_from([
        [], [b"Content-Length: %d" % len(body)], [b"Content-Length: %d" % (len(body) + 5)], [b"Content-Length: x"],
        [b"Transfer-Encoding: chunked"], [b"Transfer-Encoding: chunked", b"Content-Length: 3"],
        [b"Content-Length: 1", b"Content-Length: 2"], [b"Connection: close"], [b"Transfer-Encoding: gzip"],
    ]))
    eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    head = eol.join([version + b" " + status, *framing, b"Server: fuzz"]) + eol + eol
    if b"Transfer-Encoding: chunked" in framing:
        body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + draw(st.sampled_from([b"0\r\n\r\n", b"zz\r\n"]))
    after = draw(st.sampled_from([b"", b"", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b"junk"]))
    return head + body + after


@settings(max_examples=150, deadline=None)
@given(sent=st.one_of(response(), st.binary(max_size=120)))
def test_generated_responses_reach_the_client_byte_for_byte(responder: Responding, sent: bytes) -> None:
    app, server, port, samples = responder.app, responder.server, responder.port, responder.samples
    app.response = sent
    before = len(samples)
    got = raw_exchange(port, b"GET /r HTTP/1.1\r\nHost: a\r\n\r\n", timeout=5)
    eventually(lambda: server.counters.connections_open == 0 and server.counters.exchanges_in_flight == 0)
    new = samples[before:]
    assert len(new) <= 1 and all(s["endpoint"] == "/r" for s in new), new
    assert not sent or len(new) == 1  # an answer of some kind was reported
    # The app closed after sending: the client gets all of it, unchanged. The one exception: bytes
    # after a complete response that ends the connection (HTTP/1.0, `Connection: close`) are not HTTP
    # and may be cut, as any client would ignore them.
    if got != sent:
        assert sent.startswith(got), (sent, got)
        [sample] = new
        assert sample["error"] is None and sample["bytes_out"] <= len(got), (sent, got, sample)


# --- smuggling and abuse against a sidecar process -------------------------------------------------------


@dataclass
class Target:
    port: int
    backend: CountingBackend
    output: Any


@pytest.fixture(scope="module")
def sidecar_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    loop = LoopThread()
    backend = CountingBackend(loop)
    port, admin = free_port(), free_port()
    proc = AppProcess(["--mode", "sidecar", "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin),
                       "--target-port", str(backend.port), "--pod", "abuse-1-x"], app_env(),
                      tmp_path_factory.mktemp("abuse") / "sidecar.log")
    wait_for_port(port, proc=proc.proc)
    try:
        yield Target(port, backend, proc)
    finally:
        assert proc.stop() == 0
        assert tracebacks(proc.output) == [], proc.output
        backend.close()
        loop.close()


GOOD = b"GET /ok HTTP/1.1\r\nHost: app\r\n\r\n"
HEAD_FLOOD = b"".join(b"X-H%d: v\r\n" % i for i in range(8000))  # about 90 kB of small fields
ABUSE = {
    "CL+TE": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400),
    "TE+CL": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n"
              b"0\r\n\r\n", 400),
    "two Content-Lengths": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    "Content-Length list": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!", 400),
    "signed Content-Length": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    "chunk-size overflow": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"10000000000000001\r\nx\r\n0\r\n\r\n", 400),
    "chunk-size 2**64": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"FFFFFFFFFFFFFFFF1\r\nx\r\n0\r\n\r\n", 400),
    "negative chunk size": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n",
                            400),
    "TE not chunked last": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
                            400),
    "TE in HTTP/1.0": (b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "space before colon": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n", 400),
    "obs-fold on TE": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400),
    "bare LF": (b"GET / HTTP/1.1\nHost: a\n\n", 400),
    "bare LF inside": (b"GET / HTTP/1.1\r\nHost: a\nX-Y: z\r\n\r\n", 400),
    "bare CR": (b"GET / HTTP/1.1\r\nHost: a\rX-Y: z\r\n\r\n", 400),
    "NUL in a value": (b"GET / HTTP/1.1\r\nHost: a\r\nX-Y: a\x00b\r\n\r\n", 400),
    "NUL in a name": (b"GET / HTTP/1.1\r\nHost: a\r\nX\x00Y: b\r\n\r\n", 400),
    "bare LF in a chunk line": (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n",
                                400),
    # (The HTTP/2 preface is HTTP/2 now: tests/test_protocols_*.py; refused only under --protocol http1, test_proxy.py.)
    "space in target": (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "header flood": (b"GET / HTTP/1.1\r\nHost: a\r\n" + HEAD_FLOOD + b"\r\n", 431),
    "one huge header": (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n", 431),
    "huge request line": (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 431),
}


@pytest.mark.parametrize("name", list(ABUSE))
def test_abuse_gets_its_status_never_reaches_the_app_and_the_sidecar_keeps_serving(
        sidecar_process: Target, name: str) -> None:
    data, status = ABUSE[name]
    seen = len(sidecar_process.backend.seen)
    answer = raw_exchange(sidecar_process.port, data)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    assert b"Connection: close" in answer.split(b"\r\n\r\n")[0]
    assert sidecar_process.backend.seen[seen:] == []  # the app never saw any of it
    good = raw_exchange(sidecar_process.port, GOOD, until_close=False)
    assert good.startswith(b"HTTP/1.1 200 ") and MARK.encode() in good


def test_a_request_hidden_in_a_body_stays_a_body(sidecar_process: Target) -> None:
    hidden = b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
    data = b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (len(hidden), hidden)
    seen = len(sidecar_process.backend.seen)
    answer = raw_exchange(sidecar_process.port, data + b"GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 ") == 2
    assert [uri for _, uri, _ in sidecar_process.backend.seen[seen:]] == ["/form", "/next"]


UPGRADE = b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"


@pytest.mark.parametrize("behind", [
    b"GET /second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"POST /smuggled HTTP/1.1\nHost: a\nConnection: close\n\n",  # bare LF: refused by us, read by Tornado
], ids=["plain", "bare-LF"])
def test_requests_behind_a_declined_upgrade_are_framed(run_app: Any, behind: bytes) -> None:
    loop = LoopThread()
    backend = CountingBackend(loop)
    samples: list[Sample] = []
    server, port = loop.call(lambda: listening_sidecar(backend.port, samples.append))
    try:
        raw_exchange(port, UPGRADE + behind)
        eventually(lambda: server.counters.connections_open == 0)
        handled = [uri for _, uri, _ in backend.seen]
        reported = [s["endpoint"] for s in samples if s["error"] != "bad_request"]
        # The app declines the upgrade (200), so what follows is HTTP again: framed, checked and reported.
        assert handled == reported, (handled, samples)
        assert "/smuggled" not in handled
        assert len(samples) == 2
    finally:
        loop.call(server.stop)
        loop.call(server.close_all)
        backend.close()
        loop.close()


def listening_sidecar(target_port: int, on_sample: Any,
                      config: SidecarConfig | None = None) -> tuple[SidecarServer, int]:
    """A SidecarServer on a free port of the current loop."""
    config = config or SidecarConfig(target_host="127.0.0.1", target_port=target_port)
    server = SidecarServer(config, on_sample)
    [sock] = bind_sockets(0, "127.0.0.1")
    server.add_sockets([sock])
    return server, sock.getsockname()[1]


def test_many_small_headers_within_the_limit_pass(sidecar_process: Target) -> None:
    fields = b"".join(b"X-H%d: v\r\n" % i for i in range(3000))  # about 30 kB, under the 64 kB limit
    answer = raw_exchange(sidecar_process.port, b"GET /many HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + fields
                          + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")


# --- thousands of connections -----------------------------------------------------------------------------


def test_a_burst_of_connections_fits_in_the_listen_backlog(run_app: Any) -> None:
    sidecar = start_sidecar(run_app, free_port())
    burst = 600
    clients: list[socket.socket] = []
    os.kill(sidecar.pid, signal.SIGSTOP)  # a busy moment: only the kernel's accept queue takes connections now
    try:
        for _ in range(burst):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", sidecar.port))
            clients.append(sock)
        time.sleep(0.3)
        _, writable, _ = select.select([], clients, [], 0)
        connected = sum(1 for sock in writable if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
    finally:
        os.kill(sidecar.pid, signal.SIGCONT)
        for sock in clients:
            sock.close()
    assert connected == burst, f"only {connected} of {burst} connections were taken while the sidecar was busy"


@pytest.mark.slow
def test_thousands_of_idle_connections_are_closed_on_time_and_others_are_served(run_app: Any, tmp_path: Path) -> None:
    idle_n, partial_n = 1000, 500
    limit = raise_fd_limit(4 * (idle_n + partial_n) + 256)
    if limit < 2 * (idle_n + partial_n) + 128:
        pytest.skip(f"RLIMIT_NOFILE is {limit}: too low for {idle_n + partial_n} connections")
    # The app runs in a process of its own: in this one it would compete with the clients for the GIL.
    app = SampleApp(log=tmp_path / "sampleapp.log").start()
    clients: list[socket.socket] = []
    try:
        sidecar = start_sidecar(run_app, app.port, "", "--idle-timeout", "3", "--header-timeout", "2")
        base_rss, base_fds = rss_bytes(sidecar.pid), open_fds(sidecar.pid)
        opened_at: list[float] = []
        # Closes are watched from the first connection on: on a loaded machine opening them all can take
        # longer than the idle timeout, and a close must be timed when it happens, not when looked at.
        selector = selectors.DefaultSelector()
        closed_at: dict[int, float] = {}

        def reap(timeout: float) -> None:
            for key, _ in selector.select(timeout=timeout):
                i = key.data
                try:
                    data = clients[i].recv(4096)
                except ConnectionResetError:
                    data = b""
                assert data == b"", data  # closed without an answer: nothing was asked
                closed_at[i] = time.monotonic() - opened_at[i]
                selector.unregister(clients[i])

        def accepted(n: int) -> bool:
            reap(0)
            # Accepted so far (not open now: the first may be closed already, on time).
            return sidecar.metric("mothership_proxy_connections_total") >= n

        for i in range(idle_n + partial_n):
            opened_at.append(time.monotonic())  # before connecting: the sidecar may accept before we return
            sock = socket.create_connection(("127.0.0.1", sidecar.port), timeout=5)
            if i >= idle_n:  # a head that never ends (slowloris)
                sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Wait: ")
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, data=i)
            clients.append(sock)
            if len(clients) % 100 == 0:  # in steps, so the time each waits is the sidecar's, not the backlog's
                eventually(lambda: accepted(len(clients)), what=f"{len(clients)} connections accepted")
        held_rss, held_fds = rss_bytes(sidecar.pid), open_fds(sidecar.pid)

        served = KeepAliveClient(sidecar.port)
        served.get_many(user_paths(100))
        served.close()
        assert set(served.statuses) == {200}

        while len(closed_at) < len(clients) and time.monotonic() - opened_at[0] < 20:
            reap(0.5)
        selector.close()
        assert len(closed_at) == len(clients), f"{len(clients) - len(closed_at)} connections still open"
        partial_closed = [t for i, t in closed_at.items() if i >= idle_n]
        idle_closed = [t for i, t in closed_at.items() if i < idle_n]
        assert min(partial_closed) >= 2 and max(partial_closed) < 2 + 2  # --header-timeout 2
        assert min(idle_closed) >= 3 and max(idle_closed) < 3 + 2  # --idle-timeout 3

        eventually(lambda: sidecar.metric("mothership_proxy_connections_open") == 0, what="all closed")
        assert sidecar.metric("mothership_proxy_connection_timeouts_total", kind="header") == partial_n
        assert sidecar.metric("mothership_proxy_connection_timeouts_total", kind="idle") >= idle_n
        eventually(lambda: open_fds(sidecar.pid) <= base_fds + 2, what="file descriptors back to the start")
        assert sidecar.get("/users/1").status == 200
        print(f"{idle_n} idle + {partial_n} slowloris connections: sidecar RSS {base_rss / 1e6:.1f} -> "
              f"{held_rss / 1e6:.1f} MB, fds {base_fds} -> {held_fds} -> {open_fds(sidecar.pid)}; "
              f"100 requests meanwhile: median {median(served.latencies):.2f} ms, max {max(served.latencies):.1f} ms")
        assert max(served.latencies) < 500
        assert tracebacks(sidecar.proc.output) == []
    finally:
        for sock in clients:
            sock.close()
        app.stop()


# --- routes: throwaway paths and very long ones (issue 16) ------------------------------------------------------


def _get_many(port: int, paths: list[str]) -> None:
    """GET every path on one kept-alive connection (the answers read and dropped)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for path in paths:
            conn.request("GET", path)
            conn.getresponse().read()
    finally:
        conn.close()


def test_throwaway_paths_cannot_freeze_the_route_labels_and_long_routes_are_cut(run_app: Any,
                                                                                  tmp_path: Path) -> None:
    """5,000 throwaway paths used to keep a new real route as {other} until a restart; 100 routes of 2,100
    characters made /metrics 11 MB a scrape."""
    app = SampleApp(log=tmp_path / "app.log").start()
    try:
        sidecar = start_sidecar(run_app, app.port)
        _get_many(sidecar.port, [f"/junk-{i}/x" for i in range(5000)])
        _get_many(sidecar.port, ["/api/orders"] * 5)
        text = sidecar.metrics_text()
        assert 'route="/api/orders"' in text
        _get_many(sidecar.port, [f"/{chr(97 + i // 26)}{chr(97 + i % 26)}-" + "y" * 2100 for i in range(100)] * 3)
        _get_many(sidecar.port, ["/api/orders"] * 5)
        text = sidecar.metrics_text()
        assert len(text) < 2e6, len(text)
        labels = {line.split('route="')[1].split('"')[0] for line in text.splitlines() if 'route="' in line}
        long_labels = {label for label in labels if "yyyy" in label}
        assert len(long_labels) >= 90  # used three times each: they took the throwaways' places
        assert all(len(label) == 200 and label.endswith("…") for label in long_labels)
        assert 'route="/api/orders"' in text
    finally:
        app.stop()


def test_connect_gets_405_unless_the_app_is_a_proxy(run_app: Any, tmp_path: Path) -> None:
    """An app answering CONNECT with a 2xx made what followed one opaque sample, hiding its requests."""
    app = SampleApp(log=tmp_path / "app.log").start()
    try:
        request = b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\nGET /hidden HTTP/1.1\r\nHost: a\r\n\r\n"
        refusing = start_sidecar(run_app, app.port)
        answer = raw_exchange(refusing.port, request)
        assert answer.startswith(b"HTTP/1.1 405 ") and b"\r\nAllow: GET, HEAD" in answer, answer[:300]
        assert b"mothership sidecar" in answer and b"CONNECT" not in answer.split(b"\r\n\r\n")[0]
        assert refusing.metric("http_server_requests_total", method="CONNECT", status_class="4xx") == 1
        proxying = start_sidecar(run_app, app.port, "", "--allow-connect", "true", pod="proxy-1-x")
        passed = raw_exchange(proxying.port, request)
        assert b"mothership sidecar" not in passed  # the app answered, whatever it said
    finally:
        app.stop()
