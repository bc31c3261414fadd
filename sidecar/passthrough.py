"""`PassThrough`: relaying a connection as it comes (HTTP/2, TLS, opaque bytes) while an observer reads a copy.

Each chunk is written first and shown to the connection's observer
(`H2Tracker`, `OpaqueTracker`) after: the observer never holds, changes or
delays a byte, and when it loses the protocol's framing it stops and the
connection is counted untracked while the bytes keep flowing. A `101` to
`Upgrade: h2c` enters this from HTTP/1, the upgrade request as stream 1
(RFC 7540 3.2). A mixin of `sidecar.connection.ProxiedConnection`, which
owns the state it uses.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from tornado.iostream import IOStream, StreamClosedError

from sidecar import detect
from sidecar.exchange import Exchange
from sidecar.http2.tracker import H2Tracker
from sidecar.opaque import OpaqueTracker
from sidecar.relay_state import RelayState
from sidecar.stream_io import CHUNK, follow_read_size, write_through

if TYPE_CHECKING:
    pass

OBSERVED = 2  # ProxiedConnection.mode once bytes pass as they come
READ_OUT_LIMIT = 1 << 20  # what is read of the app's pending bytes when the client leaves

monotonic = time.monotonic


class Observer(Protocol):
    """What a relay-as-is connection feeds: `H2Tracker`, `OpaqueTracker`. It never raises and never changes a byte."""

    broken: bool

    @property
    def live(self) -> int: ...
    def feed_client(self, data: bytes, now: float) -> None: ...
    def feed_server(self, data: bytes, now: float) -> None: ...
    def take_finished(self) -> list[Exchange]: ...
    def close(self, cause: str, now: float) -> None: ...


class PassThrough(RelayState):
    """The pumps of a connection relayed as it comes; `ProxiedConnection` runs them once the protocol is known."""

    __slots__ = ()

    async def _relay_client(self, data: bytes, read: asyncio.Future[bytes] | None) -> None:
        """Client -> app as it comes (HTTP/2, opaque); `data` (read already) first, then `read` (pending)."""
        observer, client = self.observer, self.client
        assert observer is not None
        upstream = self.upstream
        if upstream is None:
            upstream = await self._app(self.last_client)
            if upstream is None:
                self._unreachable(data)
                return
        while True:
            if data:
                now = self.last_client
                try:
                    pending = write_through(upstream, data)
                    if pending is not None:
                        await pending
                except StreamClosedError:
                    self.close("upstream")
                    return
                if not self._untracked:
                    observer.feed_client(data, now)
                    self._observed(observer)
                follow_read_size(client, len(data))
                if self.closed:
                    return
            try:
                data = await (read if read is not None else client.read_bytes(CHUNK, partial=True))
            except StreamClosedError:
                self.close("client")
                return
            read = None
            self.last_client = monotonic()

    async def _switched(self, upstream: IOStream, data: bytes, now: float) -> bool:
        """The app switched protocols in `data`: if to h2c, an `H2Tracker` follows the connection from
        here, the upgrade request as its stream 1, and True. Any other switch stays a tunnel."""
        switch = self.tracker.switched()
        if switch is None:
            return False
        ex, at = switch
        if ex.upgrade != b"h2c":
            return False
        held = self.tracker.hand_over(ex, len(data) - at)
        observer = self.observer = H2Tracker(max_header_list=self.server.config.max_header_bytes, upgrade=ex)
        self._decide(OBSERVED, detect.H2)
        observer.feed_server(data[at:], now)
        if held:
            observer.feed_client(held, now)
            try:
                await upstream.write(held)
            except StreamClosedError:
                self.close("upstream")
                return True
        self._observed(observer)
        if self._decided is not None:  # the client's pump waits on the 101: it goes on relaying as it is
            self._decided.set_result(None)
            self._decided = None
        return True

    async def _relay_server(self, upstream: IOStream, data: bytes) -> None:
        """App -> client as it comes (HTTP/2, opaque): each chunk written, then shown to the observer."""
        observer, client = self.observer, self.client
        assert observer is not None
        while True:
            if data:
                now = self.last_upstream
                try:
                    pending = write_through(client, data)
                    if pending is not None:
                        await pending
                except StreamClosedError:
                    self.close("client")
                    return
                if not self._untracked:
                    observer.feed_server(data, now)
                    self._observed(observer)
                follow_read_size(upstream, len(data))
                if self.closed:
                    return
            try:
                data = await upstream.read_bytes(CHUNK, partial=True)
            except StreamClosedError as exc:
                self._app_closed(exc)
                return
            self.last_upstream = monotonic()

    def _app_closed(self, exc: StreamClosedError) -> None:
        """The app's side ended (an opaque connection it reset says so); so does the connection."""
        observer = self.observer
        if isinstance(exc.real_error, ConnectionResetError) and isinstance(observer, OpaqueTracker):
            observer.fail("upstream_reset", monotonic())
        self.close("upstream")

    def _observed(self, observer: Observer) -> None:
        """After a feed: hand on what the observer finished; count a connection it lost track of."""
        finished = observer.take_finished()
        if finished:
            record = self.server.record
            for ex in finished:
                record(ex)
        if observer.broken and not self._untracked:
            self._untracked = True
            self.server.counters.untracked += 1

    def _read_out_app(self, observer: Observer, now: float) -> None:
        """The client left: what the app had sent by then (in the kernel, not yet read) still counts. A
        client often leaves once it has a whole answer, before the frame that formally ends it is read."""
        upstream = self.upstream
        sock = upstream.socket if upstream is not None and not upstream.closed() else None
        if sock is None:
            return
        for _ in range(READ_OUT_LIMIT // CHUNK):
            try:
                data = sock.recv(CHUNK)  # the socket does not block
            except OSError:  # nothing more (BlockingIOError), or reset
                return
            if not data:
                return
            observer.feed_server(data, now)

    def _unreachable(self, data: bytes) -> None:
        """Relaying as it is, the app could not be reached: there is no protocol to answer in, so the
        client's connection is just closed, and its exchanges say why."""
        observer, now = self.observer, monotonic()
        assert observer is not None
        if data:
            observer.feed_client(data, now)
        observer.close("upstream", now)
        for ex in observer.take_finished():
            if ex.t_first is None:
                ex.error = self.connect_error
            self.server.record(ex)
        self.close("upstream")
