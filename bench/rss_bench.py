"""The sidecar's resident memory beside the bare uvloop relay's, in one run: idle, under wrk load, and after.

Both stand in front of the same nginx backend, pinned as `bench.sidecar_bench`
pins them; the sidecar reports every second to a real dashboard and its
`/metrics` is scraped every second, as Prometheus would. For each, the RSS and
its parts (anonymous: heap, arenas, stacks; file-backed: the interpreter, shared
libraries and extension modules mapped in) are read from
/proc/PID/smaps_rollup: idle after start-up, at the largest RSS seen under each
load (sampled every 100 ms) and idle again after it. Our modules are compiled to
bytecode first, as `pip install` compiles an installed package's (see `with_bytecode`).
Run: `python -m bench.rss_bench [--duration 10] [--connections 16 64] [--quick]`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench import procstat
from bench.fleet import ROOT, Fleet
from bench.stack import (
    Cores,
    Service,
    free_port,
    nginx_available,
    start_asyncio_relay,
    start_backend,
    start_receiver,
    start_sidecar,
)
from bench.wrk import run_wrk, wrk_available

MB = 1e6
SCRAPE_EVERY = 1.0  # seconds between two scrapes of the sidecar's /metrics under load


@dataclass(frozen=True)
class Memory:
    rss: int
    anonymous: int
    file: int

    @classmethod
    def of(cls, pid: int) -> Memory:
        anonymous, file = procstat.memory_parts(pid)
        return cls(procstat.rss_bytes([pid]), anonymous, file)


@dataclass(frozen=True)
class Row:
    target: str
    phase: str  # "idle", "c16", "c64", "after"
    memory: Memory
    rps: float | None = None


def largest_under_load(service: Service, connections: int, seconds: int, cores: Cores,
                       also: Callable[[], None] | None = None) -> tuple[Memory, float]:
    """The process's memory when its RSS was largest during a wrk run, and the run's requests/s."""
    peak = [Memory(0, 0, 0)]

    def sample() -> None:
        memory = Memory.of(service.pid)
        if memory.rss > peak[0].rss:
            peak[0] = memory
        if also is not None:
            also()

    report = run_wrk(service.url(), connections, seconds, cores.load, during=sample)
    sample()
    return peak[0], report.requests_per_second


class Scraper:
    """GETs the sidecar's /metrics at most every SCRAPE_EVERY seconds, as a Prometheus server would."""

    def __init__(self, admin_port: int) -> None:
        self.url = f"http://127.0.0.1:{admin_port}/metrics"
        self.last = 0.0
        self.scrapes = 0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self.last < SCRAPE_EVERY:
            return
        self.last = now
        with urllib.request.urlopen(self.url, timeout=5) as reply:
            reply.read()
        self.scrapes += 1


def with_bytecode() -> None:
    """Compile app/, sidecar/ and bench/ to bytecode in their __pycache__ folders (ignored by git), so the
    processes started read it. This machine's shell sets PYTHONDONTWRITEBYTECODE and a checkout has no
    __pycache__, so each process would compile our modules from source at start, and the compiler's memory
    stays in its heap (1-1.5 MB of the sidecar's RSS here); a pod runs what `pip install` compiled."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "app", "sidecar", "bench"], cwd=ROOT, check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=120)


def render(rows: Sequence[Row], phases: Sequence[str]) -> str:
    """One line per phase: each target's RSS (anonymous + file-backed), and the sidecar's excess."""
    by = {(r.target, r.phase): r for r in rows}
    lines = [f"{'':<8} {'uvrelay RSS (anon + file)':>28} {'sidecar RSS (anon + file)':>28} {'sidecar - uvrelay':>18}"]
    for phase in phases:
        cells = []
        for target in ("uvrelay", "sidecar"):
            row = by.get((target, phase))
            cells.append(f"{row.memory.rss / MB:6.1f} MB ({row.memory.anonymous / MB:5.1f} + "
                         f"{row.memory.file / MB:4.1f})" if row else "-")
        relay, sidecar = by.get(("uvrelay", phase)), by.get(("sidecar", phase))
        excess = f"{(sidecar.memory.rss - relay.memory.rss) / MB:+.1f} MB" if relay and sidecar else "-"
        lines.append(f"{phase:<8} {cells[0]:>28} {cells[1]:>28} {excess:>18}")
    rates = [f"{r.target} {r.phase} {r.rps:.0f} req/s" for r in rows if r.rps is not None]
    if rates:
        lines.append("(" + ", ".join(rates) + ")")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rss_bench", description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per run (10)")
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64], help="wrk connections (16 64)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds idle before each idle reading (3)")
    parser.add_argument("--from-source", action="store_true",
                        help="leave our modules to be compiled from source by each process (no bytecode)")
    parser.add_argument("--quick", action="store_true", help="2 s of load at 16 connections, 1 s to settle")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.connections, args.settle = 2, [16], 1.0
    if not (wrk_available() and nginx_available()):
        print("needs wrk and nginx (apt-get install wrk nginx-light)", file=sys.stderr)
        return 2
    cores = Cores.plan()
    phases = ["idle", *(f"c{n}" for n in args.connections), "after"]
    rows: list[Row] = []
    with Fleet() as fleet:
        if not args.from_source:
            with_bytecode()
        backend = start_backend(fleet, cores)
        relay = start_asyncio_relay(fleet, cores, backend, uvloop=True)
        receiver = start_receiver(fleet, cores)
        admin_port = free_port()  # the later --admin-port wins: the bench scrapes it
        sidecar = start_sidecar(fleet, cores, backend, receiver, 1.0, ("--admin-port", str(admin_port)))
        scrape = Scraper(admin_port)
        print(f"{cores.describe()}; {'our modules compiled from source' if args.from_source else 'bytecode'}; "
              f"the sidecar reports every 1s to the {receiver.name}, "
              f"/metrics scraped every {SCRAPE_EVERY:g}s", flush=True)
        services = {"uvrelay": relay, "sidecar": sidecar}
        time.sleep(args.settle)
        scrape()
        for name, service in services.items():
            rows.append(Row(name, "idle", Memory.of(service.pid)))
        for connections in args.connections:
            for name, service in services.items():
                memory, rps = largest_under_load(service, connections, args.duration, cores,
                                                 scrape if name == "sidecar" else None)
                rows.append(Row(name, f"c{connections}", memory, rps))
        time.sleep(args.settle)
        for name, service in services.items():
            if not procstat.alive(service.pid):
                raise SystemExit(f"{name} died during the benchmark:\n{fleet.log_tail(name)}")
            rows.append(Row(name, "after", Memory.of(service.pid)))
    print(render(rows, phases))
    print(f"/metrics scraped {scrape.scrapes} times")
    return 0


if __name__ == "__main__":
    sys.exit(main())
