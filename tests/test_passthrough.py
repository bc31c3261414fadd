"""sidecar.passthrough: connections relayed as they come through a real sidecar: order and back-pressure on large
streams, the idle timeout, and an observer that loses track while the bytes keep flowing."""

from __future__ import annotations

import os
import socket
import struct

from hpack import Encoder

from tests.protocol_support import converse, echo, sidecar_for
from tests.proxy_support import Peer, RawBackend, read_all, talk


def test_a_large_stream_both_ways_keeps_its_order() -> None:
    app = RawBackend(echo)
    body = os.urandom(8 << 20)
    try:
        with sidecar_for(app.port) as proxy:
            got = converse(proxy.port, [body])
            [sample] = proxy.settled()
    finally:
        app.close()
    assert got == struct.pack(">I", len(body)) + body[::-1]
    assert sample["bytes_in"] == sample["bytes_out"] == len(body) + 4


def test_a_silent_opaque_connection_is_closed_after_the_idle_timeout() -> None:
    app = RawBackend(echo)
    try:
        with sidecar_for(app.port, idle_timeout=0.3) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                sock.sendall(b"\x00\x00\x00\x01z")
                assert read_all(sock, timeout=3) == b"\x00\x00\x00\x01z"  # then closed
            [sample] = proxy.settled()
    finally:
        app.close()
    assert sample["protocol"] == "tcp" and proxy.counters.timeouts["idle"] == 1




def test_http2_the_tracker_cannot_follow_still_flows_untouched_and_is_counted() -> None:
    # Stream 1 opens with a good header block; stream 3's is not HPACK: the tracker stops there, stream 1
    # is reported untracked, and every byte still goes both ways as sent.
    block = Encoder().encode([(":method", "GET"), (":scheme", "http"), (":path", "/users/1"), (":authority", "a")])
    good = len(block).to_bytes(3, "big") + b"\x01\x04\x00\x00\x00\x01" + block  # HEADERS, END_HEADERS, stream 1
    bad = b"\x00\x00\x05\x01\x05\x00\x00\x00\x03" + b"\xff\xff\xff\xff\xff"
    garbage = os.urandom(70_000)
    data = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + good + bad + garbage
    app = RawBackend(lambda peer: peer.read_until(len(data)) and peer.send(bytes(peer.received)))
    try:
        with sidecar_for(app.port) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                sock.sendall(data)
                assert read_all(sock, until=len(data), timeout=5) == data
            [sample] = proxy.settled()
    finally:
        app.close()
    assert app.peers[0].received == data
    assert proxy.counters.protocols["h2"] == 1 and proxy.counters.untracked == 1
    assert (sample["route"], sample["untracked"], sample["protocol"]) == ("/users/{id}", True, "h2")


def test_a_half_close_passes_each_way_and_the_answer_still_comes() -> None:
    # A protocol whose app answers only once the client has said all (shut its sending side), and a client
    # that still reads after that: the end of file goes on to the app, the answer comes back.
    request = b"\x00\x01binary request, all of it"

    def app_side(peer: Peer) -> None:
        peer.read_until_close()  # until the client's end of file
        peer.send(bytes(peer.received[::-1]))

    app = RawBackend(app_side)
    try:
        with sidecar_for(app.port) as proxy:
            assert talk(proxy.port, request, half_close=True) == request[::-1]
            [sample] = proxy.settled()
    finally:
        app.close()
    assert (sample["protocol"], sample["bytes_in"], sample["bytes_out"]) == ("tcp", len(request), len(request))
    assert sample["error"] is None
