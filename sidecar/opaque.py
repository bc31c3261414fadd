"""`OpaqueTracker`: a connection whose protocol the sidecar does not read, as one exchange.

The bytes are relayed untouched; the exchange counts them each way and
times the connection: `t_start` when the client connected, `t_first` at the
app's first byte, `t_end` when the connection ended. For TLS the client's
ClientHello is read on the way past (`sidecar.tls`) for the server name
(the exchange's `target`) and the ALPN protocols offered. It has the shape
of the HTTP/2 tracker (`feed_client`, `feed_server`, `take_finished`,
`live`, `broken`, `close`), so the connection relays both alike. Pure: no
I/O and no clock.
"""

from __future__ import annotations

from typing import Final

from sidecar.exchange import Exchange
from sidecar.tls import ClientHelloReader

TLS: Final = "tls"
TCP: Final = "tcp"


class OpaqueTracker:
    """One opaque connection (`protocol` "tls" or "tcp") as one `Exchange`, finished when `close` is called."""

    broken = False  # nothing here can lose track

    def __init__(self, protocol: str, t_start: float) -> None:
        if protocol not in (TLS, TCP):
            raise ValueError(f"an opaque connection is tls or tcp, not {protocol!r}")
        self.exchange = ex = Exchange(t_start)
        ex.protocol = protocol
        ex.head_done = True  # there is no head to wait for: a cut connection is still reported
        self._hello = ClientHelloReader() if protocol == TLS else None
        self._finished: list[Exchange] = []
        self._open = True

    @property
    def live(self) -> int:
        return 1 if self._open else 0

    def feed_client(self, data: bytes, now: float) -> None:
        self.exchange.bytes_in += len(data)
        hello = self._hello
        if hello is not None:
            hello.feed(data)
            if hello.done:
                self._hello = None
                if hello.hello is not None:
                    self.exchange.target = hello.hello.sni.encode("ascii", "replace")
                    self.exchange.alpn = ",".join(hello.hello.alpn)

    def feed_server(self, data: bytes, now: float) -> None:
        ex = self.exchange
        if ex.t_first is None:
            ex.t_first = now
        ex.bytes_out += len(data)

    def fail(self, error: str, now: float) -> None:
        """The connection ends for `error` (`upstream_unavailable`, `upstream_timeout`, `upstream_reset`)."""
        if self._open:
            self.exchange.error = error
            self.close("upstream", now)

    def close(self, cause: str, now: float) -> None:
        """The connection is over. Either end closing is how opaque connections end: no error word for that."""
        if not self._open:
            return
        self._open = False
        ex = self.exchange
        ex.t_end = now
        ex.request_done = ex.response_done = True
        self._finished.append(ex)

    def take_finished(self) -> list[Exchange]:
        done, self._finished = self._finished, []
        return done
