"""The sidecar's speed against going direct, nginx as a proxy, and bare relays (Tornado's IOStream; asyncio
transports on the default loop and on uvloop), in one run.

The same nginx backend sits behind every target; wrk drives each in turn,
round after round (A B C D A B C D ...) so that noise spreads over all, at 1,
16 and 64 connections and with a 1 MiB file. Prints medians across rounds,
the sidecar's ratios to the others and the targets of issues 2 (against the
IOStream relay) and 17 (against nginx). `sidecar` is compiled as the image's
is (bench/compiled.py builds it once); `pysidecar` is the same code as Python;
`--baseline REF` adds `baseline`, the sidecar as it was at commit REF, compiled
the same way: before and after in one run.
Run: `python -m bench.sidecar_bench [--duration 5 --rounds 3 | --quick] [--baseline REF]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import compiled, procstat
from bench.comparison import (
    Run,
    Scenario,
    as_json,
    checks,
    checks_vs_nginx,
    medians,
    render_checks,
    render_ratios,
    render_table,
)
from bench.fleet import Fleet
from bench.hotspots import hotspots
from bench.hotspots import render as render_hotspots
from bench.stack import (
    Cores,
    Service,
    StartError,
    nginx_available,
    received,
    start_asyncio_relay,
    start_backend,
    start_bare_relay,
    start_nginx_proxy,
    start_receiver,
    start_sidecar,
)
from bench.wrk import WrkError, run_wrk, wrk_available

PY_SPY = Path(sys.executable).parent / "py-spy"

# relay: the bare Tornado IOStream relay; arelay, uvrelay: a bare relay on asyncio transports, on the default
# loop and on uvloop's (the floor of a relay below IOStream, issue 17). sidecar: as the image runs it, its hot
# path compiled by mypyc (bench.compiled); pysidecar: the same code as Python (a `pip install` or a checkout).
TARGETS = ("direct", "nginx", "relay", "arelay", "uvrelay", "sidecar", "pysidecar")


def scenarios(file_connections: int) -> list[Scenario]:
    return [
        # One connection measures the latency of one hop: left to the scheduler,
        # as in a pod, since pinning adds a cross-core wake-up to every proxy.
        Scenario("c1", "/", 1, pinned=False),
        Scenario("c16", "/", 16),
        Scenario("c64", "/", 64),
        Scenario(f"1MiB c{file_connections}", "/1m", file_connections, big=True),
    ]


def measure(service: Service, proxied: bool, scenario: Scenario, round_no: int, seconds: int,
            cores: Cores) -> Run:
    """One wrk run through `service`; CPU and memory are the proxy's (none when going direct)."""
    pids = procstat.descendants(service.pid) if proxied else []
    peak = [0]

    def sample() -> None:
        peak[0] = max(peak[0], procstat.rss_bytes(pids))

    cpu_before = procstat.cpu_seconds(pids)
    report = run_wrk(service.url(scenario.path), scenario.connections, seconds,
                     cores.load if scenario.pinned else (),
                     during=sample if proxied else None)
    cpu = procstat.cpu_seconds(pids) - cpu_before
    return Run(
        scenario=scenario.name, target=service.name, round=round_no,
        rps=report.requests_per_second, bytes_per_second=report.bytes_per_second,
        p50=report.p50, p99=report.p99,
        cpu_per_1k=cpu / report.requests * 1000 if proxied and report.requests else None,
        rss_max=peak[0] if proxied else None,
        errors=report.errors,
    )


def place(placements: Sequence[tuple[int, tuple[int, ...]]], pinned: bool) -> None:
    """Pin each started process tree to its cores, or let all of them run anywhere."""
    everywhere = tuple(sorted(os.sched_getaffinity(0)))
    for pid, cores in placements:
        procstat.set_affinity(procstat.descendants(pid), cores if pinned and cores else everywhere)


