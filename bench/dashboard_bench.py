"""Dashboard capacity: the most pods one dashboard process carries, beside a bare JSON handler.

Simulated pods report as our sidecar does: resources every second, stats every
5 s (summary cells for a few routes plus up to 50 raw samples, serialised as
the sidecar's buffer does), each pod on one kept-alive connection as the
sidecar's `DashboardClient` keeps it (`--new-connections`: a new connection
per POST, as sidecars did with Tornado's simple `AsyncHTTPClient`). For each
target (`bare`: a Tornado handler that only decodes the JSON; `dashboard`:
`python -m app --mode dashboard` with history on) and each pod count, a fresh
server is started on 127.0.0.1, a separate generator process drives it, and
the script prints POST latency, the server's CPU and RSS, and, for the
dashboard, how far behind its WebSocket updates run. A step passes with POST
p99 < 100 ms, every report sent on time and (dashboard) updates < 1 s behind;
the largest passing count is the capacity. The target of issue 4 is checked
at 2000 pods: the step passes and the dashboard's CPU is at most 70% of one
core. Everything stops by itself; a run takes a few minutes.

    python -m bench.dashboard_bench                      # steps up to 4000 pods
    python -m bench.dashboard_bench --pods 500,2000 --duration 8 --warmup 3
    python -m bench.dashboard_bench --quick              # seconds: a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ujson

ROOT = Path(__file__).resolve().parent.parent
ROUTES = ("/api/users/{id}", "/api/orders", "/health", "/static/app.js")
PROBE_POD = "zz-probe-0-bench"
P99_LIMIT_MS = 100.0
BEHIND_LIMIT_S = 1.0
TARGET_PODS = 2000  # issue 4: 2000 pods on one process ...
TARGET_CPU = 0.70  # ... at no more than 70% of one core
POSTS_PER_POD = 1.2  # a pod sends resources every second and stats every 5 s
BARE_PODS_IN_ISSUE = 3500  # what issue 4 says the bare handler carries on one core "here"


# --- payloads ------------------------------------------------------------------


def stats_template(rng: random.Random, rps: int = 20) -> dict[str, Any]:
    """Five seconds of one pod's traffic as the sidecar sends it, `t` and `started` relative to 0."""
    from app.core.summary import SummaryBuilder

    builder = SummaryBuilder()
    samples = []
    for k in range(rps * 5):
        route = rng.choice(ROUTES)
        status = 500 if rng.random() < 0.02 else 404 if rng.random() < 0.05 else 200
        ms = rng.lognormvariate(1.5, 1.0)
        sample = {"endpoint": route.replace("{id}", str(rng.randrange(1000))), "route": route, "method": "GET",
                  "response": {"status": status, "message": "OK"}, "time": round(ms, 3), "ttfb": round(ms / 2, 3),
                  "started": k * 1000.0 / rps, "file": route.startswith("/static"), "bytes_in": 180,
                  "bytes_out": 2400, "probe": False, "error": None}
        builder.add(sample)  # type: ignore[arg-type]
        samples.append(sample)
    return {"stats": samples[-50:], "summary": builder.drain()}


def app_of(pod: str) -> str:
    return pod.rsplit("-", 2)[0]


def stats_body(pod: str, template: dict[str, Any], now: float, batch: str) -> bytes:
    """What sidecar/report/buffer.py seals: the same keys, slashes not escaped."""
    base = int(now) - 5
    summary = [dict(cell, t=cell["t"] + base) for cell in template["summary"]]
    samples = [dict(s, started=s["started"] + base * 1000.0) for s in template["stats"]]
    return ujson.dumps({"pod": pod, "app": app_of(pod), "batch": batch, "dropped": 0, "stats": samples,
                        "summary": summary}, escape_forward_slashes=False).encode()


