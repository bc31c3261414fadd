"""Buckets of traffic and resource readings, and the forms they take: hot, frozen, windowed.

A `Traffic` holds one slot's exchanges with its counts packed (see
`app.dashboard.packed`); a `Bucket` adds resource readings; complete buckets
are frozen into bytes to save memory and thawed to be read (a one-second slot
read only as a series point in fewer); a `Window` sums buckets into the
numbers people read. Pure code.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from app.core.histogram import OVERFLOW
from app.core.wire import STATUS_CLASSES
from app.dashboard.jsontext import dumps
from app.dashboard.packed import WIDTH, quantiles, to_bytes


def add_codes(into: dict[str, int], codes: dict[str, int]) -> None:
    """Add gRPC call counts by status code (wire form: code as text) into `into`."""
    for code, n in codes.items():
        into[code] = into.get(code, 0) + n


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


class Traffic:
    """Exchanges of one slot (or a window): counts, packed histogram, sum, min, max, bytes."""

    __slots__ = ("bytes_in", "bytes_out", "count", "failures", "high", "hist", "low", "status", "total")

    def __init__(self) -> None:
        self.count = 0
        self.status = 0  # packed per STATUS_CLASSES
        self.failures = 0
        self.hist = 0  # packed per latency bucket
        self.total = 0.0  # ms, summed
        self.low = math.inf
        self.high = 0.0
        self.bytes_in = 0
        self.bytes_out = 0

    def add_cell(self, d: dict[str, Any], status: int, hist: int) -> None:
        """Add a validated wire cell whose status and histogram are already packed."""
        self.count += d["count"]
        self.status += status
        self.failures += d["failures"]
        self.hist += hist
        self.total += d["sum"]
        low, high = d["min"], d["max"]
        if low < self.low:
            self.low = low
        if high > self.high:
            self.high = high
        self.bytes_in += d["bytes_in"]
        self.bytes_out += d["bytes_out"]

    def merge(self, other: Traffic) -> None:
        if not other.count:
            return
        self.count += other.count
        self.status += other.status
        self.failures += other.failures
        self.hist += other.hist
        self.total += other.total
        if other.low < self.low:
            self.low = other.low
        if other.high > self.high:
            self.high = other.high
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out

    def load_traffic(self, data: dict[str, Any]) -> None:
        """Counts as history wrote them before route cells were kept frozen (JSON, hexadecimal counts)."""
        if "c" not in data:
            return
        self.count, self.failures = int(data["c"]), int(data["f"])
        self.status, self.hist = int(data["s"], 16), int(data["h"], 16)
        self.total, self.low, self.high = float(data["sum"]), float(data["min"]), float(data["max"])
        self.bytes_in, self.bytes_out = int(data["bi"]), int(data["bo"])


BucketRow = tuple[Any, ...]  # the columns of history's `buckets` table after (scope, step, t)
TrendText = tuple[str, str, str, str]  # rps, p95, cpu, memory: JSON numbers or null
NO_TREND_POINT: TrendText = ("null", "null", "null", "null")


class Bucket(Traffic):
    """Traffic plus averaged resource readings for one time slot."""

    __slots__ = ("cpu_n", "cpu_sum", "mem_limit", "mem_n", "mem_sum")

    def __init__(self) -> None:
        super().__init__()
        self.cpu_sum = 0.0
        self.cpu_n = 0
        self.mem_sum = 0.0
        self.mem_n = 0
        self.mem_limit: float | None = None

    def add_resource(self, cpu: float | None, memory: float | None, limit: float | None) -> None:
        if cpu is not None:
            self.cpu_sum += cpu
            self.cpu_n += 1
        if memory is not None:
            self.mem_sum += memory
            self.mem_n += 1
        if limit is not None:
            self.mem_limit = limit

    def merge_resources(self, other: Bucket) -> None:
        self.cpu_sum += other.cpu_sum
        self.cpu_n += other.cpu_n
        self.mem_sum += other.mem_sum
        self.mem_n += other.mem_n
        if other.mem_limit is not None:
            self.mem_limit = other.mem_limit

    @property
    def cpu(self) -> float | None:
        return self.cpu_sum / self.cpu_n if self.cpu_n else None

    @property
    def memory(self) -> float | None:
        return self.mem_sum / self.mem_n if self.mem_n else None

    def trend_text(self, seconds: int) -> TrendText:
        """(rps, p95, cpu, memory) as JSON numbers.

        Not kept: the trend keeps its text and asks again only for slots that changed.
        """
        cpu, memory = self.cpu, self.memory
        p95 = quantiles(self.hist, self.count, self.low, self.high)[1]
        return (repr(round(self.count / seconds, 3)), "null" if p95 is None else repr(p95),
                "null" if cpu is None else repr(round(cpu, 2)), "null" if memory is None else repr(round(memory)))

    def to_row(self) -> BucketRow:
        """Plain columns (packed counts as little-endian blobs): no JSON to encode, thousands a second."""
        counted = self.count > 0
        return (self.count, to_bytes(self.status), self.failures, to_bytes(self.hist), self.total,
                self.low if counted else None, self.high if counted else None, self.bytes_in, self.bytes_out,
                self.cpu_sum, self.cpu_n, self.mem_sum, self.mem_n, self.mem_limit)

    @classmethod
    def from_row(cls, row: BucketRow) -> Bucket:
        bucket = cls()
        (bucket.count, status, bucket.failures, hist, bucket.total, low, high, bucket.bytes_in, bucket.bytes_out,
         bucket.cpu_sum, bucket.cpu_n, bucket.mem_sum, bucket.mem_n, bucket.mem_limit) = row
        bucket.status, bucket.hist = int.from_bytes(status, "little"), int.from_bytes(hist, "little")
        if low is not None:
            bucket.low, bucket.high = low, high
        return bucket


_FROZEN = struct.Struct("<QQQQIIddddddHHB")  # the fixed part of a frozen bucket, then status and histogram
_SLOTS = max(OVERFLOW + 1, len(STATUS_CLASSES))  # slots a packed status or histogram can have
# Per narrow width (bytes per slot), the bits of every slot above that width: a packed int ANDed
# with it is 0 when each of its counts fits.
_ABOVE = {width: sum((((1 << WIDTH) - 1) ^ ((1 << 8 * width) - 1)) << (WIDTH * i) for i in range(_SLOTS))
          for width in (1, 2, 4)}


def _narrow(packed: int, width: int) -> bytes:
    """Each 8-byte slot's low `width` bytes (slicing in C, no loop over slots in Python)."""
    raw = packed.to_bytes((packed.bit_length() + WIDTH - 1) // WIDTH * 8, "little")
    if width == 8:
        return raw
    if width == 1:
        return raw[::8]
    out = bytearray(len(raw) // 8 * width)
    for k in range(width):
        out[k::width] = raw[k::8]
    return bytes(out)


def _widen(data: bytes, width: int) -> int:
    if width == 8:
        return int.from_bytes(data, "little")
    wide = bytearray(len(data) // width * 8)
    for k in range(width):
        wide[k::8] = data[k::width]
    return int.from_bytes(wide, "little")


def freeze(bucket: Bucket) -> bytes:
    """A complete bucket as a fraction of its memory: fixed fields, then the counts per status class and per
    latency bucket, each slot in as few bytes as the largest count needs (one, mostly).

    The histogram's empty low slots are left out (latencies cluster). `thaw` gives the bucket back.
    """
    return _freeze(bucket.count, bucket.status, bucket.failures, bucket.hist, bucket.total,
                   bucket.low if bucket.count else math.nan, bucket.high, bucket.bytes_in, bucket.bytes_out,
                   bucket.cpu_sum, bucket.cpu_n, bucket.mem_sum, bucket.mem_n, bucket.mem_limit)


def freeze_row(row: BucketRow) -> bytes:
    """`freeze(Bucket.from_row(row))` without the bucket in between (history's writer freezes every row it writes)."""
    (count, status, failures, hist, total, low, high, bytes_in, bytes_out, cpu_sum, cpu_n, mem_sum, mem_n,
     limit) = row
    return _freeze(count, int.from_bytes(status, "little"), failures, int.from_bytes(hist, "little"), total,
                   math.nan if low is None else low, 0.0 if high is None else high, bytes_in, bytes_out,
                   cpu_sum, cpu_n, mem_sum, mem_n, limit)


def _freeze(count: int, status: int, failures: int, hist: int, total: float, low: float, high: float,
            bytes_in: int, bytes_out: int, cpu_sum: float, cpu_n: int, mem_sum: float, mem_n: int,
            mem_limit: float | None) -> bytes:
    skip, width, counts, status_len = _pack_counts(status, hist)
    limit = math.nan if mem_limit is None else mem_limit
    return _FROZEN.pack(count, failures, bytes_in, bytes_out, cpu_n, mem_n, total, low, high, cpu_sum, mem_sum,
                        limit, skip, status_len, width) + counts


def _pack_counts(status: int, hist: int) -> tuple[int, int, bytes, int]:
    """(skip, width, status then histogram bytes, status bytes): empty low latency slots left out, each count
    in the fewest bytes the largest needs."""
    skip = ((hist & -hist).bit_length() - 1) // WIDTH if hist else 0  # empty slots below the first count
    hist >>= skip * WIDTH
    both = hist | status
    width = 8
    if both.bit_length() <= _SLOTS * WIDTH:
        width = next((w for w, above in _ABOVE.items() if not both & above), 8)
    status_bytes = _narrow(status, width)
    return skip, width, status_bytes + _narrow(hist, width), len(status_bytes)


def _unpack_counts(bucket: Bucket, counts: bytes, skip: int, status_len: int, width: int) -> None:
    bucket.status = _widen(counts[:status_len], width)
    bucket.hist = _widen(counts[status_len:], width) << (skip * WIDTH)


def thaw(frozen: bytes) -> Bucket:
    bucket = Bucket()
    (bucket.count, bucket.failures, bucket.bytes_in, bucket.bytes_out, bucket.cpu_n, bucket.mem_n, bucket.total,
     low, bucket.high, bucket.cpu_sum, bucket.mem_sum, limit, skip, status_len, width) = _FROZEN.unpack_from(frozen)
    if bucket.count:
        bucket.low = low
    bucket.mem_limit = None if math.isnan(limit) else limit
    _unpack_counts(bucket, frozen[_FROZEN.size:], skip, status_len, width)
    return bucket


# A slot read only as a point of a series (a pod's one-second slots): what a series shows, and no more (no
# failures, sum or bytes), in a header of 53 bytes instead of 93; the counts as `freeze` keeps them.
_POINT = struct.Struct("<IHHdddddHHB")


def freeze_point(bucket: Bucket) -> bytes:
    """A bucket as a series reads it: counts by status and latency, min, max and resources (`thaw_point`)."""
    skip, width, counts, status_len = _pack_counts(bucket.status, bucket.hist)
    return _POINT.pack(bucket.count, bucket.cpu_n, bucket.mem_n, bucket.low if bucket.count else math.nan,
                       bucket.high, bucket.cpu_sum, bucket.mem_sum,
                       math.nan if bucket.mem_limit is None else bucket.mem_limit, skip, status_len, width) + counts


def thaw_point(frozen: bytes) -> Bucket:
    """The bucket `freeze_point` kept: failures, sum and bytes are 0."""
    bucket = Bucket()
    (bucket.count, bucket.cpu_n, bucket.mem_n, low, bucket.high, bucket.cpu_sum, bucket.mem_sum, limit, skip,
     status_len, width) = _POINT.unpack_from(frozen)
    if bucket.count:
        bucket.low = low
    bucket.mem_limit = None if math.isnan(limit) else limit
    _unpack_counts(bucket, frozen[_POINT.size:], skip, status_len, width)
    return bucket


def read_point(slot: Slot | None) -> Bucket | None:
    return thaw_point(slot) if type(slot) is bytes else slot  # type: ignore[return-value]


Slot = Bucket | bytes  # a tier holds objects while hot, frozen bytes after


def read_slot(slot: Slot | None) -> Bucket | None:
    return thaw(slot) if type(slot) is bytes else slot  # type: ignore[return-value]


def read_cell(cell: Traffic | bytes | None) -> Traffic | None:
    return thaw(cell) if type(cell) is bytes else cell  # type: ignore[return-value]


def freeze_traffic(cell: Traffic) -> bytes:
    """A route cell (no resource readings) frozen as `freeze` does a bucket."""
    return _freeze(cell.count, cell.status, cell.failures, cell.hist, cell.total,
                   cell.low if cell.count else math.nan, cell.high, cell.bytes_in, cell.bytes_out, 0.0, 0, 0.0, 0,
                   None)


class Window(Traffic):
    """Traffic over a span of `seconds`, reduced to the numbers people read."""

    __slots__ = ("_headline", "_quantiles", "seconds")

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = max(seconds, 1.0)
        self._quantiles: tuple[float | None, float | None, float | None] | None = None
        self._headline: str | None = None

    def quantiles(self) -> tuple[float | None, float | None, float | None]:
        """p50, p95, p99, computed once (a window is rebuilt, not changed, when data comes)."""
        if self._quantiles is None:
            self._quantiles = quantiles(self.hist, self.count, self.low, self.high)
        return self._quantiles

    def headline(self) -> dict[str, Any]:
        """rps, success, p50, p95, p99: what every pod, app and the totals show."""
        count = self.count
        p50, p95, p99 = self.quantiles()
        return {"rps": round(count / self.seconds, 3),
                "success": round(1 - self.failures / count, 5) if count else None,
                "p50": p50, "p95": p95, "p99": p99}

    def headline_text(self) -> str:
        """`headline()` as the members of a JSON object (no braces), encoded once: the overview reads it each second."""
        if self._headline is None:
            self._headline = dumps(self.headline())[1:-1]
        return self._headline

    def numbers(self) -> dict[str, Any]:
        count = self.count
        out = self.headline()
        out.update(count=count, avg=_r(self.total / count) if count else None,
                   min=_r(self.low) if count else None, max=_r(self.high) if count else None,
                   errors=self.failures, error_rate=round(self.failures / count, 5) if count else None,
                   bytes_in=self.bytes_in, bytes_out=self.bytes_out)
        return out
