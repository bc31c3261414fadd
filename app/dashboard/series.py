"""What charts read: a series' times and columns from buckets, and a trend's columns kept as text.

Pure code.
"""

from __future__ import annotations

from typing import Any

from app.core.wire import STATUS_CLASSES
from app.dashboard.buckets import Bucket
from app.dashboard.packed import quantiles, unpack_status

TREND_POINTS = 60  # coarse buckets in a trend (5 minutes)


def series_times(now: float, window: int, step: int) -> list[int]:
    """The start of each step of a series over `window` seconds ending with the step now is in."""
    end = int(now) - int(now) % step + step  # exclusive, so the current partial step shows
    return list(range(end - window - (end - window) % step, end, step))


def series_columns(ts: list[int], parts: list[tuple[Bucket | None, int]]) -> dict[str, Any]:
    """A Series' columns (docs/live-protocol.md) from each step's bucket and the seconds its counts span."""
    rps: dict[str, list[float | None]] = {k: [] for k in STATUS_CLASSES}
    p50: list[float | None] = []
    p95: list[float | None] = []
    p99: list[float | None] = []
    cpu: list[float | None] = []
    memory: list[float | None] = []
    limit: float | None = None
    for bucket, span in parts:
        if bucket is None:
            for values in rps.values():
                values.append(None)
            for column in (p50, p95, p99, cpu, memory):
                column.append(None)
            continue
        for klass, n in unpack_status(bucket.status).items():
            rps[klass].append(round(n / span, 3))
        q50, q95, q99 = quantiles(bucket.hist, bucket.count, bucket.low, bucket.high)
        p50.append(q50)
        p95.append(q95)
        p99.append(q99)
        cpu_value = bucket.cpu
        cpu.append(None if cpu_value is None else round(cpu_value, 2))
        mem = bucket.memory
        memory.append(None if mem is None else round(mem))
        if bucket.mem_limit is not None:
            limit = bucket.mem_limit
    return {"t": ts, "rps": rps, "p50": p50, "p95": p95, "p99": p99, "cpu": cpu, "memory": memory,
            "memory_limit": limit}


def trend_columns(text: str) -> list[str]:
    """The four columns of a trend's JSON text (`Scope.trend_json`), each its numbers joined by commas."""
    return [part.partition("[")[2] for part in text[1:-2].split('],"')]


def shift_column(column: str, moved: int, keep: int, new: list[str]) -> str:
    """A column of TREND_POINTS numbers moved on by `moved` slots: `keep` of the rest kept, then `new` after them.

    String operations in C: kept as objects (a str per slot and series) a pod's trend was 18 kB of memory.
    """
    kept = ""
    if keep:
        kept = column.split(",", moved)[-1]
        drop = TREND_POINTS - moved - keep
        if drop:
            kept = kept.rsplit(",", drop)[0]
    if not new:
        return kept
    return f"{kept},{','.join(new)}" if kept else ",".join(new)