def resource_body(pod: str, rng: random.Random) -> bytes:
    return ujson.dumps({"pod": pod, "app": app_of(pod), "resource": {
        "time": time.time() * 1000, "free_memory": 3_000_000_000, "total_memory": 8_000_000_000,
        "cpus": [{"model": "bench", "speed": 2400, "times": {"user": 1, "nice": 0, "sys": 1, "idle": 9, "irq": 0}}] * 2,
        "cpu_percent": 30.0, "cpu_percent_per_core": [25.0, 35.0], "load_average": [0.5, 0.4, 0.3],
        "memory": {"total": 8e9, "available": 5e9, "used": 3e9, "percent": 37.5},
        "container": {"cgroup": "v2", "cpu_usage_seconds": 12.0, "cpu_cores_used": 0.1, "cpu_limit_cores": 1.0,
                      "cpu_percent": round(rng.uniform(5, 60), 1), "memory_usage": rng.randrange(50, 400) * 2**20,
                      "memory_limit": 512 * 2**20, "memory_percent": 20.0},
        "processes": None, "sidecar": {"cpu_percent": 1.0, "rss": 30 * 2**20}}}, escape_forward_slashes=False).encode()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the generator (a separate process) -----------------------------------------


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"stats": [], "resources": []})
    expected: int = 0
    sent: int = 0
    errors: int = 0
    behind: list[float] = field(default_factory=list)  # update received - overview rendered, seconds
    visible: list[float] = field(default_factory=list)  # probe POST answered -> seen in an update
    updates: int = 0


class Poster:
    """POSTs over raw asyncio streams: cheap enough that the generator is not what is measured."""

    def __init__(self, port: int, keepalive: bool) -> None:
        self.port = port
        self.keepalive = keepalive
        self.stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: bytes, body: bytes) -> int:
        if self.stream is None:
            self.stream = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.stream
        connection = b"keep-alive" if self.keepalive else b"close"
        writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: %s\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (path, connection, len(body), body))
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        if not self.keepalive:
            writer.close()
            self.stream = None
        return int(head[9:12])


async def run_pod(index: int, args: argparse.Namespace, start: float, measure_from: float, end: float,
                  tally: Tally) -> None:
    rng = random.Random(index)
    pod = f"app{index // 10:04d}-{index % 10}-bench"
    template = stats_template(rng)
    resources = resource_body(pod, rng)
    poster = Poster(args.port, args.keepalive)
    phase = (index * 0.618034) % 1.0  # spread pods evenly over each second
    second = 0
    while True:
        due = start + phase + second
        if due >= end:
            return
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        measured = due >= measure_from
        kinds = [("resources", b"/resources")]
        if second % 5 == index % 5:
            kinds.append(("stats", b"/stats"))
        for kind, path in kinds:
            body = resources if kind == "resources" else stats_body(pod, template, time.time(), f"{pod}-{second}")
            began = time.monotonic()
            try:
                status = await poster.post(path, body)
            except (OSError, asyncio.IncompleteReadError, AttributeError, ValueError):
                status = 0
                poster.stream = None
            if measured:
                tally.expected += 1
                if status == 200:
                    tally.sent += 1
                    tally.latencies[kind].append(time.monotonic() - began)
                else:
                    tally.errors += 1
        second += 1


_NOW = re.compile(r'"now":(\d+)')
_PROBE = re.compile(r'"pod":"' + PROBE_POD + r'","app":"[^"]*","stale":(?:true|false),"seen":\d+,"dropped":(\d+)')


async def watch(args: argparse.Namespace, measure_from: float, end: float, tally: Tally) -> None:
    """A WebSocket reader, plus a probe pod whose `dropped` count tells when a POST became visible."""
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(f"ws://127.0.0.1:{args.port}/ws", max_message_size=512 * 2**20)
    answered: dict[int, float] = {}
    poster = Poster(args.port, keepalive=True)

    async def probe() -> None:
        seq = 0
        while time.monotonic() < end - 1.5:
            seq += 1
            body = ujson.dumps({"pod": PROBE_POD, "dropped": 1, "stats": []}).encode()
            await poster.post(b"/stats", body)
            answered[seq] = time.monotonic()
            await asyncio.sleep(0.5)

    prober = asyncio.ensure_future(probe())
    seen = 0
    try:
        while time.monotonic() < end:
            try:
                message = await asyncio.wait_for(ws.read_message(), max(0.1, end - time.monotonic()))
            except TimeoutError:
                break
            if message is None:
                break
            received = time.monotonic()
            text = message if isinstance(message, str) else message.decode()
            head = _NOW.search(text, 0, 200)
            if received < measure_from or head is None:
                continue
            tally.updates += 1
            tally.behind.append(max(0.0, time.time() - int(head.group(1)) / 1000))
            found = _PROBE.search(text)
            if found and int(found.group(1)) > seen:
                seen = int(found.group(1))
                if seen in answered:
                    tally.visible.append(received - answered[seen])
    finally:
        prober.cancel()
        ws.close()


