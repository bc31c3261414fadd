"""`PassThrough`: relaying a connection as it comes (HTTP/2, TLS, opaque bytes) while an observer reads a copy.

Each chunk is written first and shown to the connection's observer
(`H2Tracker`, `OpaqueTracker`) after: the observer never holds, changes or
delays a byte, and when it loses the protocol's framing it stops and the
connection is counted untracked while the bytes keep flowing. A `101` to
`Upgrade: h2c` enters this from HTTP/1, the upgrade request as stream 1
(RFC 7540 3.2). A mixin of `sidecar.connection.ProxiedConnection`, which
owns the state it uses. The HTTP/2 tracker (with hpack and its decoding
tables, about 2 MB) is imported at the first HTTP/2 connection, so a pod
that speaks only HTTP/1 never holds it.
"""

from __future__ import annotations

import time
from typing import Final, Protocol

from sidecar import detect
from sidecar.exchange import Exchange
from sidecar.relay_state import RelayState
from sidecar.sides import WAITING

OBSERVED: Final = 2  # ProxiedConnection.mode once bytes pass as they come
READ_OUT_LIMIT: Final = 1 << 20  # what is read of the app's pending bytes when the client leaves

monotonic: Final = time.monotonic  # a static, not a lookup in the module's namespace, once compiled


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
    """The relay of a connection passed as it comes; `ProxiedConnection` routes to it once the protocol is known."""

    __slots__ = ()

    def _client_observed(self, data: bytes) -> None:
        """Client -> app as it comes; the observer reads each chunk once it is written."""
        now = self.last_client = monotonic()
        upstream = self.upstream
        if upstream is None:
            self._want_app(data, now)  # shown to the observer when it is written (`_forward_pending`)
            return
        upstream.transport.write(data)
        if not self._untracked:
            observer = self.observer
            assert observer is not None
            observer.feed_client(data, now)
            self._observed(observer)

    def _forward_pending(self, data: bytes) -> None:
        """A chunk that waited for the app's connection goes to it now (HTTP/1 framed it already)."""
        assert self.upstream is not None
        self.upstream.transport.write(data)
        observer = self.observer
        if observer is not None and not self._untracked:
            observer.feed_client(data, self.last_client)
            self._observed(observer)

    def _app_observed(self, data: bytes) -> None:
        """App -> client as it comes: each chunk written, then shown to the observer."""
        now = self.last_upstream = monotonic()
        self.client.transport.write(data)
        if not self._untracked:
            observer = self.observer
            assert observer is not None
            observer.feed_server(data, now)
            self._observed(observer)

    def _switched(self, data: bytes, now: float) -> bool:
        """The app switched protocols in `data`: if to h2c, an `H2Tracker` follows the connection from
        here, the upgrade request as its stream 1, and True. Any other switch stays a tunnel."""
        switch = self.tracker.switched()
        if switch is None:
            return False
        ex, at = switch
        if ex.upgrade != b"h2c":
            return False
        from sidecar.http2.tracker import H2Tracker  # imported when first needed (module docstring)

        held = self.tracker.hand_over(ex, len(data) - at)
        observer = self.observer = H2Tracker(max_header_list=self.server.config.max_header_bytes, upgrade=ex)
        self._decide(OBSERVED, detect.H2)
        observer.feed_server(data[at:], now)
        if held:
            observer.feed_client(held, now)
            assert self.upstream is not None
            self.upstream.transport.write(held)
        self._observed(observer)
        if self._waiting:  # the client's bytes waited on the 101: they go on as they come
            self._waiting = 0
            self.client.release(WAITING)
        return True

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
        if upstream is not None:
            data = upstream.read_out(READ_OUT_LIMIT)
            if data:
                observer.feed_server(data, now)

    def _unreachable_observed(self) -> None:
        """Relaying as it is, the app could not be reached: there is no protocol to answer in, so the
        client's connection is just closed, and its exchanges say why."""
        observer, now = self.observer, monotonic()
        assert observer is not None
        pending, self._pending = self._pending, None
        for data in pending or ():
            observer.feed_client(data, now)
        observer.close("upstream", now)
        for ex in observer.take_finished():
            if ex.t_first is None:
                ex.error = self.connect_error
            self.server.record(ex)
        self.close("upstream")
