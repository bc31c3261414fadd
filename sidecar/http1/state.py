"""`TrackerState`: what the two sides of an `ExchangeTracker` share: the exchanges in flight and each side's state.

The request side (`sidecar.http1.requests`) and the response side
(`sidecar.http1.responses`) read and move the same state: a response decides
what the request bytes held behind an Upgrade are, a request that closes the
connection ends the response side's work. Pure: no I/O and no clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from typing import Final

from sidecar.exchange import Exchange
from sidecar.http1.chunked import ChunkedBody
from sidecar.http1.heads import MEMO_HEAD_BYTES

# Request side states (Final: compiled, each is a constant, not a lookup in the module's namespace).
R_HEAD: Final = 0  # between requests or inside a head (held in _rq_buf)
R_LENGTH: Final = 1  # a Content-Length body; _rq_left bytes to go
R_CHUNKED: Final = 2
R_WAIT: Final = 3  # Upgrade/CONNECT asked: bytes are held until the response decides what they are
R_TUNNEL: Final = 4
R_DISCARD: Final = 5  # after a request that closes the connection: nothing more goes on
R_REFUSED: Final = 6

# Response side states.
S_HEAD: Final = 0
S_LENGTH: Final = 1
S_CHUNKED: Final = 2
S_UNTIL_CLOSE: Final = 3
S_TUNNEL: Final = 4
S_DONE: Final = 5  # the connection closes after this response


class TrackerState(ABC):
    """Both sides' state; the sides are mixins over it, `sidecar.http1.tracker.ExchangeTracker` joins them."""

    def __init__(self, max_head: int = 65536, *, allow_connect: bool = False) -> None:
        self.max_head = max_head
        self.allow_connect = allow_connect  # else CONNECT is refused (405): the app is no forward proxy
        self._memo_limit = min(max_head, MEMO_HEAD_BYTES)
        self.finished: list[Exchange] = []
        self.refused: Exchange | None = None
        self.must_close = False  # the response side ended the connection
        self.switched_at = -1  # where in the last response chunk a 101 (or CONNECT's 2xx) head ended
        self._live: deque[Exchange] = deque()  # every unfinished exchange, in request order
        self._unanswered: deque[Exchange] = deque()  # heads forwarded, response not begun
        self._rq_state = R_HEAD
        self._rq_ex: Exchange | None = None
        self._rq_buf = bytearray()
        self._rq_line_ok = False
        self._rq_left = 0
        self._rq_held = bytearray()  # what came behind an Upgrade/CONNECT request, held in R_WAIT
        self.released = bytearray()  # held request bytes the response side cleared to go to the app
        self._rq_chunks = ChunkedBody(strict=True, max_trailer=max_head)
        self._rs_state = S_HEAD
        self._rs_ex: Exchange | None = None
        self._rs_buf = bytearray()
        self._rs_left = 0
        self._rs_keep = True
        self._rs_chunks = ChunkedBody(strict=False, max_trailer=max_head)

    @abstractmethod
    def feed_request(self, data: bytes, now: float) -> bytes:
        """Take bytes from the client; return those that may be forwarded now (the request side's)."""

    def _finish(self, ex: Exchange) -> None:
        if self._live and self._live[0] is ex:
            self._live.popleft()
        elif ex in self._live:
            self._live.remove(ex)
        else:
            return
        self.finished.append(ex)

    def _drop(self, ex: Exchange) -> None:
        if ex in self._live:
            self._live.remove(ex)
