"""Days of history at thousands of pods: the restart, the memory after it, long queries and the file's size.

Under a fake clock, with `bench.store_bench`'s simulation (its pods and
payloads): N pods report for a couple of minutes onto a SQLite file, then
`--days` of history before that is written into the archive's tiers as the
dashboard would have left it (each scope's own buckets and routes, repeated).
Then, each in a fresh process:
- the real dashboard (`make_app` and `listen`, its clock the bench's) starts on
  the file: the time from its start until `GET /api/overview` answers is the
  restart; its resident memory is read, then a 7-day series and the routes of
  7 days for all apps, a day for one app and 6 hours of a pod are asked over
  HTTP (the first of each on a cold connection, then three more); it stops
  with SIGTERM, writing history as it does;
- the pods report on for `--live-seconds` into a store restored from the file
  (in-process, `bench.store_bench`'s simulation), and that process's resident
  memory and the store's bytes per pod are read.
Last, the file's size per pod per day is worked out from its rows per tier.

    python -m bench.history_bench                      # 2000 pods, a day of history, 7-day retention
    python -m bench.history_bench --pods 200 --live-seconds 60 --days 0.2   # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from app.dashboard import archive
from app.dashboard.buckets import Bucket, Traffic, freeze, read_cell, read_slot
from app.dashboard.scope import COARSE_SPAN, FINE_SPAN
from app.dashboard.tiers import DAY, ROUTE_TIERS, TIERS
from bench import procstat
from bench.dashboard_bench import free_port
from bench.store_bench import START, Simulation, deep_size

SERVE_LIMIT = 120.0  # seconds the restarted dashboard may take to answer before the bench gives up

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


def queries(now: int) -> dict[str, str]:
    """What the page asks for a long window, by name: URL paths on the dashboard."""
    return {
        "series all 7d": f"/api/series?scope=all&window={7 * DAY}",
        "routes all apps 7d": f"/api/routes?start={now - 7 * DAY}&end={now}",
        "series all 24h": f"/api/series?scope=all&window={DAY}",
        "series app 24h": f"/api/series?scope=app:app0000&window={DAY}",
        "series pod 6h": f"/api/series?scope=pod:app0000-0-bench&window={6 * 3600}",
        "routes all apps 24h": f"/api/routes?start={now - DAY}&end={now}",
        "routes all apps 1h last night": f"/api/routes?start={now - 12 * 3600}&end={now - 11 * 3600}",
    }


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 itself, whatever *_proxy say


def get(port: int, path: str, timeout: float = 30.0) -> tuple[float, bytes]:
    """Seconds a GET took to answer whole (a new connection each time), and its body."""
    began = time.perf_counter()
    with _DIRECT.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        body = response.read()
    return time.perf_counter() - began, body


def serve(path: str, port: int, clock_start: float, retention: float) -> None:
    """The dashboard as `python -m app --mode dashboard` runs it, its clock starting at `clock_start`."""
    from app.dashboard.server import GC_YOUNG_THRESHOLD, listen, make_app
    from app.options import DashboardConfig

    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    began = time.monotonic()
    config = DashboardConfig(port=port, host="127.0.0.1", data=path, retention=retention)

    async def main() -> None:
        app = make_app(config, lambda: clock_start + time.monotonic() - began, freeze=True)
        server = listen(app, port, "127.0.0.1")
        stopping = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
        print(f"restored {len(app.dashboard.store.pods)} pods", flush=True)
        await stopping.wait()
        server.stop()
        await server.close_all_connections()
        await app.dashboard.stop()
        print(f"clock {clock_start + time.monotonic() - began}", flush=True)

    asyncio.run(main())


def restart(path: str, clock_start: float, retention: float) -> dict[str, Any]:
    """Start the dashboard on `path` in its own process: seconds until it answers, its RSS, queries over HTTP."""
    port = free_port()
    began = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "bench.history_bench", "--serve", path, "--port", str(port),
                              "--clock", repr(clock_start), "--retention", repr(retention)],
                             stdout=subprocess.PIPE, text=True)
    out: dict[str, Any] = {}
    try:
        while True:
            try:
                _, body = get(port, "/api/overview", timeout=5.0)
                break
            except OSError:
                if child.poll() is not None or time.perf_counter() - began > SERVE_LIMIT:
                    raise RuntimeError("the restarted dashboard never answered") from None
                time.sleep(0.05)
        out["serving_seconds"] = time.perf_counter() - began
        out["overview_pods"] = len(json.loads(body)["pods"])
        out["rss_bytes"] = procstat.rss_bytes([child.pid])
        now = int(clock_start + time.perf_counter() - began)
        out["queries"] = {}
        for name, url in queries(now).items():
            first, _ = get(port, url)
            again = [get(port, url)[0] for _ in range(3)]
            out["queries"][name] = {"first": first, "median_of_3_more": statistics.median(again)}
        out["rss_after_queries_bytes"] = procstat.rss_bytes([child.pid])
    finally:
        child.send_signal(signal.SIGTERM)
        stdout, _ = child.communicate(timeout=300)
    lines = stdout.splitlines()
    out["restored_pods"] = int(lines[0].split()[1])
    out["clock_end"] = float(lines[-1].split()[1])
    return out


def live(path: str, pods: int, clock_start: float, retention: float, seconds: int) -> dict[str, Any]:
    """A store restored from `path` (timed), its pods reporting on for `seconds`: memory after."""
    from app.dashboard.server import GC_YOUNG_THRESHOLD

    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])  # as the dashboard process does
    sim = Simulation(pods, retention, path, start=clock_start, restore=True)
    out: dict[str, Any] = {"restore_seconds": sim.restore_seconds, "restored_pods": len(sim.store.pods)}
    marks = []
    for second in range(seconds):
        sim.step()
        if second % 60 == 59:
            marks.append((second + 1, procstat.rss_bytes([os.getpid()])))
            print(f"  {second + 1} s: RSS {marks[-1][1] / 2**20:.0f} MiB", file=sys.stderr, flush=True)
    out["rss_marks"] = marks
    out["rss_bytes"] = procstat.rss_bytes([os.getpid()])
    out["store_bytes_per_pod"] = deep_size(sim.store) / pods
    sim.history.write(sim.store.drain(final=True))
    sim.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--days", type=float, default=1.0, help="days of history written beneath the pods")
    parser.add_argument("--retention", type=float, default=7 * DAY)
    parser.add_argument("--live-seconds", type=int, default=FINE_SPAN + 120,
                        help="simulated seconds of reports after the restart (memory full: the restart brought "
                             "back the five-second slots, the one-second ones fill in FINE_SPAN)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # a child: the dashboard on this file
    parser.add_argument("--live", help=argparse.SUPPRESS)  # a child: the live phase on this file
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--clock", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.clock, args.retention)
        return 0
    if args.live:
        print(json.dumps(live(args.live, args.pods, args.clock, args.retention, args.live_seconds)))
        return 0
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

        out["restart"] = served = restart(path, START + 1, args.retention)
        print(f"restart: the dashboard answered /api/overview {served['serving_seconds']:.1f} s after it started "
              f"({served['restored_pods']} pods restored); RSS {served['rss_bytes'] / 2**20:.0f} MiB, "
              f"{served['rss_after_queries_bytes'] / 2**20:.0f} MiB after the queries", flush=True)
        for name, q in served["queries"].items():
            print(f"  {name:<30} {q['first'] * 1000:7.0f} ms first, {q['median_of_3_more'] * 1000:7.0f} ms after")
        child = subprocess.run([sys.executable, "-m", "bench.history_bench", "--live", path, "--pods",
                                str(args.pods), "--clock", repr(served["clock_end"] + 1), "--retention",
                                repr(args.retention), "--live-seconds", str(args.live_seconds)],
                               stdout=subprocess.PIPE, text=True, check=True)
        out["live"] = lived = json.loads(child.stdout)
        print(f"a fresh store restored in {lived['restore_seconds']:.1f} s ({lived['restored_pods']} pods), "
              f"{args.live_seconds} s more of reports: process RSS {lived['rss_bytes'] / 2**20:.0f} MiB, "
              f"store {lived['store_bytes_per_pod'] / 1e3:.0f} kB per pod", flush=True)
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
