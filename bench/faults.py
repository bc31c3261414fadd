"""The long versions of the fault tests: outages, crashes, idle hordes and abusive pages, with figures.

Each scenario starts what it needs on 127.0.0.1 (sample app, dashboard,
sidecar) in a `Fleet`, so every process stops at the end, on Ctrl-C or on an
error; defaults are short, flags make them long:

    python -m bench.faults outage --outage 300     # the dashboard down for 5 minutes under load
    python -m bench.faults crash                   # the dashboard SIGKILLed under load, then restarted
    python -m bench.faults idle --connections 5000 # idle and slowloris connections against the sidecar
    python -m bench.faults pages --seconds 300     # WebSocket pages that never read or that flood

Each prints what it measured and a verdict line; exit status 1 when a verdict fails.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench import procstat
from bench.fleet import Fleet, python_argv
from bench.stack import free_port, wait_for_port

POD = "faults-1-x2k9q"


# --- the processes ---------------------------------------------------------------------------------------------


def app_env() -> dict[str, str]:
    leaking = {"PORT", "HOST", "DASHBOARD", "MOTHERSHIP", "DASHBOARD_TOKEN", "DATA_PATH", "MODE", "TARGET_PORT",
               "TARGET_HOST", "ADMIN_PORT", "POD_NAME", "APP_NAME"}
    env = {k: v for k, v in os.environ.items() if k not in leaking}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Stack:
    """Sample app, dashboard (with a history file) and sidecar, each a process of the fleet."""

    fleet: Fleet
    app_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    sidecar_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)

    def start_app(self) -> None:
        self._start("app", python_argv("app.demo.sampleapp", "--host", "127.0.0.1", "--port", str(self.app_port),
                                       "--fail-rate", "0"), self.app_port)

    def start_dashboard(self) -> None:
        self._start("dashboard", python_argv("app", "--mode", "dashboard", "--host", "127.0.0.1", "--port",
                                             str(self.dashboard_port), "--data", str(self.fleet.dir / "history.db"),
                                             "--stale-after", "1h"), self.dashboard_port)

    def start_sidecar(self, *extra: str) -> None:
        self._start("sidecar", python_argv(
            "app", "--mode", "sidecar", "--host", "127.0.0.1", "--port", str(self.sidecar_port), "--admin-port",
            str(self.admin_port), "--target-port", str(self.app_port), "--pod", POD,
            "--dashboard", f"http://127.0.0.1:{self.dashboard_port}", *extra), self.sidecar_port)

    def _start(self, name: str, argv: list[str], port: int) -> None:
        # A restarted process writes to a log of its own: the fleet's log file is truncated at each start.
        self.starts[name] = self.starts.get(name, 0) + 1
        label = name if self.starts[name] == 1 else f"{name}-{self.starts[name]}"
        proc = self.fleet.start(label, argv, env=app_env())
        self.procs[name] = proc
        wait_for_port(port, proc, self.fleet, label)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs[name]
        if sig == signal.SIGKILL:
            proc.kill()
            proc.wait(10)
        else:
            self.fleet.stop(proc)

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def counted(self) -> tuple[int, int]:
        """(exchanges the dashboard counted, exchanges the sidecar reported dropped)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.dashboard_port}/stats", timeout=5) as reply:
            pods = json.loads(reply.read())
        pod = next((p for p in pods if p["pod"] == POD), None)
        return (0, 0) if pod is None else (pod["total"], pod["dropped"])

    def sidecar_metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#")
                   and line[len(name):len(name) + 1] in (" ", "{"))


# --- steady traffic -------------------------------------------------------------------------------------------


class Traffic:
    """Requests at a steady rate on one keep-alive connection, in a thread; latencies kept per phase."""

    def __init__(self, port: int, rate: float) -> None:
        self.port = port
        self.rate = rate
        self.sent = 0
        self.failed = 0
        self.phase = "warm-up"
        self.latencies: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        began = time.monotonic()
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                conn.request("GET", f"/users/{self.sent % 900 + 1}")
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                ok = False
            self.sent += 1
            self.failed += not ok
            self.latencies.setdefault(self.phase, []).append((time.perf_counter() - started) * 1000)
            time.sleep(max(0.0, began + self.sent / self.rate - time.monotonic()))
        conn.close()


def percentiles(values: Sequence[float]) -> str:
    if not values:
        return "no requests"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):6.2f} ms  p99 {p99:6.2f} ms  max {ordered[-1]:7.1f} ms  (n={len(ordered)})"


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


