"""Route templating: `/users/42/orders/9f1c...` -> `/users/{id}/orders/{id}`.

Pure functions with no configuration. Segments that look like identifiers
(numbers, UUIDs, long hex, base64-like tokens) become `{id}`; `RouteCap`
bounds the number of distinct routes so metric label sets stay bounded.
"""

from __future__ import annotations

import re

ID = "{id}"
OVERFLOW_ROUTE = "{other}"
MAX_PATH_CHARS = 2048

_NUMBER = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_HEX = re.compile(r"^(?=.*\d)[0-9a-fA-F]{8,}$")
_TOKEN = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_\-+=~.]{16,}$")


def split_target(target: str) -> tuple[str, str]:
    """A request target -> (path, query). Handles absolute-form and `*`."""
    if target.startswith(("http://", "https://")):
        after_scheme = target.split("://", 1)[1]
        slash = after_scheme.find("/")
        target = after_scheme[slash:] if slash >= 0 else "/"
    target = target.split("#", 1)[0]
    path, _, query = target.partition("?")
    return (path or "/")[:MAX_PATH_CHARS], query


def is_identifier(segment: str) -> bool:
    return bool(
        _NUMBER.match(segment) or _UUID.match(segment) or _HEX.match(segment) or _TOKEN.match(segment)
    )


def _template_segment(segment: str) -> str:
    if not segment:
        return segment
    if is_identifier(segment):
        return ID
    stem, dot, ext = segment.rpartition(".")
    if dot and stem and ext.isalnum() and len(ext) <= 5 and is_identifier(stem):
        return f"{ID}.{ext}"
    return segment


def template(path: str) -> str:
    """The route of a path (query string already removed)."""
    if not path.startswith("/"):
        return path[:MAX_PATH_CHARS]
    return "/".join(_template_segment(s) for s in path[:MAX_PATH_CHARS].split("/"))


class RouteCap:
    """Admits at most `limit` distinct routes; later new ones map to `{other}`."""

    def __init__(self, limit: int = 500) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self.overflowed = 0

    def __call__(self, route: str) -> str:
        if route in self._seen:
            return route
        if len(self._seen) < self.limit:
            self._seen.add(route)
            return route
        self.overflowed += 1
        return OVERFLOW_ROUTE

    def __len__(self) -> int:
        return len(self._seen)
