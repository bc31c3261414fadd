"""`HeadWatch`: closes connections that wait too long for a request, without a timer per request.

A timeout armed around every wait for a head and a body (as Tornado's
`idle_connection_timeout` and `body_timeout` do) would make each of the
thousands of POSTs a second pay for timers it almost never needs. Here a
connection is noted when it starts waiting for a request (noting it again
restarts its time) and forgotten when it is closed or handed on, and a sweep
every few seconds closes those that waited longer than the limit: a
connection that never sends, an idle kept-alive one, a head that never ends
(slowloris), or a body that never comes. The limit is kept within one sweep
interval.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Protocol

HEAD_TIMEOUT = 75.0  # seconds; sidecars POST every second or more often, so only the dead wait this long


class Closable(Protocol):
    def close(self) -> None: ...


class HeadWatch:
    def __init__(self, timeout: float = HEAD_TIMEOUT, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        # Weak: a connection that ends while waiting leaves by itself.
        self._waiting: weakref.WeakKeyDictionary[Closable, float] = weakref.WeakKeyDictionary()

    def waiting(self, connection: Closable) -> None:
        """`connection` starts waiting for a request."""
        self._waiting[connection] = self._clock()

    def forget(self, connection: Closable) -> None:
        """`connection` is no longer watched (closed, or handed to a server with its own timeouts)."""
        self._waiting.pop(connection, None)

    def sweep(self) -> None:
        """Close the connections that waited longer than the timeout."""
        limit = self._clock() - self.timeout
        late = [connection for connection, since in self._waiting.items() if since <= limit]
        for connection in late:
            del self._waiting[connection]
            connection.close()

    def __len__(self) -> int:
        return len(self._waiting)
