"""HTTP/1.x framing rules (RFC 9112 sections 6 and 9.3): how long a message's body is, and whether the connection
outlives it.

Small pure functions of the header values a head carries; the one error they
raise, `Refusal`, names the status the proxy answers a request it must not
forward (request smuggling, RFC 9112 sections 6.3 and 11.2).
"""

from __future__ import annotations

from typing import Final

# Body framings (RFC 9112 section 6.3); a non-negative value is a Content-Length.
CHUNKED: Final = -1
UNTIL_CLOSE: Final = -2  # a response delimited by the connection closing
TUNNEL: Final = -3  # 101 or a CONNECT's 2xx: no more HTTP on this connection

# A token character (RFC 9110 5.6.2), as a regular expression class.
TCHAR: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_MAX_LENGTH_DIGITS: Final = 18  # keeps Content-Length below 2**63


class Refusal(Exception):
    """A request the proxy must not forward: answer `status`, then close."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


def content_length(values: list[bytes]) -> int:
    """The one length that all Content-Length values agree on (RFC 9112 6.3 item 5)."""
    if len(values) == 1 and values[0].isdigit() and len(values[0]) <= _MAX_LENGTH_DIGITS:
        return int(values[0])  # the usual case
    length = -1
    for value in values:
        for part in value.split(b","):
            part = part.strip(b" \t")
            if not part.isdigit() or len(part) > _MAX_LENGTH_DIGITS:
                raise Refusal(400, "Content-Length is not a number")
            n = int(part)
            if length >= 0 and n != length:
                raise Refusal(400, "conflicting Content-Length values")
            length = n
    return length


def chunked_is_final(transfer_encoding: bytes) -> bool:
    """True if `chunked` is the last transfer coding and appears once (RFC 9112 6.1)."""
    codings = [c.strip(b" \t") for c in transfer_encoding.lower().split(b",")]
    codings = [c for c in codings if c]
    return bool(codings) and codings[-1] == b"chunked" and codings.count(b"chunked") == 1


def request_framing(version: int, lengths: list[bytes], transfer_encoding: bytes | None) -> int:
    """How a request's body is delimited: a length or CHUNKED; raises Refusal."""
    if transfer_encoding is not None:
        # Both headers is the classic smuggling vector: refuse instead of
        # choosing one (RFC 9112 6.1 allows either; nginx and Envoy refuse).
        if lengths:
            raise Refusal(400, "both Content-Length and Transfer-Encoding")
        if version == 0:
            raise Refusal(400, "Transfer-Encoding in an HTTP/1.0 request")
        if not chunked_is_final(transfer_encoding):
            raise Refusal(400, "Transfer-Encoding without chunked last")
        return CHUNKED
    return content_length(lengths) if lengths else 0


def response_framing(method: bytes, status: int, lengths: list[bytes], transfer_encoding: bytes | None) -> int:
    """How a response's body is delimited (RFC 9112 6.3): a length, CHUNKED, UNTIL_CLOSE or TUNNEL."""
    if method == b"HEAD" or status < 200 or status in (204, 304):
        return TUNNEL if status == 101 else 0
    if method == b"CONNECT" and status < 300:
        return TUNNEL
    if transfer_encoding is not None:
        return CHUNKED if chunked_is_final(transfer_encoding) else UNTIL_CLOSE
    if lengths:
        try:
            return content_length(lengths)
        except Refusal:  # unusable length: only the close can end it
            return UNTIL_CLOSE
    return UNTIL_CLOSE


def persistent(version: int, connection: bytes) -> bool:
    """Whether a message leaves the connection open (RFC 9112 9.3)."""
    if not connection:
        return version == 1
    connection = connection.lower()
    if connection == b"keep-alive":
        return True
    if connection == b"close":
        return False
    tokens = {t.strip(b" \t") for t in connection.split(b",")}
    if version == 0:
        return b"keep-alive" in tokens and b"close" not in tokens
    return b"close" not in tokens
