"""The image in real pods: podman plays the dashboard and an app with the
sidecar injected, with CPU and memory limits, and the host checks what a
user would see (deploy/podman/, the Containerfile).

Run by `make pod-test` (cgroups of this machine) and `make pod-test-v2` (the
same tests inside a VM on cgroup v2); a plain `pytest` skips them, saying so.
The tests share one set of pods and run in file order: the last one stops the
app's pod, checks that its final batch arrived, and takes it down.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.pod_support import (
    IMAGE,
    MANIFESTS,
    PODMAN_DIR,
    SLOW,
    PlayedPods,
    cpu_cores,
    host_cgroup_version,
    http_get,
    iter_stats,
    load_all,
    memory_bytes,
    pod_resource,
    podman,
    podman_env,
    podman_problem,
    publish_on_loopback,
    rename,
    rename_secret,
    set_env,
    slow_probes,
    wait_until,
)

pytestmark = [pytest.mark.pod, pytest.mark.slow]

STARTUP_SECONDS = 90 * SLOW  # a loaded 2-core machine (let alone the TCG VM) starts Python slowly
WAIT = 30 * SLOW  # for a report to show
GRACE = round(10 * SLOW)  # seconds between SIGTERM and SIGKILL when a pod is stopped
NAMESPACE = "pod-test"  # what the sidecar is told its namespace is (see `run`)
PROBE_TIMEOUT = int(os.environ.get("POD_TEST_PROBE_TIMEOUT", "0"))  # seconds; 0 keeps the manifests' own


@dataclass
class PodRun:
    pods: PlayedPods
    dashboard: str  # base URL of the dashboard, from the host
    app: str  # the app's published port: through the sidecar
    admin: str  # the sidecar's admin port
    pod: str  # the app's pod name, as podman names a Deployment's pod
    sidecar_container: str
    app_container: str
    sidecar_limits: dict[str, Any]
    shop_manifest: Path


def is_sidecar(item: dict[str, Any]) -> bool:
    return "sidecar" in (item.get("command") or []) or "sidecar" in (item.get("args") or [])


def injected_shop() -> list[dict[str, Any]]:
    """deploy/podman/pods/shop.yaml with the sidecar added by `mothership inject` run from
    the image (deploy/podman/inject-shop.sh), or what the host made so for the VM."""
    made = os.environ.get("POD_TEST_INJECTED")
    if made:
        return load_all(Path(made).read_text())
    done = subprocess.run(["bash", str(PODMAN_DIR / "inject-shop.sh"), IMAGE], env=podman_env(),
                          capture_output=True, text=True, timeout=120 * SLOW, check=False)
    assert done.returncode == 0, f"inject-shop.sh failed ({done.returncode}): {done.stderr.strip()}"
    return load_all(done.stdout)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodRun]:
    if os.environ.get("POD_TESTS") != "1":
        pytest.skip("pod tests run with `make pod-test` (it builds the image, then sets POD_TESTS=1)")
    problem = podman_problem()
    if problem:
        pytest.fail(problem)  # asked for with POD_TESTS=1: not running them is a failure, not a skip
    name = os.environ.get("POD_TEST_RUN") or secrets.token_hex(3)  # pod-test.sh cleans up by it
    with PlayedPods(name, tmp_path_factory.mktemp("pods")) as pods:
        dashboard_doc = load_all((MANIFESTS / "dashboard.yaml").read_text())[0]
        dashboard_name = f"mothership-{name}"
        rename(dashboard_doc, dashboard_name, name)
        dashboard_ports = publish_on_loopback(dashboard_doc)
        secret = f"mothership-tokens-{name}"
        pods.secret(secret, {"ingest-token": secrets.token_urlsafe(16)})
        rename_secret(dashboard_doc, "mothership-tokens", secret)
        for item in dashboard_doc["spec"]["containers"]:
            item["image"] = IMAGE
            set_env(item, "ALLOWED_HOSTS", dashboard_name)

        shop_docs = injected_shop()
        shop = next(doc for doc in shop_docs if doc["kind"] == "Deployment")
        rename(shop, f"shop-{name}", name)
        rename_secret(shop, "mothership-tokens", secret)
        spec = shop["spec"]["template"]["spec"]
        sidecar = next(item for item in spec["containers"] if is_sidecar(item))
        set_env(sidecar, "DASHBOARD", f"http://{dashboard_name}:8080")
        app = next(item for item in spec["containers"] if not is_sidecar(item))
        for item in spec["containers"]:
            item["image"] = IMAGE
        # Exchanges are reported only when the pod stops: the last test
        # shows the final batch is the drain's own, not a periodic one.
        set_env(sidecar, "STATS_INTERVAL", "600")
        # podman 4.3 refuses the downward API's metadata.namespace (it has no namespaces): a
        # plain stand-in, as the Secrets are podman secrets. Everything else plays as inject wrote it.
        set_env(sidecar, "POD_NAMESPACE", NAMESPACE)
        shop_ports = publish_on_loopback(shop)
        admin_port = int(next(e["value"] for e in sidecar["env"] if e["name"] == "ADMIN_PORT"))
        proxy_port = int(next(e["value"] for e in sidecar["env"] if e["name"] == "PORT"))

        if PROBE_TIMEOUT:
            slow_probes(dashboard_doc, PROBE_TIMEOUT)
            slow_probes(shop, PROBE_TIMEOUT)
        pods.play("dashboard", [dashboard_doc])
        shop_path = pods.play("shop", shop_docs)
        pod = f"shop-{name}-pod-0"
        state = PodRun(
            pods=pods,
            dashboard=f"http://127.0.0.1:{dashboard_ports['8080']}",
            app=f"http://127.0.0.1:{shop_ports[str(proxy_port)]}",
            admin=f"http://127.0.0.1:{shop_ports[str(admin_port)]}",
            pod=pod,
            sidecar_container=f"{pod}-{sidecar['name']}",
            app_container=f"{pod}-{app['name']}",
            sidecar_limits=dict(sidecar["resources"]["limits"]),
            shop_manifest=shop_path,
        )
        try:
            wait_until(lambda: http_get(f"{state.dashboard}/healthz")[0] == 200 or None,
                       STARTUP_SECONDS, "the dashboard's /healthz")
            wait_until(lambda: http_get(f"{state.admin}/readyz")[0] == 200 or None,
                       STARTUP_SECONDS, "the sidecar's /readyz (the app accepting behind it)")
        except AssertionError:
            for ctr in (f"{dashboard_name}-dashboard", state.sidecar_container, state.app_container):
                print(f"--- podman logs {ctr}\n{podman('logs', ctr, check=False).stderr[-3000:]}")
            raise
        yield state
    left = pods.leftovers()
    assert not left, f"containers left after kube down: {left}"


def metric_total(text: str, name: str, route: str) -> float:
    """Sum of a counter's samples for one route label in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and f'route="{route}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_requests_through_the_published_port_reach_the_app_through_the_sidecar(run: PodRun) -> None:
    status, body = http_get(f"{run.app}/api/items?page=3")
    assert status == 200 and b'"page": 3' in body, body[:200]
    for user in range(1, 11):
        status, body = http_get(f"{run.app}/users/{user}")
        assert (status, body) == (200, f'{{"id": {user}, "name": "user {user}"}}'.encode())
    metrics = http_get(f"{run.admin}/metrics")[1].decode()
    assert metric_total(metrics, "http_server_requests_total", "/users/{id}") == 10
    assert metric_total(metrics, "http_server_requests_total", "/api/items") == 1


