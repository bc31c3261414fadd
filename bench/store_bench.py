"""The dashboard's store alone: CPU per pod per second for each part, and memory per pod, in-process.

N simulated pods report as in `bench.dashboard_bench` (its payloads, imported):
resources every second, stats every 5 s, ten pods per app. A fake clock moves
one second at a time; each second the store ingests what is due, ticks, the hub
builds the overview (what one page's update costs) and a series tail, and
every 2 s the store drains into `History` on a temporary SQLite file, as the
server does. Decoding and checking the JSON is request handling, not the
store's, and is left out. CPU is `time.process_time` per part over the measured
seconds, divided by pods and seconds; garbage collections that ran inside the
store's parts are counted apart, as `gc`. Memory is a second run of `--memory-pods`
pods for `--memory-seconds` (the retention, at most two hours, plus a minute),
with the sizes of every object the store reaches (`sys.getsizeof`, each object
once) per pod every ten minutes; `flat` is the last of them over the first one
past the span memory keeps (FINE_SPAN and COARSE_SPAN: past it, the archive on
disk takes what ages, and memory should stay where it is whatever the retention).

    python -m bench.store_bench                         # 2000 pods, then memory over an hour
    python -m bench.store_bench --retention 7d --memory-seconds 7200
    python -m bench.store_bench --pods 500 --measure 20 --no-memory
    python -m bench.store_bench --quick                 # seconds: a smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import Any

import ujson

from app.core.wire import ResourceReport, StatsBatch, parse_resources, parse_stats
from app.dashboard.aggregate import PodStore
from app.dashboard.history import History, Prune
from app.dashboard.hub import TAIL_SECONDS, LiveHub
from app.dashboard.metrics import DashboardMetrics
from app.dashboard.scope import COARSE_SPAN, FINE_SPAN, Scope
from app.dashboard.server import GC_YOUNG_THRESHOLD
from app.dashboard.trim import TRIM_EVERY, trim
from bench.dashboard_bench import resource_body, stats_body, stats_template

START = 1_760_000_000.0  # the fake clock's first second
MARK_EVERY = 600  # simulated seconds between two memory figures
MEMORY_SPAN = FINE_SPAN + COARSE_SPAN + 120  # what memory keeps, and a minute's archiving on top
FLUSH_EVERY = 2  # seconds, as the server's history writer
PRUNE_EVERY = 60
TEMPLATES = 16  # distinct five-second traffic shapes shared out among the pods
PARTS = ("ingest_stats", "ingest_resources", "tick", "eviction", "overview", "series", "drain", "history_write", "trim",
         "gc")


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Meter:
    """CPU seconds per part, counted only while `on`; garbage collections inside a part count as `gc`.

    A collection runs in whichever part's allocation tipped it over, so it is
    counted apart: what each part costs itself stays comparable between runs.
    """

    def __init__(self) -> None:
        self.cpu = dict.fromkeys(PARTS, 0.0)
        self.on = False
        self._gc = 0.0  # CPU seconds in collections so far
        self._gc_began = 0.0
        self._depth = 0

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_began = time.process_time()
        else:
            self._gc += time.process_time() - self._gc_began

    def timed(self, part: str, call: Callable[..., Any], *args: Any) -> Any:
        if not self.on:
            return call(*args)
        began, gc_began = time.process_time(), self._gc
        self._depth += 1
        try:
            return call(*args)
        finally:
            self._depth -= 1
            in_gc = self._gc - gc_began
            self.cpu[part] += time.process_time() - began - in_gc
            if not self._depth:
                self.cpu["gc"] += in_gc


class Simulation:
    """A store, a hub and a history file fed by `pods` pods under a fake clock."""

    def __init__(self, pods: int, retention: float, data: str, seed: int = 1, start: float = START,
                 restore: bool = False) -> None:
        self.start = start
        self.clock = FakeClock(start)
        self.store = PodStore(retention=retention, clock=self.clock, archive=True)  # as with --data FILE
        self.hub = LiveHub(self.store, DashboardMetrics())
        self.history = History(data)
        self.restore_seconds = 0.0
        if restore:  # as the dashboard starts: what memory held read back, the rest left on disk
            began = time.perf_counter()
            self.store.restore(self.history.load(start, retention, self.store.drop_after))
            self.restore_seconds = time.perf_counter() - began
        self.meter = Meter()
        rng = random.Random(seed)
        templates = [stats_template(rng) for _ in range(TEMPLATES)]
        self.pods = [(f"app{i // 10:04d}-{i % 10}-bench", templates[i % TEMPLATES]) for i in range(pods)]
        self.rng = rng
        self.second = 0
        self._watch_eviction()

    def _watch_eviction(self) -> None:
        """Time `Scope.evict` (called from `tick`) as a part of its own; `tick` is reported without it."""
        meter, evict = self.meter, Scope.evict

        def timed_evict(scope: Scope, now: float, retention: float) -> None:
            meter.timed("eviction", evict, scope, now, retention)

        self._evict = evict
        Scope.evict = timed_evict  # type: ignore[method-assign]

    def close(self) -> None:
        Scope.evict = self._evict  # type: ignore[method-assign]
        self.history.close()

    def stats_batch(self, index: int) -> StatsBatch:
        pod, template = self.pods[index]
        body = stats_body(pod, template, self.clock.now, f"{pod}-{self.second}")
        return parse_stats(ujson.loads(body))

    def resource_report(self, index: int) -> ResourceReport:
        body = resource_body(self.pods[index][0], self.rng)
        return parse_resources(ujson.loads(body), raw=body)

    def step(self) -> None:
        """One second: every pod's resources, a fifth of the pods' stats, then tick, push and history."""
        self.second += 1
        start = self.start
        self.clock.now = start + self.second
        store, meter = self.store, self.meter
        for index in range(len(self.pods)):
            # Spread over the second like real arrivals, so the fake clock reads something plausible.
            self.clock.now = start + self.second + index / len(self.pods)
            report = self.resource_report(index)
            meter.timed("ingest_resources", store.ingest_resources, report)
            if self.second % 5 == index % 5:
                batch = self.stats_batch(index)
                meter.timed("ingest_stats", store.ingest_stats, batch)
        self.clock.now = start + self.second + 0.999
        meter.timed("tick", store.tick)
        meter.timed("overview", self.hub.overview_json)
        meter.timed("series", self.hub.series_message, "all", 300, TAIL_SECONDS)
        if self.second % TRIM_EVERY == 0:
            meter.timed("trim", trim)  # as the server does: freed heap pages back to the system
        if self.second % FLUSH_EVERY == 0:
            changes = meter.timed("drain", store.drain)
            now = self.clock.now
            prune = Prune(now, store.retention) if self.second % PRUNE_EVERY == 0 else None
            meter.timed("history_write", self.history.write, changes, prune)


def measure_cpu(pods: int, warmup: int, seconds: int, retention: float, workdir: Path) -> dict[str, Any]:
    sim = Simulation(pods, retention, str(workdir / "cpu.sqlite"))
    try:
        for _ in range(warmup):
            sim.step()
        sim.meter.on = True
        gc.callbacks.append(sim.meter.on_gc)
        began = time.perf_counter()
        for _ in range(seconds):
            sim.step()
        wall = time.perf_counter() - began
    finally:
        if sim.meter.on_gc in gc.callbacks:
            gc.callbacks.remove(sim.meter.on_gc)
        sim.close()
    cpu = dict(sim.meter.cpu)
    cpu["tick"] -= cpu["eviction"]  # eviction runs inside tick
    per_pod = {part: value / seconds / pods * 1e3 for part, value in cpu.items()}  # ms per pod per second
    return {"pods": pods, "warmup": warmup, "seconds": seconds, "wall": wall, "cpu_ms_per_pod_s": per_pod,
            "total_ms_per_pod_s": sum(per_pod.values()), "overview_bytes": len(sim.hub.overview_json())}


def deep_size(root: object, seen: set[int] | None = None) -> int:
    """Bytes of `root` and everything it reaches (each object once), classes, modules and functions left out."""
    seen = set() if seen is None else seen
    stack, total = [root], 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, ModuleType, FunctionType, BuiltinFunctionType, MethodType)):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def measure_memory(pods: int, seconds: int, retention: float, workdir: Path) -> dict[str, Any]:
    """The store's objects after `seconds`, per pod: all of it, and the pods' own part (scope, samples, ids)."""
    sim = Simulation(pods, retention, str(workdir / "memory.sqlite"), seed=2)
    marks = []
    try:
        for _ in range(seconds):
            sim.step()
            if sim.second % MARK_EVERY == 0 or sim.second == seconds:
                marks.append((sim.second, deep_size(sim.store) / pods))
        seen: set[int] = set()
        own = sum(deep_size(pod, seen) for pod in sim.store.pods.values()) / pods
    finally:
        sim.close()
    past = [size for t, size in marks if t >= MEMORY_SPAN]
    flat = past[-1] / past[0] if len(past) > 1 else None
    return {"pods": pods, "seconds": seconds, "retention": retention, "bytes_per_pod": marks[-1][1],
            "pod_own_bytes": own, "marks": marks, "flat": flat}


def show_cpu(r: dict[str, Any]) -> None:
    print(f"CPU, {r['pods']} pods, {r['seconds']} s measured after {r['warmup']} s "
          f"(wall {r['wall']:.1f} s, overview {r['overview_bytes'] / 1e6:.2f} MB):")
    for part, ms in r["cpu_ms_per_pod_s"].items():
        print(f"  {part:<17} {ms * 1000:8.2f} us per pod per second")
    total = r["total_ms_per_pod_s"]
    print(f"  {'total':<17} {total * 1000:8.2f} us per pod per second "
          f"= {total * r['pods'] / 10:.1f}% of a core at {r['pods']} pods")


def show_memory(r: dict[str, Any]) -> None:
    marks = "  ".join(f"{t}s {b / 1e6:.3f}" for t, b in r["marks"])
    print(f"memory, {r['pods']} pods, {r['seconds']} s simulated, retention {r['retention']:.0f} s: "
          f"{r['bytes_per_pod'] / 1e6:.3f} MB per pod, of which the pod's own objects {r['pod_own_bytes'] / 1e6:.3f} MB"
          f" (MB per pod by time: {marks})")
    if r["flat"] is not None:
        print(f"  past the in-memory span ({MEMORY_SPAN} s): last / first = {r['flat']:.3f}")


def _duration(text: str) -> float:
    """Seconds, or with s/m/h/d as the dashboard's --retention takes them."""
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(text[-1:], 1)
    return float(text[:-1] if scale != 1 or text.endswith("s") else text) * scale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=FINE_SPAN + 20,
                        help="simulated seconds before measuring (past the fine span, so eviction runs)")
    parser.add_argument("--measure", type=int, default=30, help="simulated seconds measured")
    parser.add_argument("--retention", type=_duration, default=3600.0, help="seconds, or 90m, 24h, 7d")
    parser.add_argument("--memory-seconds", type=int, help="simulated seconds of the memory run "
                        "(default: the retention, at most two hours, plus a minute)")
    parser.add_argument("--memory-pods", type=int, default=50)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a few seconds: 50 pods, short runs")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])  # as the dashboard process does
    memory_seconds = args.memory_seconds or int(min(args.retention, 7200)) + 60
    if args.quick:
        args.pods, args.warmup, args.measure, args.memory_pods = 50, 10, 5, 10
        args.retention = memory_seconds = 60
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        out["cpu"] = measure_cpu(args.pods, args.warmup, args.measure, args.retention, Path(tmp))
        show_cpu(out["cpu"])
        sys.stdout.flush()
        if not args.no_memory:
            out["memory"] = measure_memory(args.memory_pods, memory_seconds, args.retention, Path(tmp))
            show_memory(out["memory"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
