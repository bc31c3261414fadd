"""Time-bucketed traffic and resource series for one scope: a pod, an app, or all.

Memory stays bounded by two tiers: one bucket per second for the last
`FINE_SPAN` seconds (in a ring) and one per `COARSE` seconds for the last
`COARSE_SPAN` seconds when history is archived (older slots are handed to the
archive a minute at a time, see `take_before`), else over the retention, both
frozen into bytes once past their hot span; plus a per-route table holding
only the last minute. A batch's cells are summed once (`app.dashboard.delta`)
and merged into each scope it touches; the overview's figures are cached per
scope and rebuilt only when its data changed. Pure code: no I/O, no clock.
"""

from __future__ import annotations

import zlib
from typing import Any

import ujson

from app.core.routes import OVERFLOW_ROUTE
from app.dashboard.buckets import (
    NO_TREND_POINT,
    Bucket,
    BucketRow,
    Slot,
    Traffic,
    Window,
    freeze,
    freeze_point,
    read_point,
    read_slot,
)
from app.dashboard.delta import COARSE, MAX_SKEW, TrafficDelta
from app.dashboard.jsontext import dumps
from app.dashboard.ring import SlotRing, drop_before, freeze_before
from app.dashboard.routestat import RouteStat
from app.dashboard.series import series_columns, series_times, shift_column, trend_columns

FINE_SPAN = 300  # seconds kept at one-second resolution
WINDOW = 60  # seconds the overview's rates and percentiles cover
TREND_POINTS = 60  # coarse buckets in a trend (5 minutes)
ROUTE_LIMIT = 200  # distinct (route, method) per scope; more go to {other}
# Seconds a one-second bucket stays an object; older ones are packed into bytes. Sidecars send each
# second's cells within their 5-second interval; a later one thaws its slot again.
FINE_HOT = 10
# Coarse buckets stay objects over the window (60 s, up to 10 s behind now) and the slots still taking late
# batches; older ones are read rarely (a trend redoes only slots that changed) and thawed then. Kept as
# objects for the trend's five minutes, they were most of the objects the garbage collector walked.
COARSE_HOT = WINDOW + 4 * COARSE
# Seconds of coarse slots kept in memory when history archives the rest: the trend's five minutes, the
# window's offset and a minute of late batches. Older ones are read back from the archive when asked for.
COARSE_SPAN = TREND_POINTS * COARSE + WINDOW

RouteKey = tuple[str, str]  # (route, method)


def window_start(now: float) -> tuple[int, int]:
    """The overview window: the last WINDOW seconds of complete coarse slots, as [start, end).

    Sidecars report every few seconds, so the slot still filling would read low;
    leaving it out also keeps every figure fixed (and cached) for a whole slot.
    """
    end = int(now) - int(now) % COARSE
    return end - WINDOW, end


