"""`CachingResolver`: Tornado's name resolver for the sidecar, without a thread for what needs none.

Tornado's default resolver runs every lookup in a thread pool, even of an IP
literal. In the sidecar each such hop (the reporter's POSTs, twice a second;
connections to a target given by name) hands the GIL to a pool thread and
stalls the proxy's loop for up to a switch interval. Here IP literals are
read at once, and names are looked up in the pool at most once per `ttl`
seconds (so DNS changes are still followed). Failures are not remembered.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from tornado.netutil import DefaultLoopResolver

RESOLVE_TTL = 5.0  # seconds an answer for a name is reused

Addresses = list[tuple[int, Any]]  # (family, sockaddr), as Tornado's resolvers answer


def numeric_addresses(host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC) -> Addresses | None:
    """The addresses of an IP literal, read without any lookup; None for a name."""
    if not host or "\x00" in host:
        return None  # getaddrinfo would read "" as localhost and stop at a NUL
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return None
    return [(fam, address) for fam, _, _, _, address in infos]


class CachingResolver(DefaultLoopResolver):
    def initialize(self, ttl: float = RESOLVE_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._answers: dict[tuple[str, int, int], tuple[float, Addresses]] = {}  # key -> (when, addresses)

    async def resolve(self, host: str, port: int,
                      family: socket.AddressFamily = socket.AF_UNSPEC) -> list[tuple[int, Any]]:
        numeric = numeric_addresses(host, port, family)
        if numeric is not None:
            return numeric
        key = (host, port, int(family))
        now = self.clock()
        known = self._answers.get(key)
        if known is not None and now - known[0] < self.ttl:
            return known[1]
        addresses = await super().resolve(host, port, family)
        if len(self._answers) >= 64:
            self._answers.clear()  # a handful of names in practice; never unbounded
        self._answers[key] = (now, addresses)
        return addresses
