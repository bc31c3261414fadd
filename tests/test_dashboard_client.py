"""DashboardClient: kept-alive POSTs against real servers on loopback, and every way a connection can end."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from typing import Any

import pytest
from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError
from tornado.web import Application, RequestHandler

from sidecar.report.client import DashboardClient, _Target
from tests.conftest import free_port

JSON = {"Content-Type": "application/json"}


class Recorder(RequestHandler):
    """Answers 200 (or `?status=`), remembering which client connection (its port) each POST came on."""

    def initialize(self, seen: list[tuple[int, bytes]]) -> None:
        self.seen = seen

    def post(self) -> None:
        address = self.request.connection.context.address  # type: ignore[union-attr]
        self.seen.append((address[1], self.request.body))
        self.set_status(int(self.get_query_argument("status", "200")))
        if self.get_query_argument("close", None):
            self.set_header("Connection", "close")
        self.finish(b'{"response":"saved"}')


@asynccontextmanager
async def recorder(port: int | None = None, **server_options: Any) -> AsyncIterator[tuple[int, list[Any], HTTPServer]]:
    seen: list[tuple[int, bytes]] = []
    port = port or free_port()
    server = HTTPServer(Application([(r"/.*", Recorder, {"seen": seen})], log_function=lambda handler: None),
                        **server_options)
    server.listen(port, "127.0.0.1")
    try:
        yield port, seen, server
    finally:
        server.stop()
        await server.close_all_connections()


RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    return await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))


@asynccontextmanager
async def raw_server(serve: Serve) -> AsyncIterator[int]:
    """An asyncio server on a free port running `serve` per connection; every connection is closed at the end."""
    tasks: list[asyncio.Future[Any]] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@asynccontextmanager
async def answering(answer: Callable[[int, int], bool]) -> AsyncIterator[tuple[int, list[tuple[int, int]]]]:
    """For the n-th request (from 1) on the c-th connection (from 1): answer when `answer(c, n)`, else
    close the connection without a byte. Records (c, n) per request read."""
    requests: list[tuple[int, int]] = []
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        c, n = connections, 0
        while True:
            await read_request(reader)
            n += 1
            requests.append((c, n))
            if not answer(c, n):
                return
            writer.write(RESPONSE)
            await writer.drain()

    async with raw_server(serve) as port:
        yield port, requests


async def post(client: DashboardClient, port: int, path: str = "/stats", body: bytes = b"{}",
               timeout: float = 2.0) -> int:
    return (await client.post(f"http://127.0.0.1:{port}{path}", body, JSON, timeout)).code


def test_targets_keep_their_path_prefix_and_default_ports() -> None:
    target = _Target.parse("http://d:8080/mothership/stats")
    assert (target.address, target.netloc, target.path) == (("http", "d", 8080), "d:8080", "/mothership/stats")
    assert _Target.parse("https://d/stats").address == ("https", "d", 443)
    assert _Target.parse("http://[::1]/stats").host == "::1"
    with pytest.raises(ValueError):
        _Target.parse("ftp://d/stats")


@pytest.mark.gen_test(timeout=10)
async def test_posts_share_one_kept_connection(io_loop: Any) -> None:
    async with recorder() as (port, seen, _server):
        with closing(DashboardClient()) as client:
            replies = [await client.post(f"http://127.0.0.1:{port}/stats", b'{"n": %d}' % i, JSON, 2.0)
                       for i in range(20)]
            assert {r.code for r in replies} == {200} and replies[0].body == b'{"response":"saved"}'
            assert [body for _port, body in seen] == [b'{"n": %d}' % i for i in range(20)]
            assert len({p for p, _ in seen}) == 1 and client.connections_opened == 1
            # Two at once need two connections; both are kept and reused after.
            await asyncio.gather(post(client, port), post(client, port, "/resources"))
            await asyncio.gather(post(client, port), post(client, port, "/resources"))
            assert len({p for p, _ in seen}) == 2 and client.connections_opened == 2


@pytest.mark.gen_test(timeout=10)
async def test_refusals_are_replies_and_the_connection_stays(io_loop: Any) -> None:
    async with recorder() as (port, seen, _server):
        with closing(DashboardClient()) as client:
            assert [await post(client, port, f"/stats?status={code}") for code in (500, 400, 401, 200)] == [
                500, 400, 401, 200]
            assert len({p for p, _ in seen}) == 1


@pytest.mark.gen_test(timeout=10)
async def test_connection_close_from_the_server_is_honoured(io_loop: Any) -> None:
    async with recorder() as (port, seen, _server):
        with closing(DashboardClient()) as client:
            for _ in range(3):
                assert await post(client, port, "/stats?close=1") == 200
            assert len({p for p, _ in seen}) == 3 and client.connections_opened == 3


@pytest.mark.gen_test(timeout=10)
async def test_an_idle_connection_the_server_closed_is_replaced(io_loop: Any) -> None:
    async with recorder(idle_connection_timeout=0.2) as (port, seen, _server):
        with closing(DashboardClient()) as client:
            assert await post(client, port) == 200
            await asyncio.sleep(0.5)  # the server's idle timeout closes the kept connection
            assert await post(client, port) == 200
            assert len(seen) == 2 and len({p for p, _ in seen}) == 2  # sent once, on a new connection


@pytest.mark.gen_test(timeout=10)
async def test_a_reused_connection_closed_without_an_answer_is_retried_once_on_a_fresh_one(io_loop: Any) -> None:
    # The race a close-while-idle check cannot catch: the server reads the request, then closes.
    async with answering(lambda c, n: n == 1) as (port, requests):
        with closing(DashboardClient()) as client:
            assert await post(client, port) == 200  # connection 1, request 1
            assert await post(client, port) == 200  # connection 1 closes unanswered: connection 2
            assert requests == [(1, 1), (1, 2), (2, 1)] and client.connections_opened == 2


@pytest.mark.gen_test(timeout=10)
async def test_the_retry_happens_once_and_a_fresh_connection_is_never_retried(io_loop: Any) -> None:
    async with answering(lambda c, n: c == 1 and n == 1) as (port, requests):
        with closing(DashboardClient()) as client:
            assert await post(client, port) == 200
            with pytest.raises(StreamClosedError):  # reused: retried once, and the fresh one fails too
                await post(client, port)
            assert requests == [(1, 1), (1, 2), (2, 1)]
            with pytest.raises(StreamClosedError):  # nothing idle: one attempt only
                await post(client, port)
            assert requests == [(1, 1), (1, 2), (2, 1), (3, 1)]


@pytest.mark.gen_test(timeout=10)
async def test_a_hanging_server_times_out_and_its_connection_is_not_reused(io_loop: Any) -> None:
    release = asyncio.Event()
    requests: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            requests.append(writer.get_extra_info("peername")[1])
            if len(requests) == 1:
                await release.wait()
            writer.write(RESPONSE)
            await writer.drain()

    async with raw_server(serve) as port:
        with closing(DashboardClient()) as client:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await post(client, port, timeout=0.3)
            assert 0.25 <= time.monotonic() - started < 1.0
            release.set()  # a late answer on the abandoned connection must not be taken for the next one's
            assert await post(client, port) == 200
            assert len(requests) == 2 and requests[0] != requests[1]


@pytest.mark.gen_test(timeout=10)
async def test_down_then_restarted(io_loop: Any) -> None:
    port = free_port()
    with closing(DashboardClient()) as client:
        with pytest.raises(ConnectionRefusedError):
            await post(client, port)
        async with recorder(port) as (_port, seen, _server):
            assert await post(client, port) == 200
        # Stopped: its connections closed, nothing listens.
        with pytest.raises(OSError):
            await post(client, port)
        async with recorder(port) as (_port, seen, _server):  # restarted on the same port
            assert await post(client, port, body=b"after") == 200
            assert [body for _p, body in seen] == [b"after"]  # once, not twice


@pytest.mark.gen_test(timeout=10)
async def test_an_oversized_or_malformed_reply_is_a_failure(io_loop: Any) -> None:
    replies = iter([b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", b"garbage\r\n\r\n"])

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(next(replies))
        await writer.drain()
        await asyncio.sleep(5)

    async with raw_server(serve) as port:
        with closing(DashboardClient()) as client:
            for _ in range(2):
                started = time.monotonic()
                with pytest.raises(StreamClosedError):
                    await post(client, port)
                assert time.monotonic() - started < 0.5  # refused at once, not read until the timeout


@pytest.mark.gen_test(timeout=10)
async def test_idle_connections_are_capped_and_closed_on_close(io_loop: Any) -> None:
    async with recorder() as (port, _seen, server):
        client = DashboardClient(max_idle=2)
        await asyncio.gather(*(post(client, port) for _ in range(5)))
        assert client.connections_opened == 5
        assert sum(len(streams) for streams in client._idle.values()) == 2
        client.close()
        await asyncio.sleep(0.1)
        assert not server._connections  # the server saw them all closed


# --- https: a dashboard behind TLS (an OpenShift Route with reencrypt, say) -------------------------------------


def tls_server(tmp_path: Any) -> tuple[ssl.SSLContext, str]:
    """A server context with a new self-signed certificate for 127.0.0.1, and that certificate's file."""
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", key,
                    "-out", cert, "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert


@pytest.mark.gen_test(timeout=10)
async def test_https_posts_are_verified_and_kept_alive(io_loop: Any, tmp_path: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    server_tls, cert = tls_server(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", cert)  # trusted by this test's clients only
    async with recorder(ssl_options=server_tls) as (port, seen, _server):
        with closing(DashboardClient()) as client:
            for i in range(3):
                reply = await client.post(f"https://127.0.0.1:{port}/stats", b'{"n": %d}' % i, JSON, 2.0)
                assert reply.code == 200
            assert [body for _port, body in seen] == [b'{"n": %d}' % i for i in range(3)]
            assert len({p for p, _ in seen}) == 1 and client.connections_opened == 1


@pytest.mark.gen_test(timeout=10)
async def test_https_to_an_untrusted_certificate_fails_and_sends_nothing(io_loop: Any, tmp_path: Any) -> None:
    server_tls, _cert = tls_server(tmp_path)
    async with recorder(ssl_options=server_tls) as (port, seen, _server):
        with closing(DashboardClient()) as client:
            with pytest.raises(ssl.SSLCertVerificationError):
                await client.post(f"https://127.0.0.1:{port}/stats", b"{}", JSON, 2.0)
            assert seen == []