def test_the_dashboard_shows_the_pod(run: PodRun) -> None:
    row = wait_until(lambda: pod_resource(run.dashboard, run.pod), WAIT, f"{run.pod} on the dashboard")
    assert (row["app"], row.get("namespace")) == ("shop", NAMESPACE)
    assert row["stale"] is False
    info = [line for line in http_get(f"{run.admin}/metrics")[1].decode().splitlines()
            if line.startswith("mothership_sidecar_info{")]
    assert len(info) == 1 and f'pod="{run.pod}"' in info[0] and f'namespace="{NAMESPACE}"' in info[0], info


def test_the_limits_the_sidecar_reads_are_the_manifests(run: PodRun) -> None:
    row = wait_until(lambda: pod_resource(run.dashboard, run.pod), WAIT, f"{run.pod} on the dashboard")
    seen = row["resource"]["container"]
    assert seen["cgroup"] == host_cgroup_version()
    assert seen["cpu_limit_cores"] == pytest.approx(cpu_cores(run.sidecar_limits["cpu"]))
    assert seen["memory_limit"] == memory_bytes(run.sidecar_limits["memory"])
    assert 0 < seen["memory_usage"] < seen["memory_limit"]


ALLOCATE = """
import sys
size = int(sys.argv[1])
block = bytearray(size)
for i in range(0, size, 4096):  # touch every page: the cgroup counts resident memory
    block[i] = 1
print("allocated", flush=True)
sys.stdin.read()  # hold it until the test closes our standard input
"""