async def generate(args: argparse.Namespace) -> dict[str, Any]:
    tally = Tally()
    start = time.monotonic() + 0.5
    measure_from = start + args.warmup
    end = measure_from + args.duration
    tasks = [run_pod(i, args, start, measure_from, end, tally) for i in range(args.pods)]
    if args.watch:
        tasks.append(watch(args, measure_from, end, tally))
    cpu_before = time.process_time()
    await asyncio.gather(*tasks)
    everything = tally.latencies["stats"] + tally.latencies["resources"]
    return {
        "expected": tally.expected, "sent": tally.sent, "errors": tally.errors,
        "p50_ms": percentile(everything, 0.50) * 1000, "p99_ms": percentile(everything, 0.99) * 1000,
        "stats_p99_ms": percentile(tally.latencies["stats"], 0.99) * 1000,
        "resources_p99_ms": percentile(tally.latencies["resources"], 0.99) * 1000,
        "updates": tally.updates, "behind_max_s": max(tally.behind, default=math.nan),
        "behind_p50_s": percentile(tally.behind, 0.5), "visible_p50_s": percentile(tally.visible, 0.5),
        "visible_max_s": max(tally.visible, default=math.nan),
        "generator_cpu": (time.process_time() - cpu_before) / (end - start + 0.5),
    }


# --- the reference: a bare handler that only decodes the JSON ----------------------


def serve_bare(port: int) -> None:
    from tornado.web import Application, RequestHandler

    class Bare(RequestHandler):
        def post(self) -> None:
            ujson.loads(self.request.body)
            self.set_header("Content-Type", "application/json")
            self.finish(b'{"response":"saved"}')

    async def main() -> None:
        app = Application([(r"/stats", Bare), (r"/resources", Bare)], log_function=lambda handler: None)
        server = app.listen(port, "127.0.0.1", backlog=4096)  # as the dashboard's (app/dashboard/server.py)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        server.stop()

    asyncio.run(main())


# --- orchestration --------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def cores(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """The server alone on the last core, the generator on the others (the target is one core's worth)."""
    available = sorted(os.sched_getaffinity(0))
    if not pin or len(available) < 2:
        return None, None
    return {available[-1]}, set(available[:-1])


def pinned(which: set[int] | None) -> Callable[[], None] | None:
    if which is None:
        return None
    return lambda: os.sched_setaffinity(0, which)


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_step(target: str, pods: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from bench import procstat

    port = free_port()
    if target == "bare":
        command = [sys.executable, "-m", "bench.dashboard_bench", "--serve-bare", "--port", str(port)]
    else:
        data = workdir / f"dash-{pods}.sqlite3"
        command = [sys.executable, "-m", "app", "--mode", "dashboard", "--host", "127.0.0.1", "--port", str(port),
                   "--data", str(data) if args.history else ":memory:"]
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "DATA_PATH", "DASHBOARD_TOKEN", "MODE")}
    server_cores, generator_cores = cores(args.pin)
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=pinned(server_cores))
    generator: subprocess.Popen[bytes] | None = None
    try:
        wait_port(port, server)
        gen_args = [sys.executable, "-m", "bench.dashboard_bench", "--generate", "--port", str(port),
                    "--pods", str(pods), "--duration", str(args.duration), "--warmup", str(args.warmup)]
        if target == "dashboard":
            gen_args.append("--watch")
        if not args.keepalive:
            gen_args.append("--new-connections")
        generator = subprocess.Popen(gen_args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     preexec_fn=pinned(generator_cores))
        time.sleep(0.5 + args.warmup)
        cpu0, t0 = procstat.cpu_seconds([server.pid]), time.monotonic()
        rss = 0
        while time.monotonic() - t0 < args.duration:
            rss = max(rss, procstat.rss_bytes([server.pid]))
            time.sleep(0.25)
        cpu = (procstat.cpu_seconds([server.pid]) - cpu0) / (time.monotonic() - t0)
        out, _ = generator.communicate(timeout=args.duration + args.warmup + 60)
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        if generator is not None and generator.poll() is None:
            generator.kill()
            generator.wait()
        stop(server)
    result.update(target=target, pods=pods, cpu=cpu, rss_mb=rss / 2**20)
    on_time = result["sent"] >= 0.97 * pods * POSTS_PER_POD * args.duration and result["errors"] == 0
    result["ok"] = bool(on_time and result["p99_ms"] < P99_LIMIT_MS
                        and (target == "bare" or (result["updates"] > 0 and result["behind_max_s"] < BEHIND_LIMIT_S)))
    return result


