"""Days of history at thousands of pods: the restart, the memory after it, long queries and the file's size.

In-process, under a fake clock, with `bench.store_bench`'s simulation (its pods
and payloads): N pods report for a couple of minutes onto a SQLite file, then
`--days` of history before that is written into the archive's tiers as the
dashboard would have left it (each scope's own buckets and routes, repeated);
then a new store restarts on the file (timed: `History.load` and
`PodStore.restore`), the pods report on for `--live-seconds` (past the span
memory keeps), and the process's resident memory is read. Then a 7-day series
for all apps, a day for one app, and the routes table of the last day are
queried through `Lookback` (timed, each on a cold connection), and the file's
size per pod per day is worked out from its rows per tier.

    python -m bench.history_bench                      # 2000 pods, a day of history, 7-day retention
    python -m bench.history_bench --pods 200 --live-seconds 60 --days 0.2   # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.dashboard import archive
from app.dashboard.buckets import Bucket, Traffic, freeze, read_cell, read_slot
from app.dashboard.lookback import Lookback
from app.dashboard.scope import COARSE_SPAN, FINE_SPAN
from app.dashboard.tiers import DAY, ROUTE_TIERS, TIERS
from bench import procstat
from bench.store_bench import START, Simulation, deep_size

WARM = 120  # seconds the pods report before the history is written beneath them


def templates(sim: Simulation) -> tuple[dict[str, tuple[Any, ...]], dict[str, list[tuple[str, str, Traffic]]]]:
    """Per scope, one coarse slot's columns; per app scope, its routes' last minute."""
    buckets: dict[str, tuple[Any, ...]] = {}
    routes: dict[str, list[tuple[str, str, Traffic]]] = {}
    for scope in sim.store._scopes():
        slots = [b for b in (read_slot(slot) for slot in scope.coarse.values()) if b is not None and b.count]
        if slots:
            buckets[scope.name] = slots[len(slots) // 2].to_row()
        if scope.route_minutes is not None:  # an app's: each route's last minute, from its 5-second cells
            routes[scope.name] = []
            for (route, method), stat in scope.routes.items():
                minute = Traffic()
                for cell in stat.cells.values():
                    minute.merge(read_cell(cell))  # type: ignore[arg-type]
                routes[scope.name].append((route, method, minute))
    return buckets, routes


def write_days(path: str, before: int, days: float, buckets: dict[str, tuple[Any, ...]],
               routes: dict[str, list[tuple[str, str, Traffic]]]) -> int:
    """`days` of each scope's tiers ending at `before`, as archiving would have written them. Rows written."""
    db = sqlite3.connect(path, isolation_level=None)
    first = before - int(days * DAY)
    written = 0
    db.execute("BEGIN")
    for step, kept in TIERS:
        start = max(first, before - int(min(kept, days * DAY)))
        start -= start % step
        scale = step // 5  # a coarse row is its 5-second parts added
        for scope, row in buckets.items():
            bucket = Bucket.from_row(row)
            big = Bucket()
            for _ in range(scale):
                big.merge(bucket)
                big.merge_resources(bucket)
            frozen = freeze(big)
            rows = [(scope, step, t, frozen) for t in range(start, before, step)]
            archive.write_buckets(db, rows)
            written += len(rows)
    for step, kept in ROUTE_TIERS:
        start = max(first, before - int(min(kept, days * DAY)))
        start -= start % step
        for scope, cells in routes.items():
            rows = []
            for route, method, cell in cells:
                big = Bucket()
                for _ in range(step // 60):
                    big.merge(cell)
                frozen = freeze(big)
                rows.extend((scope, step, t, route, method, frozen) for t in range(start, before, step))
            archive.write_routes(db, rows)
            written += len(rows)
    archive.mark_scopes(db, [], {scope: before - 5 for scope in buckets})
    db.execute("COMMIT")
    db.close()
    return written


def tier_rows(path: str) -> dict[str, tuple[int, int]]:
    """Rows and bytes on disk (pages, from SQLite's dbstat) per table and tier, the WAL checkpointed first."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = dict(db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    out = {}
    for table, key in (("archive", "archive"), ("route_archive", "routes")):
        counts = dict(db.execute(f"SELECT step, count(*) FROM {table} GROUP BY step").fetchall())
        total = sum(counts.values())
        for step, n in counts.items():  # a table's pages shared out by rows (a tier's rows are alike in size)
            out[f"{key}/{step}"] = (n, int(size.get(table, 0) * n / max(1, total)))
    db.close()
    return out


async def timed_queries(sim: Simulation, path: str) -> dict[str, float]:
    out = {}
    now = int(sim.clock())
    for name, call in (
            ("series all 7d", lambda lb: lb.series("all", 7 * DAY)),
            ("series all 24h", lambda lb: lb.series("all", DAY)),
            ("series app 24h", lambda lb: lb.series("app:app0000", DAY)),
            ("series pod 6h", lambda lb: lb.series("pod:app0000-0-bench", 6 * 3600)),
            ("routes all 24h", lambda lb: lb.routes(now - DAY, now)),
            ("routes all 1h last night", lambda lb: lb.routes(now - 12 * 3600, now - 11 * 3600))):
        lookback = Lookback(sim.store, path)  # a cold connection each time
        began = time.perf_counter()
        result = await call(lookback)
        out[name] = time.perf_counter() - began
        assert result is not None, name
        lookback.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--days", type=float, default=1.0, help="days of history written beneath the pods")
    parser.add_argument("--retention", type=float, default=7 * DAY)
    parser.add_argument("--live-seconds", type=int, default=FINE_SPAN + COARSE_SPAN + 120,
                        help="simulated seconds of reports after the restart (past what memory keeps)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"pods": args.pods, "days": args.days, "retention": args.retention}
    with tempfile.TemporaryDirectory(prefix="history-bench-") as tmp:
        path = str(Path(tmp) / "history.sqlite3")
        warm = Simulation(args.pods, args.retention, path, start=START - WARM)
        for _ in range(WARM):
            warm.step()
        buckets, routes = templates(warm)
        warm.store.clock.now = START  # the last write as the process stops
        warm.history.write(warm.store.drain(final=True))
        warm.close()
        began = time.perf_counter()
        out["rows_written"] = write_days(path, int(START) - WARM - COARSE_SPAN - 60, args.days, buckets, routes)
        out["write_seconds"] = time.perf_counter() - began
        print(f"{args.days} days of history for {args.pods} pods: {out['rows_written']} rows "
              f"in {out['write_seconds']:.1f} s", flush=True)

        sim = Simulation(args.pods, args.retention, path, start=START + 1, restore=True)
        out["restore_seconds"] = sim.restore_seconds
        print(f"restart: history read back in {sim.restore_seconds:.2f} s "
              f"({len(sim.store.pods)} pods)", flush=True)
        for second in range(args.live_seconds):
            sim.step()
            if second % 120 == 119:
                print(f"  {second + 1} s: RSS {procstat.rss_bytes([os.getpid()]) / 2**20:.0f} MiB", flush=True)
        out["rss_bytes"] = procstat.rss_bytes([os.getpid()])
        out["store_bytes_per_pod"] = deep_size(sim.store) / args.pods
        print(f"after {args.live_seconds} s more: process RSS {out['rss_bytes'] / 2**20:.0f} MiB, "
              f"store {out['store_bytes_per_pod'] / 1e3:.0f} kB per pod", flush=True)
        sim.history.write(sim.store.drain(final=True))
        out["queries"] = asyncio.run(timed_queries(sim, path))
        for name, seconds in out["queries"].items():
            print(f"  {name:<26} {seconds * 1000:7.0f} ms")
        sim.close()
        out["tier_rows"] = rows = tier_rows(path)
        out["file_bytes"] = os.path.getsize(path)
        scopes = len(buckets)
        per_scope_day = {}  # bytes per scope for a day of each tier, from its rows' average size
        for tier, (n, size) in rows.items():
            step = int(tier.split("/")[1])
            per_scope_day[tier] = size / max(1, n) * n / max(1, scopes) / max(1e-9, min(args.days, 2 if step < 600
                                                                                           else args.days))
        first = sum(v for k, v in per_scope_day.items() if k != "archive/5")
        beyond = per_scope_day.get("archive/600", 0) + per_scope_day.get("routes/3600", 0)
        hour = rows.get("archive/5", (0, 0))[1] / args.pods  # the last hour at 5 s, a fixed amount
        # Per pod: each pod's scope plus its share of its app's (one per ten pods) and of all.
        share = scopes / args.pods
        out["bytes_per_pod_first_two_days"] = first * share
        out["bytes_per_pod_day_beyond"] = beyond * share
        out["bytes_per_pod_last_hour"] = hour
        print(f"file: {out['file_bytes'] / 2**20:.0f} MiB; rows and bytes per tier {rows}")
        print(f"per pod: {hour / 1e3:.0f} kB for the last hour (5 s), then {first * share / 1e3:.0f} kB a day "
              f"for the first two days, {beyond * share / 1e3:.1f} kB a day beyond")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
