"""`FirstBytes`: how a connection's protocol is chosen: by the client's first bytes, by the app speaking
first, or by the client's silence.

HTTP/1 waits for nothing: its request line decides on the first read. Bytes
that begin several protocols are held (a few at most) until more come. An
app that speaks before its client is an HTTP/2 server (its SETTINGS) or a
server-speaks-first protocol, relayed as opaque; a client silent for
`detect_timeout` is relayed as opaque too. A mixin of
`sidecar.connection.ProxiedConnection`, which owns the state it uses.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, cast

from tornado.iostream import IOStream, StreamClosedError

from sidecar import detect
from sidecar.http2.tracker import H2Tracker
from sidecar.opaque import OpaqueTracker
from sidecar.passthrough import OBSERVED
from sidecar.relay_state import RelayState
from sidecar.stream_io import CHUNK

if TYPE_CHECKING:
    pass

# How a connection relays: still reading the client's first bytes, framing HTTP/1, or passing bytes as they come.
DETECT, HTTP1 = 0, 1

monotonic = time.monotonic


class FirstBytes(RelayState):
    """Chooses the relay of a connection in `auto` mode; see the module's docstring."""

    __slots__ = ()

    async def _detect(self) -> None:
        """Read until the client's first bytes decide the protocol (or the app speaks, or the client is
        silent for detect_timeout), then relay it."""
        client, loop = self.client, asyncio.get_running_loop()
        read = _read(client)
        timer = loop.call_later(self.server.config.detect_timeout, self._silent)
        try:
            while True:
                if not read.done():
                    self._wake = loop.create_future()
                    read.add_done_callback(self._wake_up)
                    await self._wake
                    self._wake = None
                if self.closed:  # (timed out, or the server is closing)
                    return
                if self.mode != DETECT:  # decided meanwhile: the app spoke first, or the client said nothing
                    await self._relay_client(self._take_held(), read)
                    return
                try:
                    data = read.result()
                except StreamClosedError:
                    self.close("client")
                    return
                self.last_client = monotonic()
                self._held += data
                protocol = detect.detect(self._held)
                if protocol is not None:
                    break
                read = _read(client)
        finally:
            timer.cancel()
        if protocol == detect.HTTP1:
            self._decide(HTTP1, protocol)
            await self._pump_requests(self._take_held())
        else:
            self._observe(protocol, "not_http" if protocol == detect.TCP else protocol)
            await self._relay_client(self._take_held(), None)

    def _wake_up(self, _: Any = None) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _silent(self) -> None:
        """detect_timeout passed: a client that sent nothing waits for a server that speaks first."""
        if self.mode == DETECT and not self._held and not self.closed:
            self._observe(detect.TCP, "client_silent")
            self._wake_up()

    def _take_held(self) -> bytes:
        held, self._held = self._held, b""
        return held

    def _decide(self, mode: int, protocol: str) -> None:
        self.mode = mode
        counts = self.server.counters.protocols
        counts[protocol] = counts.get(protocol, 0) + 1

    def _observe(self, protocol: str, reason: str) -> None:
        """From now on bytes pass as they are and `protocol`'s observer follows them."""
        if protocol == detect.H2:
            self.observer = H2Tracker(max_header_list=self.server.config.max_header_bytes)
        else:
            self.observer = OpaqueTracker(protocol, self.opened)
            opaque = self.server.counters.opaque
            opaque[reason] = opaque.get(reason, 0) + 1
        self._decide(OBSERVED, protocol)


def _read(stream: IOStream) -> asyncio.Future[bytes]:
    """A read of what `stream` has (up to CHUNK) as the future it is, to wait on beside others."""
    return cast("asyncio.Future[bytes]", stream.read_bytes(CHUNK, partial=True))
