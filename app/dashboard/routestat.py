"""One route's last minute in a scope's route table: `RouteStat`, its window's sums kept running.

Pure code.
"""

from __future__ import annotations

import math
from array import array
from base64 import b64decode, b64encode
from typing import Any

from app.dashboard.buckets import Traffic, Window, add_codes, freeze_traffic, read_cell, thaw

# A double times 2**1074 is an integer: a route's window total is kept as such an int, so adding and
# subtracting slots stays exact (and equal to `math.fsum` over the window's slots).
_EXACT_SHIFT = 1074
_EXACT_ONE = 1 << _EXACT_SHIFT


def _exact(value: float) -> int:
    n, d = value.as_integer_ratio()
    return n << (_EXACT_SHIFT + 1 - d.bit_length())


class RouteStat:
    """One route's last minute (in coarse slots), lifetime count and last sighting.

    The overview reads a route's window after every report of its pod, and the
    window moves on one slot at a time: its sums are kept running (a slot that
    lands in it is added, one that leaves it subtracted) and each of its slots'
    min and max kept in a row, so a read touches the slots that changed only.
    Slots past their first seconds are frozen (`freeze_before`): read once more
    as they leave, they were 60% of a pod's route memory as objects.
    """

    __slots__ = ("_end", "_frozen_to", "_highs", "_lows", "_run", "_start", "_step", "_sum", "cells", "codes",
                 "last_seen", "protocols", "total")

    def __init__(self) -> None:
        self.cells: dict[int, Traffic | bytes] = {}
        self._frozen_to = 0  # cells before this are frozen (or gone)
        self.total = 0
        self.last_seen = 0.0  # epoch ms
        self.protocols: set[str] = set()  # every protocol the route came over (cells from older sidecars say none)
        self.codes: dict[int, dict[str, int]] = {}  # gRPC calls by status code, per slot of `cells`
        self._start = self._end = 0  # the running window, [start, end) in slots of `_step`: empty until read
        self._step = 1
        self._run = Traffic()  # the window's sums (its float `total`, min and max unused)
        self._sum = 0  # the window's total ms, exactly, times 2**_EXACT_SHIFT
        self._lows = array("d")  # per slot of the window, its min (inf if empty) ...
        self._highs = array("d")  # ... and max (0 if empty)

    def add(self, t5: int, cell: Traffic, last_seen: float) -> None:
        slot = self.cells.get(t5)
        if slot is None:
            mine = self.cells[t5] = Traffic()
        elif isinstance(slot, bytes):  # late traffic for a frozen slot
            mine = self.cells[t5] = thaw(slot)
        else:
            mine = slot
        if self._start <= t5 < self._end and cell.count:
            before = mine.total
            mine.merge(cell)
            self._run.merge(cell)
            self._sum += _exact(mine.total) - _exact(before)
            i = (t5 - self._start) // self._step
            self._lows[i], self._highs[i] = mine.low, mine.high
        else:
            mine.merge(cell)
        self.total += cell.count
        if last_seen > self.last_seen:
            self.last_seen = last_seen

    def add_codes(self, t5: int, codes: dict[str, int]) -> None:
        add_codes(self.codes.setdefault(t5, {}), codes)

    def codes_over(self, start: int, end: int, step: int) -> dict[str, int]:
        """gRPC calls by status code over [start, end) (a gRPC route's few slots: summed when read)."""
        out: dict[str, int] = {}
        for t5 in range(start, end, step):
            codes = self.codes.get(t5)
            if codes:
                add_codes(out, codes)
        return out

    def window(self, start: int, end: int, step: int) -> Window:
        """Traffic over [start, end), slots `step` seconds apart: the running sums, moved on to it first."""
        if start != self._start or end != self._end or step != self._step:
            cells, lows, highs = self.cells, self._lows, self._highs
            if self._start <= start <= self._end <= end and step == self._step:  # moved on (a slot, mostly)
                for t5 in range(self._start, start, step):
                    self._leave(cells.get(t5))
                del lows[:(start - self._start) // step], highs[:(start - self._start) // step]
                entering = range(self._end, end, step)
            else:
                self._run, self._sum = Traffic(), 0
                del lows[:], highs[:]
                entering = range(start, end, step)
            for t5 in entering:
                cell = read_cell(cells.get(t5))
                if cell is not None and cell.count:
                    self._run.merge(cell)
                    self._sum += _exact(cell.total)
                    lows.append(cell.low)
                    highs.append(cell.high)
                else:
                    lows.append(math.inf)
                    highs.append(0.0)
            self._start, self._end, self._step = start, end, step
        run = self._run
        out = Window(end - start)
        out.count, out.status, out.failures, out.hist = run.count, run.status, run.failures, run.hist
        out.bytes_in, out.bytes_out = run.bytes_in, run.bytes_out
        out.low, out.high = min(self._lows, default=math.inf), max(self._highs, default=0.0)
        out.total = self._sum / _EXACT_ONE  # correctly rounded, as int / int is
        return out

    def _leave(self, slot: Traffic | bytes | None) -> None:
        """Take a slot's counts out of the running sums (its min and max go with its place in the rows)."""
        cell = read_cell(slot)
        if cell is None or not cell.count:
            return
        run = self._run
        run.count -= cell.count
        run.status -= cell.status
        run.failures -= cell.failures
        run.hist -= cell.hist
        run.bytes_in -= cell.bytes_in
        run.bytes_out -= cell.bytes_out
        self._sum -= _exact(cell.total)

    def evict(self, before: int) -> None:
        for t5 in [t for t in self.cells if t < before]:
            if self._start <= t5 < self._end:  # a slot of a window not read for a while
                self._leave(self.cells[t5])
                i = (t5 - self._start) // self._step
                self._lows[i], self._highs[i] = math.inf, 0.0
            del self.cells[t5]
        for t5 in [t for t in self.codes if t < before]:
            del self.codes[t5]

    def freeze_before(self, cut: int, step: int) -> None:
        """Freeze the cells before `cut` (slots `step` apart) not frozen yet: their traffic has come."""
        cells = self.cells
        for t5 in range(max(self._frozen_to, cut - 120 * step), cut, step):  # a long gap: the last ones only
            cell = cells.get(t5)
            if cell is not None and type(cell) is not bytes:
                cells[t5] = freeze_traffic(cell)  # type: ignore[arg-type]
        if cut > self._frozen_to:
            self._frozen_to = cut

    def to_json(self) -> dict[str, Any]:
        """For history: each cell frozen, in base64. As JSON objects with hexadecimal counts (64 bits per latency
        bucket) a pod's four routes were 60 kB of text every 30 s; so, 10 kB, and no thawing."""
        out = {"total": self.total, "last_seen": self.last_seen,
               "cells": {str(t): b64encode(c if type(c) is bytes else freeze_traffic(c)).decode()  # type: ignore[arg-type]
                         for t, c in self.cells.items()}}
        if self.protocols:
            out["protocols"] = sorted(self.protocols)
        if self.codes:
            out["codes"] = {str(t): codes for t, codes in self.codes.items()}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], since: int = 0) -> RouteStat:
        """A route as `to_json` wrote it; slots before `since` (past any window still to be read) left out."""
        stat = cls()
        stat.total, stat.last_seen = int(data["total"]), float(data["last_seen"])
        stat.protocols = {str(p) for p in data.get("protocols") or ()}
        stat.codes = {int(t): {str(k): int(n) for k, n in codes.items()}
                      for t, codes in (data.get("codes") or {}).items() if int(t) >= since}
        for t, wire in data["cells"].items():
            if int(t) < since:
                continue
            if isinstance(wire, str):
                stat.cells[int(t)] = b64decode(wire)  # frozen, as memory keeps settled cells
            else:  # written before cells were frozen: the counts as JSON
                cell = stat.cells[int(t)] = Traffic()
                cell.load_traffic(wire)
        return stat
