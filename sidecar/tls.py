"""`ClientHelloReader`: the server name (SNI) and ALPN protocols a TLS client offers, read from its ClientHello.

Only the client's first handshake message is read, from the handshake records
it arrives in (it may be split over several reads and several records);
nothing is decrypted or changed, and the reader stops at the first byte that
is not what RFC 8446 (4.1.2), RFC 6066 (3) and RFC 7301 (3.1) describe.
Pure: no I/O. (mitmproxy reads the same fields with a generated parser; the
three fields needed here are a few lines of `struct`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAX_HELLO: Final = 65536  # a ClientHello larger than this is not read (post-quantum key shares are ~1.2 kB)
_HANDSHAKE: Final = 0x16
_CLIENT_HELLO: Final = 0x01
_EXT_SERVER_NAME: Final = 0
_EXT_ALPN: Final = 16


@dataclass(frozen=True)
class ClientHello:
    sni: str  # "" when the client named no server
    alpn: tuple[str, ...]  # the protocols offered, in the client's order


class ClientHelloReader:
    """`feed(data)` with the client's bytes in order until `done`; then `hello` is the result or None."""

    def __init__(self) -> None:
        self.done = False
        self.hello: ClientHello | None = None
        self._records = bytearray()  # record bytes not yet split into handshake bytes
        self._handshake = bytearray()  # handshake-layer bytes gathered from records

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        self._records += data
        records = self._records
        while len(records) >= 5:
            if records[0] != _HANDSHAKE or records[1] != 3:
                self._give_up()
                return
            size = int.from_bytes(records[3:5], "big")
            if len(records) < 5 + size:
                break
            self._handshake += records[5:5 + size]
            del records[:5 + size]
        handshake = self._handshake
        if len(handshake) >= 4:
            if handshake[0] != _CLIENT_HELLO:
                self._give_up()
                return
            size = int.from_bytes(handshake[1:4], "big")
            if size > MAX_HELLO:
                self._give_up()
                return
            if len(handshake) >= 4 + size:
                self.hello = parse_client_hello(bytes(handshake[4:4 + size]))
                self._give_up()
                return
        if len(records) + len(handshake) > MAX_HELLO + 1024:
            self._give_up()

    def _give_up(self) -> None:
        self.done = True
        self._records = bytearray()
        self._handshake = bytearray()


def parse_client_hello(body: bytes) -> ClientHello | None:
    """SNI and ALPN from a ClientHello's body (after its 4-byte handshake header); None if it is malformed."""
    try:
        pos = 2 + 32  # legacy_version, random
        pos += 1 + body[pos]  # legacy_session_id
        pos += 2 + int.from_bytes(body[pos:pos + 2], "big")  # cipher_suites
        pos += 1 + body[pos]  # legacy_compression_methods
        if pos == len(body):
            return ClientHello("", ())  # no extensions at all (TLS 1.0 clients may send none)
        end = pos + 2 + int.from_bytes(body[pos:pos + 2], "big")
        if end != len(body):  # the extensions end the message
            return None
        pos += 2
        sni, alpn = "", tuple[str, ...]()
        while pos + 4 <= end:
            kind = int.from_bytes(body[pos:pos + 2], "big")
            size = int.from_bytes(body[pos + 2:pos + 4], "big")
            pos += 4
            if pos + size > end:
                return None
            if kind == _EXT_SERVER_NAME:
                sni = _server_name(body[pos:pos + size])
            elif kind == _EXT_ALPN:
                alpn = _protocols(body[pos:pos + size])
            pos += size
        return ClientHello(sni, alpn) if pos == end else None
    except IndexError:
        return None


def _server_name(ext: bytes) -> str:
    """The host_name entry of a server_name extension (RFC 6066 3), or "" if it has none."""
    pos, end = 2, min(len(ext), 2 + int.from_bytes(ext[:2], "big"))
    while pos + 3 <= end:
        kind, size = ext[pos], int.from_bytes(ext[pos + 1:pos + 3], "big")
        name = ext[pos + 3:pos + 3 + size]
        if kind == 0 and len(name) == size:
            return name.decode("ascii", "replace")
        pos += 3 + size
    return ""


def _protocols(ext: bytes) -> tuple[str, ...]:
    """The protocol names of an ALPN extension (RFC 7301 3.1)."""
    names: list[str] = []
    pos, end = 2, min(len(ext), 2 + int.from_bytes(ext[:2], "big"))
    while pos < end:
        size = ext[pos]
        name = ext[pos + 1:pos + 1 + size]
        if len(name) != size or not size:
            break
        names.append(name.decode("ascii", "replace"))
        pos += 1 + size
    return tuple(names)
