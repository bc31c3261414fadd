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

import time
from typing import Final

from sidecar import detect
from sidecar.opaque import OpaqueTracker
from sidecar.passthrough import OBSERVED, PassThrough

# How a connection relays: still reading the client's first bytes, framing HTTP/1, or passing bytes as they come.
DETECT: Final = 0
HTTP1: Final = 1

monotonic: Final = time.monotonic  # a static, not a lookup in the module's namespace, once compiled


class FirstBytes(PassThrough):
    """Chooses the relay of a connection in `auto` mode; see the module's docstring."""

    __slots__ = ()

    def _client_detect(self, data: bytes) -> None:
        """The client's bytes until they decide the protocol; then its relay takes them all."""
        self.last_client = monotonic()
        held = self._held + data if self._held else data
        protocol = detect.detect(held)
        if protocol is None:
            self._held = held
            return
        self._held = b""
        if protocol == detect.HTTP1:
            self._decide(HTTP1, protocol)
            self._client_http1(held)
        else:
            self._observe(protocol, "not_http" if protocol == detect.TCP else protocol)
            self._client_observed(held)

    def _app_detect(self, data: bytes) -> None:
        """The app spoke first: an HTTP/2 server's SETTINGS, or not HTTP at all."""
        protocol = detect.detect_server(data)
        self._observe(protocol, "server_first" if protocol == detect.TCP else protocol)
        held = self._take_held()
        if held:
            self._client_observed(held)
        self._app_observed(data)

    def _silent(self) -> None:
        """detect_timeout passed: a client that sent nothing waits for a server that speaks first."""
        self._detect_timer = None
        if self.mode == DETECT and not self._held and not self.closed:
            self._observe(detect.TCP, "client_silent")
            self._want_app(b"", self.last_client)

    def _take_held(self) -> bytes:
        held, self._held = self._held, b""
        return held

    def _decide(self, mode: int, protocol: str) -> None:
        self.mode = mode
        counts = self.server.counters.protocols
        counts[protocol] = counts.get(protocol, 0) + 1
        if self._detect_timer is not None:
            self._detect_timer.cancel()
            self._detect_timer = None
        self.client.on_data, on_app = self._handlers()
        if self.upstream is not None:
            self.upstream.on_data = on_app

    def _observe(self, protocol: str, reason: str) -> None:
        """From now on bytes pass as they are and `protocol`'s observer follows them."""
        if protocol == detect.H2:
            from sidecar.http2.tracker import H2Tracker  # at the first HTTP/2 connection (sidecar.passthrough)

            self.observer = H2Tracker(max_header_list=self.server.config.max_header_bytes)
        else:
            self.observer = OpaqueTracker(protocol, self.opened)
            opaque = self.server.counters.opaque
            opaque[reason] = opaque.get(reason, 0) + 1
        self._decide(OBSERVED, protocol)
