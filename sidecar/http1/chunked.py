"""`ChunkedBody`: walks one chunked message body (RFC 9112 section 7.1) by counting, without copying it.

It holds at most a partial chunk-size or trailer line between calls, so a
body of any size costs a few bytes. Requests are read strictly (bare LF and
malformed lines raise `Refusal`); responses accept bare LF, as clients do.
"""

from __future__ import annotations

import re
from typing import Final

from sidecar.http1.framing import TCHAR, Refusal

MAX_CHUNK_LINE: Final = 4096  # chunk-size line with extensions
_CHUNK_SIZE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\x00-\x08\x0a-\x1f\x7f]*)?")
_TRAILER_LINE: Final = re.compile(TCHAR + rb"+:[^\x00-\x08\x0a-\x1f\x7f]*")

_SIZE: Final = 0  # states (Final: constants once compiled)
_DATA: Final = 1
_DATA_END: Final = 2
_TRAILER: Final = 3
_DONE: Final = 4


class ChunkedBody:
    """Walks one chunked body by counting; holds only a partial size or trailer line.

    `strict` (requests) refuses bare LF and malformed lines; otherwise
    (responses) bare LF is accepted and errors still raise `Refusal`.
    """

    __slots__ = ("left", "line", "max_trailer", "state", "strict", "trailer_bytes")

    def __init__(self, strict: bool, max_trailer: int) -> None:
        self.strict = strict
        self.max_trailer = max_trailer
        self.state = _SIZE
        self.left = 0
        self.line = bytearray()
        self.trailer_bytes = 0

    def reset(self) -> None:
        self.state = _SIZE
        self.left = 0
        self.trailer_bytes = 0
        self.line.clear()

    @property
    def done(self) -> bool:
        return self.state == _DONE

    def feed(self, data: bytes, pos: int) -> int:
        """Walk `data[pos:]`; return where the body ends in it, or `len(data)` if it goes on."""
        end = len(data)
        while pos < end:
            state = self.state
            if state == _DATA:
                if end - pos < self.left:
                    self.left -= end - pos
                    return end
                pos += self.left
                self.left = 2
                self.state = _DATA_END
            elif state == _DATA_END:
                byte = data[pos]
                if byte == 13 and self.left == 2:
                    self.left = 1
                elif byte == 10 and (self.left == 1 or not self.strict):
                    self.state = _SIZE
                else:
                    raise Refusal(400, "chunk data not followed by CRLF")
                pos += 1
            elif state == _DONE:
                return pos
            else:  # _SIZE or _TRAILER: a line
                nl = data.find(b"\n", pos)
                limit = MAX_CHUNK_LINE if state == _SIZE else self.max_trailer - self.trailer_bytes
                if nl < 0:
                    self.line += data[pos:]
                    if len(self.line) > limit:
                        raise Refusal(400, "chunk line too long")
                    return end
                if self.line:
                    self.line += data[pos:nl]
                    line = bytes(self.line)
                    self.line.clear()
                else:
                    line = data[pos:nl]
                if len(line) >= limit:
                    raise Refusal(400, "chunk line too long")
                pos = nl + 1
                if line.endswith(b"\r"):
                    line = line[:-1]
                elif self.strict:
                    raise Refusal(400, "bare LF in a chunked body")
                if state == _SIZE:
                    self._size_line(line)
                else:
                    self._trailer_line(line)
        return pos

    def _size_line(self, line: bytes) -> None:
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            raise Refusal(400, "bad chunk size")
        self.left = int(match.group(1), 16)
        self.state = _DATA if self.left else _TRAILER

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self.state = _DONE
            return
        self.trailer_bytes += len(line) + 2
        if self.strict and _TRAILER_LINE.fullmatch(line) is None:
            raise Refusal(400, "bad trailer field")
