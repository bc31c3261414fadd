"""sidecar.detect: a connection's protocol from its first bytes, as pure code, with real clients' first bytes."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.detect import H2, H2_PREFACE, HTTP1, MAX_LEADING_EOL, TCP, TLS, detect, detect_server


def client_hello(server_hostname: str = "app.example") -> bytes:
    """The first flight of Python's (OpenSSL's) TLS client."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(("first", "protocol"), [
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP1),
    (b"POST /x HTTP/1.0\r\n", HTTP1),
    (b"GET ", HTTP1),  # decided at the method's space: the rest of the head is HTTP/1's to check
    (b"\r\nGET / HTTP/1.1\r\n\r\n", HTTP1),  # an empty line before the request line (RFC 9112 2.2)
    (b"\nGET / HTTP/1.1\r\n\r\n", HTTP1),  # not allowed, but servers take it: HTTP/1 refuses it
    (b"M-SEARCH * HTTP/1.1\r\n", HTTP1),
    (b"get / HTTP/1.1\r\n", HTTP1),  # a token: HTTP/1's framing decides what it is
    (b"PRI * HTTP/1.1\r\n\r\n", HTTP1),  # PRI, but not the preface
    (H2_PREFACE, H2),
    (H2_PREFACE + b"\x00\x00\x12\x04\x00\x00\x00\x00\x00", H2),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", TLS),
    (b"\x16\x03\x00", TLS),
    (b"\x16\x03\x05", TCP),  # no TLS version 3.5
    (b"\x16\x02", TCP),
    (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", TCP),  # PostgreSQL's SSLRequest
    (b"\x80\x01\x02", TCP),
    (b"{\"jsonrpc\": \"2.0\"}", TCP),
    (b" GET / HTTP/1.1\r\n", TCP),  # a leading space: no server reads that as HTTP
    (b"GET\x00/ HTTP/1.1\r\n", TCP),
    (b"A" * 65 + b" / HTTP/1.1\r\n", TCP),  # a method longer than any HTTP/1 accepts
    (b"A" * 64 + b" / HTTP/1.1\r\n", HTTP1),
    (b"\r\n" * MAX_LEADING_EOL, HTTP1),  # so many empty lines: HTTP/1 frames (or refuses) them
])
def test_first_bytes_decide(first: bytes, protocol: str) -> None:
    assert detect(first) == protocol


@pytest.mark.parametrize("prefix", [
    b"", b"G", b"GE", b"GET", b"M-SEARCH", b"\r", b"\r\n", b"\r\nPOS", b"P", b"PR", b"PRI", b"PRI * HTTP/2.0\r\n\r\nSM",
    H2_PREFACE[:-1], b"\x16", b"\x16\x03", b"A" * 64,
])
def test_a_prefix_of_several_is_undecided(prefix: bytes) -> None:
    assert detect(prefix) is None


def test_a_real_client_hello_is_tls() -> None:
    hello = client_hello()
    assert detect(hello) == TLS
    assert detect(hello[:3]) == TLS  # the record header is enough
    assert detect(hello[:2]) is None


def test_every_prefix_of_a_decided_start_is_undecided_or_the_same() -> None:
    # What a client sends in pieces is decided as it would be in one read.
    for whole in (b"GET /a HTTP/1.1\r\n\r\n", H2_PREFACE + b"\x00\x00", client_hello(), b"\r\nOPTIONS * HTTP/1.1\r\n",
                  b"hello world\n", b"\x01\x02\x03"):
        decided = detect(whole)
        for n in range(1, len(whole)):
            assert detect(whole[:n]) in (None, decided), (whole, n)


@given(st.binary(max_size=80))
def test_any_bytes_get_an_answer_and_longer_bytes_never_change_it(data: bytes) -> None:
    decided = detect(data)
    assert decided in (None, HTTP1, H2, TLS, TCP)
    if decided is not None:
        assert detect(data + b"more bytes") == decided


def test_an_app_that_speaks_first_is_http2_if_it_sends_settings() -> None:
    settings = b"\x00\x00\x0c\x04\x00\x00\x00\x00\x00" + b"\x00\x03\x00\x00\x00\x64\x00\x04\x00\x01\x00\x00"
    assert detect_server(settings) == H2
    assert detect_server(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00") == H2  # empty SETTINGS
    assert detect_server(settings[:8]) == TCP
    assert detect_server(b"\x00\x00\x0c\x04\x01\x00\x00\x00\x00") == TCP  # an ACK is never first
    assert detect_server(b"\x00\x00\x0c\x04\x00\x00\x00\x00\x01") == TCP  # not on stream 0
    assert detect_server(b"\x00\x00\x0d\x04\x00\x00\x00\x00\x00") == TCP  # not a whole number of settings
    assert detect_server(b"220 mail.example ESMTP\r\n") == TCP
    assert detect_server(b"SSH-2.0-OpenSSH_9.2p1\r\n") == TCP
