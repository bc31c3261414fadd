"""The sidecar's resident memory beside the bare uvloop relay's, in one run: idle, under wrk load, and after.

The targets are `bench.sidecar_bench`'s, started and pinned as it starts them:
`uvrelay` (the bare relay on asyncio transports and uvloop), `sidecar` (its hot
path compiled by mypyc, as the image runs it) and `pysidecar` (the same code as
Python), both reporting every second to a real dashboard, their `/metrics`
scraped every second as Prometheus would. Beside them `libraries` is a process
that imports the libraries of the design (asyncio, uvloop, Tornado's HTTP
server, web framework and TCP client, prometheus-client, psutil) and makes a
uvloop loop, and nothing of ours: the floor of that design. `sidelibs` imports
those a sidecar maps now: all but `tornado.web` (the admin port is served below
it, `sidecar.admin`). Neither holds h2 or hpack: a sidecar imports them at its
first HTTP/2 connection, and this benchmark's traffic is HTTP/1.
For each, the RSS and its parts (anonymous: heap, arenas, stacks; file-backed:
the interpreter, shared libraries and extension modules mapped in) are read from
/proc/PID/smaps_rollup: idle after start-up, at the largest RSS seen under each
load (sampled every 100 ms) and idle again after it. Our modules are compiled to
bytecode first, as `pip install` compiles an installed package's (`with_bytecode`).
Run: `python -m bench.rss_bench [--duration 10] [--connections 16 64] [--quick]`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import compiled, procstat
from bench.fleet import ROOT, Fleet
from bench.sidecar_bench import start_targets
from bench.stack import Cores, Service, nginx_available
from bench.wrk import run_wrk, wrk_available

MB = 1e6
SCRAPE_EVERY = 1.0  # seconds between two scrapes of a sidecar's /metrics under load
SIDECARS = ("sidecar", "pysidecar")
# The libraries of the design, imported before any module of ours (uvloop as the loop the sidecar runs on).
LIBRARIES = ("asyncio", "uvloop", "tornado.httpserver", "tornado.web", "tornado.tcpclient", "prometheus_client",
             "psutil")
NOT_MAPPED = ("tornado.web",)  # what a sidecar no longer imports (tests/test_import_graph.py checks it)
FLOORS = {"libraries": LIBRARIES, "sidelibs": tuple(m for m in LIBRARIES if m not in NOT_MAPPED)}


def floor_program(modules: Sequence[str]) -> str:
    """A program that imports `modules`, makes a uvloop loop as the sidecar does, and waits to be stopped."""
    return f"import signal, {', '.join(modules)}; uvloop.new_event_loop(); signal.sigwait({{signal.SIGTERM}})"


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


def admin_port(log: str) -> int:
    """The sidecar's admin port, from its start-up line (`..., admin :9901, ...`)."""
    found = re.search(r"admin :(\d+)", log)
    if found is None:
        raise SystemExit(f"the sidecar's log does not name its admin port:\n{log}")
    return int(found.group(1))


def with_bytecode(*trees: Path) -> None:
    """Compile app/, sidecar/ and bench/ to bytecode in their __pycache__ folders (ignored by git), so the
    processes started read it. This machine's shell sets PYTHONDONTWRITEBYTECODE and a checkout has no
    __pycache__, so each process would compile our modules from source at start, and the compiler's memory
    stays in its heap (1-1.5 MB of the sidecar's RSS here); a pod runs what `pip install` compiled."""
    for tree in trees:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "app", "sidecar", "bench"], cwd=tree, check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=120)


def render(rows: Sequence[Row], targets: Sequence[str], phases: Sequence[str]) -> str:
    """One line per phase: each target's RSS (anonymous + file-backed); then the requests/s of each run."""
    by = {(r.target, r.phase): r for r in rows}
    lines = [f"{'':<6}" + "".join(f"{t + ' RSS (anon + file)':>29}" for t in targets)]
    for phase in phases:
        cells = []
        for target in targets:
            row = by.get((target, phase))
            cells.append(f"{row.memory.rss / MB:5.1f} MB ({row.memory.anonymous / MB:4.1f} + "
                         f"{row.memory.file / MB:4.1f})" if row else "-")
        lines.append(f"{phase:<6}" + "".join(f"{cell:>29}" for cell in cells))
    rates = [f"{r.target} {r.phase} {r.rps:.0f}" for r in rows if r.rps is not None]
    if rates:
        lines.append("(req/s: " + ", ".join(rates) + ")")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rss_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
            with_bytecode(*{ROOT, compiled.sidecar_tree()[0]})  # built now, so start_targets finds it built
        lineup = start_targets(fleet, ["uvrelay", *SIDECARS], cores, True, 1.0)
        services = lineup.services
        for name, modules in FLOORS.items():
            floor = fleet.start(name, [sys.executable, "-c", floor_program(modules)], cores.proxy)
            services[name] = Service(name, 0, floor.pid)
        scrapers = {name: Scraper(admin_port(fleet.log_tail(name, 50))) for name in SIDECARS if name in services}
        print(f"{cores.describe()}; {'our modules compiled from source' if args.from_source else 'bytecode'}; "
              f"/metrics scraped every {SCRAPE_EVERY:g}s\n{lineup.notes}\n"
              f"libraries: the design's ({', '.join(LIBRARIES)}); sidelibs: those a sidecar maps, all but "
              f"{', '.join(NOT_MAPPED)} (h2 and hpack in neither: imported at a sidecar's first HTTP/2 connection)",
              flush=True)
        time.sleep(args.settle)
        for scrape in scrapers.values():
            scrape()
        for name, service in services.items():
            rows.append(Row(name, "idle", Memory.of(service.pid)))
        for connections in args.connections:
            for name, service in services.items():
                if name in FLOORS:
                    continue  # it serves nothing: its idle figure is the floor
                memory, rps = largest_under_load(service, connections, args.duration, cores, scrapers.get(name))
                rows.append(Row(name, f"c{connections}", memory, rps))
        time.sleep(args.settle)
        for name, service in services.items():
            if not procstat.alive(service.pid):
                raise SystemExit(f"{name} died during the benchmark:\n{fleet.log_tail(name)}")
            rows.append(Row(name, "after", Memory.of(service.pid)))
    print(render(rows, list(services), phases))
    print("/metrics scraped " + ", ".join(f"{name}'s {s.scrapes} times" for name, s in scrapers.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
