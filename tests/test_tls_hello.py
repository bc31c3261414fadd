"""sidecar.tls: SNI and ALPN read from real ClientHellos (Python's OpenSSL, and the openssl command), in any pieces."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.tls import MAX_HELLO, ClientHello, ClientHelloReader, parse_client_hello


def client_hello(server_hostname: str | None = "api.example.test", alpn: list[str] | None = None,
                 maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED) -> bytes:
    """The first flight of Python's (OpenSSL's) TLS client."""
    context = ssl.create_default_context()
    context.check_hostname = server_hostname is not None
    context.maximum_version = maximum
    if alpn:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def read(data: bytes, pieces: list[int] | None = None) -> ClientHelloReader:
    reader = ClientHelloReader()
    at = 0
    for size in pieces or [len(data)]:
        reader.feed(data[at:at + size])
        at += size
    reader.feed(data[at:])
    return reader


def test_sni_and_alpn_of_a_tls13_client() -> None:
    reader = read(client_hello(alpn=["h2", "http/1.1"]))
    assert reader.done and reader.hello == ClientHello("api.example.test", ("h2", "http/1.1"))


def test_a_tls12_client_without_alpn() -> None:
    reader = read(client_hello(maximum=ssl.TLSVersion.TLSv1_2))
    assert reader.hello == ClientHello("api.example.test", ())


def test_a_client_that_names_no_server() -> None:
    assert read(client_hello(server_hostname=None, alpn=["grpc-exp"])).hello == ClientHello("", ("grpc-exp",))


def test_split_at_every_byte_boundary() -> None:
    hello = client_hello(alpn=["h2"])
    for cut in range(1, len(hello)):
        reader = read(hello, [cut])
        assert reader.hello == ClientHello("api.example.test", ("h2",)), cut


@given(st.lists(st.integers(1, 300), max_size=12))
def test_split_into_any_pieces(pieces: list[int]) -> None:
    assert read(HELLO, pieces).hello == ClientHello("api.example.test", ("h2", "http/1.1"))


HELLO = client_hello(alpn=["h2", "http/1.1"])


def test_a_hello_spread_over_several_records() -> None:
    # A handshake message may be fragmented over records (RFC 8446 5.1); rebuild it in 100-byte records.
    message = HELLO[5:]
    records = b"".join(b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part
                       for part in (message[i:i + 100] for i in range(0, len(message), 100)))
    assert read(records).hello == ClientHello("api.example.test", ("h2", "http/1.1"))


def test_the_openssl_command_s_client_hello() -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (.ci/run installs it)")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    got = bytearray()

    def take() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            while len(got) < 5 or len(got) < 5 + int.from_bytes(got[3:5], "big"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got.extend(chunk)

    thread = threading.Thread(target=take)
    thread.start()
    try:
        subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "db.internal",
                        "-alpn", "postgresql,h2"], input=b"", capture_output=True, timeout=10, check=False)
    finally:
        thread.join(10)
        listener.close()
    assert read(bytes(got)).hello == ClientHello("db.internal", ("postgresql", "h2"))


@pytest.mark.parametrize("bad", [
    b"\x17\x03\x03\x00\x05hello",  # application data, not a handshake
    b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",  # a ServerHello
    b"\x16\x03\x01\x00\x04\x01\xff\xff\xff",  # a ClientHello said to be 16 MiB
])
def test_what_is_not_a_client_hello_ends_the_reading_with_nothing(bad: bytes) -> None:
    reader = read(bad)
    assert reader.done and reader.hello is None


def test_a_truncated_or_mangled_body_gives_none_never_an_exception() -> None:
    body = HELLO[9:]
    for cut in range(len(body)):
        parse_client_hello(body[:cut])  # must not raise
    assert parse_client_hello(body[:40]) is None
    assert parse_client_hello(body + b"\x00") is None  # bytes after the extensions


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_and_reading_stays_bounded(data: bytes) -> None:
    reader = ClientHelloReader()
    reader.feed(b"\x16\x03\x01" + data)
    reader.feed(data)
    assert reader.hello is None or isinstance(reader.hello, ClientHello)


def test_a_hello_that_never_ends_is_given_up_on() -> None:
    reader = ClientHelloReader()
    reader.feed(b"\x16\x03\x01\x40\x00\x01\x00\xff\xff")  # a 64 KiB ClientHello in 16 KiB records
    for _ in range(MAX_HELLO // 16384 + 2):
        reader.feed(b"\x00" * 16384)
    assert reader.done and reader.hello is None
