"""The sidecar's cost on HTTP/2 against going direct and a bare relay, and beside its cost on HTTP/1, in one run.

h2load (Debian's nghttp2-client) drives an nghttpd backend (cleartext HTTP/2,
a 13-byte page and a 10 MiB file) directly, through the bare Tornado relay and
through the sidecar (telemetry on), round after round in turn (the page by one
path, and by 5,000 paths in turn: each stream's header block then carries a
new literal, as with per-request ids in paths or trace headers); the same
h2load, with `--h1`, drives the sidecar in front of the nginx backend of
`bench.sidecar_bench` for the HTTP/1 reference, and the sidecar forced to
HTTP/1 (`--protocol http1`, no detection) beside it. Prints medians and the
targets of issue 12. Run: `python -m bench.h2_bench [--seconds 5 --rounds 3]`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import compiled, procstat
from bench.fleet import Fleet
from bench.stack import (
    Cores,
    Service,
    free_port,
    start_backend,
    start_bare_relay,
    start_receiver,
    start_sidecar,
    wait_for_port,
)

BIG = 10 << 20


@dataclass(frozen=True)
class Load:
    """One h2load run's shape: which path, how many connections, streams at once on each, and HTTP/1 or not."""

    name: str
    path: str
    clients: int
    streams: int = 1
    h1: bool = False
    requests: int = 0  # a count instead of a duration (the 10 MiB runs)
    paths: int = 1  # distinct paths, taken in turn (`/?id=N`): each a new HPACK literal once the table has cycled


@dataclass(frozen=True)
class Result:
    per_second: float  # streams (or requests) completed per second
    bytes_per_second: float
    median: float | None  # seconds, one request's own time (from --log-file)
    cpu_per_request: float | None  # the proxy's CPU seconds per stream
    failed: int


LOADS = (
    Load("c1 latency", "/", 1),
    Load("c16 x1 stream", "/", 16),
    Load("c16 new paths", "/", 16, paths=5000),
    Load("c16 x10 streams", "/", 16, streams=10),
    Load("10 MiB c1", "/big", 1, requests=20),
)
H1_LOAD = Load("HTTP/1 c16", "/", 16, h1=True)
H1_LATENCY = Load("HTTP/1 c1 latency", "/", 1, h1=True)


def start_nghttpd(fleet: Fleet, cores: Cores) -> Service:
    """nghttpd serving cleartext HTTP/2: `/` (13 bytes) and `/big` (10 MiB)."""
    binary = shutil.which("nghttpd")
    if binary is None:
        raise SystemExit("nghttpd is not installed (apt-get install nghttp2-server)")
    docroot = fleet.dir / "h2root"
    docroot.mkdir()
    (docroot / "index.html").write_bytes(b"hello, world\n")
    (docroot / "big").write_bytes(bytes(BIG))
    port = free_port()
    proc = fleet.start("nghttpd", [binary, "--no-tls", "-a", "127.0.0.1", "-d", str(docroot), str(port)],
                       cores.backend)
    wait_for_port(port, proc, fleet, "nghttpd")
    return Service("nghttpd", port, proc.pid)


def run_h2load(service: Service, load: Load, seconds: int, cores: Cores, proxied: bool) -> Result:
    """One h2load run; CPU is that of `service`'s process tree when `proxied`."""
    h2load = shutil.which("h2load")
    if h2load is None:
        raise SystemExit("h2load is not installed (apt-get install nghttp2-client)")
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log, \
            tempfile.NamedTemporaryFile("w", prefix="h2load-", suffix=".uris") as uris:
        command = [h2load, "-c", str(load.clients), "-m", str(load.streams), "--log-file", log.name]
        command += ["-n", str(load.requests)] if load.requests else ["-D", str(seconds)]
        if load.h1:
            command.append("--h1")
        if load.paths > 1:
            uris.writelines(service.url(f"{load.path}?id={n:08d}") + "\n" for n in range(load.paths))
            uris.flush()
            command += ["-i", uris.name]
        else:
            command.append(service.url(load.path))
        if cores.load and shutil.which("taskset") and load.clients > 1:
            command = ["taskset", "-c", ",".join(map(str, cores.load)), *command]
        pids = procstat.descendants(service.pid) if proxied else []
        cpu_before = procstat.cpu_seconds(pids)
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, check=False)
        cpu = procstat.cpu_seconds(pids) - cpu_before
        durations = [int(line.split("\t")[2]) / 1e6 for line in Path(log.name).read_text().splitlines()
                     if line.count("\t") >= 2]
    return parse(done.stdout + done.stderr, durations, cpu if proxied else None)


def parse(text: str, durations: Sequence[float], cpu: float | None) -> Result:
    """h2load's summary lines; the median from its per-request log."""
    finished = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s, ([\d.]+)([KMG]?B)/s", text)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", text)
    if finished is None or counts is None:
        raise SystemExit(f"h2load printed what this bench does not understand:\n{text[-2000:]}")
    scale = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[finished.group(5)]
    done = int(counts.group(2))
    return Result(per_second=float(finished.group(3)), bytes_per_second=float(finished.group(4)) * scale,
                  median=statistics.median(durations) if durations else None,
                  cpu_per_request=cpu / done if cpu is not None and done else None,
                  failed=int(counts.group(1)) - int(counts.group(3)))


