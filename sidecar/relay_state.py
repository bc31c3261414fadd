"""`RelayState`: what one proxied connection holds, shared by the parts that relay it.

`sidecar.connection.ProxiedConnection` sets it up and frames HTTP/1;
`sidecar.first_bytes.FirstBytes` chooses the protocol and
`sidecar.passthrough.PassThrough` relays what is not framed. Each part is a
mixin over this state, so one connection is one object with fixed slots.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tornado.iostream import IOStream

    from sidecar.http1.tracker import ExchangeTracker
    from sidecar.passthrough import Observer
    from sidecar.proxy import SidecarServer


class RelayState:
    """The slots of a proxied connection (set by `ProxiedConnection`), and what its parts call of each other."""

    __slots__ = ("_connected", "_decided", "_failed_at", "_held", "_refusing", "_retried", "_tasks", "_untracked",
                 "_wake", "client", "closed", "connect_error", "last_client", "last_upstream", "mode", "observer",
                 "opened", "server", "tracker", "upstream")

    server: SidecarServer
    client: IOStream
    upstream: IOStream | None
    tracker: ExchangeTracker  # HTTP/1's framing
    observer: Observer | None  # what reads a connection relayed as it comes
    mode: int  # first_bytes.DETECT, first_bytes.HTTP1 or passthrough.OBSERVED
    closed: bool
    connect_error: str  # the error word if the app cannot be reached
    opened: float
    last_client: float
    last_upstream: float
    _held: bytes  # the client's first bytes while they decide nothing
    _wake: asyncio.Future[None] | None  # set while the protocol is being chosen
    _untracked: bool  # the observer lost the protocol's framing (counted once)
    _refusing: int  # 1: a refused request is waiting, 2: it is being answered
    _failed_at: float  # when connecting to the app last failed
    _retried: bool
    _decided: asyncio.Future[None] | None  # set while reading waits on an Upgrade's answer
    _connected: asyncio.Future[IOStream | None]
    _tasks: set[asyncio.Task[None]]

    if TYPE_CHECKING:
        async def _app(self, now: float) -> IOStream | None: ...
        def _decide(self, mode: int, protocol: str) -> None: ...
        async def _pump_requests(self, data: bytes) -> None: ...
        async def _relay_client(self, data: bytes, read: asyncio.Future[bytes] | None) -> None: ...
        def close(self, cause: str, linger: bool = False) -> None: ...