# --- scenarios ----------------------------------------------------------------------------------------------


def outage(args: argparse.Namespace, crash: bool = False) -> bool:
    """The dashboard down (SIGTERM, or SIGKILL with `crash`) for a while under load, then back."""
    with Fleet() as fleet:
        stack = Stack(fleet)
        stack.start_app()
        stack.start_dashboard()
        extra = ["--stats-interval", str(args.stats_interval)]
        if args.buffer_bytes:
            extra += ["--buffer-bytes", str(args.buffer_bytes)]
        stack.start_sidecar(*extra)
        traffic = Traffic(stack.sidecar_port, args.rate).start()
        time.sleep(3)
        traffic.phase = "up"
        rss_up = procstat.rss_bytes([stack.pid("sidecar")])
        time.sleep(args.up)
        how = "SIGKILL" if crash else "SIGTERM"
        print(f"dashboard stopped ({how}) after {traffic.sent} requests; down for {args.outage:g} s at "
              f"{args.rate:g} req/s")
        stack.stop("dashboard", signal.SIGKILL if crash else signal.SIGTERM)
        traffic.phase = "down"
        down_started = time.monotonic()
        rss_down = []
        while time.monotonic() - down_started < args.outage:
            time.sleep(min(args.interval, max(0.0, args.outage - (time.monotonic() - down_started))))
            rss = procstat.rss_bytes([stack.pid("sidecar")])
            rss_down.append(rss)
            print(f"  t={time.monotonic() - down_started:6.1f}s  sent {traffic.sent:7d}  sidecar RSS "
                  f"{rss / 1e6:6.1f} MB  fds {procstat.open_fds(stack.pid('sidecar')):4d}  queued "
                  f"{stack.sidecar_metric('mothership_reporter_queue_samples'):8.0f}  dropped "
                  f"{stack.sidecar_metric('mothership_reporter_dropped_samples_total'):7.0f}")
        stack.start_dashboard()
        traffic.phase = "after"
        time.sleep(5)
        traffic.stop()
        sent = traffic.sent
        settled = wait_until(lambda: sum(stack.counted()) >= sent, 120 if not crash else 15)
        time.sleep(args.stats_interval * 3)  # a batch counted twice would show by now
        counted, dropped = stack.counted()
        rss_after = procstat.rss_bytes([stack.pid("sidecar")])
        print(f"latency up:    {percentiles(traffic.latencies.get('up', []))}")
        print(f"latency down:  {percentiles(traffic.latencies.get('down', []))}")
        print(f"latency after: {percentiles(traffic.latencies.get('after', []))}")
        print(f"sidecar RSS: up {rss_up / 1e6:.1f} MB, down max {max(rss_down, default=0) / 1e6:.1f} MB, "
              f"after {rss_after / 1e6:.1f} MB")
        lost = sent - counted - dropped
        print(f"sent {sent}, failed {traffic.failed}; the dashboard counted {counted} and was told of {dropped} "
              f"dropped; {lost} unaccounted for{'' if settled else ' (no longer changing)'}")
        if crash:
            print("verdict: " + ("nothing lost" if lost == 0 else
                                 f"{lost} exchanges acknowledged before the crash are missing from the pod's total "
                                 f"({lost / args.rate:.1f} s of traffic: pods' rows are written every 10 s)"))
            return lost >= 0 and counted <= sent
        ok = lost == 0 and counted <= sent and traffic.failed == 0
        print("verdict: " + ("every exchange counted once or reported dropped" if ok else "LOSS OR DOUBLE COUNT"))
        # The proxy must not notice the outage: its median latency while the dashboard is down stays
        # within 1.5x (+0.5 ms) of the median while it is up (tests/test_faults.py printed this, once
        # asserted it, and failed on a loaded machine).
        up = statistics.median(traffic.latencies.get("up") or [0.0])
        down = statistics.median(traffic.latencies.get("down") or [0.0])
        unnoticed = down <= 1.5 * up + 0.5
        print(f"verdict: median latency down / up {down / up if up else 0.0:.2f}x "
              f"({down:.2f} ms / {up:.2f} ms; at most 1.5x + 0.5 ms): "
              + ("the proxy did not notice" if unnoticed else "SLOWER WHILE THE DASHBOARD WAS DOWN"))
        return ok and unnoticed


