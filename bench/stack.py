"""The pieces a benchmark puts together: backend, receiver, and the proxies under test.

Each `start_*` function starts one real process in a `Fleet`, waits until it
accepts connections on 127.0.0.1, and returns a `Service` naming its port and
the pid whose process tree the benchmark measures.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.fleet import ROOT, Fleet, python_argv

HERE = Path(__file__).resolve().parent
FILE_BYTES = 1024 * 1024


class StartError(RuntimeError):
    """A process of the benchmark did not come up; the message carries its log's tail."""


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    pid: int

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@dataclass(frozen=True)
class Cores:
    """Which CPU cores each party runs on: the proxy alone on one, as the targets are for one core."""

    load: tuple[int, ...] = ()
    proxy: tuple[int, ...] = ()
    backend: tuple[int, ...] = ()

    @classmethod
    def plan(cls, pin: bool = True) -> Cores:
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2:
            return cls()  # nothing to pin apart
        if len(cpus) == 2:
            return cls(load=(cpus[0],), proxy=(cpus[1],), backend=(cpus[0],))
        return cls(load=(cpus[0],), proxy=(cpus[1],), backend=(cpus[2],))

    def describe(self) -> str:
        if not self.proxy:
            return "no pinning"
        return f"load generator on core {self.load}, proxy on core {self.proxy}, backend on core {self.backend}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], fleet: Fleet, name: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise StartError(f"{name} did not start listening on 127.0.0.1:{port}:\n"
                                 f"{fleet.log_tail(name)}") from None
            time.sleep(0.05)


def _render(template: str, fleet: Fleet, **values: str | int) -> Path:
    text = (HERE / template).read_text()
    values.setdefault("USER", "user root;" if os.geteuid() == 0 else "")
    values.setdefault("PREFIX", str(fleet.dir))
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    path = fleet.dir / template.removesuffix(".template")
    path.write_text(text)
    return path


def nginx_available() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


def _nginx() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def start_backend(fleet: Fleet, cores: Cores) -> Service:
    """nginx serving `return 200` on /, a 1 MiB file on /1m and 404 on /missing."""
    (fleet.dir / "1m.bin").write_bytes(os.urandom(FILE_BYTES))
    (fleet.dir / "1m.bin").chmod(0o644)
    port = free_port()
    conf = _render("nginx-backend.conf.template", fleet, PORT=port)
    proc = fleet.start("backend", [_nginx(), "-e", "stderr", "-p", str(fleet.dir), "-c", str(conf)], cores.backend)
    wait_for_port(port, proc, fleet, "backend")
    return Service("backend", port, proc.pid)


def start_nginx_proxy(fleet: Fleet, cores: Cores, backend: Service) -> Service:
    port = free_port()
    conf = _render("nginx-proxy.conf.template", fleet, PORT=port, UPSTREAM_PORT=backend.port)
    proc = fleet.start("nginx", [_nginx(), "-e", "stderr", "-p", str(fleet.dir), "-c", str(conf)], cores.proxy)
    wait_for_port(port, proc, fleet, "nginx")
    return Service("nginx", port, proc.pid)


def start_bare_relay(fleet: Fleet, cores: Cores, backend: Service) -> Service:
    port = free_port()
    proc = fleet.start("relay", python_argv("bench.bare_relay", "--port", str(port),
                                            "--target-port", str(backend.port)), cores.proxy)
    wait_for_port(port, proc, fleet, "relay")
    return Service("relay", port, proc.pid)


def start_asyncio_relay(fleet: Fleet, cores: Cores, backend: Service, uvloop: bool) -> Service:
    """`bench/asyncio_relay.py`: the bare relay on asyncio protocols, on uvloop's loop or the default one."""
    name = "uvrelay" if uvloop else "arelay"
    port = free_port()
    proc = fleet.start(name, python_argv("bench.asyncio_relay", "--port", str(port), "--target-port", str(backend.port),
                                         *(["--uvloop"] if uvloop else [])), cores.proxy)
    wait_for_port(port, proc, fleet, name)
    return Service(name, port, proc.pid)


def start_receiver(fleet: Fleet, cores: Cores, prefer_dashboard: bool = True, data: str = ":memory:") -> Service:
    """The real dashboard when it starts, else a sink that answers 200 (named `sink`)."""
    if prefer_dashboard:
        port = free_port()
        proc = fleet.start("dashboard", python_argv("app", "--mode", "dashboard", "--host", "127.0.0.1",
                                                    "--port", str(port), "--data", data), cores.backend,
                           env=_app_env())
        try:
            wait_for_port(port, proc, fleet, "dashboard")
            return Service("dashboard", port, proc.pid)
        except StartError:
            fleet.stop(proc)
    port = free_port()
    proc = fleet.start("sink", python_argv("bench.post_sink", "--port", str(port)), cores.backend)
    wait_for_port(port, proc, fleet, "sink")
    return Service("sink", port, proc.pid)


def start_sidecar(fleet: Fleet, cores: Cores, backend: Service, receiver: Service | None,
                  stats_interval: float = 1.0, extra: Sequence[str] = (), name: str = "sidecar",
                  tree: Path = ROOT) -> Service:
    """The sidecar with telemetry on (reporting to `receiver`), or with reporting off when it is None; run
    from `tree` (bench.compiled's tree runs its compiled modules), as the pod `bench-<name>-0-x1y2z`."""
    port, admin = free_port(), free_port()
    dashboard = f"http://127.0.0.1:{receiver.port}" if receiver else ""
    proc = fleet.start(name, python_argv(
        "app", "--mode", "sidecar", "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin),
        "--target-port", str(backend.port), "--dashboard", dashboard, "--pod", f"bench-{name}-0-x1y2z",
        "--stats-interval", str(stats_interval), *extra), cores.proxy, env=_app_env(), cwd=tree)
    wait_for_port(port, proc, fleet, name)
    return Service(name, port, proc.pid)


def received(receiver: Service) -> str:
    """What the receiver says it got: the dashboard's count of exchanges per pod, or the sink's POSTs."""
    path = "/stats" if receiver.name == "dashboard" else "/"
    try:
        with urllib.request.urlopen(receiver.url(path), timeout=5) as reply:
            body = json.loads(reply.read())
    except (OSError, ValueError) as exc:
        return f"the {receiver.name} did not answer GET {path}: {exc}"
    if receiver.name == "dashboard" and isinstance(body, list):
        counts = ", ".join(f"{p.get('pod')}: {p.get('total')} exchanges" for p in body if isinstance(p, dict))
        return f"the dashboard counted {counts or 'nothing'}"
    return f"the {receiver.name} answered {body}"


def _app_env() -> dict[str, str]:
    """Our environment without settings that would leak into the app's flags."""
    leaking = {"PORT", "HOST", "DASHBOARD", "MOTHERSHIP", "DASHBOARD_TOKEN", "DATA_PATH", "MODE", "TARGET_PORT",
               "TARGET_HOST", "ADMIN_PORT", "POD_NAME", "APP_NAME", "STATS_INTERVAL", "RESOURCES_INTERVAL"}
    env = {k: v for k, v in os.environ.items() if k not in leaking}
    env["PYTHONUNBUFFERED"] = "1"
    return env
