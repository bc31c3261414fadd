"""CPU per sample of each protocol on its way from a finished exchange to the dashboard, in process.

One sample's path, after the tracker has finished its exchange: `SampleMaker`
makes its `Record`, the sidecar's `SummaryBuilder` and `ExchangeMetrics`
count it (these three run for every exchange), it is written as a wire
sample (`wire`: only for the samples a batch carries, at most
`--max-samples-per-batch` a batch) and the dashboard's `parse_sample` checks
it. Each protocol's exchanges (`http/1.1`, `h2`, `grpc`, `tls`, `tcp`; 50
routes, as a service has, so the maker's caches hold them) go through fresh
objects, timed with `time.process_time`; the best of `--rounds` is kept (the
machine is shared: the best is the least disturbed), and each is given as a
ratio of HTTP/1's in the same run. `--compiled` runs the same in the tree
`bench.compiled` builds, as the image runs the sidecar.

    python -m bench.sample_bench              # 20,000 samples per protocol, 7 rounds
    python -m bench.sample_bench --compiled   # the same, compiled by mypyc
    python -m bench.sample_bench --quick      # a smoke run
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time

from app.core.summary import SummaryBuilder
from app.core.wire import parse_sample
from bench.inprocess import samples_and_rounds
from sidecar.exchange import Exchange, SampleMaker
from sidecar.exchange_metrics import ExchangeMetrics

PROTOCOLS = ("http/1.1", "h2", "grpc", "tls", "tcp")
STAGES = ("record", "summary", "metrics", "wire", "check")


def exchanges(protocol: str, n: int) -> list[Exchange]:
    """`n` finished exchanges of one protocol, over 50 routes, one every 0.1 ms."""
    out = []
    for i in range(n):
        ex = Exchange(1000.0 + i * 1e-4)
        ex.t_first, ex.t_end = ex.t_start + 0.001, ex.t_start + 0.002
        ex.bytes_in, ex.bytes_out = 80, 1200
        ex.status, ex.reason = 200, "OK"
        if protocol in ("tls", "tcp"):
            ex.protocol, ex.status, ex.reason = protocol, 0, ""
            ex.target = f"api{i % 50}.example.com".encode() if protocol == "tls" else b""
            ex.alpn = "h2,http/1.1" if protocol == "tls" else ""
        else:
            ex.method, ex.target = (b"POST", f"/shop.v1.Orders/M{i % 50}".encode()) if protocol == "grpc" \
                else (b"GET", f"/users/{i % 50}".encode())
            if protocol == "grpc":
                ex.protocol, ex.grpc_status = "grpc", 0 if i % 10 else 5
            elif protocol == "h2":
                ex.protocol, ex.reason = "h2", ""
        out.append(ex)
    return out


def time_protocol(protocol: str, n: int, rounds: int) -> dict[str, float]:
    """Best-of-`rounds` microseconds per sample for each stage of one protocol's samples."""
    batch = exchanges(protocol, n)
    best = dict.fromkeys(STAGES, float("inf"))
    for _ in range(rounds):
        maker, summary, metrics = SampleMaker(), SummaryBuilder(), ExchangeMetrics()
        maker.clock_offset = 1.7e9
        gc.collect()
        start = time.process_time()
        records = [maker.record(ex) for ex in batch]
        made = time.process_time()
        for record in records:
            summary.add_record(record)
        summed = time.process_time()
        for record in records:
            metrics.observe_record(record)
        counted = time.process_time()
        samples = [record.to_sample() for record in records]
        written = time.process_time()
        for sample in samples:
            parse_sample(sample, "s")
        checked = time.process_time()
        for stage, seconds in zip(STAGES, (made - start, summed - made, counted - summed, written - counted,
                                           checked - written), strict=True):
            best[stage] = min(best[stage], seconds / n * 1e6)
    return best


def run_compiled(argv: list[str]) -> int:
    """This bench again, in the compiled tree (its modules shadow the checkout's there)."""
    from bench import compiled

    tree = compiled.build()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, "-P", "-m", "bench.sample_bench", *argv], cwd=tree, env=env,
                          check=False).returncode


def main(argv: list[str] | None = None) -> int:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--compiled", action="store_true")
    known, rest = where.parse_known_args(argv)
    if known.compiled:
        return run_compiled(rest)
    n, rounds = samples_and_rounds("python -m bench.sample_bench", __doc__.splitlines()[0], rest)
    import sidecar.exchange

    build = "compiled by mypyc" if sidecar.exchange.__file__.endswith(".so") else "Python"
    print(f"{n} samples per protocol, best of {rounds} rounds, us per sample (CPU); the sidecar's code as {build}")
    print(f"{'protocol':<10}" + "".join(f"{stage:>9}" for stage in STAGES) + f"{'total':>9}{'vs http/1':>11}")
    reference = 0.0
    for protocol in PROTOCOLS:
        stages = time_protocol(protocol, n, rounds)
        total = sum(stages.values())
        reference = reference or total
        print(f"{protocol:<10}" + "".join(f"{stages[s]:>9.2f}" for s in STAGES) + f"{total:>9.2f}"
              f"{total / reference:>10.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
