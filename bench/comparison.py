"""From many benchmark runs to one verdict: medians per target, the sidecar's ratios, the targets met.

Pure code: it takes `Run` records (one wrk run through one target) and renders
the table and the checks that `sidecar_bench` prints. The targets are those of
issue 2 ("Speed"), for one core with telemetry on.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

TARGET_RPS_VS_RELAY = 0.8
TARGET_FILE_VS_RELAY = 0.9
TARGET_ADDED_P50_SECONDS = 120e-6
TARGET_RSS_BYTES = 40 * 1000 * 1000
# Issue 17 ("the sidecar at nginx's speed"): against nginx as a proxy in the same run.
TARGET17_RPS_VS_NGINX = 0.9  # at 16 and 64 connections
TARGET17_FILE_VS_NGINX = 1.0
TARGET17_ADDED_P50_SECONDS = 30e-6
TARGET17_CPU_PER_REQUEST = 25e-6
TARGET17_RSS_BYTES = 30 * 1000 * 1000


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    connections: int
    big: bool = False  # a large body: throughput is the figure that matters
    pinned: bool = True  # proxy alone on its core; False lets the scheduler place every process


@dataclass(frozen=True)
class Run:
    """One wrk run through one target."""

    scenario: str
    target: str
    round: int
    rps: float
    bytes_per_second: float
    p50: float  # seconds
    p99: float
    cpu_per_1k: float | None  # CPU seconds the proxy used per 1000 requests; None when there is no proxy
    rss_max: int | None  # bytes, the proxy's largest resident size during the run
    errors: int


@dataclass(frozen=True)
class Figures:
    """Medians over rounds of one target in one scenario."""

    rounds: int
    rps: float
    bytes_per_second: float
    p50: float
    p99: float
    cpu_per_1k: float | None
    rss_max: int | None
    errors: int  # summed over rounds


@dataclass(frozen=True)
class Check:
    what: str
    measured: str
    target: str
    met: bool


def _median_or_none(values: Sequence[float | int | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def medians(runs: Iterable[Run]) -> dict[str, dict[str, Figures]]:
    """scenario -> target -> figures (medians across rounds; the largest RSS seen)."""
    grouped: dict[str, dict[str, list[Run]]] = {}
    for run in runs:
        grouped.setdefault(run.scenario, {}).setdefault(run.target, []).append(run)
    result: dict[str, dict[str, Figures]] = {}
    for scenario, by_target in grouped.items():
        result[scenario] = {}
        for target, rs in by_target.items():
            rss = [r.rss_max for r in rs if r.rss_max is not None]
            cpu = _median_or_none([r.cpu_per_1k for r in rs])
            result[scenario][target] = Figures(
                rounds=len(rs),
                rps=statistics.median(r.rps for r in rs),
                bytes_per_second=statistics.median(r.bytes_per_second for r in rs),
                p50=statistics.median(r.p50 for r in rs),
                p99=statistics.median(r.p99 for r in rs),
                cpu_per_1k=cpu,
                rss_max=max(rss) if rss else None,
                errors=sum(r.errors for r in rs),
            )
    return result


def checks(scenarios: Sequence[Scenario], table: dict[str, dict[str, Figures]],
           subject: str = "sidecar", floor: str = "relay", direct: str = "direct") -> list[Check]:
    """The issue's targets, measured for `subject` against the bare relay and going direct."""
    found: list[Check] = []
    for sc in scenarios:
        row = table.get(sc.name, {})
        mine, base = row.get(subject), row.get(floor)
        if mine is None or base is None or base.rps == 0:
            continue
        found.append(_versus(sc, mine, base, floor, TARGET_FILE_VS_RELAY, TARGET_RPS_VS_RELAY))
    found += _added_and_rss(scenarios, table, subject, direct, TARGET_ADDED_P50_SECONDS, TARGET_RSS_BYTES)
    return found


def checks_vs_nginx(scenarios: Sequence[Scenario], table: dict[str, dict[str, Figures]],
                    subject: str = "sidecar", nginx: str = "nginx", direct: str = "direct") -> list[Check]:
    """Issue 17's targets: `subject` against nginx as a proxy (and going direct) in the same run."""
    found: list[Check] = []
    for sc in scenarios:
        row = table.get(sc.name, {})
        mine, theirs = row.get(subject), row.get(nginx)
        if mine is None:
            continue
        if theirs is not None and (theirs.bytes_per_second if sc.big else sc.connections > 1 and theirs.rps):
            found.append(_versus(sc, mine, theirs, nginx, TARGET17_FILE_VS_NGINX, TARGET17_RPS_VS_NGINX))
        if not sc.big and sc.connections > 1 and mine.cpu_per_1k is not None:
            per_request = mine.cpu_per_1k / 1000
            found.append(Check(f"{sc.name}: CPU per request", format_seconds(per_request),
                               f"<= {format_seconds(TARGET17_CPU_PER_REQUEST)}",
                               per_request <= TARGET17_CPU_PER_REQUEST))
    found += _added_and_rss(scenarios, table, subject, direct, TARGET17_ADDED_P50_SECONDS, TARGET17_RSS_BYTES)
    return found


def _versus(sc: Scenario, mine: Figures, theirs: Figures, name: str, file_target: float,
            rps_target: float) -> Check:
    """`mine` against `theirs` in one scenario: bytes/s for a big file, requests/s otherwise."""
    if sc.big:
        ratio = mine.bytes_per_second / theirs.bytes_per_second if theirs.bytes_per_second else 0.0
        what, target = "throughput", file_target
    else:
        ratio, what, target = mine.rps / theirs.rps, "requests/s", rps_target
    return Check(f"{sc.name}: {what} vs {name}", f"{ratio:.2f}x", f">= {target}x", ratio >= target)


