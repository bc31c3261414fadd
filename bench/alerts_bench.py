"""The embedded alerts' cost: CPU per pod per second beside the store's own ingest, and memory per app.

N simulated pods (ten per app) post stats every 5 s and resources every second, the
payloads of `bench.dashboard_bench`, parsed once beforehand. A fake clock moves one
second at a time; each second the store ingests what is due (the reference, in the
same run) and so does the alert evaluator, which is evaluated every 5 s as the
server does (with the server's collector settings). The payloads fail 2% of their
exchanges, so every app's burn alerts fire: the evaluator's dearest case. Memory:
one app's windows filled for the whole longest window (6 h), every object counted once.

    python -m bench.alerts_bench                     # 2000 pods, 60 measured seconds
    python -m bench.alerts_bench --pods 500 --measure 20
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from typing import Any

import ujson

from app.core.wire import parse_resources, parse_stats
from app.dashboard.aggregate import PodStore
from app.dashboard.alerts.evaluator import AlertEvaluator
from app.dashboard.alerts.objectives import Objectives
from app.dashboard.alerts.windows import LONGEST, AppWindows
from app.dashboard.server import GC_YOUNG_THRESHOLD
from bench.dashboard_bench import resource_body, stats_body, stats_template

START = 1_760_000_000.0
EVALUATE_EVERY = 5  # seconds, as app/dashboard/server.py's ALERT_INTERVAL


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def deep_size(root: Any) -> int:
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set)):
            stack.extend(obj)
        elif hasattr(obj, "__slots__"):
            stack.extend(getattr(obj, name) for name in obj.__slots__ if hasattr(obj, name))
    return total


def run(pods: int, warmup: int, measure: int) -> dict[str, float]:
    rng = random.Random(1)
    templates = [stats_template(rng) for _ in range(16)]
    names = [f"app{i // 10:04d}-{i % 10}-x{i:05d}" for i in range(pods)]
    clock = Clock()
    store = PodStore(retention=3600, clock=clock)
    evaluator = AlertEvaluator(Objectives(), clock=clock)
    resources = {name: parse_resources(ujson.loads(resource_body(name, rng))) for name in names}
    cpu = {"store_stats": 0.0, "store_resources": 0.0, "alerts_stats": 0.0, "alerts_resources": 0.0,
           "alerts_evaluate": 0.0}
    batch_no = 0
    for second in range(warmup + measure):
        clock.now = START + second
        counting = second >= warmup
        due = [n for i, n in enumerate(names) if (second + i) % 5 == 0]
        batches = []
        for name in due:
            batch_no += 1
            body = stats_body(name, templates[hash(name) % len(templates)], clock.now, f"b{batch_no}")
            batches.append(parse_stats(ujson.loads(body)))
        t0 = time.process_time()
        for batch in batches:
            store.ingest_stats(batch)
        t1 = time.process_time()
        for batch in batches:
            evaluator.observe_stats(batch)
        t2 = time.process_time()
        for name in names:
            store.ingest_resources(resources[name])
        t3 = time.process_time()
        for report in resources.values():
            evaluator.observe_seen(report.pod, report.app)
        t4 = time.process_time()
        if second % EVALUATE_EVERY == 0:
            evaluator.evaluate()
        t5 = time.process_time()
        store.tick()
        gc.freeze()  # as the server does after each tick: collections would not walk the store again
        if counting:
            cpu["store_stats"] += t1 - t0
            cpu["alerts_stats"] += t2 - t1
            cpu["store_resources"] += t3 - t2
            cpu["alerts_resources"] += t4 - t3
            cpu["alerts_evaluate"] += t5 - t4
    return {part: seconds / pods / measure * 1e6 for part, seconds in cpu.items()}  # us per pod per second


def app_memory() -> int:
    windows = AppWindows(0)
    for minute in range(LONGEST):
        windows.advance(minute)
        windows.add(minute, 6000, 12, 3)
    return deep_size(windows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--measure", type=int, default=60)
    args = parser.parse_args(argv)
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])  # the server's setting
    figures = run(args.pods, args.warmup, args.measure)
    store = figures["store_stats"] + figures["store_resources"]
    alerts = figures["alerts_stats"] + figures["alerts_resources"] + figures["alerts_evaluate"]
    print(f"{args.pods} pods, {args.pods // 10} apps, {args.measure} s measured (CPU in us per pod per second)")
    for part, value in figures.items():
        print(f"  {part:<18} {value:8.2f}")
    print(f"  alerts / store ingest: {alerts:.2f} / {store:.2f} us = {alerts / store:.3f}x")
    print(f"  memory of one app's windows over {LONGEST} minutes: {app_memory() / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
