"""Queries over any window up to the retention: memory's recent slots joined to the archive's older ones.

`Lookback` reads the archive on its own read-only connection in its own
thread, so a seven-day query never holds up the event loop's ingest; what
memory holds is taken on the loop first, then the archive is read strictly
before each scope's boundary (`Scope.archived_to`), so no slot is counted
twice or missed. Series come out as the live ones do (docs/live-protocol.md);
routes of a past range as the routes table's rows.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.dashboard import archive
from app.dashboard.aggregate import PodStore
from app.dashboard.buckets import Bucket, Traffic, Window, thaw
from app.dashboard.delta import COARSE
from app.dashboard.series import series_columns, series_times
from app.dashboard.tiers import LIVE_STEPS, WindowError, archive_reads, route_tier, series_step


class Lookback:
    """Series and route tables of past windows, for the handlers and the live page's long windows."""

    def __init__(self, store: PodStore, path: str | None) -> None:
        self.store = store
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mothership-lookback") if path else None

    @property
    def longest(self) -> float:
        """The longest window served: the retention with an archive; without, what memory keeps of it."""
        return self.store.retention

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            assert self.path is not None
            # Its own connection: WAL lets it read while the writer thread writes.
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute("PRAGMA query_only=ON")
        return self._db

    async def _run(self, call: Any, *args: Any) -> Any:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- series -----------------------------------------------------------

    async def series(self, name: str, window: int, end: int | None = None) -> dict[str, Any] | None:
        """A Series for `all`, `app:NAME` or `pod:NAME` over `window` seconds ending at `end` (now if None).

        None if the scope is unknown both to memory and to the archive.
        """
        store = self.store
        now = store.clock()
        last = now if end is None else min(float(end) - 1, now)
        step = series_step(window, now - (last - window))
        scope = store.scope(name)
        if step < COARSE and end is None and scope is not None:
            return store.series(name, window)  # the live five minutes: one-second steps, all in memory
        step = max(step, COARSE)
        ts = series_times(last, window, step)
        memory: list[Bucket | None] = [None] * len(ts)
        boundary = math.inf
        if scope is not None:
            memory = scope.memory_buckets(ts, step)
            if store.archive:
                boundary = scope.archived_to
        elif self._executor is None:
            return None
        if self._executor is not None and ts and ts[0] < boundary:
            edge = int(min(boundary, ts[-1] + step))
            rows = await self._run(self._read_series, name, step, ts[0], edge, now, scope is not None)
            if rows is None:
                return None
            for t, row in rows:
                i = (t - ts[0]) // step
                if 0 <= i < len(ts):
                    bucket = thaw(row)
                    acc = memory[i]
                    if acc is None:
                        memory[i] = bucket
                    else:
                        acc.merge(bucket)
                        acc.merge_resources(bucket)
        data = series_columns(ts, [(bucket, step) for bucket in memory])
        out = {"scope": name, "window": window, "step": step, **data}
        if end is not None:
            out["end"] = end
        return out

    def _read_series(self, name: str, step: int, start: int, boundary: int, now: float,
                     known: bool) -> list[tuple[int, Any]] | None:
        db = self._connection()
        if not known and db.execute("SELECT 1 FROM scopes WHERE scope = ?", (name,)).fetchone() is None:
            return None
        rows = []
        for read in archive_reads(step, start, boundary, now):
            rows.extend(archive.bucket_rows(db, name, read.tier, read.start, read.end))
        return rows

    # --- routes -----------------------------------------------------------

    async def routes(self, start: int, end: int, app: str | None = None) -> dict[str, Any]:
        """Every app's routes over [start, end) from the archive (written every half minute), busiest first."""
        if self._executor is None:
            raise WindowError("no history is kept (--data :memory:): past ranges cannot be read")
        now = self.store.clock()
        step = route_tier(start, end, now)
        first, last = start - start % step, end - end % step + (step if end % step else 0)
        rows = await self._run(self._read_routes, first, last, step, app)
        out = []
        for (scope, route, method), (cell, seen) in rows.items():
            numbers = _window(cell, last - first).numbers()
            numbers.update(app=scope[4:], route=route, method=method, last_seen=seen * 1000.0)
            out.append(numbers)
        out.sort(key=lambda r: (-r["count"], r["app"], r["route"], r["method"]))
        return {"start": first, "end": last, "step": step, "routes": out}

    def _read_routes(self, start: int, end: int, step: int,
                     app: str | None) -> dict[tuple[str, str, str], tuple[Traffic, int]]:
        db = self._connection()
        if app is not None:
            scopes = [f"app:{app}"]
        else:
            scopes = [row[0] for row in db.execute(
                "SELECT scope FROM scopes WHERE scope >= 'app:' AND scope < 'app;' AND last >= ?", (start,))]
        out: dict[tuple[str, str, str], tuple[Traffic, int]] = {}
        for scope in scopes:
            for route, method, t, row in archive.route_rows(db, scope, step, start, end):
                key = (scope, route, method)
                cell = thaw(row)
                had = out.get(key)
                if had is None:
                    out[key] = (cell, t)
                else:
                    had[0].merge(cell)
                    if t > had[1]:
                        out[key] = (had[0], t)
        return out


def _window(cell: Traffic, seconds: int) -> Window:
    out = Window(seconds)
    out.merge(cell)
    return out


__all__ = ["LIVE_STEPS", "Lookback", "WindowError"]
