"""HTTP/1.x message heads: requests read strictly, responses leniently, parses remembered; and the proxy's own.

`parse_request_head` checks a whole request head at once (strict request
line, field lines without obs-fold, CRLF only) and reads what framing and
sampling need; `parse_response_head` reads an application's response as
clients do (bare LF, no reason phrase). A byte-identical head always parses
the same, so short heads' parses are remembered (`request_memo`,
`response_memo`): most of the parsing stays off the hot path. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any, Final

from sidecar.http1.framing import TCHAR, Refusal, persistent, request_framing, response_framing

MAX_METHOD: Final = 64
MAX_REASON: Final = 64
MEMO_HEAD_BYTES: Final = 1024  # longer heads are parsed every time
MEMO_ENTRIES: Final = 512  # per direction; the memo starts afresh when full

# A field line's value: VCHAR, obs-text, SP and HTAB; no other control byte (RFC 9110 5.5).
_FIELD_LINE = TCHAR + rb"+:[^\x00-\x08\x0a-\x1f\x7f]*\r\n"
# The whole request head, checked at once: strict request-line, field lines
# without obs-fold, without whitespace before the colon, CRLF only.
_REQUEST_HEAD: Final = re.compile(
    rb"(?:\r\n)*(" + TCHAR + rb"+) ([^\x00-\x20\x7f]+) HTTP/1\.([01])\r\n(?:" + _FIELD_LINE + rb")*\r\n"
)
# For a head still arriving: its first line, and the method before it is complete.
REQUEST_LINE: Final = re.compile(TCHAR + rb"+ [^\x00-\x20\x7f]+ HTTP/1\.[01]\r")
METHOD: Final = re.compile(TCHAR + rb"*")
# Only the fields framing and sampling need; names match in any case and are
# told apart by their length (10 is Connection or User-Agent).
_REQUEST_FIELDS: Final = re.compile(
    rb"\n((?i:content-length|transfer-encoding|connection|upgrade|user-agent)):[ \t]*([^\r\n]*)")
# Responses come from the application the sidecar serves: read leniently
# (bare LF, space before the colon, no reason phrase), as clients do.
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?:[ \t]([^\r\n]*))?\r?\n")
_RESPONSE_FIELDS: Final = re.compile(rb"\n((?i:content-length|transfer-encoding|connection))[ \t]*:[ \t]*([^\r\n]*)")

# method, target, version, keep_alive, upgrade (the protocols asked for, or b""), user agent, body framing
RequestHead = tuple[bytes, bytes, int, bool, bytes, bytes, int]
ResponseHead = tuple[int, str, int, bool]  # status, reason, body framing (unless HEAD or CONNECT), keep-alive
request_memo: Final[dict[bytes, RequestHead]] = {}
response_memo: Final[dict[bytes, ResponseHead | None]] = {}
# A response's framing depends on these methods: their parses are not remembered.
METHODS_FRAMING_RESPONSES: Final = frozenset((b"HEAD", b"CONNECT"))


def parse_request_head(head: bytes) -> RequestHead:
    """Check a complete request head strictly and read what framing needs; raises Refusal."""
    match = _REQUEST_HEAD.fullmatch(head)
    if match is None:
        raise Refusal(400, "malformed request head")
    method, target, minor = match.groups()
    lengths: list[bytes] = []
    transfer_encoding: bytes | None = None
    connection = b""
    upgrade = b""
    user_agent = b""
    for name, value in _REQUEST_FIELDS.findall(head):
        size = len(name)
        if size == 14:
            lengths.append(value)
        elif size == 17:
            transfer_encoding = value if transfer_encoding is None else transfer_encoding + b"," + value
        elif size == 7:  # kept (lowercased) to tell an h2c upgrade; an empty one still asks to switch
            upgrade = value.strip().lower() or b"?"
        elif name[0] in b"cC":
            connection = connection + b"," + value if connection else value
        else:
            user_agent = value
    version = 1 if minor == b"1" else 0
    framing = request_framing(version, lengths, transfer_encoding)
    return (method, target, version, persistent(version, connection),
            upgrade if b"upgrade" in connection.lower() else b"", user_agent, framing)


def parse_response_head(head: bytes, method: bytes) -> ResponseHead | None:
    """Read a complete response head (leniently); None if it is not HTTP/1.x."""
    match = _STATUS_LINE.match(head)
    if match is None:
        return None
    minor, code, reason = match.groups()
    status = int(code)
    lengths: list[bytes] = []
    transfer_encoding: bytes | None = None
    connection = b""
    for name, value in _RESPONSE_FIELDS.findall(head, match.end() - 1):
        size = len(name)
        if size == 14:
            lengths.append(value)
        elif size == 17:
            transfer_encoding = value if transfer_encoding is None else transfer_encoding + b"," + value
        else:
            connection = connection + b"," + value if connection else value
    text = reason.rstrip(b" \t")[:MAX_REASON].decode("latin-1") if reason else ""
    return (status, text, response_framing(method, status, lengths, transfer_encoding),
            persistent(1 if minor == b"1" else 0, connection))


def remember(memo: dict[bytes, Any], head: bytes, parsed: Any) -> None:
    if len(head) <= MEMO_HEAD_BYTES:
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
        memo[head] = parsed


def find_head_end(data: bytes | bytearray, pos: int) -> int:
    """The position just after a response head's empty line (CRLF or bare LF), or -1."""
    crlf = data.find(b"\r\n\r\n", pos)
    lf = data.find(b"\n\n", pos, crlf if crlf >= 0 else len(data))
    if lf >= 0:
        return lf + 2
    return crlf + 4 if crlf >= 0 else -1


def request_line_guess(head: bytes | bytearray) -> tuple[bytes, bytes] | None:
    """Method and target of a refused head, when its first line is readable (for the sample)."""
    line = bytes(head[:4096]).lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r")
    parts = line.split(b" ")
    if len(parts) == 3 and METHOD.fullmatch(parts[0]) and parts[2].startswith(b"HTTP/"):
        return parts[0][:MAX_METHOD], parts[1]
    return None


ALLOWED_METHODS: Final = "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"  # all but CONNECT


def simple_response(status: int, reason: str, text: str) -> bytes:
    """A complete response the proxy writes itself; it always closes the connection."""
    body = text.encode()
    allow = f"Allow: {ALLOWED_METHODS}\r\n" if status == 405 else ""  # a 405 must say what is allowed (RFC 9110)
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n{allow}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
