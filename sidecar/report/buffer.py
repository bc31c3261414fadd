"""`SampleBuffer`: the sidecar's bounded store of exchanges not yet acknowledged by the dashboard.

Each exchange goes into an open batch: its per-second summary cell (exact)
and its raw sample (at most `max_samples_per_batch` kept, the newest).
`seal()` closes the open batch into an encoded body with a unique id; sealed
batches wait in order until acknowledged and are resent unchanged, so the
dashboard can drop repeats by id. Everything is bounded by `max_bytes`: when
full the oldest unsent batch is dropped and the exchanges it held are counted
in the next batch's `dropped`. Pure: no I/O, no clock, no Tornado.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from app.core.sample import Record
from app.core.summary import SummaryBuilder
from app.core.wire import MAX_SAMPLES, Sample

# Cheap size estimates (bytes of JSON) for the open batch, so that adding a
# sample never encodes it: the fixed keys and numbers of a sample come to
# about 215 bytes; a summary cell is 150-700 bytes depending on its histogram.
SAMPLE_BASE_BYTES: Final = 220
CELL_BYTES: Final = 400
# About 2 MB of JSON at most: well under the dashboard's 4 MiB body limit and
# the wire format's 50,000 cells.
MAX_CELLS_PER_BATCH = 5000  # (not Final: a test lowers it; read once a seal)


def estimate_bytes(sample: Sample) -> int:
    return estimate_record_bytes(Record.from_sample(sample))


def estimate_record_bytes(record: Record) -> int:
    return SAMPLE_BASE_BYTES + len(record.endpoint) + len(record.route) + len(record.message)


# The standard library's C encoder, compact; ujson would map libstdc++ (1.3 MB) into every sidecar for
# one call a batch (issue 17, its memory).
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def encode_body(head: dict[str, Any], samples: list[Sample], cells: list[dict[str, Any]]) -> bytes:
    """A batch's JSON: `head`'s fields, then `stats` and `summary`, encoded a sample and a cell at a time.
    Encoded at once, every small piece of a batch stays alive until its end (2.4 MB for 1,000 samples,
    against 0.6 MB so), and the heap keeps what it once held; this way costs 6 ms a batch instead of 5."""
    return (_ENCODE(head)[:-1] + ',"stats":[' + ",".join(map(_ENCODE, samples)) + '],"summary":['
            + ",".join(map(_ENCODE, cells)) + "]}").encode()


@dataclass
class Batch:
    """A sealed stats batch: the exact bytes to POST, resent unchanged until acknowledged."""

    id: str
    body: bytes
    exchanges: int  # exchanges counted in its summary cells
    samples: int  # raw samples in it
    dropped: int  # the `dropped` count it carries
    in_flight: bool = field(default=False)
    attempts: int = field(default=0)


@dataclass
class BufferStats:
    """Monotonic counts since start, for /metrics."""

    recorded: int = 0  # exchanges added
    dropped: int = 0  # exchanges lost: their batch was dropped (buffer full) or refused by the dashboard
    left_out: int = 0  # raw samples not sent (per-batch cap or buffer full); their exchanges still count
    sealed: int = 0  # batches sealed
    delivered: int = 0  # batches acknowledged


def _id_factory() -> Callable[[], str]:
    """Ids unique across restarts (random prefix) and ordered within one run."""
    prefix = uuid.uuid4().hex[:16]
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter)}"


class SampleBuffer:
    def __init__(self, pod: str, app: str, *, max_bytes: int, max_samples_per_batch: int,
                 new_id: Callable[[], str] | None = None, namespace: str = "") -> None:
        if max_bytes <= 0 or max_samples_per_batch <= 0:
            raise ValueError("max_bytes and max_samples_per_batch must be positive")
        self.pod = pod
        self.app = app
        self.namespace = namespace  # sent only when known: dashboards before it took no such key
        self.max_bytes = max_bytes
        self.max_samples_per_batch = min(max_samples_per_batch, MAX_SAMPLES)  # more would be refused
        self._new_id = new_id or _id_factory()
        self.stats = BufferStats()
        # The open batch.
        self._summary = SummaryBuilder()
        # The newest exchanges' samples, kept as records until sealed (most never are: they are left out).
        self._raw: deque[tuple[Record, int]] = deque()
        self._raw_bytes = 0
        self._open_exchanges = 0
        # Exchanges lost and not yet reported in a sealed batch's `dropped`.
        self._unreported_dropped = 0
        # Sealed batches, oldest first.
        self._sealed: deque[Batch] = deque()
        self._sealed_bytes = 0
        self._sealed_exchanges = 0

    # --- the hot path: called once per exchange ---------------------------

    def add(self, sample: Sample) -> None:
        self.add_record(Record.from_sample(sample))

    def add_record(self, record: Record) -> None:
        self.stats.recorded += 1
        self._open_exchanges += 1
        summary = self._summary
        summary.add_record(record)
        size = estimate_record_bytes(record)
        raw = self._raw
        if len(raw) >= self.max_samples_per_batch:
            # Beyond the cap a sample would be left out when sealing anyway;
            # keeping the newest makes the batch's samples the most recent.
            self._raw_bytes -= raw.popleft()[1]
            self.stats.left_out += 1
        raw.append((record, size))
        self._raw_bytes += size
        # `self.bytes`, spelled out: this line runs once per exchange.
        if self._sealed_bytes + self._raw_bytes + len(summary.cells) * CELL_BYTES > self.max_bytes:
            self._shed()

    # --- sizes ---------------------------------------------------------------

    @property
    def open_bytes(self) -> int:
        return self._raw_bytes + len(self._summary) * CELL_BYTES

    @property
    def bytes(self) -> int:
        """Bytes held: sealed bodies exactly, the open batch estimated."""
        return self._sealed_bytes + self.open_bytes

    @property
    def queued_exchanges(self) -> int:
        """Exchanges recorded but not yet acknowledged by the dashboard."""
        return self._sealed_exchanges + self._open_exchanges

    @property
    def queued_batches(self) -> int:
        return len(self._sealed)

    @property
    def has_open_data(self) -> bool:
        return bool(self._open_exchanges or self._unreported_dropped)

    # --- sealing and delivery -------------------------------------------------

    def seal(self) -> Batch | None:
        """Close the open batch; None when there is nothing new to send.

        A summary with more than `MAX_CELLS_PER_BATCH` cells (many routes over
        a long interval) is split into several batches, so no body grows past
        what the dashboard accepts; the last one returned carries the samples."""
        if not self.has_open_data:
            return None
        cells = self._summary.drain()
        samples = [record.to_sample() for record, _ in self._raw]
        chunks = [cells[i:i + MAX_CELLS_PER_BATCH] for i in range(0, len(cells), MAX_CELLS_PER_BATCH)] or [[]]
        batch: Batch | None = None
        for n, chunk in enumerate(chunks):
            last = n == len(chunks) - 1
            batch = self._seal_one(chunk, samples if last else [], self._unreported_dropped if last else 0)
        self._raw.clear()
        self._raw_bytes = 0
        self._open_exchanges = 0
        self._unreported_dropped = 0
        if self.bytes > self.max_bytes:  # the estimate was low: the real size decides
            self._shed()
        return batch

    def _seal_one(self, cells: list[dict[str, Any]], samples: list[Sample], dropped: int) -> Batch:
        batch_id = self._new_id()
        head: dict[str, Any] = {"pod": self.pod, "app": self.app}
        if self.namespace:
            head["namespace"] = self.namespace
        body = encode_body({**head, "batch": batch_id, "dropped": dropped}, samples, cells)
        batch = Batch(id=batch_id, body=body, exchanges=sum(cell["count"] for cell in cells),
                      samples=len(samples), dropped=dropped)
        self._sealed.append(batch)
        self._sealed_bytes += len(body)
        self._sealed_exchanges += batch.exchanges
        self.stats.sealed += 1
        return batch

    def next_batch(self) -> Batch | None:
        """The oldest sealed batch, marked in flight (it cannot be dropped until released)."""
        if not self._sealed:
            return None
        batch = self._sealed[0]
        batch.in_flight = True
        batch.attempts += 1
        return batch

    def acknowledge(self, batch: Batch) -> None:
        """The dashboard answered 2xx: the batch is delivered and forgotten."""
        batch.in_flight = False
        if self._remove(batch):
            self.stats.delivered += 1

    def release(self, batch: Batch) -> None:
        """The POST failed: keep the batch, unchanged, for a retry."""
        batch.in_flight = False

    def release_all(self) -> None:
        """A POST was abandoned (shutdown): no batch is in flight any more."""
        for batch in self._sealed:
            batch.in_flight = False

    def reject(self, batch: Batch) -> None:
        """The dashboard refused the batch for good (e.g. 400, 413): count its exchanges as lost."""
        batch.in_flight = False
        if self._remove(batch):
            self._lose(batch)

    # --- bounds ---------------------------------------------------------------

    def _remove(self, batch: Batch) -> bool:
        try:
            self._sealed.remove(batch)
        except ValueError:
            return False
        self._sealed_bytes -= len(batch.body)
        self._sealed_exchanges -= batch.exchanges
        return True

    def _lose(self, batch: Batch) -> None:
        self.stats.dropped += batch.exchanges
        self.stats.left_out += batch.samples
        # The lost batch's own `dropped` count never reached the dashboard either.
        self._unreported_dropped += batch.exchanges + batch.dropped

    def _shed(self) -> None:
        """Free space, oldest first: whole sealed batches (never the one in
        flight), then the open batch's oldest raw samples (their exchanges
        stay counted in its summary), then its oldest summary cells."""
        while self.bytes > self.max_bytes:
            victim = next((b for b in self._sealed if not b.in_flight), None)
            if victim is not None:
                self._remove(victim)
                self._lose(victim)
                continue
            if self._raw:
                _, size = self._raw.popleft()
                self._raw_bytes -= size
                self.stats.left_out += 1
                continue
            cells = self._summary.cells
            if not cells:
                return  # only the in-flight batch is left: it must stay
            oldest = next(iter(cells))
            lost = cells.pop(oldest).count
            self._open_exchanges -= lost
            self.stats.dropped += lost
            self._unreported_dropped += lost
