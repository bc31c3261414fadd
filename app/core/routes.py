"""Route templating: `/users/42/orders/9f1c...` -> `/users/{id}/orders/{id}`.

Pure functions with no configuration. Segments that look like identifiers
(numbers, UUIDs, long hex, base64-like tokens) become `{id}`; a route longer
than MAX_ROUTE_CHARS is cut, with a mark. `RouteCap` keeps the number of
distinct routes bounded (the busiest ones) so metric label sets stay bounded.
"""

from __future__ import annotations

import re
from collections.abc import Callable

ID = "{id}"
OVERFLOW_ROUTE = "{other}"
MAX_PATH_CHARS = 2048
# Characters of a route kept as a label and on the page: 100 routes of 2,100 characters made the
# sidecar's /metrics 11 MB a scrape (every histogram bucket repeats the label).
MAX_ROUTE_CHARS = 200
CUT_MARK = "…"

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


def cut(route: str) -> str:
    """`route` whole, or its first MAX_ROUTE_CHARS - 1 characters and the mark `…`."""
    return route if len(route) <= MAX_ROUTE_CHARS else route[:MAX_ROUTE_CHARS - 1] + CUT_MARK


def template(path: str) -> str:
    """The route of a path (query string already removed), cut to MAX_ROUTE_CHARS."""
    if not path.startswith("/"):
        return cut(path[:MAX_PATH_CHARS])
    return cut("/".join(_template_segment(s) for s in path[:MAX_PATH_CHARS].split("/")))


class RouteCap:
    """At most `limit` routes kept as labels, the busiest ones; the rest map to `{other}`.

    A route is admitted while there is room; once full, a route that is not
    admitted waits as a candidate, and takes the coldest admitted route's place
    when it has been seen more often (and at least twice: a path seen once is
    never worth a label). Counts halve every `decay_every` calls, so routes
    that stop being used grow cold and leave, and a flood of throwaway paths
    can never freeze the set (issue 16: after 5,000 of them, the first 100
    paths were the labels for good). `on_evict` callbacks hear of each route
    that leaves, so their owners can drop what they keep under it.
    """

    def __init__(self, limit: int = 500, decay_every: int | None = None) -> None:
        self.limit = limit
        self.decay_every = decay_every or max(10_000, 20 * limit)
        self._counts: dict[str, float] = {}  # admitted route -> hits (decayed)
        self._candidates: dict[str, float] = {}  # routes waiting for a place -> hits (decayed)
        self._max_candidates = max(256, 4 * limit)
        self._floor = 0.0  # the coldest admitted count when last looked for: at most that now
        self._until_decay = self.decay_every
        self.overflowed = 0  # calls answered with {other}
        self.evicted = 0
        self.on_evict: list[Callable[[str], None]] = []

    def __call__(self, route: str) -> str:
        """The label for one more exchange on `route` (counted)."""
        self._until_decay -= 1
        if self._until_decay <= 0:
            self._decay()
        counts = self._counts
        hits = counts.get(route)
        if hits is not None:
            counts[route] = hits + 1.0
            return route
        if len(counts) < self.limit:
            counts[route] = 1.0
            return route
        return self._candidate(route)

    def label(self, route: str) -> str:
        """The label `route` has now, without counting an exchange."""
        return route if route in self._counts else OVERFLOW_ROUTE

    def _candidate(self, route: str) -> str:
        candidates = self._candidates
        hits = candidates.get(route, 0.0) + 1.0
        if hits >= 2.0 and hits > self._floor:
            coldest = min(self._counts, key=self._counts.__getitem__)
            self._floor = self._counts[coldest]
            if hits > self._floor:
                del self._counts[coldest]
                del candidates[route]
                self._counts[route] = hits
                self.evicted += 1
                for callback in self.on_evict:
                    callback(coldest)
                return route
        if route not in candidates and len(candidates) >= self._max_candidates:
            self._forget_cold_candidates()
        candidates[route] = hits
        self.overflowed += 1
        return OVERFLOW_ROUTE

    def _forget_cold_candidates(self) -> None:
        """Halve every candidate's count and drop those under one: once-seen paths go first."""
        self._candidates = {r: n / 2 for r, n in self._candidates.items() if n >= 2.0}

    def _decay(self) -> None:
        self._until_decay = self.decay_every
        self._counts = {r: n / 2 for r, n in self._counts.items()}
        self._floor /= 2
        self._forget_cold_candidates()

    def __len__(self) -> int:
        return len(self._counts)

    def __contains__(self, route: object) -> bool:
        return route in self._counts
