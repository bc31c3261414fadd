"""`RelayState`: what one proxied connection holds, shared by the parts that relay it.

`sidecar.connection.ProxiedConnection` sets it up and frames HTTP/1;
`sidecar.app_link.AppLink` connects to the app, `sidecar.first_bytes.FirstBytes`
chooses the protocol and `sidecar.passthrough.PassThrough` relays what is
not framed. The parts are one line of classes over this state (single
inheritance, which mypyc compiles), so one connection is one object with
fixed slots.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from sidecar.http1.tracker import ExchangeTracker
    from sidecar.passthrough import Observer
    from sidecar.proxy import SidecarServer
    from sidecar.sides import Side


class RelayState:
    """The slots of a proxied connection (set by `ProxiedConnection`), and what its parts call of each other."""

    __slots__ = ("_connecting", "_detect_timer", "_ended", "_failed_at", "_held", "_linger_timer", "_lingered",
                 "_pending", "_refusing", "_retried", "_untracked", "_waiting", "client", "closed", "connect_error",
                 "last_client", "last_upstream", "mode", "observer", "opened", "server", "tracker", "upstream")

    server: SidecarServer
    client: Side
    upstream: Side | None  # the app's side, once it is connected
    tracker: ExchangeTracker  # HTTP/1's framing
    observer: Observer | None  # what reads a connection relayed as it comes
    mode: int  # first_bytes.DETECT, first_bytes.HTTP1, passthrough.OBSERVED or connection.LINGER
    closed: bool
    connect_error: str  # the error word if the app cannot be reached
    opened: float
    last_client: float
    last_upstream: float
    _held: bytes  # the client's first bytes while they decide nothing
    _detect_timer: asyncio.TimerHandle | None  # set while the protocol is being chosen
    _untracked: bool  # the observer lost the protocol's framing (counted once)
    _refusing: int  # 1: a refused request is waiting, 2: it is being answered
    _connecting: asyncio.Task[None] | None  # set while the app is being dialled
    _failed_at: float  # when connecting to the app last failed (0: it has not)
    _retried: bool
    _pending: list[bytes] | None  # bytes for the app that wait for its connection (None: nothing waits)
    _waiting: int  # bytes read from the client while the relay holds them (an Upgrade's answer, a refusal)
    _linger_timer: asyncio.TimerHandle | None
    _lingered: int  # bytes dropped while lingering
    _ended: int  # connection.CLIENT_ENDED or APP_ENDED: that side shut its sending side (half-close); 0: neither

    # What one part calls of another further down the line of inheritance (RelayState <- PassThrough <-
    # FirstBytes <- AppLink <- ProxiedConnection: one line, as mypyc compiles it), defined in a part below
    # some of their callers.

    def _handlers(self) -> tuple[Callable[[bytes], None], Callable[[bytes], None]]:
        raise NotImplementedError

    def _decide(self, mode: int, protocol: str) -> None:
        raise NotImplementedError

    def _want_app(self, data: bytes, now: float) -> None:
        raise NotImplementedError

    def _unreachable(self) -> None:
        raise NotImplementedError

    def _client_http1(self, data: bytes) -> None:
        raise NotImplementedError

    def _app_eof(self) -> None:
        raise NotImplementedError

    def _app_lost(self, exc: Exception | None) -> None:
        raise NotImplementedError

    def _failed(self) -> None:
        raise NotImplementedError

    def close(self, cause: str, linger: bool = False) -> None:
        raise NotImplementedError
