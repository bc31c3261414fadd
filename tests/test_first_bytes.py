"""sidecar.first_bytes: how a real sidecar chooses each connection's relay: the client's first bytes, an app that
speaks first, a client that stays silent, a method that never ends, --protocol."""

from __future__ import annotations

import socket
import struct
import time

from tests.conftest import free_port
from tests.protocol_support import ThreadedSidecar, converse, echo, sidecar_for
from tests.proxy_support import Peer, RawBackend, read_all, talk


def smtp_like(peer: Peer) -> None:
    """A protocol where the server speaks first (as SMTP, MySQL, FTP do)."""
    peer.send(b"220 mail.example ESMTP ready\r\n")
    if peer.read_until(len(b"EHLO client\r\n")):
        peer.send(b"250 mail.example at your service\r\n")
    peer.read_until_close()


def greet_and_reply(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        got = read_all(sock, until=len(b"220 mail.example ESMTP ready\r\n"), timeout=10)
        sock.sendall(b"EHLO client\r\n")  # a token and a space: it would pass for HTTP had the client spoken first
        return got + read_all(sock, until=len(b"250 mail.example at your service\r\n"), timeout=10)


def test_a_server_that_speaks_first_decides_opaque_at_once() -> None:
    app = RawBackend(smtp_like)
    try:
        with sidecar_for(app.port) as proxy:
            started = time.monotonic()
            direct = greet_and_reply(app.port)
            assert greet_and_reply(proxy.port) == direct
            assert time.monotonic() - started < proxy.config.detect_timeout / 2  # no wait for the client's silence
            [sample] = proxy.settled()
    finally:
        app.close()
    assert (sample["protocol"], sample["bytes_in"], sample["bytes_out"]) == ("tcp", 13, len(direct))
    assert proxy.counters.opaque["server_first"] == 1


def test_a_client_silent_for_the_detect_timeout_is_relayed_as_opaque() -> None:
    app = RawBackend(echo)
    try:
        with sidecar_for(app.port, detect_timeout=0.2) as proxy:
            assert converse(proxy.port, [b"GET / HTTP/1.1\r\n\r\n"], pause=0.5) == \
                struct.pack(">I", 18) + b"GET / HTTP/1.1\r\n\r\n"[::-1]
            [sample] = proxy.settled()
    finally:
        app.close()
    assert sample["protocol"] == "tcp" and proxy.counters.opaque["client_silent"] == 1


def test_forced_opaque_relays_http_without_reading_it() -> None:
    app = RawBackend(lambda peer: peer.read_until(4) and peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    try:
        with sidecar_for(app.port, protocol="opaque") as proxy:
            got = talk(proxy.port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            [sample] = proxy.settled()
    finally:
        app.close()
    assert got == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert sample["protocol"] == "tcp" and proxy.counters.opaque["forced"] == 1
    assert proxy.counters.protocols["http1"] == 0


def test_a_method_that_never_ends_is_cut_at_the_header_timeout() -> None:
    app = RawBackend(lambda peer: peer.read_until_close())
    try:
        with sidecar_for(app.port, header_timeout=0.3) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                sock.sendall(b"GE")  # a prefix of HTTP/1 (and of nothing else yet)
                assert read_all(sock, timeout=3) == b""  # closed by the sidecar
            assert proxy.settled() == []
    finally:
        app.close()
    assert proxy.counters.timeouts["header"] == 1 and app.peers[0].received == b""


def test_sidecar_counters_start_at_zero() -> None:
    proxy = ThreadedSidecar(free_port())
    try:
        assert set(proxy.counters.protocols) == {"http1", "h2", "tls", "tcp"}
        assert set(proxy.counters.opaque.values()) == {0} and proxy.counters.untracked == 0
    finally:
        proxy.close()