def profile(service: Service, plan: Sequence[Scenario], seconds: int, cores: Cores, out_dir: Path) -> None:
    """Run each scenario once more with py-spy attached; save the stacks and print the hot spots."""
    spy = str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy")
    if spy is None:
        print("profile: py-spy is not installed (.venv/bin/pip install py-spy)")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for sc in plan:
        if sc.connections == 1:
            continue  # one connection mostly waits: the busy cases say more
        raw = out_dir / f"{service.name}-{sc.name.replace(' ', '-')}.txt"
        spying = subprocess.Popen([spy, "record", "-p", str(service.pid), "-d", str(seconds), "-r", "250",
                                   "-f", "raw", "--nolineno", "--nonblocking", "-o", str(raw)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            report = run_wrk(service.url(sc.path), sc.connections, seconds, cores.load)
            _, err = spying.communicate(timeout=seconds + 30)
        finally:
            if spying.poll() is None:
                spying.kill()
                spying.wait()
        if spying.returncode != 0 or not raw.exists():
            print(f"profile: py-spy failed: {err.decode(errors='replace').strip()}")
            return
        print()
        print(render_hotspots(hotspots(raw.read_text().splitlines()),
                              f"{service.name}, {sc.name} ({report.requests_per_second:.0f} req/s under py-spy), "
                              f"stacks in {raw}"))


@dataclass
class Lineup:
    """What `start_targets` started."""

    services: dict[str, Service]  # target name -> where to send traffic
    receiver: Service | None  # the sidecar's dashboard (or stand-in)
    notes: str
    placements: list[tuple[int, tuple[int, ...]]]  # each process tree started, and the cores it belongs on


def start_targets(fleet: Fleet, names: Sequence[str], cores: Cores, telemetry: bool,
                  stats_interval: float, baseline: str | None = None) -> Lineup:
    """Start the backend and each target asked for; a sidecar that cannot start is left out, with a note.
    `baseline` (a git ref) is what the target `baseline` runs: the sidecar at that commit, compiled."""
    backend = start_backend(fleet, cores)
    services: dict[str, Service] = {}
    receiver: Service | None = None
    notes: list[str] = []
    for name in names:
        if name == "direct":
            services[name] = Service("direct", backend.port, backend.pid)
        elif name == "nginx":
            services[name] = start_nginx_proxy(fleet, cores, backend)
        elif name == "relay":
            services[name] = start_bare_relay(fleet, cores, backend)
        elif name in ("arelay", "uvrelay"):
            services[name] = start_asyncio_relay(fleet, cores, backend, uvloop=name == "uvrelay")
        elif name in ("sidecar", "pysidecar", "baseline"):
            if receiver is None and telemetry:
                receiver = start_receiver(fleet, cores)
            if name == "baseline":
                try:
                    tree, note = compiled.build_at(baseline or "HEAD"), f"the sidecar at {baseline}, compiled"
                except compiled.CompileError as exc:
                    notes.append(f"baseline left out: {exc}")
                    continue
            else:
                tree, note = compiled.sidecar_tree(python=name == "pysidecar")
            notes.append(f"{name}: {note}")
            try:
                services[name] = start_sidecar(fleet, cores, backend, receiver, stats_interval, name=name, tree=tree)
            except StartError as exc:
                notes.append(f"{name} left out: {exc}")
                continue
            if receiver is None:
                notes.append(f"{name}: reporting off (--no-telemetry)")
            else:
                fallback = "" if receiver.name == "dashboard" else " (the real dashboard did not start)"
                notes.append(f"{name} reports every {stats_interval:g}s to the {receiver.name} "
                             f"on 127.0.0.1:{receiver.port}{fallback}")
    placements = [(backend.pid, cores.backend)]
    placements += [(s.pid, cores.proxy) for name, s in services.items() if name != "direct"]
    if receiver is not None:
        placements.append((receiver.pid, cores.backend))
    return Lineup(services, receiver, "\n".join(notes), placements)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sidecar_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every target and scenario (3)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of wrk on each target before measuring (1)")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated subset of {','.join(TARGETS)}")
    parser.add_argument("--scenarios", default="c1,c16,c64,file", help="comma-separated subset of c1,c16,c64,file")
    parser.add_argument("--file-connections", type=int, default=4, help="connections for the 1 MiB file (4)")
    parser.add_argument("--stats-interval", type=float, default=1.0,
                        help="the sidecar's --stats-interval: how often it reports (1 s; its default is 5)")
    parser.add_argument("--no-telemetry", action="store_true", help="run the sidecar with reporting off")
    parser.add_argument("--baseline", metavar="REF",
                        help="also run the sidecar as it was at this git commit (compiled), as target `baseline`")
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler place every process")
    parser.add_argument("--quick", action="store_true", help="1-second runs, 1 round, no warm-up: a smoke test")
    parser.add_argument("--json", type=Path, help="also write every run and the medians to this file")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="after measuring, profile the sidecar with py-spy and keep its stacks in DIR")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup = 1, 1, 0
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.baseline and "baseline" not in args.targets:
        args.targets.append("baseline")
    if "baseline" in args.targets and not args.baseline:
        parser.error("--targets baseline: say which commit with --baseline REF")
    unknown = set(args.targets) - {*TARGETS, "baseline"}
    if unknown or not args.targets:
        parser.error(f"--targets: choose from {','.join(TARGETS)}")
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not args.scenarios or set(args.scenarios) - {"c1", "c16", "c64", "file"}:
        parser.error("--scenarios: choose from c1,c16,c64,file")
    if args.duration < 1 or args.rounds < 1:
        parser.error("--duration and --rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not wrk_available() or not nginx_available():
        print("sidecar_bench: needs wrk and nginx (apt-get install wrk nginx-light)", file=sys.stderr)
        return 2
    cores = Cores.plan(pin=not args.no_pin)
    plan = [sc for sc in scenarios(args.file_connections)
            if (sc.name if not sc.big else "file") in args.scenarios]
    with Fleet() as fleet:
        lineup = start_targets(fleet, args.targets, cores, not args.no_telemetry, args.stats_interval, args.baseline)
        services, receiver, placements = lineup.services, lineup.receiver, lineup.placements
        order = [t for t in args.targets if t in services]
        budget = len(order) * (args.warmup + len(plan) * args.rounds * args.duration)
        print(f"targets: {' '.join(order)}; {cores.describe()}")
        free = [sc.name for sc in plan if not sc.pinned]
        if free and cores.proxy:
            print(f"{', '.join(free)}: not pinned (the latency of one hop, placed by the scheduler)")
        if lineup.notes:
            print(lineup.notes)
        print(f"{args.rounds} round(s) x {len(plan)} scenarios x {len(order)} targets x {args.duration}s "
              f"(about {budget}s of load)", flush=True)
        for name in order if args.warmup else ():
            run_wrk(services[name].url(), 16, args.warmup, cores.load)
        runs: list[Run] = []
        started = time.monotonic()
        for round_no in range(1, args.rounds + 1):
            for sc in plan:
                place(placements, sc.pinned)
                for name in order:
                    service = services[name]
                    if not procstat.alive(service.pid):
                        raise SystemExit(f"{name} died during the benchmark:\n{fleet.log_tail(name)}")
                    try:
                        run = measure(service, name != "direct", sc, round_no, args.duration, cores)
                    except WrkError as exc:
                        raise SystemExit(f"{name}, {sc.name}: {exc}") from None
                    runs.append(run)
                    print(f"  round {round_no} {sc.name:<10} {name:<9} {run.rps:>9.0f} req/s  "
                          f"p50 {run.p50 * 1e6:>8.0f}us  errors {run.errors}", flush=True)
        table = medians(runs)
        found = checks(plan, table)
        found17 = checks_vs_nginx(plan, table)
        print(f"\nmedians over {args.rounds} round(s) of {args.duration}s "
              f"({time.monotonic() - started:.0f}s of runs):")
        print(render_table(plan, order, table))
        if "sidecar" in order:
            print()
            print(render_ratios(plan, order, table))
            if receiver is not None:
                time.sleep(args.stats_interval + 0.5)  # the sidecar's last report
                print(received(receiver))
        print()
        print(render_checks(found))
        print(render_checks(found17, "issue 17, against nginx in this run"))
        if args.profile and "sidecar" in services:
            place(placements, True)
            profile(services["sidecar"], plan, args.duration, cores, args.profile)
    if args.json:
        args.json.write_text(json.dumps(as_json(runs, table, [*found, *found17]), indent=2))
    return 1 if args.check and not all(c.met for c in [*found, *found17]) else 0


if __name__ == "__main__":
    sys.exit(main())
