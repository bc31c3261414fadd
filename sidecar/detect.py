"""Which protocol a client connection speaks, decided from its first bytes: `detect(data)` (`detect_server`
when the app speaks first).

The HTTP/2 connection preface means HTTP/2 (RFC 9113 3.4); a TLS handshake
record means TLS (RFC 8446 5.1); a method token and a space, after any empty
lines, mean HTTP/1 (RFC 9112 2.2, 3); anything else is an opaque byte stream.
`None` means the bytes so far begin more than one of these: the caller reads
more. An HTTP/1 request line decides on its first read, so HTTP/1 waits for
nothing. Pure: no I/O and no clock.
"""

from __future__ import annotations

import re
from typing import Final

from sidecar.http1.framing import TCHAR
from sidecar.http1.heads import MAX_METHOD

HTTP1: Final = "http1"
H2: Final = "h2"
TLS: Final = "tls"
TCP: Final = "tcp"
PROTOCOLS: Final = (HTTP1, H2, TLS, TCP)

H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# A run of empty-line bytes this long with nothing after it goes to HTTP/1, which
# frames (or refuses) it: an undecided prefix stays small.
MAX_LEADING_EOL: Final = 1024

_TLS_HANDSHAKE: Final = 0x16  # record content type "handshake"
_SETTINGS: Final = 0x4  # HTTP/2 frame type
# Empty lines (Tornado and most servers also skip bare CRs and LFs there, so they
# count here: such bytes must meet HTTP/1's strict framing, not pass as opaque),
# then a method and the space after it.
_REQUEST_START: Final = re.compile(rb"[\r\n]*(" + TCHAR + rb"{1,%d})( ?)" % MAX_METHOD)


def detect(data: bytes) -> str | None:
    """HTTP1, H2, TLS or TCP for a connection whose client sent `data` first; None while undecided."""
    if not data:
        return None
    first = data[0]
    if first == _TLS_HANDSHAKE:
        return _tls_or_tcp(data)
    if first == 0x50 and data.startswith(H2_PREFACE[:len(data)]):  # "P": the preface, or a prefix of it
        return H2 if len(data) >= len(H2_PREFACE) else None
    match = _REQUEST_START.match(data)
    if match is None:
        if data.strip(b"\r\n"):
            return TCP
        return None if len(data) < MAX_LEADING_EOL else HTTP1  # only empty-line bytes so far
    if match.group(2):
        return HTTP1
    if match.end() == len(data):
        return None  # a method so far, its space not yet come
    return TCP


def detect_server(data: bytes) -> str:
    """H2 or TCP for a connection whose app spoke before its client: an HTTP/2 server may send its
    connection preface, a SETTINGS frame, at once (RFC 9113 3.4; grpc-core does); anything else is a
    server-speaks-first protocol, relayed as opaque."""
    if len(data) >= 9 and data[3] == _SETTINGS and data[4] == 0 and data[5:9] == b"\0\0\0\0" \
            and int.from_bytes(data[:3], "big") % 6 == 0:
        return H2
    return TCP


def _tls_or_tcp(data: bytes) -> str | None:
    """A handshake record of TLS 1.0-1.3 (SSL 3.0's version bytes included, as servers see them)."""
    if len(data) < 3:
        return None if len(data) < 2 or data[1] == 3 else TCP
    return TLS if data[1] == 3 and data[2] <= 4 else TCP