def cpu_per_pod(r: dict[str, Any]) -> float:
    """Server CPU seconds a second per pod, from the POSTs it answered (a server falling behind
    answers fewer than were due, which would flatter it)."""
    answered_per_second = r["sent"] / max(1e-9, r["duration"])
    return float(r["cpu"]) / max(1e-9, float(answered_per_second)) * POSTS_PER_POD


def show(r: dict[str, Any]) -> None:
    live = (f"  ws behind p50 {r['behind_p50_s']:.2f}s max {r['behind_max_s']:.2f}s, POST visible p50 "
            f"{r['visible_p50_s']:.2f}s max {r['visible_max_s']:.2f}s, {r['updates']} updates"
            if r["target"] == "dashboard" else "")
    rate = r["sent"] / max(1e-9, r.get("duration", 1))
    print(f"{r['target']:>9} {r['pods']:>5} pods: {rate:7.0f} POST/s, p50 {r['p50_ms']:6.1f} ms, "
          f"p99 {r['p99_ms']:7.1f} ms (stats {r['stats_p99_ms']:.1f}, resources {r['resources_p99_ms']:.1f}), "
          f"errors {r['errors']}, server CPU {100 * r['cpu']:5.1f}% ({1e6 * cpu_per_pod(r):.0f} us/s a pod), "
          f"RSS {r['rss_mb']:6.1f} MB, generator CPU "
          f"{100 * r['generator_cpu']:.0f}%{live}  {'ok' if r['ok'] else 'FAIL'}", flush=True)


