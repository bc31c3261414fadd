"""`AppLink`: a proxied connection's connection to the app: dialled when the client connects, tried once more
if it had failed before the client's bytes came, and what waits for it meanwhile.

The app is dialled at accept (overlapping the request's arrival). Bytes for
the app that come before it is connected wait (and the client is not read
meanwhile); if the dial fails with something waiting, or the app is still
unreachable after the one retry, the connection's `_unreachable` answers
(502/504 for HTTP/1, a closed connection otherwise). A mixin of
`sidecar.connection.ProxiedConnection`, which owns the state it uses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

from sidecar.first_bytes import FirstBytes
from sidecar.sides import CONNECTING, Side

log = logging.getLogger("sidecar.connection")

monotonic = time.monotonic


class AppLink(FirstBytes):
    """Dials the app and hands over what waited for it; see the module's docstring."""

    __slots__ = ()

    def _dial(self) -> None:
        self._connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        server = self.server
        config = server.config
        side = Side(self._app_made, self._handlers()[1], self._app_eof, self._app_lost, self._failed)
        loop = asyncio.get_running_loop()
        try:
            family, address = (await server.resolver.resolve(config.target_host, config.target_port))[0]
            made = loop.create_connection(lambda: cast(Any, side), address[0], address[1], family=family)
            await asyncio.wait_for(made, config.connect_timeout)
        except (TimeoutError, OSError) as exc:
            self._connecting = None
            self.connect_error = "upstream_timeout" if isinstance(exc, TimeoutError) else "upstream_unavailable"
            self._failed_at = monotonic()
            if self._pending is not None and not self.closed:  # it failed after they came: no retry for them
                self._unreachable()
            return
        except Exception:
            log.error("connection to the app failed", exc_info=True)
            self.close("error")
            return
        self._connecting = None

    def _app_made(self, side: Side) -> None:
        """The app's side is connected (called from within `create_connection`)."""
        if self.closed:
            side.shut(False)
            return
        self.upstream = side
        client = self.client
        side.peer, client.peer = client, side
        side.on_data = self._handlers()[1]
        pending, self._pending = self._pending, None
        if pending is not None:
            for data in pending:
                self._forward_pending(data)
            client.release(CONNECTING)

    def _want_app(self, data: bytes, now: float) -> None:
        """`data` (may be empty: the relay just needs the app) goes to the app once it is connected;
        the client's `now` says whether a failed dial is tried once more."""
        upstream = self.upstream
        if upstream is not None:
            if data:
                upstream.transport.write(data)
            return
        pending = self._pending
        if pending is not None:
            if data:
                pending.append(data)
            return
        self._pending = [data] if data else []
        self.client.hold(CONNECTING)
        if self._connecting is None:  # it failed
            if self._retried or self._failed_at >= now:
                self._unreachable()
                return
            # The app was down when the client connected; it may be up by now.
            self._retried = True
            self._dial()

