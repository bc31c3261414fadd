"""Mergeable latency histograms with fixed log-spaced buckets.

Every sidecar and the dashboard share the same bucket bounds, so histograms
from many pods and many seconds add up exactly and percentiles over any mix
of them are right (averaging per-pod percentiles is not). Buckets grow by
2**(1/4) (about 19%), from 0.05 ms to past 120 s; a percentile read from
them is within about 10% of the true value.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from typing import Final

LOWEST_MS: Final = 0.05
GROWTH: Final = 2 ** 0.25
BOUNDS_MS: tuple[float, ...] = tuple(
    LOWEST_MS * GROWTH**i for i in range(math.ceil(math.log(120_000 / LOWEST_MS, GROWTH)) + 1)
)
OVERFLOW: Final = len(BOUNDS_MS)  # index of the bucket above the last bound
_LOG_GROWTH: Final = math.log(GROWTH)


def bucket_by_log(ms: float) -> int:
    """Index of the bucket (upper-bound inclusive) that holds `ms`: the formula that defines the buckets."""
    if ms <= LOWEST_MS:
        return 0
    index = math.ceil(math.log(ms / LOWEST_MS) / _LOG_GROWTH - 1e-9)
    return min(index, OVERFLOW)


def _first_above(index: int) -> float:
    """The smallest float that `bucket_by_log` puts above bucket `index` (searched bit by bit)."""
    def bits(x: float) -> int:
        return int(struct.unpack("<q", struct.pack("<d", x))[0])

    def value(b: int) -> float:
        return float(struct.unpack("<d", struct.pack("<q", b))[0])

    low, high = bits(BOUNDS_MS[index] * 0.999), bits(BOUNDS_MS[index] * 1.001)  # below it, and above it
    while high - low > 1:  # positive floats order as their bit patterns do
        middle = (low + high) // 2
        if bucket_by_log(value(middle)) > index:
            high = middle
        else:
            low = middle
    return value(high)


# Where each bucket ends, exactly as the formula draws it (the 1e-9 slack
# included): `bucket_of` bisects these instead of taking a logarithm.
# (Final: compiled, these are statics, not lookups in the module's namespace on every call.)
_FIRSTS_ABOVE: Final[tuple[float, ...]] = tuple([_first_above(i) for i in range(OVERFLOW)])
_LAST: Final = _FIRSTS_ABOVE[-1]


def bucket_of(ms: float) -> int:
    """Index of the bucket (upper-bound inclusive) that holds `ms`; the same as `bucket_by_log`, faster:
    the logarithm's guess, moved to where `_FIRSTS_ABOVE` says (`bisect_right` of it, in a step or two)."""
    if ms <= LOWEST_MS:
        return 0
    if ms < _LAST:
        index = min(int(math.log(ms / LOWEST_MS) / _LOG_GROWTH), OVERFLOW - 1)
        firsts = _FIRSTS_ABOVE
        while index > 0 and firsts[index - 1] > ms:
            index -= 1
        while firsts[index] <= ms:
            index += 1
        return index
    return bucket_by_log(ms)  # the overflow bucket, and what the formula refuses (inf, nan)


def bucket_range(index: int) -> tuple[float, float]:
    low = 0.0 if index == 0 else BOUNDS_MS[index - 1]
    high = BOUNDS_MS[index] if index < OVERFLOW else BOUNDS_MS[-1] * GROWTH
    return low, high


class Histogram:
    """Counts per bucket index, plus count, sum, min and max."""

    __slots__ = ("count", "counts", "high", "low", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.low = math.inf
        self.high = 0.0

    def add(self, ms: float, n: int = 1) -> None:
        index = bucket_of(ms)
        self.counts[index] = self.counts.get(index, 0) + n
        self.count += n
        self.total += ms * n
        if ms < self.low:
            self.low = ms
        if ms > self.high:
            self.high = ms

    def merge(self, other: Histogram) -> None:
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)

    def merge_wire(self, pairs: Iterable[Iterable[int]], total: float, low: float, high: float) -> None:
        """Add a histogram sent as `[[index, count], ...]` (see `to_wire`)."""
        for index, n in pairs:
            self.counts[index] = self.counts.get(index, 0) + n
            self.count += n
        self.total += total
        self.low = min(self.low, low)
        self.high = max(self.high, high)

    def to_wire(self) -> list[list[int]]:
        return [[i, n] for i, n in sorted(self.counts.items())]

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1), interpolated geometrically inside its bucket."""
        if not self.count:
            return None
        rank = q * self.count
        seen = 0
        for index in sorted(self.counts):
            n = self.counts[index]
            if seen + n >= rank:
                low, high = bucket_range(index)
                low, high = max(low, self.low), min(high, self.high)
                if high <= low or low <= 0:
                    return min(max(high, self.low), self.high)
                fraction = (rank - seen) / n
                return float(low * (high / low) ** fraction)
            seen += n
        return self.high


def merged(histograms: Iterable[Histogram]) -> Histogram:
    out = Histogram()
    for h in histograms:
        out.merge(h)
    return out


def from_counts(counts: Mapping[int, int]) -> Histogram:
    h = Histogram()
    for index, n in counts.items():
        low, high = bucket_range(index)
        h.counts[index] = n
        h.count += n
        h.total += n * (low + high) / 2
        h.low, h.high = min(h.low, low), max(h.high, high)
    return h
