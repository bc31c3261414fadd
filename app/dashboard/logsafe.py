"""What reaches the dashboard's log from a request: control characters escaped, never a query string.

A path can carry `%0a` (a forged line), terminal escapes or bidirectional
overrides; a query string can carry the view token. `escape` makes any text
one visible line, `EscapeControls` applies it to every record the process
logs, and `request_summary` is the one way a request is named in the log.
"""

from __future__ import annotations

import logging
import re

from tornado.httputil import HTTPServerRequest

# C0 and C1 controls, DEL, line and paragraph separators, bidirectional embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` as one visible line: each unsafe character written as its escape (`\\x0a`, `\\u202e`)."""
    return _UNSAFE.sub(_escaped, text)


def request_summary(request: HTTPServerRequest) -> str:
    """`METHOD /path (peer)`: the path only (a query string may hold the view token), escaped."""
    return escape(f"{request.method} {request.path} ({request.remote_ip})")


class EscapeControls(logging.Filter):
    """Escapes the unsafe characters of every record's message (its traceback, apart, keeps its lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = escape(message)
        if safe != message:
            record.msg, record.args = safe, None
        return True


def install() -> None:
    """Escape every record the root logger's handlers write (after `logging.basicConfig`)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(EscapeControls())
