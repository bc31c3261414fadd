"""What one resource sample costs the sidecar's loop: the sampler's wall and CPU time per call, median and max.

The sampler reads the real cgroup files and processes of this machine, as the
sidecar does once a second. The reference in the same run is one bare
`psutil.cpu_percent(percpu=True)` call, the cheapest reading it makes. Figures
are printed, not asserted: a shared machine makes a timed test flaky.

    python -m bench.sampler_bench              # 200 samples
    python -m bench.sampler_bench --samples 30
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import psutil

from sidecar.pod.sampler import ResourceSampler

BUDGET_MS = 1.0  # the loop may be blocked about this long once a second


def measure(call: Callable[[], object], samples: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each of `samples` calls (CPU: this thread's, so other processes do not count)."""
    call()
    wall, cpu = [], []
    for _ in range(samples):
        start, start_cpu = time.perf_counter(), time.thread_time()
        call()
        wall.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sampler_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args(argv)
    sampler = ResourceSampler()
    rows = [("ResourceSampler.sample", measure(sampler.sample, args.samples)),
            ("psutil.cpu_percent (reference)", measure(lambda: psutil.cpu_percent(percpu=True), args.samples))]
    print(f"{'call':32} {'wall median':>12} {'wall max':>10} {'CPU median':>11}")
    for name, (wall, cpu) in rows:
        print(f"{name:32} {statistics.median(wall) * 1e3:9.3f} ms {max(wall) * 1e3:7.2f} ms "
              f"{statistics.median(cpu) * 1e3:8.3f} ms")
    cpu_ms = statistics.median(rows[0][1][1]) * 1e3
    verdict = "PASS" if cpu_ms <= BUDGET_MS else "MISS"
    print(f"sampler CPU median {cpu_ms:.2f} ms vs budget {BUDGET_MS:.1f} ms: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
