"""Time-bucketed traffic and resource series for one scope: a pod, an app, or all.

Memory stays bounded by two tiers: one `Bucket` per second for the last
`FINE_SPAN` seconds and one per `COARSE` seconds over the retention, plus a
per-route table holding only the last minute. Counts per status class and per
latency bucket are packed into one Python int each (64 bits a slot, see
`app.histogram` for the bounds), so merging two buckets is a few additions:
that is what keeps ingest cheap at thousands of pods. Pure code: no I/O, no
clock (callers pass `now` in epoch seconds).
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from itertools import accumulate
from typing import Any

from app.dashboard.jsontext import dumps
from app.histogram import Histogram, bucket_range
from app.routes import OVERFLOW_ROUTE
from app.wire import STATUS_CLASSES

FINE_SPAN = 300  # seconds kept at one-second resolution
COARSE = 5  # seconds per coarse bucket
WINDOW = 60  # seconds the overview's rates and percentiles cover
TREND_POINTS = 60  # coarse buckets in a trend (5 minutes)
ROUTE_LIMIT = 200  # distinct (route, method) per scope; more go to {other}
MAX_SKEW = 60  # seconds a sender's clock may run ahead before its cells are counted now
FINE_HOT = 30  # seconds a one-second bucket stays an object; older ones are packed into bytes
COARSE_HOT = TREND_POINTS * COARSE + 2 * COARSE  # the trend reads coarse buckets this far back, often

WIDTH = 64  # bits per packed slot: no count in a slot comes near 2**64
_MASK = (1 << WIDTH) - 1
_STATUS_SHIFT = {klass: i * WIDTH for i, klass in enumerate(STATUS_CLASSES)}

RouteKey = tuple[str, str]  # (route, method)


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# --- packing ----------------------------------------------------------------


def pack_pairs(pairs: Iterable[Iterable[int]]) -> int:
    """`[[index, count], ...]` (a wire histogram) as one int."""
    packed = 0
    for index, n in pairs:
        packed += n << (index * WIDTH)
    return packed


def unpack(packed: int) -> array[int]:
    """Counts per slot, lowest first, for a packed int (trailing empty slots left out)."""
    counts = array("Q")
    if packed:
        counts.frombytes(packed.to_bytes((packed.bit_length() + WIDTH - 1) // WIDTH * 8, sys.byteorder))
    return counts


def pack_status(status: dict[str, int]) -> int:
    packed = 0
    for klass, n in status.items():
        packed += n << _STATUS_SHIFT[klass]
    return packed


def unpack_status(packed: int) -> dict[str, int]:
    return {klass: (packed >> shift) & _MASK for klass, shift in _STATUS_SHIFT.items()}


def to_pairs(packed: int) -> list[list[int]]:
    return [[i, n] for i, n in enumerate(unpack(packed)) if n]


def quantiles(hist: int, count: int, low: float, high: float) -> tuple[float | None, float | None, float | None]:
    """p50, p95, p99 of a packed histogram, exactly as `Histogram.quantile` computes them.

    Cumulative counts and a bisection find each bucket in C rather than a Python loop.
    """
    if not count:
        return None, None, None
    counts = unpack(hist)
    cumulative = list(accumulate(counts))
    out = []
    for q in (0.50, 0.95, 0.99):
        rank = q * count
        index = bisect_left(cumulative, rank)
        if index >= len(counts):
            out.append(round(high, 3))
            continue
        n = counts[index]
        lo, hi = bucket_range(index)
        lo, hi = max(lo, low), min(hi, high)
        if hi <= lo or lo <= 0:
            out.append(round(min(max(hi, low), high), 3))
        else:  # geometric interpolation inside the bucket
            out.append(round(float(lo * (hi / lo) ** ((rank - cumulative[index] + n) / n)), 3))
    return out[0], out[1], out[2]


# --- buckets ----------------------------------------------------------------


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

    def histogram(self) -> Histogram:
        """An `app.histogram.Histogram` of the same counts, for its quantiles."""
        hist = Histogram()
        hist.counts = {i: n for i, n in enumerate(unpack(self.hist)) if n}
        hist.count, hist.total, hist.low, hist.high = self.count, self.total, self.low, self.high
        return hist

    def traffic_json(self) -> dict[str, Any]:
        if not self.count:
            return {}
        return {"c": self.count, "s": format(self.status, "x"), "f": self.failures, "h": format(self.hist, "x"),
                "sum": self.total, "min": self.low, "max": self.high, "bi": self.bytes_in, "bo": self.bytes_out}

    def load_traffic(self, data: dict[str, Any]) -> None:
        if "c" not in data:
            return
        self.count, self.failures = int(data["c"]), int(data["f"])
        self.status, self.hist = int(data["s"], 16), int(data["h"], 16)
        self.total, self.low, self.high = float(data["sum"]), float(data["min"]), float(data["max"])
        self.bytes_in, self.bytes_out = int(data["bi"]), int(data["bo"])


BucketRow = tuple[Any, ...]  # the columns of history's `buckets` table after (scope, step, t)
TrendText = tuple[str, str, str, str]  # rps, p95, cpu, memory: JSON numbers or null
_NO_POINT: TrendText = ("null", "null", "null", "null")


def _blob(packed: int) -> bytes:
    return packed.to_bytes((packed.bit_length() + 7) // 8, "little")


class Bucket(Traffic):
    """Traffic plus averaged resource readings for one time slot."""

    __slots__ = ("_point", "cpu_n", "cpu_sum", "mem_limit", "mem_n", "mem_sum")

    def __init__(self) -> None:
        super().__init__()
        self.cpu_sum = 0.0
        self.cpu_n = 0
        self.mem_sum = 0.0
        self.mem_n = 0
        self.mem_limit: float | None = None
        self._point: TrendText | None = None

    def merge(self, other: Traffic) -> None:
        self._point = None
        super().merge(other)

    def add_resource(self, cpu: float | None, memory: float | None, limit: float | None) -> None:
        self._point = None
        if cpu is not None:
            self.cpu_sum += cpu
            self.cpu_n += 1
        if memory is not None:
            self.mem_sum += memory
            self.mem_n += 1
        if limit is not None:
            self.mem_limit = limit

    def merge_resources(self, other: Bucket) -> None:
        self._point = None
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
        """(rps, p95, cpu, memory) as JSON numbers, kept until the bucket changes."""
        point = self._point
        if point is None:
            cpu, memory = self.cpu, self.memory
            p95 = quantiles(self.hist, self.count, self.low, self.high)[1]
            point = self._point = (repr(round(self.count / seconds, 3)), "null" if p95 is None else repr(p95),
                                   "null" if cpu is None else repr(round(cpu, 2)),
                                   "null" if memory is None else repr(round(memory)))
        return point

    def to_row(self) -> BucketRow:
        """Plain columns (packed counts as little-endian blobs): no JSON to encode, thousands a second."""
        counted = self.count > 0
        return (self.count, _blob(self.status), self.failures, _blob(self.hist), self.total,
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


_FROZEN = struct.Struct("<QQQQIIddddddHH")  # the fixed part of a frozen bucket, then status and histogram


def freeze(bucket: Bucket) -> bytes:
    """A complete bucket as about a quarter of its memory: fixed fields, then the packed counts as bytes.

    The histogram's empty low slots are left out (latencies cluster), the rest is
    the packed int's own little-endian bytes. `thaw` gives the bucket back.
    """
    hist = bucket.hist
    skip = ((hist & -hist).bit_length() - 1) // WIDTH if hist else 0  # empty slots below the first count
    status_bytes, hist_bytes = _blob(bucket.status), _blob(hist >> (skip * WIDTH))
    limit = math.nan if bucket.mem_limit is None else bucket.mem_limit
    low = bucket.low if bucket.count else math.nan
    head = _FROZEN.pack(bucket.count, bucket.failures, bucket.bytes_in, bucket.bytes_out, bucket.cpu_n,
                        bucket.mem_n, bucket.total, low, bucket.high, bucket.cpu_sum, bucket.mem_sum, limit,
                        skip, len(status_bytes))
    return head + status_bytes + hist_bytes


def thaw(frozen: bytes) -> Bucket:
    bucket = Bucket()
    (bucket.count, bucket.failures, bucket.bytes_in, bucket.bytes_out, bucket.cpu_n, bucket.mem_n, bucket.total,
     low, bucket.high, bucket.cpu_sum, bucket.mem_sum, limit, skip, status_len) = _FROZEN.unpack_from(frozen)
    if bucket.count:
        bucket.low = low
    bucket.mem_limit = None if math.isnan(limit) else limit
    start = _FROZEN.size
    bucket.status = int.from_bytes(frozen[start:start + status_len], "little")
    bucket.hist = int.from_bytes(frozen[start + status_len:], "little") << (skip * WIDTH)
    return bucket


Slot = Bucket | bytes  # a tier holds objects while hot, frozen bytes after


def _read(slot: Slot | None) -> Bucket | None:
    return thaw(slot) if type(slot) is bytes else slot  # type: ignore[return-value]


class Window(Traffic):
    """Traffic over a span of `seconds`, reduced to the numbers people read."""

    __slots__ = ("_quantiles", "seconds")

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = max(seconds, 1.0)
        self._quantiles: tuple[float | None, float | None, float | None] | None = None

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

    def numbers(self) -> dict[str, Any]:
        count = self.count
        out = self.headline()
        out.update(count=count, avg=_r(self.total / count) if count else None,
                   min=_r(self.low) if count else None, max=_r(self.high) if count else None,
                   errors=self.failures, error_rate=round(self.failures / count, 5) if count else None,
                   bytes_in=self.bytes_in, bytes_out=self.bytes_out)
        return out


class RouteStat:
    """One route's last minute (in coarse slots), lifetime count and last sighting."""

    __slots__ = ("cells", "last_seen", "total")

    def __init__(self) -> None:
        self.cells: dict[int, Traffic] = {}
        self.total = 0
        self.last_seen = 0.0  # epoch ms

    def add(self, t5: int, cell: Traffic, last_seen: float) -> None:
        mine = self.cells.get(t5)
        if mine is None:
            mine = self.cells[t5] = Traffic()
        mine.merge(cell)
        self.total += cell.count
        if last_seen > self.last_seen:
            self.last_seen = last_seen

    def window(self, start: int, end: int) -> Window:
        out = Window(end - start)
        for t5, cell in self.cells.items():
            if start <= t5 < end:
                out.merge(cell)
        return out

    def evict(self, before: int) -> None:
        for t5 in [t for t in self.cells if t < before]:
            del self.cells[t5]

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "last_seen": self.last_seen,
                "cells": {str(t): c.traffic_json() for t, c in self.cells.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RouteStat:
        stat = cls()
        stat.total, stat.last_seen = int(data["total"]), float(data["last_seen"])
        for t, wire in data["cells"].items():
            cell = stat.cells[int(t)] = Traffic()
            cell.load_traffic(wire)
        return stat


class TrafficDelta:
    """One batch's cells summed per second, per coarse slot and per route slot.

    Built once per batch so each scope it touches (pod, app, all) merges a
    handful of buckets instead of every cell.
    """

    __slots__ = ("cells", "coarse", "count", "last_seen", "routes", "seconds")

    def __init__(self, cells: Iterable[dict[str, Any]], now: float, retention: float) -> None:
        self.seconds: dict[int, Bucket] = {}
        self.coarse: dict[int, Bucket] = {}
        self.routes: dict[tuple[str, str, int], Traffic] = {}
        self.last_seen: dict[RouteKey, float] = {}
        self.cells = 0
        self.count = 0
        oldest, newest = int(now - retention), int(now) + MAX_SKEW
        seconds, routes, last_seen = self.seconds, self.routes, self.last_seen
        for d in cells:
            if not d["count"]:
                continue
            t = d["t"]
            if t < oldest:
                continue  # older than anything kept
            if t > newest:
                t = int(now)  # a sender's clock far ahead: count it now rather than in the future
            status, hist = pack_status(d["status"]), pack_pairs(d["hist"])
            bucket = seconds.get(t)
            if bucket is None:
                bucket = seconds[t] = Bucket()
            bucket.add_cell(d, status, hist)
            t5 = t - t % COARSE
            route_key = (d["route"], d["method"])
            slot = routes.get((*route_key, t5))
            if slot is None:
                slot = routes[(*route_key, t5)] = Traffic()
            slot.add_cell(d, status, hist)
            seen = t * 1000.0
            if seen > last_seen.get(route_key, 0.0):
                last_seen[route_key] = seen
            self.cells += 1
            self.count += d["count"]
        coarse = self.coarse
        for t, bucket in seconds.items():
            t5 = t - t % COARSE
            acc = coarse.get(t5)
            if acc is None:
                acc = coarse[t5] = Bucket()
            acc.merge(bucket)


def window_start(now: float) -> tuple[int, int]:
    """The overview window: the last WINDOW seconds of complete coarse slots, as [start, end).

    Sidecars report every few seconds, so the slot still filling would read low;
    leaving it out also keeps every figure fixed (and cached) for a whole slot.
    """
    end = int(now) - int(now) % COARSE
    return end - WINDOW, end


class Scope:
    """Fine and coarse buckets plus a route table for one pod, one app, or everything."""

    def __init__(self, name: str, *, persist_fine: bool = True) -> None:
        self.name = name  # "all", "app:NAME" or "pod:NAME"
        # Pods' one-second buckets are not written to history (thousands of rows a second);
        # after a restart their step-1 series spread the coarse slots over the seconds before it.
        self.persist_fine = persist_fine
        self.fine_since = 0  # epoch second from which `fine` is complete
        self.fine: dict[int, Slot] = {}
        self.coarse: dict[int, Slot] = {}
        self.routes: dict[RouteKey, RouteStat] = {}
        self.dirty: set[tuple[int, int]] = set()  # (step, t) changed since the last history write
        self.routes_dirty = False
        self.version = 0  # bumps whenever traffic data changes
        self._fine_floor = 0
        self._coarse_floor = 0
        self._route_floor = 0
        self._fine_frozen = 0  # below these, tiers hold frozen bytes
        self._coarse_frozen = 0
        self.phase = zlib.crc32(name.encode("utf-8", "replace")) % (COARSE * 100) / 100
        self._window: tuple[int, int, Window] | None = None  # (start, version, value)
        self._trend: tuple[int, str] | None = None  # (end, text)
        self._trend_cols: deque[tuple[str, str, str, str]] = deque()  # per slot: rps, p95, cpu, memory as JSON
        self._trend_end = 0
        self._trend_dirty = 0  # the earliest coarse slot changed since the trend was built
        self._routes_cache: tuple[int, int, list[dict[str, Any]]] | None = None
        self._routes_json: tuple[list[dict[str, Any]], str, str] | None = None  # (rows encoded, app, text)

    # --- writing ----------------------------------------------------------

    def fine_bucket(self, t: int) -> Bucket:
        bucket = _read(self.fine.get(t))
        if bucket is None:
            bucket = Bucket()
        self.fine[t] = bucket
        if self.persist_fine:
            self.dirty.add((1, t))
        return bucket

    def coarse_bucket(self, t5: int) -> Bucket:
        bucket = _read(self.coarse.get(t5))
        if bucket is None:
            bucket = Bucket()
        self.coarse[t5] = bucket
        if t5 < self._trend_dirty:
            self._trend_dirty = t5
        self.dirty.add((COARSE, t5))
        return bucket

    def add_traffic(self, delta: TrafficDelta, now: float) -> None:
        """Merge one batch's traffic (already summed per second and per coarse slot)."""
        fine_from = int(now) - FINE_SPAN
        for t, bucket in delta.seconds.items():
            if t >= fine_from:
                self.fine_bucket(t).merge(bucket)
        for t5, bucket in delta.coarse.items():
            self.coarse_bucket(t5).merge(bucket)
        self.version += 1

    def add_routes(self, delta: TrafficDelta) -> None:
        routes, last_seen = self.routes, delta.last_seen
        for (route, method, t5), cell in delta.routes.items():
            key = (route, method)
            stat = routes.get(key)
            if stat is None:
                if len(routes) >= ROUTE_LIMIT:
                    key = (OVERFLOW_ROUTE, "*")
                    stat = routes.get(key)
                if stat is None:
                    stat = routes[key] = RouteStat()
            stat.add(t5, cell, last_seen.get((route, method), 0.0))
        self.routes_dirty = True
        self.version += 1

    def add_resource(self, t: int, cpu: float | None, memory: float | None, limit: float | None) -> None:
        self.fine_bucket(t).add_resource(cpu, memory, limit)
        self.coarse_bucket(t - t % COARSE).add_resource(cpu, memory, limit)

    def evict(self, now: float, retention: float) -> None:
        """Forget fine buckets past FINE_SPAN, coarse ones past the retention, idle routes."""
        fine_cut = int(now) - FINE_SPAN
        if fine_cut > self._fine_floor:
            _drop_before(self.fine, self._fine_floor, fine_cut, 1)
            self._fine_floor = fine_cut
        coarse_cut = int(now - retention)
        coarse_cut -= coarse_cut % COARSE
        if coarse_cut > self._coarse_floor:
            _drop_before(self.coarse, self._coarse_floor, coarse_cut, COARSE)
            self._coarse_floor = coarse_cut
        self._fine_frozen = _freeze_before(self.fine, max(self._fine_frozen, fine_cut), int(now) - FINE_HOT, 1)
        cold = int(now) - COARSE_HOT
        self._coarse_frozen = _freeze_before(self.coarse, max(self._coarse_frozen, coarse_cut),
                                             cold - cold % COARSE, COARSE)
        start = window_start(now)[0] - COARSE  # one slot more: a scope's phase can put its window back one
        if start == self._route_floor:
            return
        self._route_floor = start
        idle_ms = (now - retention) * 1000
        for key in list(self.routes):
            stat = self.routes[key]
            stat.evict(start)
            if stat.last_seen < idle_ms and not stat.cells:
                del self.routes[key]
                self.routes_dirty = True

    def load_bucket(self, step: int, t: int, bucket: Bucket) -> None:
        (self.fine if step == 1 else self.coarse)[t] = bucket

    def bucket(self, step: int, t: int) -> Bucket | None:
        """The bucket of a tier at `t`, for reading (a frozen one is thawed, not kept thawed)."""
        return _read((self.fine if step == 1 else self.coarse).get(t))

    def drain_buckets(self, complete_before: int | None) -> list[tuple[int, int, BucketRow]]:
        """Changed buckets as (step, t, data); with `complete_before`, only slots ending by then.

        A slot still filling would be rewritten on every flush; it waits until it is
        complete (or the final flush), so each bucket is written about once.
        """
        out = []
        keep: set[tuple[int, int]] = set()
        for step, t in self.dirty:
            if complete_before is not None and t + step > complete_before:
                keep.add((step, t))
                continue
            bucket = self.bucket(step, t)
            if bucket is not None:
                out.append((step, t, bucket.to_row()))
        self.dirty = keep
        return out

    # --- reading ----------------------------------------------------------
    #
    # The overview reads every scope every second; what it reads is cached and
    # rebuilt when the scope's data changed, or when the window has moved on by
    # more than one slot. An active pod's figures are thus rebuilt once per
    # report, at the moment it reports, and idle scopes move on at their own
    # phase: thousands of pods never all rebuild in the same second.

    def view(self, now: float) -> tuple[int, int]:
        """This scope's overview window, [start, end) (see `window_start`), at its own phase."""
        return window_start(now - self.phase)

    def _reusable(self, start: int, version: int, current: int) -> bool:
        return version == self.version and 0 <= current - start <= COARSE

    def window(self, now: float) -> Window:
        """Traffic over the overview window."""
        start, end = self.view(now)
        cached = self._window
        if cached is not None and self._reusable(cached[0], cached[1], start):
            return cached[2]
        out = Window(end - start)
        coarse = self.coarse
        for t5 in range(start, end, COARSE):
            bucket = _read(coarse.get(t5))
            if bucket is not None:
                out.merge(bucket)
        self._window = (start, self.version, out)
        return out

    def trend_json(self, now: float) -> str:
        """One point per coarse slot over the five minutes before the window's end, as JSON text.

        Kept per slot as text and updated in place: when the window moves on, old
        slots drop off and new ones come in; only slots that got data since are redone.
        """
        _, end = self.view(now)
        first = end - TREND_POINTS * COARSE
        cached = self._trend
        if cached is not None and cached[0] == end and self._trend_dirty >= end:
            return cached[1]
        cols = self._trend_cols
        moved = (end - self._trend_end) // COARSE if cols else TREND_POINTS
        if not 0 <= moved < TREND_POINTS:
            cols.clear()
            moved, redo = TREND_POINTS, end
        else:
            redo = max(self._trend_dirty, first)
        for _ in range(moved):
            cols.append(("null", "null", "null", "null"))
        while len(cols) > TREND_POINTS:
            cols.popleft()
        coarse = self.coarse
        for t5 in range(max(first, min(redo, end - moved * COARSE)), end, COARSE):
            bucket = _read(coarse.get(t5))
            cols[(t5 - first) // COARSE] = _NO_POINT if bucket is None else bucket.trend_text(COARSE)
        self._trend_end, self._trend_dirty = end, end
        text = ('{"rps":[' + ",".join(c[0] for c in cols) + '],"p95":[' + ",".join(c[1] for c in cols)
                + '],"cpu":[' + ",".join(c[2] for c in cols) + '],"memory":[' + ",".join(c[3] for c in cols) + "]}")
        self._trend = (end, text)
        return text

    def route_rows(self, now: float) -> list[dict[str, Any]]:
        """The route table over the overview window, busiest first."""
        start, end = self.view(now)
        cached = self._routes_cache
        if cached is not None and self._reusable(cached[0], cached[1], start):
            return cached[2]
        rows = []
        for (route, method), stat in self.routes.items():
            numbers = stat.window(start, end).numbers()
            numbers.update(route=route, method=method, last_seen=stat.last_seen, total=stat.total)
            rows.append(numbers)
        rows.sort(key=lambda r: (-r["count"], r["route"], r["method"]))
        self._routes_cache = (start, self.version, rows)
        return rows

    def routes_json(self, now: float, app: str = "") -> str:
        """`route_rows` as JSON text, each row tagged with `app` when one is given."""
        rows = self.route_rows(now)
        cached = self._routes_json
        if cached is not None and cached[0] is rows and cached[1] == app:
            return cached[2]
        text = dumps([{"app": app, **row} for row in rows] if app else rows)
        self._routes_json = (rows, app, text)
        return text

    def series(self, now: float, window: int, step: int) -> dict[str, Any]:
        """Per-step rates by status class, percentiles and resources over `window` seconds."""
        end = int(now) - int(now) % step + step  # exclusive, so the current partial step shows
        ts = list(range(end - window, end, step))
        rps: dict[str, list[float | None]] = {k: [] for k in STATUS_CLASSES}
        p50: list[float | None] = []
        p95: list[float | None] = []
        p99: list[float | None] = []
        cpu: list[float | None] = []
        memory: list[float | None] = []
        limit: float | None = None
        for t in ts:
            bucket, span = self._span(t, step)
            if bucket is None:
                for values in rps.values():
                    values.append(None)
                for column in (p50, p95, p99, cpu, memory):
                    column.append(None)
                continue
            for klass, n in unpack_status(bucket.status).items():
                rps[klass].append(round(n / span, 3))
            if bucket.count:
                hist = bucket.histogram()
                p50.append(_r(hist.quantile(0.50)))
                p95.append(_r(hist.quantile(0.95)))
                p99.append(_r(hist.quantile(0.99)))
            else:
                p50.append(None)
                p95.append(None)
                p99.append(None)
            cpu.append(_r(bucket.cpu, 2))
            mem = bucket.memory
            memory.append(None if mem is None else round(mem))
            if bucket.mem_limit is not None:
                limit = bucket.mem_limit
        return {"t": ts, "rps": rps, "p50": p50, "p95": p95, "p99": p99, "cpu": cpu, "memory": memory,
                "memory_limit": limit}

    def _span(self, t: int, step: int) -> tuple[Bucket | None, int]:
        """The bucket covering [t, t + step), and the seconds its counts are spread over."""
        if step == 1:
            if t >= self.fine_since:
                return _read(self.fine.get(t)), 1
            return _read(self.coarse.get(t - t % COARSE)), COARSE
        if step == COARSE:
            return _read(self.coarse.get(t)), COARSE
        merged: Bucket | None = None
        for t5 in range(t, t + step, COARSE):
            bucket = _read(self.coarse.get(t5))
            if bucket is not None:
                if merged is None:
                    merged = Bucket()
                merged.merge(bucket)
                merged.merge_resources(bucket)
        return merged, step


def _freeze_before(slots: dict[int, Slot], floor: int, cut: int, step: int) -> int:
    """Freeze the buckets in [floor, cut); the new floor. Called every tick, so usually one slot."""
    if cut <= floor:
        return floor
    if (cut - floor) // step > len(slots):  # a long gap (a restart, a silence): scan instead
        times: Iterable[int] = [t for t, slot in slots.items() if t < cut and type(slot) is not bytes]
    else:
        times = range(floor - floor % step, cut, step)
    for t in times:
        slot = slots.get(t)
        if slot is not None and type(slot) is not bytes:
            slots[t] = freeze(slot)  # type: ignore[arg-type]
    return cut


def _drop_before(buckets: dict[int, Slot], floor: int, cut: int, step: int) -> None:
    if (cut - floor) // step > len(buckets):  # a long gap: scanning is cheaper than counting up
        for t in [t for t in buckets if t < cut]:
            del buckets[t]
    else:
        for t in range(floor - floor % step, cut, step):
            buckets.pop(t, None)
