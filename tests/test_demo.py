"""The demo: its plan and commands (pure), and the real thing end to end, started and stopped."""

from __future__ import annotations

import importlib.util
import json
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from app.demo import sampleapp
from app.demo.demo import GRPC_MISSING, MAX_PODS, child_commands, child_environment, grpc_available, plan_demo
from app.options import DashboardConfig, DemoConfig, SidecarConfig, app_name_from_pod, parse
from tests.conftest import ROOT, app_env, free_port

POD_NAME = re.compile(r"^[a-z]+-[bcdfghjklmnpqrstvwxz2456789]{9}-[bcdfghjklmnpqrstvwxz2456789]{5}$")


def _counter(start: int = 20000) -> Any:
    ports = iter(range(start, start + 1000))
    return lambda: next(ports)


def test_plan_names_pods_like_a_deployment_and_gives_distinct_ports() -> None:
    plan = plan_demo(DemoConfig(port=8080, pods=3), random.Random(1), _counter())
    assert plan.dashboard_port == 8080 and plan.dashboard_url == "http://127.0.0.1:8080"
    assert len(plan.pods) == 3 and len({p.name for p in plan.pods}) == 3
    for pod in plan.pods:
        assert POD_NAME.match(pod.name), pod.name
        assert app_name_from_pod(pod.name) == pod.app  # what the sidecar will derive
    assert {p.app for p in plan.pods} == {"shop", "catalog"}  # two apps: the page groups them
    ports = [8080] + [port for p in plan.pods for port in (p.app_port, p.sidecar_port, p.admin_port)]
    assert len(set(ports)) == len(ports)
    assert len(plan.token) >= 32


def test_plan_adds_a_grpc_pod_when_grpcio_is_there() -> None:
    plan = plan_demo(DemoConfig(port=8080, pods=2), random.Random(1), _counter(), grpc=True)
    assert [p.kind for p in plan.pods] == ["http", "http", "grpc"]
    grpc_pod = plan.pods[-1]
    assert POD_NAME.match(grpc_pod.name) and app_name_from_pod(grpc_pod.name) == grpc_pod.app == "inventory"
    assert grpc_pod.sidecar_address == f"127.0.0.1:{grpc_pod.sidecar_port}"
    ports = [port for p in plan.pods for port in (p.app_port, p.sidecar_port, p.admin_port)]
    assert len(set(ports)) == len(ports)
    assert [p.kind for p in plan_demo(DemoConfig(pods=2), random.Random(1), _counter()).pods] == ["http", "http"]


def test_plan_skips_a_port_picked_twice_and_takes_a_free_dashboard_port() -> None:
    picks = iter([5000, 5000, 5001, 5001, 5002, 5003, 5004])
    plan = plan_demo(DemoConfig(port=0, pods=1), random.Random(1), lambda: next(picks))
    pod = plan.pods[0]
    assert plan.dashboard_port == 5000 and (pod.app_port, pod.sidecar_port, pod.admin_port) == (5001, 5002, 5003)


def test_plan_refuses_too_many_pods() -> None:
    with pytest.raises(ValueError, match="--pods"):
        plan_demo(DemoConfig(pods=MAX_PODS + 1), random.Random(1), _counter())


def test_every_child_command_is_one_the_programs_accept() -> None:
    config = DemoConfig(port=8080, pods=2, data=":memory:")
    plan = plan_demo(config, random.Random(2), _counter(), grpc=True)
    env = child_environment({"PORT": "1", "DASHBOARD": "http://elsewhere:1", "HOME": "/h"}, plan.token)
    assert "PORT" not in env and "DASHBOARD" not in env and env["HOME"] == "/h"  # a stray setting cannot leak in
    assert env["DASHBOARD_TOKEN"] == plan.token
    specs = child_commands(plan, config)
    assert [s.name.split()[0] for s in specs] == ["dashboard", "app", "sidecar", "app", "sidecar", "app", "sidecar"]
    for spec in specs:
        assert plan.token not in spec.argv  # secrets stay out of `ps`
    dashboard = parse(specs[0].argv[2:], env)
    assert isinstance(dashboard, DashboardConfig)
    assert (dashboard.host, dashboard.port, dashboard.token, dashboard.data) == ("127.0.0.1", 8080, plan.token,
                                                                                  ":memory:")
    grpcservice = pytest.importorskip("app.demo.grpcservice")  # needs grpcio (the test extra has it)
    for pod, app_spec, sidecar_spec in zip(plan.pods, specs[1::2], specs[2::2], strict=True):
        program = {"http": sampleapp, "grpc": grpcservice}[pod.kind]
        assert app_spec.argv[:2] == ("-m", program.__name__)
        host, port, settings = program._parse(app_spec.argv[2:])
        assert (host, port, settings.fail_rate) == ("127.0.0.1", pod.app_port, pod.fail_rate)
        sidecar = parse(sidecar_spec.argv[2:], env)
        assert isinstance(sidecar, SidecarConfig)
        assert (sidecar.port, sidecar.target_port, sidecar.admin_port) == (pod.sidecar_port, pod.app_port,
                                                                            pod.admin_port)
        assert (sidecar.dashboard, sidecar.token) == (plan.dashboard_url, plan.token)
        assert (sidecar.pod, sidecar.app_name) == (pod.name, pod.app)
        assert sidecar.stats_interval <= 1 and sidecar.resources_interval <= 1  # the page moves
        assert sidecar_spec.stage < specs[0].stage  # sidecars stop first and flush to the dashboard