def median_of(results: Sequence[Result], field: Callable[[Result], float | None]) -> float | None:
    values = [v for v in map(field, results) if v is not None]
    return statistics.median(values) if values else None


def us(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e6:.0f} us"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="seconds per run (5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every target in turn (3)")
    parser.add_argument("--python", action="store_true", help="run the sidecar as Python, not compiled as the image")
    args = parser.parse_args(argv)
    cores = Cores.plan()
    runs: dict[tuple[str, str], list[Result]] = {}
    tree, note = compiled.sidecar_tree(args.python)
    print(f"# {note}", flush=True)
    with Fleet() as fleet:
        h2_backend = start_nghttpd(fleet, cores)
        h1_backend = start_backend(fleet, cores)
        receiver = start_receiver(fleet, cores)
        targets = {
            "direct": (h2_backend, False),
            "relay": (start_bare_relay(fleet, cores, h2_backend), True),
            "sidecar": (start_sidecar(fleet, cores, h2_backend, receiver, tree=tree), True),
        }
        h1_targets = {
            "sidecar h1": (start_sidecar(fleet, cores, h1_backend, receiver, tree=tree), True),
            "sidecar h1 forced": (start_sidecar(fleet, cores, h1_backend, receiver, extra=("--protocol", "http1"),
                                                        tree=tree), True),
            "direct h1": (h1_backend, False),
        }
        print(f"# h2_bench: {args.rounds} rounds x {args.seconds} s; {cores.describe()}", flush=True)
        for round_no in range(args.rounds):
            for load in LOADS:
                for name, (service, proxied) in targets.items():
                    runs.setdefault((load.name, name), []).append(
                        run_h2load(service, load, args.seconds, cores, proxied))
            for load in (H1_LOAD, H1_LATENCY):
                for name, (service, proxied) in h1_targets.items():
                    runs.setdefault((load.name, name), []).append(
                        run_h2load(service, load, args.seconds, cores, proxied))
            print(f"# round {round_no + 1} done", flush=True)
    report(runs)


def report(runs: dict[tuple[str, str], list[Result]]) -> None:
    print(f"\n{'load':<20} {'target':<18} {'per s':>10} {'MB/s':>8} {'median':>9} {'CPU/req':>9} {'failed':>6}")
    for (load, target), results in runs.items():
        per_second = median_of(results, lambda r: r.per_second) or 0.0
        mbs = (median_of(results, lambda r: r.bytes_per_second) or 0.0) / (1 << 20)
        failed = sum(r.failed for r in results)
        print(f"{load:<20} {target:<18} {per_second:>10.0f} {mbs:>8.1f} "
              f"{us(median_of(results, lambda r: r.median)):>9} "
              f"{us(median_of(results, lambda r: r.cpu_per_request)):>9} {failed:>6}")

    def get(load: str, target: str, field: Callable[[Result], float | None]) -> float | None:
        return median_of(runs.get((load, target), []), field)

    print("\nTargets (issue 12):")
    h2_cpu = get("c16 x1 stream", "sidecar", lambda r: r.cpu_per_request)
    h1_cpu = get("HTTP/1 c16", "sidecar h1", lambda r: r.cpu_per_request)
    if h2_cpu and h1_cpu:
        print(f"- CPU per HTTP/2 stream / per HTTP/1 exchange (16 connections): {h2_cpu / h1_cpu:.2f}x "
              f"({us(h2_cpu)} / {us(h1_cpu)}; target at most 1.5x)")
    fresh_cpu = get("c16 new paths", "sidecar", lambda r: r.cpu_per_request)
    if fresh_cpu and h1_cpu:
        print(f"- the same, each stream's path new to the header table: {fresh_cpu / h1_cpu:.2f}x "
              f"({us(fresh_cpu)} / {us(h1_cpu)})")
    big_sidecar = get("10 MiB c1", "sidecar", lambda r: r.bytes_per_second)
    big_relay = get("10 MiB c1", "relay", lambda r: r.bytes_per_second)
    if big_sidecar and big_relay:
        print(f"- 10 MiB streams, sidecar / relay throughput: {big_sidecar / big_relay:.2f}x (target at least 0.9x)")
    one, direct = get("c1 latency", "sidecar", lambda r: r.median), get("c1 latency", "direct", lambda r: r.median)
    relay = get("c1 latency", "relay", lambda r: r.median)
    if one and direct:
        print(f"- added to one stream's median on one connection: {us(one - direct)} "
              f"(relay {us(relay - direct) if relay else '-'}; target at most 150 us)")
    auto = get("HTTP/1 c16", "sidecar h1", lambda r: r.cpu_per_request)
    forced = get("HTTP/1 c16", "sidecar h1 forced", lambda r: r.cpu_per_request)
    auto1 = get("HTTP/1 c1 latency", "sidecar h1", lambda r: r.median)
    forced1 = get("HTTP/1 c1 latency", "sidecar h1 forced", lambda r: r.median)
    if auto and forced and auto1 and forced1:
        print(f"- HTTP/1 with detection / forced HTTP/1: CPU per request {auto / forced:.2f}x, "
              f"one connection's median {us(auto1 - forced1)} apart (the detector's cost)")


if __name__ == "__main__":
    main()
