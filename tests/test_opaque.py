"""sidecar.opaque: connections the sidecar does not read, one sample each; pure, and through a real sidecar
(a binary echo protocol, a server-speaks-first protocol, TLS with curl -k to openssl s_server)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from sidecar.opaque import OpaqueTracker
from tests.conftest import free_port
from tests.protocol_support import converse, echo, make_certificate, need, server_process, sidecar_for
from tests.proxy_support import Peer, RawBackend, talk
from tests.test_tls_hello import client_hello

# --- the tracker, pure -------------------------------------------------------------------------------------


def test_one_exchange_counts_both_ways_and_times_the_connection() -> None:
    tracker = OpaqueTracker("tcp", 10.0)
    tracker.feed_client(b"\x01\x02\x03", 10.5)
    assert tracker.live == 1 and tracker.take_finished() == []
    tracker.feed_server(b"\x04\x05", 11.0)
    tracker.feed_server(b"\x06", 12.0)
    tracker.close("client", 13.0)
    tracker.close("upstream", 14.0)  # once only
    [ex] = tracker.take_finished()
    assert (ex.protocol, ex.bytes_in, ex.bytes_out, ex.t_start, ex.t_first, ex.t_end, ex.error) == \
        ("tcp", 3, 3, 10.0, 11.0, 13.0, None)
    assert tracker.live == 0 and tracker.take_finished() == []


def test_tls_takes_the_server_name_and_alpn_from_the_client_hello_in_pieces() -> None:
    tracker = OpaqueTracker("tls", 0.0)
    hello = client_hello("payments.internal", alpn=["h2", "http/1.1"])
    for i in range(0, len(hello), 50):
        tracker.feed_client(hello[i:i + 50], 0.1)
    tracker.feed_client(b"\x17\x03\x03\x00\x10" + bytes(16), 0.2)  # encrypted records after it are only counted
    tracker.close("done", 1.0)
    [ex] = tracker.take_finished()
    assert (ex.protocol, ex.target, ex.alpn, ex.bytes_in) == ("tls", b"payments.internal", "h2,http/1.1",
                                                                len(hello) + 21)


def test_a_failure_names_its_error() -> None:
    tracker = OpaqueTracker("tcp", 0.0)
    tracker.fail("upstream_unavailable", 0.5)
    [ex] = tracker.take_finished()
    assert (ex.error, ex.t_end, ex.t_first) == ("upstream_unavailable", 0.5, None)


def test_only_tls_or_tcp() -> None:
    with pytest.raises(ValueError, match="tls or tcp"):
        OpaqueTracker("h2", 0.0)


# --- through a real sidecar: one sample per connection ------------------------------------------------------


def test_a_binary_protocol_passes_byte_for_byte_as_one_tcp_sample() -> None:
    app = RawBackend(echo)
    messages = [b"\x00\x01\xff" * 10, os.urandom(3000), b"", os.urandom(200_000)]
    try:
        with sidecar_for(app.port) as proxy:
            direct = converse(app.port, messages)
            assert converse(proxy.port, messages) == direct
            [sample] = proxy.settled()
    finally:
        app.close()
    assert (sample["protocol"], sample["error"]) == ("tcp", None)
    assert sample["bytes_in"] == sample["bytes_out"] == sum(4 + len(m) for m in messages)
    assert sample["ttfb"] is not None and 0 < sample["ttfb"] <= sample["time"]
    assert proxy.counters.protocols["tcp"] == 1 and proxy.counters.opaque["not_http"] == 1


def test_an_unreachable_app_closes_the_client_and_says_why() -> None:
    port = free_port()  # nothing listens there
    with sidecar_for(port) as proxy:
        assert talk(proxy.port, b"\x00\x00\x00\x01x") in (b"", b"<RST>")
        [sample] = proxy.settled()
    assert (sample["protocol"], sample["error"], sample["bytes_in"], sample["bytes_out"]) == \
        ("tcp", "upstream_unavailable", 5, 0)


def test_an_app_that_resets_is_upstream_reset() -> None:
    def reset(peer: Peer) -> None:
        peer.read_until(3)
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    app = RawBackend(reset)
    try:
        with sidecar_for(app.port) as proxy:
            talk(proxy.port, b"\x00\x01\x02")
            [sample] = proxy.settled()
    finally:
        app.close()
    assert (sample["protocol"], sample["error"]) == ("tcp", "upstream_reset")


# --- TLS: curl -k through to openssl s_server ------------------------------------------------------------


def curl_https(port: int, name: str) -> bytes:
    curl = need("curl", "curl")
    done = subprocess.run([curl, "-sk", "--max-time", "10", "--resolve", f"{name}:{port}:127.0.0.1",
                           f"https://{name}:{port}/hello.txt"], capture_output=True, timeout=20, check=True)
    return done.stdout


def test_curl_through_to_a_tls_server_is_one_tls_sample_named_by_sni(tmp_path: Path) -> None:
    openssl = need("openssl", "openssl")
    name = "app.example.test"
    cert, key = make_certificate(tmp_path, name)
    (tmp_path / "hello.txt").write_text("hello over TLS\n")
    port = free_port()
    # -WWW serves files from the working directory; it answers one connection at a time.
    with server_process([openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert), "-key", str(key),
                         "-WWW", "-quiet"], port, tmp_path / "s_server.log", cwd=tmp_path) as _, \
            sidecar_for(port) as proxy:
        direct = curl_https(port, name)
        assert curl_https(proxy.port, name) == direct == b"hello over TLS\n"
        samples = proxy.settled()
    [sample] = [s for s in samples if s["bytes_in"] > 0]  # (server_process's own probe of the port is not proxied)
    assert (sample["protocol"], sample["endpoint"], sample["error"]) == ("tls", name, None)
    assert "http/1.1" in sample["alpn"].split(",")
    assert sample["bytes_out"] > len(direct)  # the handshake and the encrypted answer
    assert proxy.counters.opaque["tls"] == 1 and proxy.counters.protocols["tls"] == 1