def _added_and_rss(scenarios: Sequence[Scenario], table: dict[str, dict[str, Figures]], subject: str, direct: str,
                   added_target: float, rss_target: float) -> list[Check]:
    """The median `subject` adds to one connection over `direct`, and its largest RSS, against the targets."""
    found: list[Check] = []
    single = next((sc for sc in scenarios if sc.connections == 1 and not sc.big), None)
    row = table.get(single.name, {}) if single is not None else {}
    if single is not None and subject in row and direct in row:
        added = row[subject].p50 - row[direct].p50
        found.append(Check(f"{single.name}: median added vs {direct}", format_seconds(added),
                           f"<= {format_seconds(added_target)}", added <= added_target))
    rss = [figs[subject].rss_max for figs in table.values() if subject in figs and figs[subject].rss_max]
    if rss:
        peak = max(r for r in rss if r is not None)
        found.append(Check("RSS under load (largest seen)", format_bytes(peak),
                           f"<= {format_bytes(rss_target)}", peak <= rss_target))
    return found


def format_seconds(value: float) -> str:
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value < 1e-3:
        return f"{sign}{value * 1e6:.0f}us"
    if value < 1:
        return f"{sign}{value * 1e3:.2f}ms"
    return f"{sign}{value:.2f}s"


def format_bytes(value: float) -> str:
    return f"{value / 1e6:.1f}MB"


def render_table(scenarios: Sequence[Scenario], targets: Sequence[str],
                 table: dict[str, dict[str, Figures]]) -> str:
    """One line per scenario and target: medians across rounds."""
    head = (f"{'scenario':<14}{'target':<10}{'req/s':>10}{'MB/s':>9}{'p50':>10}{'p99':>10}"
            f"{'cpu s/1k req':>14}{'max RSS':>10}{'errors':>8}")
    lines = [head, "-" * len(head)]
    for sc in scenarios:
        for target in targets:
            f = table.get(sc.name, {}).get(target)
            if f is None:
                continue
            cpu = f"{f.cpu_per_1k:.3f}" if f.cpu_per_1k is not None else "-"
            rss = format_bytes(f.rss_max) if f.rss_max is not None else "-"
            lines.append(f"{sc.name:<14}{target:<10}{f.rps:>10.0f}{f.bytes_per_second / 1e6:>9.1f}"
                         f"{format_seconds(f.p50):>10}{format_seconds(f.p99):>10}{cpu:>14}{rss:>10}{f.errors:>8}")
    return "\n".join(lines)


def render_ratios(scenarios: Sequence[Scenario], targets: Sequence[str], table: dict[str, dict[str, Figures]],
                  subject: str = "sidecar", direct: str = "direct") -> str:
    """The subject's requests/s (or throughput, for big bodies) over each other target's, and added median."""
    others = [t for t in targets if t != subject]
    lines = [f"{subject} / other (requests/s; MB/s for big bodies)    " + "".join(f"{t:>10}" for t in others)]
    for sc in scenarios:
        row = table.get(sc.name, {})
        if subject not in row:
            continue
        cells = []
        for t in others:
            if t not in row:
                cells.append(f"{'-':>10}")
                continue
            mine, theirs = ((row[subject].bytes_per_second, row[t].bytes_per_second) if sc.big
                            else (row[subject].rps, row[t].rps))
            cells.append(f"{mine / theirs:>9.2f}x" if theirs else f"{'-':>10}")
        lines.append(f"  {sc.name:<49}" + "".join(cells))
    # CPU per request barely moves when other work shares the machine, unlike
    # requests/s: its inverse ratio estimates requests/s on a core of one's own.
    cpu_cells = []
    for sc in scenarios:
        row = table.get(sc.name, {})
        own, floor = row.get(subject), row.get("relay")
        if own and floor and own.cpu_per_1k and floor.cpu_per_1k:
            cpu_cells.append(f"{sc.name} {floor.cpu_per_1k / own.cpu_per_1k:.2f}x")
    if cpu_cells:
        lines.append(f"relay's CPU per request / {subject}'s (requests/s each could do on a core of its own): "
                     + "  ".join(cpu_cells))
    for sc in scenarios:
        row = table.get(sc.name, {})
        if sc.connections != 1 or sc.big or direct not in row:
            continue
        added = "  ".join(f"{t} {format_seconds(row[t].p50 - row[direct].p50)}" for t in targets
                          if t != direct and t in row)
        lines.append(f"median added to {sc.name} vs {direct}: {added}")
    return "\n".join(lines)


def render_checks(found: Sequence[Check], title: str = "issue 2, one core, telemetry on") -> str:
    if not found:
        return f"targets ({title}): not checked (the sidecar or its reference did not run)"
    lines = [f"targets ({title}):"]
    for c in found:
        lines.append(f"  [{'met' if c.met else 'MISSED'}] {c.what}: {c.measured} (target {c.target})")
    return "\n".join(lines)


def as_json(runs: Sequence[Run], table: dict[str, dict[str, Figures]], found: Sequence[Check]) -> dict[str, object]:
    return {
        "runs": [asdict(r) for r in runs],
        "medians": {sc: {t: asdict(f) for t, f in row.items()} for sc, row in table.items()},
        "checks": [asdict(c) for c in found],
    }
