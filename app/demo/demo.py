"""`python -m app --mode demo`: the whole system on one machine, nothing faked.

Starts a real dashboard, the sample app as a few "pods" each behind its own
real sidecar, and a gRPC service behind one more (when `grpcio` is installed;
all as child processes of this one), sends gentle traffic through the
sidecars, prints the URL to open, and on Ctrl-C or SIGTERM stops every child
and exits 0. `plan_demo` and `child_commands` decide everything (pure); `Demo`
does the process work.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import importlib.util
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.demo.traffic import TrafficGenerator
from app.options import FLAGS, DemoConfig

if TYPE_CHECKING:
    from app.demo.grpctraffic import GrpcTraffic  # imports grpc, which is optional

MAX_PODS = 20
HOST = "127.0.0.1"  # the demo listens on loopback only: its dashboard has no view token
STATS_INTERVAL = 1.0  # seconds: short, so the page moves
RESOURCES_INTERVAL = 1.0
SIDECAR_GRACE = 2.0  # seconds a sidecar gets to flush its last batch on stop
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0  # seconds a child gets after SIGTERM (sidecars: plus their grace) before SIGKILL
# (app name, share of its /fail requests answered 500): two apps so the page shows grouping.
APPS = (("shop", 0.25), ("catalog", 0.05))
# The gRPC pod's app and the share of its GetItem calls answered UNAVAILABLE.
GRPC_APP = ("inventory", 0.05)
GRPC_MISSING = ("note: grpcio is not installed, so the demo runs without its gRPC pod;"
                " `pip install '.[demo]'` (or `make demo`) adds it")
# Kubernetes builds generated names from these characters (no vowels, no look-alikes).
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class DemoPod:
    name: str  # like a Deployment's pod: shop-7d4b9c8f5-x2x1a, so the sidecar derives the app "shop"
    app: str
    fail_rate: float
    app_port: int
    sidecar_port: int
    admin_port: int
    kind: str = "http"  # "http": the sample app; "grpc": the gRPC service (app/demo/grpcservice.py)

    @property
    def sidecar_url(self) -> str:
        return f"http://{HOST}:{self.sidecar_port}"

    @property
    def sidecar_address(self) -> str:
        return f"{HOST}:{self.sidecar_port}"


@dataclass(frozen=True)
class DemoPlan:
    dashboard_port: int
    token: str  # a fresh ingest token: the demo runs the dashboard as a cluster would
    pods: tuple[DemoPod, ...]

    @property
    def dashboard_url(self) -> str:
        return f"http://{HOST}:{self.dashboard_port}"


@dataclass(frozen=True)
class ChildSpec:
    name: str  # for messages: "dashboard", "app shop-...", "sidecar shop-..."
    argv: tuple[str, ...]  # after `python`
    ports: tuple[int, ...]  # listening on all of these means started
    stage: int  # stopped in order: 0 first (sidecars flush to the dashboard, which stops last)


def _generated(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(NAME_ALPHABET) for _ in range(length))


def grpc_available() -> bool:
    return importlib.util.find_spec("grpc") is not None


def plan_demo(config: DemoConfig, rng: random.Random, pick_port: Callable[[], int], *,
              grpc: bool = False) -> DemoPlan:
    """Names, ports and token for a demo (with a gRPC pod too if `grpc`); `pick_port` gives a free port each call."""
    if config.pods > MAX_PODS:
        raise ValueError(f"--pods: at most {MAX_PODS} (got {config.pods})")
    taken: set[int] = set()

    def port() -> int:
        for _ in range(100):
            candidate = pick_port()
            if candidate not in taken:
                taken.add(candidate)
                return candidate
        raise RuntimeError("no free ports left on 127.0.0.1")

    dashboard_port = config.port or port()
    taken.add(dashboard_port)
    hashes = {app: _generated(rng, 9) for app, _ in APPS}  # one ReplicaSet hash per app
    pods = []
    for index in range(config.pods):
        app, fail_rate = APPS[index % len(APPS)]
        pods.append(DemoPod(f"{app}-{hashes[app]}-{_generated(rng, 5)}", app, fail_rate, port(), port(), port()))
    if grpc:
        app, fail_rate = GRPC_APP
        pods.append(DemoPod(f"{app}-{_generated(rng, 9)}-{_generated(rng, 5)}", app, fail_rate, port(), port(),
                            port(), kind="grpc"))
    return DemoPlan(dashboard_port, secrets.token_urlsafe(24), tuple(pods))


def child_commands(plan: DemoPlan, config: DemoConfig) -> list[ChildSpec]:
    """The command line of every child process; secrets go in the environment instead."""
    children = [ChildSpec("dashboard", (
        "-m", "app", "--mode", "dashboard", "--host", HOST, "--port", str(plan.dashboard_port),
        "--data", config.data,
    ), (plan.dashboard_port,), 1)]
    for pod in plan.pods:
        program = "app.demo.grpcservice" if pod.kind == "grpc" else "app.demo.sampleapp"
        children.append(ChildSpec(f"app {pod.name}", (
            "-m", program, "--host", HOST, "--port", str(pod.app_port), "--fail-rate", str(pod.fail_rate),
        ), (pod.app_port,), 1))
        children.append(ChildSpec(f"sidecar {pod.name}", (
            "-m", "app", "--mode", "sidecar", "--host", HOST, "--port", str(pod.sidecar_port),
            "--target-host", HOST, "--target-port", str(pod.app_port), "--admin-port", str(pod.admin_port),
            "--dashboard", plan.dashboard_url, "--pod", pod.name,
            "--stats-interval", str(STATS_INTERVAL), "--resources-interval", str(RESOURCES_INTERVAL),
            "--grace-period", str(SIDECAR_GRACE),
        ), (pod.sidecar_port, pod.admin_port), 0))
    return children


def child_environment(parent: Mapping[str, str], token: str) -> dict[str, str]:
    """Ours, less every setting of `python -m app` (a stray PORT must not reach a child), plus the token."""
    settings = {var for flags in FLAGS.values() for flag in flags for var in flag.envs} | {"MODE"}
    env = {key: value for key, value in parent.items() if key not in settings}
    # The children import `app` and `sidecar` from wherever this process did, whatever their cwd.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, parent.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["DASHBOARD_TOKEN"] = token
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Tornado does: TIME_WAIT is not "in use"
        try:
            s.bind((HOST, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _die_with_parent(parent: int) -> Callable[[], None]:
    """Linux: a child gets SIGTERM if the demo itself is killed, so none is left behind."""

    def setup() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the demo died before prctl took effect
            os._exit(1)

    return setup


class Child:
    """One child process with its output in a log file."""

    def __init__(self, spec: ChildSpec, env: dict[str, str], log_dir: Path) -> None:
        self.spec = spec
        self.log_path = log_dir / (spec.name.replace(" ", "-") + ".log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *spec.argv], env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal reaches only the demo, which stops
                # the children in order (sidecars first, so their last batches arrive).
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()) if sys.platform == "linux" else None,
            )

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace").rstrip()
        return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (no output)"

    def has_traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.log_path.read_text(errors="replace")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class Demo:
    """Runs the children and the traffic of one plan until a signal, or until a child dies."""

    def __init__(self, config: DemoConfig, plan: DemoPlan, log_dir: Path) -> None:
        self.config = config
        self.plan = plan
        self.log_dir = log_dir
        self.children: list[Child] = []
        self.stopping = asyncio.Event()
        self.hurry = False  # a second Ctrl-C: kill instead of waiting
        self.failure = ""
        self.keep_logs = False  # kept when something went wrong, for the user to read

    def on_signal(self) -> None:
        if self.stopping.is_set():
            self.hurry = True
            return
        print("\nStopping the demo...", flush=True)
        self.stopping.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_signal)
        traffic: TrafficGenerator | None = None
        calls: list[GrpcTraffic] = []
        print(f"Starting a dashboard and {len(self.plan.pods)} pods (app + sidecar)...", flush=True)
        try:
            if await self._start_children():
                web = [pod.sidecar_url for pod in self.plan.pods if pod.kind == "http"]
                traffic = TrafficGenerator(web, self.config.rate)
                traffic.start()
                for pod in self.plan.pods:
                    if pod.kind == "grpc":
                        from app.demo.grpctraffic import GrpcTraffic  # only with grpcio, which the plan checked

                        calls.append(GrpcTraffic(pod.sidecar_address, max(1.0, self.config.rate / 2)))
                        calls[-1].start()
                self._print_banner()
                await self._watch()
        finally:
            if self.failure:
                print(f"demo: {self.failure}", file=sys.stderr, flush=True)
                self.keep_logs = True
            if traffic is not None:
                await traffic.stop()
            for client in calls:
                await client.stop()
            await self._stop_children()
        if self.failure:
            return 1
        print("Demo stopped.", flush=True)
        return 0

    async def _start_children(self) -> bool:
        env = child_environment(os.environ, self.plan.token)
        for spec in child_commands(self.plan, self.config):
            self.children.append(Child(spec, env, self.log_dir))
        deadline = time.monotonic() + START_TIMEOUT
        waiting = [(child, port) for child in self.children for port in child.spec.ports]
        while waiting:
            waiting = [(child, port) for child, port in waiting if not _listening(port)]
            dead = self._dead_child()
            if dead or self.stopping.is_set():
                return False
            if waiting and time.monotonic() > deadline:
                child, port = waiting[0]
                self.failure = (f"the {child.spec.name} did not listen on port {port} within {START_TIMEOUT:g} s;"
                                f" its output:\n{child.log_tail()}")
                return False
            if waiting:
                await asyncio.sleep(0.1)
        return True

    def _dead_child(self) -> Child | None:
        for child in self.children:
            if not child.running:
                self.failure = (f"the {child.spec.name} exited with status {child.proc.returncode};"
                                f" its output:\n{child.log_tail()}")
                return child
        return None

    async def _watch(self) -> None:
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=0.5)
            except TimeoutError:
                if self._dead_child():
                    return

    async def _stop_children(self) -> None:
        for stage in sorted({child.spec.stage for child in self.children}):
            group = [child for child in self.children if child.spec.stage == stage and child.running]
            for child in group:
                child.proc.send_signal(signal.SIGKILL if self.hurry else signal.SIGTERM)
            limit = STOP_TIMEOUT + (SIDECAR_GRACE if stage == 0 else 0)
            deadline = time.monotonic() + limit
            while any(child.running for child in group) and time.monotonic() < deadline and not self.hurry:
                await asyncio.sleep(0.05)
            for child in group:
                if child.running:
                    if not self.hurry:
                        print(f"demo: the {child.spec.name} did not stop within {limit:g} s; killing it",
                              file=sys.stderr, flush=True)
                    child.proc.kill()
                child.proc.wait()
        noisy = [child for child in self.children if child.has_traceback()]
        if noisy:
            names = ", ".join(child.spec.name for child in noisy)
            print(f"demo: note: tracebacks in the output of: {names}", file=sys.stderr, flush=True)
            self.keep_logs = True

    def _print_banner(self) -> None:
        plan = self.plan
        lines = [
            "",
            f"Mothership demo: {len(plan.pods)} pods of the sample app, each behind its own sidecar,"
            f" and {self.config.rate:g} requests/s of traffic.",
            "",
            f"  Open the dashboard:  {plan.dashboard_url}/",
            "",
            f"  {'pod':<28} {'app':>6} {'sidecar':>8} {'admin (/metrics)':>17}",
        ]
        for pod in plan.pods:
            kind = "  (gRPC)" if pod.kind == "grpc" else ""
            lines.append(f"  {pod.name:<28} {pod.app_port:>6} {pod.sidecar_port:>8} {pod.admin_port:>17}{kind}")
        lines += [
            "",
            f"  Try: curl {plan.pods[0].sidecar_url}/users/42    Logs: {self.log_dir}",
            "  Stop with Ctrl-C.",
            "",
        ]
        if not any(pod.kind == "grpc" for pod in plan.pods):
            lines.insert(-3, f"  {GRPC_MISSING}")
        print("\n".join(lines), flush=True)


def run(config: DemoConfig) -> int:
    """Run the demo until Ctrl-C or SIGTERM; 0 on a clean stop, 1 if something failed."""
    if config.port and port_in_use(config.port):
        print(f"python -m app: error: --port: {config.port} is in use on {HOST};"
              " stop what uses it or pick another with --port", file=sys.stderr)
        return 1
    try:
        plan = plan_demo(config, random.Random(), free_port, grpc=grpc_available())
    except ValueError as exc:
        print(f"python -m app: error: {exc}", file=sys.stderr)
        return 2
    log_dir = Path(tempfile.mkdtemp(prefix="mothership-demo-"))
    demo = Demo(config, plan, log_dir)
    status = asyncio.run(demo.run())
    if demo.keep_logs:
        print(f"demo: the children's logs are in {log_dir}", file=sys.stderr)
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    return status