# --- end to end: the real dashboard and sidecars ----------------------------

needs_system = pytest.mark.skipif(
    importlib.util.find_spec("sidecar.main") is None or importlib.util.find_spec("app.dashboard.server") is None,
    reason="the sidecar or the dashboard is not written yet",
)


class DemoProcess:
    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.log_path = tmp_path / f"demo-{len(list(tmp_path.glob('demo-*.log')))}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([sys.executable, "-m", "app", "--mode", "demo", *args], cwd=tmp_path,
                                     # TMPDIR: the demo's log folder lands where the test can see it
                                     env=app_env({"PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}),
                                     stdout=self._log, stderr=subprocess.STDOUT)
        self.tmp_path = tmp_path

    def log_dirs(self) -> list[Path]:
        return list(self.tmp_path.glob("mothership-demo-*"))

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._log.close()


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Any]:
    started: list[DemoProcess] = []

    def start(*args: str) -> DemoProcess:
        demo = DemoProcess(tmp_path, *args)
        started.append(demo)
        return demo

    yield start
    for demo in started:
        children = demo.descendants() if demo.proc.poll() is None else []
        demo.close()
        for child in children:  # a failed test must not leave a dashboard running
            if child.is_running():
                child.kill()


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _wait_for_banner(demo: DemoProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while "Stop with Ctrl-C" not in demo.output:  # printed once every child listens
        assert time.monotonic() < deadline and demo.proc.poll() is None, demo.output
        time.sleep(0.1)


def _samples_by_pod(port: int) -> dict[str, list[dict[str, Any]]]:
    return {entry["pod"]: entry["stats"] for entry in _get_json(f"http://127.0.0.1:{port}/stats")}


def _kept_logs(demo: DemoProcess, lines: int = 40) -> str:
    """The tail of every child's log the demo kept (it keeps them when something went wrong)."""
    tails = [f"\n--- {log}:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
             for folder in demo.log_dirs() for log in sorted(folder.glob("*.log"))]
    return "".join(tails)


def _assert_all_gone(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.wait(timeout=1)
        except psutil.TimeoutExpired:
            raise AssertionError(f"child {process.pid} {process.cmdline()} is still running") from None


@needs_system
@pytest.mark.slow
def test_demo_runs_the_real_system_and_stops_cleanly_on_sigterm(start_demo: Any) -> None:
    port = free_port()
    demo = start_demo("--port", str(port), "--pods", "2", "--rate", "40")
    _wait_for_banner(demo)
    output = demo.output
    assert f"http://127.0.0.1:{port}/" in output
    children = demo.descendants()
    pods = 2 + grpc_available()  # the gRPC pod comes with grpcio (the test extra has it)
    assert len(children) == 1 + 2 * pods  # the dashboard, and an app and a sidecar per pod
    assert ("(gRPC)" in output) == grpc_available() and (GRPC_MISSING in output) != grpc_available()

    # Within a few seconds the real sidecars have reported every kind of exchange.
    wanted = {"users": False, "file": False, "probe": False, "error": False}
    if grpc_available():  # gRPC calls through the real sidecar: successes, failures by code, a stream
        wanted.update(grpc_ok=False, grpc_failed=False, grpc_stream=False)
    deadline = time.monotonic() + 30
    while not all(wanted.values()):
        by_pod = _samples_by_pod(port)
        samples = [sample for stats in by_pod.values() for sample in stats]
        calls = [s for s in samples if s.get("protocol") == "grpc"]
        if "grpc_ok" in wanted:
            wanted["grpc_ok"] = any(s["grpc_status"] == 0 and s["response"]["status"] == 200 for s in calls)
            wanted["grpc_failed"] = len({s["grpc_status"] for s in calls} - {0, None}) >= 2
            wanted["grpc_stream"] = any(s["route"] == "/demo.v1.Inventory/Watch" and s["grpc_status"] == 0
                                        for s in calls)
        wanted["users"] = any(s["route"] == "/users/{id}" for s in samples)  # ids templated
        wanted["file"] = any(s.get("file") for s in samples)  # static files flagged
        wanted["probe"] = any(s.get("probe") and s["route"] == "/healthz" for s in samples)
        wanted["error"] = any(s["response"]["status"] == 500 and s["route"] == "/fail" for s in samples)
        assert time.monotonic() < deadline, f"missing {wanted} in {samples!r:.3000}"
        time.sleep(0.25)
    assert len(by_pod) >= 2 and all(by_pod.values())
    for pod in by_pod:
        assert pod in output  # the banner lists the pods the dashboard sees
    apps = {entry["pod"]: entry["app"] for entry in _get_json(f"http://127.0.0.1:{port}/stats")}
    assert {"catalog", "shop"} <= set(apps.values())
    resources = _get_json(f"http://127.0.0.1:{port}/resources")
    assert {entry["pod"] for entry in resources} == set(by_pod)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
        assert page.status == 200

    demo.proc.send_signal(signal.SIGTERM)
    try:  # its own bound: traffic drained (2 s), then each stage of children (7, 5, 5 s) before SIGKILL
        status = demo.proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the demo did not stop within 40 s:\n{demo.output}{_kept_logs(demo)}") from None
    assert status == 0, demo.output + _kept_logs(demo)
    _assert_all_gone(children)
    output = demo.output
    # This failed once under load, with no more said: a failure now shows the children's logs too.
    assert "Traceback" not in output and "tracebacks" not in output and "killing" not in output, \
        output + _kept_logs(demo)
    assert output.rstrip().endswith("Demo stopped.")
    assert demo.log_dirs() == []  # a clean stop leaves nothing behind


@needs_system
@pytest.mark.slow
def test_demo_stops_on_ctrl_c_and_reports_a_child_that_dies(start_demo: Any) -> None:
    demo = start_demo("--port", str(free_port()), "--pods", "1", "--rate", "5")
    _wait_for_banner(demo)
    children = demo.descendants()
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(timeout=20) == 0
    _assert_all_gone(children)
    assert "Stopping the demo" in demo.output and "Traceback" not in demo.output

    demo = start_demo("--port", str(free_port()), "--pods", "1", "--rate", "5")
    _wait_for_banner(demo)
    children = demo.descendants()
    next(c for c in children if "sidecar" in c.cmdline()).kill()
    assert demo.proc.wait(timeout=20) == 1
    _assert_all_gone(children)
    assert re.search(r"the sidecar \S+ exited with status -9", demo.output), demo.output
    (kept,) = demo.log_dirs()  # kept for the user to read, and named
    assert f"logs are in {kept}" in demo.output and any(kept.glob("sidecar-*.log"))


def test_demo_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "app", "--mode", "demo", "--port", str(port)], cwd=ROOT,
                              env=app_env(), capture_output=True, text=True, timeout=20)
    assert proc.returncode == 1
    assert f"--port: {port} is in use" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_refuses_too_many_pods() -> None:
    proc = subprocess.run([sys.executable, "-m", "app", "--mode", "demo", "--port", str(free_port()),
                           "--pods", str(MAX_PODS + 1)], cwd=ROOT, env=app_env(), capture_output=True,
                          text=True, timeout=20)
    assert proc.returncode == 2 and "--pods: at most" in proc.stderr


def test_without_grpcio_the_banner_says_how_to_get_the_grpc_pod(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from app.demo.demo import Demo

    config = DemoConfig(port=8080, pods=1)
    Demo(config, plan_demo(config, random.Random(1), _counter(), grpc=False), tmp_path)._print_banner()
    assert GRPC_MISSING in capsys.readouterr().out and "pip install '.[demo]'" in GRPC_MISSING
    Demo(config, plan_demo(config, random.Random(1), _counter(), grpc=True), tmp_path)._print_banner()
    out = capsys.readouterr().out
    assert GRPC_MISSING not in out and "(gRPC)" in out
