"""`AppWindows`: one app's exchanges, failures and slow exchanges per minute, summed over the alert windows.

Fed at ingest from the stats batches' summary cells (exact counts, whatever share of raw
samples a busy pod sent) and kept apart from the store, so the alerts need nothing of its
layout. Each window's sums are kept running: a minute is added as it arrives and taken
off as it leaves, so reading the 5-minute or the 6-hour ratio costs the same.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any, Final

from app.core.histogram import BOUNDS_MS

# Minutes in each window the evaluator reads: the SRE workbook's page tiers (5m/1h, 30m/6h).
SPANS: Final = (5, 30, 60, 360)
LONGEST: Final = max(SPANS)
FUTURE: Final = 5  # minutes ahead of the clock a cell may claim (clock skew); later ones are ignored

Counts = list[int]  # [exchanges, failures, slow]


def slow_index(bound_ms: float) -> int:
    """The first histogram bucket whose exchanges count as slower than `bound_ms`.

    Bucket i holds (bound i-1, bound i]; it is slow when its lower edge is at or past
    `bound_ms`, so no exchange is called slow unless it surely was: the bound is honoured
    to within one bucket (19%) in the app's favour.
    """
    return bisect_left(BOUNDS_MS, bound_ms * (1 - 1e-9)) + 1


class AppWindows:
    """Per-minute counts of one app over the longest window, and each window's running sums."""

    __slots__ = ("minutes", "starts", "sums")

    def __init__(self, now_minute: int) -> None:
        self.minutes: dict[int, Counts] = {}
        self.sums: list[Counts] = [[0, 0, 0] for _ in SPANS]
        self.starts = [now_minute - span + 1 for span in SPANS]  # first minute inside each window

    def add(self, minute: int, total: int, failed: int, slow: int) -> None:
        if minute < self.starts[-1] or minute > self.starts[-1] + LONGEST - 1 + FUTURE:
            return  # older than the longest window, or absurdly far ahead
        slot = self.minutes.get(minute)
        if slot is None:
            slot = self.minutes[minute] = [0, 0, 0]
        slot[0] += total
        slot[1] += failed
        slot[2] += slow
        for start, sums in zip(self.starts, self.sums, strict=True):
            if minute >= start:
                sums[0] += total
                sums[1] += failed
                sums[2] += slow

    def advance(self, now_minute: int) -> None:
        """Let the windows end at `now_minute`: minutes that left a window are taken off its sums."""
        if now_minute - SPANS[-1] + 1 <= self.starts[-1]:
            return  # the same minute as last time (the longest window moves last of all)
        for i, span in enumerate(SPANS):
            start, new_start, sums = self.starts[i], now_minute - span + 1, self.sums[i]
            if new_start <= start:
                continue
            if new_start - start > len(self.minutes):  # a long gap: cheaper to sum what is left
                sums[:] = [0, 0, 0]
                for minute, slot in self.minutes.items():
                    if minute >= new_start:
                        sums[0] += slot[0]
                        sums[1] += slot[1]
                        sums[2] += slot[2]
            else:
                for minute in range(start, new_start):
                    leaving = self.minutes.get(minute)
                    if leaving is not None:
                        sums[0] -= leaving[0]
                        sums[1] -= leaving[1]
                        sums[2] -= leaving[2]
            self.starts[i] = new_start
        oldest = self.starts[-1]
        for minute in [m for m in self.minutes if m < oldest]:
            del self.minutes[minute]

    def window(self, span: int) -> Counts:
        """[exchanges, failures, slow] over the last `span` minutes (one of SPANS), this one included."""
        return self.sums[SPANS.index(span)]

    # --- persistence -----------------------------------------------------------

    def dump(self) -> list[list[int]]:
        return [[minute, *slot] for minute, slot in sorted(self.minutes.items())]

    @classmethod
    def load(cls, rows: Iterable[Any], now_minute: int) -> AppWindows:
        windows = cls(now_minute)
        for row in rows:
            if isinstance(row, list) and len(row) == 4 and all(type(v) is int and v >= 0 for v in row):
                windows.add(row[0], row[1], row[2], row[3])
        return windows


def cell_counts(cell: dict[str, Any], slow_from: int) -> tuple[int, int, int, int]:
    """(minute, exchanges, failures, slow) of one validated summary cell (app.core.summary's wire form)."""
    slow = 0
    for index, n in cell["hist"]:
        if index >= slow_from:
            slow += n
    return cell["t"] // 60, cell["count"], cell["failures"], slow