def summarise(results: dict[str, list[dict[str, Any]]], keepalive: bool) -> None:
    """Each target's capacity, CPU and RSS, then the target of issue 4 with PASS or MISS, measured
    directly at 2000 pods and as the issue derives it from the bare handler."""
    how = "one kept-alive connection per pod" if keepalive else "a new connection per POST"
    print(f"summary ({how}; the server alone on one core when there are two):")
    # CPU per pod falls as the load rises (fixed costs spread, fewer idle wake-ups) and is capped once a
    # server saturates, so each target is judged at its busiest passing step, and the two are compared
    # at the largest pod count both passed.
    for target, rs in results.items():
        passed = [r for r in rs if r["ok"]]
        if not passed:
            print(f"  {target:>9}: passed no step; RSS up to {max(r['rss_mb'] for r in rs):.0f} MB")
            continue
        r = max(passed, key=lambda r: r["pods"])
        print(f"  {target:>9}: carries {r['pods']} pods (largest passing step), at {1e6 * cpu_per_pod(r):.0f} us of "
              f"CPU per pod per second there, so one core would carry about {1 / cpu_per_pod(r):.0f} pods; "
              f"RSS up to {max(r['rss_mb'] for r in rs):.0f} MB")
    ratio = None
    if "bare" in results and "dashboard" in results:
        steps = {t: {r["pods"]: r for r in results[t] if r["cpu"] > 0 and r["sent"]} for t in ("bare", "dashboard")}
        passed = {p for p in steps["bare"].keys() & steps["dashboard"].keys()
                  if steps["bare"][p]["ok"] and steps["dashboard"][p]["ok"]}
        common = passed or steps["bare"].keys() & steps["dashboard"].keys()
        if common:
            pods = max(common)
            ratio = cpu_per_pod(steps["dashboard"][pods]) / cpu_per_pod(steps["bare"][pods])
            where = "the largest count both passed" if passed else "no count passed for both"
            print(f"  by CPU, the dashboard carries {1 / ratio:.2f} of what the bare handler does (its CPU per pod "
                  f"is {ratio:.2f}x the bare handler's at {pods} pods, {where})")
    budget = TARGET_CPU / TARGET_PODS
    print(f"target (issue 4): the dashboard sustains {TARGET_PODS} pods (POST p99 < {P99_LIMIT_MS:.0f} ms, updates "
          f"< {BEHIND_LIMIT_S:.0f} s behind) with its CPU <= {100 * TARGET_CPU:.0f}% of one core, i.e. <= "
          f"{1e6 * budget:.0f} us of CPU per pod per second (one core would carry {1 / budget:.0f} pods)")
    at_target = [r for r in results.get("dashboard", []) if r["pods"] == TARGET_PODS]
    if at_target:
        r = at_target[0]
        verdict = "PASS" if r["ok"] and r["cpu"] <= TARGET_CPU else "MISS"
        print(f"  at {TARGET_PODS} pods: dashboard CPU {100 * r['cpu']:.0f}% of one core "
              f"({1e6 * cpu_per_pod(r):.0f} us per pod per second), POST p99 {r['p99_ms']:.1f} ms, "
              f"updates up to {r['behind_max_s']:.2f} s behind, {r['errors']} errors, RSS {r['rss_mb']:.0f} MB, "
              f"step {'passed' if r['ok'] else 'FAILED'}: {verdict}")
    else:
        print(f"  not measured: no {TARGET_PODS}-pod step for the dashboard (--pods)")
    # The issue derives the target from the bare handler's capacity "here" (3500 pods): the dashboard's
    # CPU per pod may be at most 3500 / 2857 = 1.22x the bare handler's. Both measured in the same run,
    # that ratio moves less with how busy the machine is than an absolute share of a core does.
    allowed = BARE_PODS_IN_ISSUE * budget
    if ratio is not None:
        print(f"  as the issue derives it (the bare handler carries {BARE_PODS_IN_ISSUE} pods, so the dashboard "
              f"may cost at most {allowed:.2f}x its CPU per pod): {ratio:.2f}x in this run: "
              f"{'PASS' if ratio <= allowed else 'MISS'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", default="500,1000,2000,2500,3000,3500,4000", help="pod counts to step through")
    parser.add_argument("--targets", default="bare,dashboard")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per step")
    parser.add_argument("--warmup", type=float, default=6.0, help="seconds before measuring (fills the windows)")
    parser.add_argument("--new-connections", dest="keepalive", action="store_false",
                        help="a new connection per POST (sidecars before the kept-alive DashboardClient)")
    parser.add_argument("--no-history", dest="history", action="store_false", help="dashboard with --data :memory:")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="let the scheduler place the server and the generator (default: separate cores)")
    parser.add_argument("--quick", action="store_true", help="a few seconds: 200 pods, both targets")
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--watch", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.port)
        return 0
    if args.generate:
        args.pods = int(args.pods)
        print(json.dumps(asyncio.run(generate(args))), flush=True)
        return 0
    if args.quick:
        args.pods, args.duration, args.warmup = "200", 3.0, 2.0
    counts = [int(n) for n in str(args.pods).split(",")]
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:
        for target in args.targets.split(","):
            results[target] = []
            for pods in counts:
                result = run_step(target, pods, args, Path(tmp))
                result["duration"] = args.duration
                show(result)
                results[target].append(result)
                if not result["ok"] and pods >= TARGET_PODS:  # below it, go on: the target's step is measured
                    break
    print()
    summarise(results, args.keepalive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