def idle(args: argparse.Namespace) -> bool:
    """Thousands of connections that send nothing, or a head that never ends, while others are served."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * args.connections + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))  # the children inherit it
    with Fleet() as fleet:
        stack = Stack(fleet)
        stack.start_app()
        stack.start_dashboard()
        stack.start_sidecar("--idle-timeout", str(args.idle_timeout), "--header-timeout", str(args.header_timeout))
        pid = stack.pid("sidecar")
        base_rss, base_fds = procstat.rss_bytes([pid]), procstat.open_fds(pid)
        clients: list[tuple[socket.socket, float]] = []
        slowloris = int(args.connections * args.slowloris)
        started = time.monotonic()
        for i in range(args.connections):
            sock = socket.create_connection(("127.0.0.1", stack.sidecar_port), timeout=10)
            if i < slowloris:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Never-Ends: ")
            clients.append((sock, time.monotonic()))
            if len(clients) % 100 == 0:  # let the sidecar accept them: its listen backlog is small
                wait_until(lambda: stack.sidecar_metric("mothership_proxy_connections_open") >= len(clients), 10)
        print(f"opened {args.connections} connections ({slowloris} slowloris) in {time.monotonic() - started:.1f} s")
        rss, fds = procstat.rss_bytes([pid]), procstat.open_fds(pid)
        traffic = Traffic(stack.sidecar_port, 100).start()
        traffic.phase = "held"
        time.sleep(2)
        traffic.stop()
        print(f"sidecar with them open: RSS {base_rss / 1e6:.1f} -> {rss / 1e6:.1f} MB "
              f"({(rss - base_rss) / args.connections / 1e3:.1f} kB each), fds {base_fds} -> {fds}")
        print(f"requests meanwhile: {percentiles(traffic.latencies.get('held', []))}, failed {traffic.failed}")
        closed: list[float] = []
        deadline = time.monotonic() + max(args.idle_timeout, args.header_timeout) + 30
        for sock, opened in clients:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = sock.recv(1)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            if data == b"":
                closed.append(time.monotonic() - opened)
            sock.close()
        wait_until(lambda: procstat.open_fds(pid) <= base_fds + 2, 10)
        after_fds = procstat.open_fds(pid)
        print(f"closed by the sidecar: {len(closed)} of {args.connections}, after {min(closed, default=0):.1f}-"
              f"{max(closed, default=0):.1f} s (header timeout {args.header_timeout:g} s, idle timeout "
              f"{args.idle_timeout:g} s); fds after {after_fds}, RSS after {procstat.rss_bytes([pid]) / 1e6:.1f} MB")
        ok = len(closed) == args.connections and traffic.failed == 0 and after_fds <= base_fds + 2
        print("verdict: " + ("every idle connection closed on time, others served" if ok else "NOT CLEAN"))
        return ok


def pages(args: argparse.Namespace) -> bool:
    """WebSocket pages that never read, and pages that flood, against a dashboard with a large overview."""
    with Fleet() as fleet:
        stack = Stack(fleet)
        stack.start_dashboard()
        return asyncio.run(_pages(stack, args))


async def _pages(stack: Stack, args: argparse.Namespace) -> bool:
    from tornado.websocket import WebSocketClosedError, websocket_connect

    port = stack.dashboard_port
    now = time.time() * 1000

    def post(pod: str, routes: int, batch: str | None = None) -> None:
        samples = [{"endpoint": f"/route{k}/x", "time": 5.0, "started": now, "response": {"status": 200}}
                   for k in range(routes)]
        body = json.dumps({"pod": pod, "stats": samples, **({"batch": batch} if batch else {})}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/stats", body, {"Content-Type": "application/json"})
        conn.getresponse().read()
        conn.close()

    for i in range(args.pods):
        post(f"big{i % 6}-{i}-x", 8)
    url = f"ws://127.0.0.1:{port}/ws"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/overview", timeout=10) as reply:
        update_size = len(reply.read())
    before = procstat.rss_bytes([stack.pid("dashboard")])
    good = await websocket_connect(url)
    await good.read_message()
    stuck = []
    for _ in range(args.stuck):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1024)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        reader._transport.pause_reading()  # type: ignore[attr-defined]
        stuck.append(writer)
    stop = asyncio.Event()
    floods = {"connections": 0, "messages": 0}

    async def flood() -> None:
        while not stop.is_set():
            ws = await websocket_connect(url)
            floods["connections"] += 1
            try:
                while not stop.is_set() and ws.close_code is None:
                    await ws.write_message('{"type": "subscribe", "scope": "all", "window": 300}')
                    floods["messages"] += 1
                    await asyncio.sleep(0)
            except WebSocketClosedError:
                pass
            ws.close()
            await asyncio.sleep(0.01)

    pid = stack.pid("dashboard")
    rss: list[int] = []
    waits: list[float] = []
    n = 0

    async def tick() -> None:
        nonlocal n
        n += 1
        post(f"big0-{n % args.pods}-x", 1, batch=f"tick-{n}")
        sent = time.monotonic()
        await asyncio.wait_for(good.read_message(), 10)
        waits.append(time.monotonic() - sent)
        rss.append(procstat.rss_bytes([pid]))

    # First until every stuck page holds an update it cannot take: that memory is the price of a stuck
    # page (one update each); from then on it must stay flat, however long they stay and whoever floods.
    filling = time.monotonic()
    while dashboard_metric(port, "mothership_websocket_superseded_total") < 2 * args.stuck:
        if time.monotonic() - filling > 120:
            print("the stuck pages never filled up")
            return False
        await tick()
    held = rss[-1]
    print(f"dashboard RSS {before / 1e6:.1f} MB before, {held / 1e6:.1f} MB once {args.stuck} stuck pages each "
          f"held an update of {update_size / 1e3:.0f} kB ({(held - before) / max(1, args.stuck) / 1e3:.0f} kB a "
          f"page, after {time.monotonic() - filling:.0f} s)")
    flooders = [asyncio.ensure_future(flood()) for _ in range(args.flooders)]
    started = last_print = time.monotonic()
    while time.monotonic() - started < args.seconds:
        await tick()
        if time.monotonic() - last_print >= args.interval:
            last_print = time.monotonic()
            print(f"  t={last_print - started:6.1f}s  dashboard RSS {rss[-1] / 1e6:6.1f} MB  fds "
                  f"{procstat.open_fds(pid):4d}  flood connections {floods['connections']}  messages "
                  f"{floods['messages']}  good page waited {max(waits[-5:]):.2f} s")
    stop.set()
    await asyncio.gather(*flooders)
    for writer in stuck:
        writer.close()
    good.close()
    tail = statistics.median(rss[-3:])
    print(f"dashboard RSS: {held / 1e6:.1f} MB when the flood began, {tail / 1e6:.1f} MB at the end, max "
          f"{max(rss) / 1e6:.1f} MB; the good page waited {max(waits):.2f} s at worst for an update")
    ok = tail - held < max(10e6, held * 0.1) and max(waits) < 2.5
    print("verdict: " + ("memory flat, good page served" if ok else "MEMORY GROWING OR PAGE STARVED"))
    return ok


def dashboard_metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"))


# --- command line ------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="scenario", required=True)
    for name, helptext in (("outage", "the dashboard stopped under load, then back"),
                           ("crash", "the dashboard SIGKILLed under load, then back with the same history")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--up", type=float, default=15.0, help="seconds of traffic before the dashboard goes (15)")
        p.add_argument("--outage", type=float, default=20.0, help="seconds the dashboard stays down (20)")
        p.add_argument("--rate", type=float, default=200.0, help="requests per second through the sidecar (200)")
        p.add_argument("--stats-interval", type=float, default=1.0, help="the sidecar's --stats-interval (1)")
        p.add_argument("--buffer-bytes", type=int, default=0, help="the sidecar's --buffer-bytes (its default)")
        p.add_argument("--interval", type=float, default=5.0, help="seconds between progress lines (5)")
    p = sub.add_parser("idle", help="idle and slowloris connections against the sidecar")
    p.add_argument("--connections", type=int, default=2000, help="connections held open (2000)")
    p.add_argument("--slowloris", type=float, default=0.25, help="share that send a head that never ends (0.25)")
    p.add_argument("--idle-timeout", type=float, default=5.0, help="the sidecar's --idle-timeout (5)")
    p.add_argument("--header-timeout", type=float, default=3.0, help="the sidecar's --header-timeout (3)")
    p = sub.add_parser("pages", help="WebSocket pages that never read or flood")
    p.add_argument("--seconds", type=float, default=30.0, help="how long the abuse lasts (30)")
    p.add_argument("--stuck", type=int, default=50, help="pages that never read (50)")
    p.add_argument("--flooders", type=int, default=4, help="pages that flood messages (4)")
    p.add_argument("--pods", type=int, default=300, help="pods posted first, to make updates large (300)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between progress lines (5)")
    args = parser.parse_args(argv)
    try:
        if args.scenario == "outage":
            ok = outage(args)
        elif args.scenario == "crash":
            ok = outage(args, crash=True)
        elif args.scenario == "idle":
            ok = idle(args)
        else:
            ok = pages(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