def container_memory(run: PodRun) -> int | None:
    row = pod_resource(run.dashboard, run.pod)
    return None if row is None else int(row["resource"]["container"]["memory_usage"])


def test_memory_usage_follows_a_process_that_allocates(run: PodRun) -> None:
    """A process started in the sidecar's container (`podman exec`) is in its
    cgroup: the usage the dashboard shows rises by what it holds and falls
    when it exits."""
    size = memory_bytes(run.sidecar_limits["memory"]) // 4
    before = wait_until(lambda: container_memory(run), WAIT, "a memory reading")
    with subprocess.Popen(["podman", "exec", "-i", run.sidecar_container, "python", "-c", ALLOCATE, str(size)],
                          env=podman_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "allocated"
            held = wait_until(lambda: ((m := container_memory(run)) is not None and m >= before + 0.8 * size and m)
                              or None, WAIT, f"the usage to rise by {size} bytes from {before}")
            assert held < memory_bytes(run.sidecar_limits["memory"])
        finally:
            proc.stdin.close()  # the process exits and its memory is freed
            proc.wait(WAIT)
    wait_until(lambda: ((m := container_memory(run)) is not None and m <= held - 0.8 * size) or None,
               WAIT, f"the usage to fall back from {held}")


def pid_in_pod(name: str) -> int:
    """A container's main process as the pod's PID namespace numbers it (the
    last of its host process's NSpid values); `podman top` would list the
    whole shared namespace, not one container's processes."""
    host_pid = podman("inspect", name, "--format", "{{.State.Pid}}").stdout.strip()
    status = Path(f"/proc/{host_pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("NSpid:")).split()[-1])


def test_the_pods_processes_are_listed(run: PodRun) -> None:
    """shareProcessNamespace: the sidecar sees and reports the app's processes, not itself."""
    app, sidecar = pid_in_pod(run.app_container), pid_in_pod(run.sidecar_container)

    def listed() -> dict[int, str] | None:
        row = pod_resource(run.dashboard, run.pod)
        found = {p["pid"]: p["name"] for p in (row or {}).get("resource", {}).get("processes") or []}
        return found if app in found else None

    found = wait_until(listed, WAIT, f"the app's process (pid {app}) in the sidecar's report")
    assert found[app] == "python"  # the app container's `python -m app.demo.sampleapp`
    assert sidecar not in found, "the sidecar lists itself among the pod's other processes"


def test_the_probes_answer(run: PodRun) -> None:
    assert http_get(f"{run.admin}/healthz")[0] == 200
    assert http_get(f"{run.admin}/readyz")[0] == 200
    assert http_get(f"{run.app}/healthz") == (200, b"ok\n")  # the app's own probe path, through the sidecar
    # podman turns each livenessProbe into a healthcheck inside the container
    # (its timer needs systemd; run it here instead).
    for name in (run.sidecar_container, run.app_container):
        check = podman("healthcheck", "run", name, check=False)
        assert check.returncode == 0, f"{name}: {check.stdout}{check.stderr}"


# One `podman exec` for what the image holds: in the emulated VM each Python start costs seconds.
INSIDE = """
import importlib.util, json, shutil, sidecar.connection
print(json.dumps({
    "connection": sidecar.connection.__file__,
    "compilers": [c for c in ("gcc", "cc", "x86_64-linux-gnu-gcc", "clang") if shutil.which(c)],
    "mypy": importlib.util.find_spec("mypy") is not None,
}))
"""


@pytest.fixture(scope="module")
def inside_sidecar(run: PodRun) -> dict[str, Any]:
    """What Python finds in the running sidecar's container, from its working directory as the sidecar does."""
    return dict(json.loads(podman("exec", run.sidecar_container, "python", "-c", INSIDE).stdout))


def test_the_sidecar_runs_compiled(run: PodRun, inside_sidecar: dict[str, Any]) -> None:
    """The image's sidecar is the one mypyc compiled in the Containerfile's builder stage: its
    hot path imports as extension modules (no source copy shadows them), and the running
    sidecar process has mypyc's library loaded, which holds the code of every compiled module
    (one module of it imports another inside the library, not through the module's own `.so`)."""
    assert re.search(r"/sidecar/connection\.cpython-[^/]+\.so$", inside_sidecar["connection"]), inside_sidecar
    host_pid = podman("inspect", run.sidecar_container, "--format", "{{.State.Pid}}").stdout.strip()
    maps = Path(f"/proc/{host_pid}/maps").read_text()
    assert re.search(r"/(site|dist)-packages/[0-9a-f]+__mypyc\.cpython-[^/]+\.so$", maps, re.M), \
        "the running sidecar has no mypyc-compiled code loaded"


def test_the_image_has_no_compiler(inside_sidecar: dict[str, Any]) -> None:
    """The compiler and mypy stayed in the builder stage."""
    assert inside_sidecar["compilers"] == [], inside_sidecar
    assert inside_sidecar["mypy"] is False


def exit_code(name: str) -> int:
    return int(podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout)


def test_a_stopped_pod_drains_and_its_last_batch_arrives(run: PodRun) -> None:
    """SIGTERM to the pod's containers, as the kubelet sends it: the sidecar
    sends the exchanges it holds (STATS_INTERVAL is 600 s here, so only the
    final batch can carry them) and exits 0 by itself, within the grace period."""
    for n in range(7):
        assert http_get(f"{run.app}/orders/{n:08d}-0000-4000-8000-000000000000")[0] == 200
    assert not any(s.get("route") == "/orders/{id}" for s in iter_stats(run.dashboard, run.pod))
    assert run.pods.stop(run.pod, timeout=GRACE, first=(run.sidecar_container,)) == []
    # 0: it finished by itself; not 137 (killed when the grace period ran
    # out) nor 1 (a second signal cut the drain short).
    code = exit_code(run.sidecar_container)
    assert code == 0, f"the sidecar exited {code}: {podman('logs', run.sidecar_container, check=False).stderr[-2000:]}"
    assert exit_code(run.app_container) != 137, "the app was killed, not stopped"

    def orders() -> list[dict[str, Any]] | None:
        found = [s for s in iter_stats(run.dashboard, run.pod) if s.get("route") == "/orders/{id}"]
        return found if len(found) >= 7 else None

    arrived = wait_until(orders, WAIT, "the final batch's 7 exchanges on the dashboard")
    assert len(arrived) == 7
    assert all(s["response"]["status"] == 200 for s in arrived)

    down = run.pods.down(run.shop_manifest)
    assert down.returncode == 0, down.stderr
    assert podman("pod", "exists", run.pod, check=False).returncode != 0