class Scope:
    """Fine and coarse buckets plus a route table for one pod, one app, or everything."""

    def __init__(self, name: str, *, persist_fine: bool = True, settle: float = 0.0,
                 route_details: bool = False, route_history: bool = False) -> None:
        self.name = name  # "all", "app:NAME" or "pod:NAME"
        # Route rows with their protocols and gRPC codes: the routes table's (apps'), not a pod card's,
        # which would carry them in every live update for nothing.
        self.route_details = route_details
        # Coarse slots before this are in the archive (0: none are): what comes for them is `late`.
        self.archived_to = 0
        self.late: list[tuple[int, Bucket]] = []  # (t5, traffic) for archived slots, added to the archive as is
        # Route traffic per (route, method, minute) since the last drain, for the archive (apps only).
        self.route_minutes: dict[tuple[str, str, int], Traffic] | None = {} if route_history else None
        # An app's scope changes with every report of any of its pods: its cached figures are
        # rebuilt at most every `settle` seconds (its pods report every few seconds anyway).
        self.settle = settle
        # Pods' one-second buckets are not written to history (thousands of rows a second);
        # after a restart their step-1 series spread the coarse slots over the seconds before it.
        self.persist_fine = persist_fine
        # Unwritten one-second slots are read only as series points: frozen as such, in 40 bytes less each.
        self._freeze_fine, self._read_fine = (freeze, read_slot) if persist_fine else (freeze_point, read_point)
        self.fine_since = 0  # epoch second from which `fine` is complete
        # Live keys run from FINE_SPAN back to MAX_SKEW ahead (a sender's clock): the ring spans both.
        self.fine = SlotRing(FINE_SPAN + MAX_SKEW + COARSE)
        self.coarse: dict[int, Slot] = {}
        self._routes: dict[RouteKey, RouteStat] = {}
        # After a restart, history's route table as JSON text (and the first slot worth reading), decoded when
        # first used: thousands of pods' tables decoded before serving held a restart up for many seconds.
        self._routes_text: tuple[str, int] | None = None
        self.dirty: set[tuple[int, int]] = set()  # (step, t) whose traffic changed since the last history write
        self.later: set[tuple[int, int]] = set()  # (step, t) whose resource readings only changed since then
        self.routes_dirty = False
        self.version = 0  # bumps whenever traffic data changes
        self._fine_floor = 0
        self._coarse_floor = 0
        self._route_floor = 0
        self._fine_frozen = 0  # below these, tiers hold frozen bytes
        self._coarse_frozen = 0
        self.phase = zlib.crc32(name.encode("utf-8", "replace")) % (COARSE * 100) / 100
        self.evict_turn = int(self.phase)  # the second (modulo COARSE) at which the store calls `evict`
        self._window: tuple[int, int, float, Window] | None = None  # (start, version, built, value)
        self._trend: tuple[int, float, str] | None = None  # (end, built, text)
        self._trend_end = 0
        self._trend_dirty = 0  # the earliest coarse slot changed since the trend was built
        self._routes_cache: tuple[int, int, float, list[dict[str, Any]]] | None = None
        # (rows encoded, app, limit, text)
        self._routes_json: tuple[list[dict[str, Any]], str, int | None, str] | None = None

    @property
    def routes(self) -> dict[RouteKey, RouteStat]:
        """The route table: (route, method) -> its last minute, count and last sighting."""
        if self._routes_text is not None:
            text, since = self._routes_text
            self._routes_text = None
            for key, stat in ujson.loads(text).items():
                method, _, route = key.partition(" ")
                self._routes[(route, method)] = RouteStat.from_json(stat, since)
        return self._routes

    def load_routes(self, text: str, since: int) -> None:
        """History's route table (JSON text), decoded when first read; cells before `since` are left out then."""
        self._routes_text = (text, since)

    def routes_json_data(self) -> dict[str, Any]:
        """The route table as history keeps it (the restored text, if still undecoded, goes back as read)."""
        return {f"{m} {r}": s.to_json() for (r, m), s in self.routes.items()}

    # --- writing ----------------------------------------------------------

    def fine_bucket(self, t: int, marks: set[tuple[int, int]]) -> Bucket:
        """The one-second bucket at `t`, made hot; marked in `marks` (`dirty` or `later`) for history."""
        bucket = self._read_fine(self.fine.get(t))
        if bucket is None:
            bucket = Bucket()
        self.fine[t] = bucket
        if self.persist_fine:
            marks.add((1, t))
        return bucket

    def coarse_bucket(self, t5: int, marks: set[tuple[int, int]]) -> Bucket:
        bucket = read_slot(self.coarse.get(t5))
        if bucket is None:
            bucket = Bucket()
        self.coarse[t5] = bucket
        if t5 < self._trend_dirty:
            self._trend_dirty = t5
        marks.add((COARSE, t5))
        return bucket

    def add_traffic(self, delta: TrafficDelta, now: float) -> None:
        """Merge one batch's traffic (already summed per second and per coarse slot)."""
        fine_from = int(now) - FINE_SPAN
        for t, bucket in delta.seconds.items():
            if t >= fine_from:
                self.fine_bucket(t, self.dirty).merge(bucket)
        archived = self.archived_to
        for t5, bucket in delta.coarse.items():
            if t5 < archived:
                self.late.append((t5, bucket))  # its slot left memory: added to the archive's rows
            else:
                self.coarse_bucket(t5, self.dirty).merge(bucket)
        self.version += 1

    def add_routes(self, delta: TrafficDelta) -> None:
        routes, last_seen, minutes = self.routes, delta.last_seen, self.route_minutes
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
            if minutes is not None:
                minute_key = (key[0], key[1], t5 - t5 % 60)
                minute = minutes.get(minute_key)
                if minute is None:
                    minute = minutes[minute_key] = Traffic()
                minute.merge(cell)
        # Protocols and gRPC codes, from the cells that carry them (routes past the limit went to {other}).
        for key, protocols in delta.protocols.items():
            stat = routes.get(key) or routes[OVERFLOW_ROUTE, "*"]
            stat.protocols |= protocols
        for (route, method, t5), codes in delta.codes.items():
            stat = routes.get((route, method)) or routes[OVERFLOW_ROUTE, "*"]
            stat.add_codes(t5, codes)
        self.routes_dirty = True
        self.version += 1

    def add_resource(self, t: int, cpu: float | None, memory: float | None, limit: float | None) -> None:
        self.fine_bucket(t, self.later).add_resource(cpu, memory, limit)
        self.coarse_bucket(t - t % COARSE, self.later).add_resource(cpu, memory, limit)

    def evict(self, now: float, retention: float) -> None:
        """Forget fine buckets past FINE_SPAN, coarse ones past the retention, idle routes."""
        fine_cut = int(now) - FINE_SPAN
        if fine_cut > self._fine_floor:
            drop_before(self.fine, self._fine_floor, fine_cut, 1)
            self._fine_floor = fine_cut
        coarse_cut = int(now - retention)
        coarse_cut -= coarse_cut % COARSE
        if coarse_cut > self._coarse_floor:
            drop_before(self.coarse, self._coarse_floor, coarse_cut, COARSE)
            self._coarse_floor = coarse_cut
        self._fine_frozen = freeze_before(self.fine, max(self._fine_frozen, fine_cut), int(now) - FINE_HOT, 1,
                                          self._freeze_fine)
        cold = int(now) - COARSE_HOT
        self._coarse_frozen = freeze_before(self.coarse, max(self._coarse_frozen, coarse_cut),
                                             cold - cold % COARSE, COARSE)
        start = window_start(now)[0] - COARSE  # one slot more: a scope's phase can put its window back one
        if start == self._route_floor or self._routes_text is not None:  # undecoded: evicted once decoded
            return
        self._route_floor = start
        idle_ms = (now - retention) * 1000
        settled = start + WINDOW - COARSE  # two slots before the window's end: what comes for them has come
        for key in list(self.routes):
            stat = self.routes[key]
            stat.evict(start)
            stat.freeze_before(settled, COARSE)
            if stat.last_seen < idle_ms and not stat.cells:
                del self.routes[key]
                self.routes_dirty = True

    def take_before(self, cut: int) -> list[tuple[int, Slot]]:
        """Coarse slots before `cut`, taken out of memory for the archive; later traffic for them is `late`."""
        if cut <= self.archived_to:
            return []
        coarse = self.coarse
        taken = sorted((t5, coarse.pop(t5)) for t5 in [t for t in coarse if t < cut])
        self.archived_to = cut
        self._coarse_floor = max(self._coarse_floor, cut)
        self._coarse_frozen = max(self._coarse_frozen, cut)
        return taken

    def take_route_minutes(self) -> list[tuple[str, str, int, Traffic]]:
        """Route traffic per minute since the last call, as (route, method, minute, traffic)."""
        minutes = self.route_minutes
        if not minutes:
            return []
        self.route_minutes = {}
        return [(route, method, t60, cell) for (route, method, t60), cell in minutes.items()]

    def load_bucket(self, step: int, t: int, bucket: Slot) -> None:
        (self.fine if step == 1 else self.coarse)[t] = bucket

    def bucket(self, step: int, t: int) -> Bucket | None:
        """The bucket of a tier at `t`, for reading (a frozen one is thawed, not kept thawed)."""
        return self._read_fine(self.fine.get(t)) if step == 1 else read_slot(self.coarse.get(t))

    def drain_buckets(self, settled: int | None = None) -> list[tuple[int, int, BucketRow]]:
        """Changed buckets as (step, t, columns), and their change marks cleared.

        Buckets whose traffic changed go at once (a batch id is written with its
        counts). Buckets that only took resource readings wait until they end
        before `settled` (every bucket with None): a pod's current slot takes one
        every second and would otherwise be rewritten at every write, while
        traffic comes every few seconds and rewrites it anyway.
        """
        due = self.dirty
        later = self.later
        if later:
            later -= due
            if settled is None:
                due |= later
                later.clear()
            else:
                ready = {key for key in later if key[1] + key[0] <= settled}
                if ready:
                    due |= ready
                    later -= ready
        out = []
        for step, t in due:
            bucket = self.bucket(step, t)
            if bucket is not None:
                out.append((step, t, bucket.to_row()))
        self.dirty = set()
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

    def _reusable(self, start: int, version: int, built: float, current: int, now: float) -> bool:
        return 0 <= current - start <= COARSE and (version == self.version or now - built < self.settle)

    def window(self, now: float) -> Window:
        """Traffic over the overview window."""
        start, end = self.view(now)
        cached = self._window
        if cached is not None and self._reusable(cached[0], cached[1], cached[2], start, now):
            return cached[3]
        out = Window(end - start)
        coarse = self.coarse
        for t5 in range(start, end, COARSE):
            bucket = read_slot(coarse.get(t5))
            if bucket is not None:
                out.merge(bucket)
        self._window = (start, self.version, now, out)
        return out

    def trend_json(self, now: float) -> str:
        """One point per coarse slot over the five minutes before the window's end, as JSON text.

        Updated in place: when the window moves on, old slots drop off the kept
        text and new ones come in; only slots that got data since are redone.
        """
        _, end = self.view(now)
        first = end - TREND_POINTS * COARSE
        cached = self._trend
        if cached is not None and cached[0] == end and (self._trend_dirty >= end or now - cached[1] < self.settle):
            return cached[2]
        moved = (end - self._trend_end) // COARSE if cached is not None else TREND_POINTS
        if not 0 <= moved < TREND_POINTS:
            moved, redo = TREND_POINTS, end
        else:
            redo = max(self._trend_dirty, first)
        redo = max(first, min(redo, end - moved * COARSE))
        coarse = self.coarse
        points = [NO_TREND_POINT if bucket is None else bucket.trend_text(COARSE)
                  for bucket in (read_slot(coarse.get(t5)) for t5 in range(redo, end, COARSE))]
        keep = (redo - first) // COARSE
        rps, p95, cpu, memory = (shift_column(column, moved, keep, [point[k] for point in points])
                                 for k, column in enumerate(trend_columns(cached[2]) if keep and cached else
                                                            ("", "", "", "")))
        self._trend_end, self._trend_dirty = end, end
        text = f'{{"rps":[{rps}],"p95":[{p95}],"cpu":[{cpu}],"memory":[{memory}]}}'
        self._trend = (end, now, text)
        return text

    def route_rows(self, now: float) -> list[dict[str, Any]]:
        """The route table over the overview window, busiest first."""
        start, end = self.view(now)
        cached = self._routes_cache
        if cached is not None and self._reusable(cached[0], cached[1], cached[2], start, now):
            return cached[3]
        rows = []
        details = self.route_details
        for (route, method), stat in self.routes.items():
            numbers = stat.window(start, end, COARSE).numbers()
            numbers.update(route=route, method=method, last_seen=stat.last_seen, total=stat.total)
            if details:
                numbers["protocol"] = ", ".join(sorted(stat.protocols))
                if stat.codes or "grpc" in stat.protocols:
                    numbers["grpc"] = stat.codes_over(start, end, COARSE)
            rows.append(numbers)
        rows.sort(key=lambda r: (-r["count"], r["route"], r["method"]))
        self._routes_cache = (start, self.version, now, rows)
        return rows

    def routes_json(self, now: float, app: str = "", limit: int | None = None) -> str:
        """`route_rows` as JSON text, the `limit` busiest only if given, each row tagged with `app` if given."""
        rows = self.route_rows(now)
        cached = self._routes_json
        if cached is not None and cached[0] is rows and cached[1] == app and cached[2] == limit:
            return cached[3]
        kept = rows if limit is None else rows[:limit]
        text = dumps([{"app": app, **row} for row in kept] if app else kept)
        self._routes_json = (rows, app, limit, text)
        return text

    def series(self, now: float, window: int, step: int) -> dict[str, Any]:
        """Per-step rates by status class, percentiles and resources over `window` seconds (memory only)."""
        ts = series_times(now, window, step)
        return series_columns(ts, [self._span(t, step) for t in ts])

    def memory_buckets(self, ts: list[int], step: int) -> list[Bucket | None]:
        """Per step from `ts`, what memory holds of it (coarse slots merged; copies, safe to change)."""
        out: list[Bucket | None] = []
        for t in ts:
            bucket, _ = self._span(t, step)
            if bucket is not None and step <= COARSE:
                copy = Bucket()
                copy.merge(bucket)
                copy.merge_resources(bucket)
                bucket = copy
            out.append(bucket)
        return out

    def _span(self, t: int, step: int) -> tuple[Bucket | None, int]:
        """The bucket covering [t, t + step), and the seconds its counts are spread over."""
        if step == 1:
            if t >= self.fine_since:
                return self._read_fine(self.fine.get(t)), 1
            return read_slot(self.coarse.get(t - t % COARSE)), COARSE
        if step == COARSE:
            return read_slot(self.coarse.get(t)), COARSE
        merged: Bucket | None = None
        for t5 in range(t, t + step, COARSE):
            bucket = read_slot(self.coarse.get(t5))
            if bucket is not None:
                if merged is None:
                    merged = Bucket()
                merged.merge(bucket)
                merged.merge_resources(bucket)
        return merged, step
