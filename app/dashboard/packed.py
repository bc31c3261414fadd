"""Counts packed into one Python int: per status class, and per latency bucket of `app.core.histogram`.

Each slot is 64 bits wide, so adding two packed ints adds every slot at once:
merging two histograms is one addition instead of a loop. `quantiles` reads
p50/p95/p99 back exactly as `app.core.histogram.Histogram.quantile` would.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from itertools import accumulate

from app.core.histogram import bucket_range
from app.core.wire import STATUS_CLASSES

WIDTH = 64  # bits per slot: no count in a slot comes near 2**64
_MASK = (1 << WIDTH) - 1
_STATUS_SHIFT = {klass: i * WIDTH for i, klass in enumerate(STATUS_CLASSES)}


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


def to_bytes(packed: int) -> bytes:
    """The packed int's own little-endian bytes (as short as it allows)."""
    return packed.to_bytes((packed.bit_length() + 7) // 8, "little")
