"""A real Prometheus scraping real sidecars and the dashboard under traffic, with deploy/prometheus's rules.

Targets come through the relabelings of deploy/prometheus/scrape-config.yaml as they are,
fed by file_sd with the `__meta_kubernetes_*` labels Kubernetes discovery would give
(Debian's Prometheus is built without Kubernetes discovery): two sidecars of app `shop`
(the sample app), one of app `cart` (the demo's gRPC service, called over gRPC), one pod
whose sidecar is gone, one pod without the scrape annotation, and the dashboard.
Checked: the targets and their labels, every recording rule giving series, no rule
failing to evaluate, the burn alert firing on the failing route, and every query of the
Grafana board (deploy/grafana/mothership.json) returning data, or the reason it cannot.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import yaml

try:
    import grpc
except ImportError:  # the test extra has it; without it the gRPC rules are said to have no data
    grpc = None

from tests.conftest import ROOT, free_port, sample_app, stop_process, wait_for_port
from tests.fault_support import RunApp, fetch, start_dashboard, start_sidecar

PROMETHEUS = shutil.which("prometheus")
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
SCRAPE = ROOT / "deploy" / "prometheus" / "scrape-config.yaml"
BOARD = ROOT / "deploy" / "grafana" / "mothership.json"
PATHS = ("/", "/users/42", "/users/7", "/api/items", "/fail?p=0.5", "/orders")
GRPC_CALLS = (("GetItem", b"7"), ("GetItem", b"950"), ("GetItem", b"12"), ("Restock", b"1"))

# What this machine and traffic cannot give: (a metric the sidecars export only then, the series and board
# queries that need it, why). Skipped only while that metric is indeed absent from Prometheus.
ABSENT = (
    *((("rpc_server_duration_seconds_count", ("rpc_server",), "grpcio is missing: no gRPC calls in this test"),)
      if grpc is None else ()),
    ("mothership_container_memory_limit_bytes", ("mothership_container_memory:ratio", "memory_limit_bytes"),
     "the sidecars here run in a cgroup with no memory limit, so there is nothing to take a ratio against"),
    ("mothership_container_cpu_limit_cores", ("cpu_limit_cores",),
     "the sidecars here run in a cgroup with no CPU quota"),
)


def reasons(port: int) -> dict[str, str]:
    """Substring of a rule name or query -> why it has no data here."""
    return {needle: why for metric, needles, why in ABSENT if not query(port, metric) for needle in needles}


def query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.loads(reply.read())
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def api(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}", timeout=10) as reply:
        return json.loads(reply.read())["data"]


def pod_target(address: str, pod: str, *, port: int | None, scrape: str = "true", app: str = "shop",
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta = {"__meta_kubernetes_namespace": "shop-ns", "__meta_kubernetes_pod_name": pod,
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": scrape,
            "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": app}
    if port is not None:
        meta["__meta_kubernetes_pod_annotation_prometheus_io_port"] = str(port)
    meta.update(labels or {})
    return {"targets": [address], "labels": meta}


@contextmanager
def prometheus(tmp_path: Path, targets: list[dict[str, Any]]) -> Iterator[int]:
    assert PROMETHEUS is not None
    (tmp_path / "targets.json").write_text(json.dumps(targets))
    jobs = yaml.safe_load(SCRAPE.read_text())["scrape_configs"]
    for job in jobs:  # the same relabelings; only the discovery differs
        del job["kubernetes_sd_configs"]
        job["file_sd_configs"] = [{"files": [str(tmp_path / "targets.json")], "refresh_interval": "1s"}]
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [str(RULES)],
              "scrape_configs": jobs}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 30, proc=proc)
        deadline = time.monotonic() + 30
        while fetch(port, "/-/ready").status != 200:  # 503 while the TSDB opens
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            time.sleep(0.2)
        yield port
    finally:
        stop_process(proc, 15)


@contextmanager
def grpc_service() -> Iterator[int | None]:
    """The demo's gRPC service (a third of its reads UNAVAILABLE) on a free port, or None without grpcio."""
    if grpc is None:
        yield None
        return
    from app.demo.grpcservice import InventorySettings, start_server

    port = free_port()
    server = start_server("127.0.0.1", port, InventorySettings(fail_rate=0.3, seed=4))
    try:
        yield port
    finally:
        server.stop(grace=None).wait()


def board_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every target of the board, its variables given their All values."""
    board = json.loads(BOARD.read_text())
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$namespace", ".*").replace("$app", ".*")
            out.append((panel["title"], expr.replace("$__rate_interval", "1m")))
    return out


def recorded_names() -> list[str]:
    return [rule["record"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
            if "record" in rule]


@pytest.mark.slow
@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is missing (apt-get install prometheus)")
def test_prometheus_scrapes_sidecars_and_every_rule_and_panel_gives_data(run_app: RunApp, tmp_path: Path) -> None:
    with sample_app("--fail-rate", "0.5") as (_, app_port), grpc_service() as grpc_port:
        dashboard = start_dashboard(run_app)
        sidecars = [start_sidecar(run_app, app_port, dashboard.url, pod=f"shop-7d9f-{name}") for name in "ab"]
        if grpc_port is not None:  # the demo's gRPC service behind a sidecar of its own (app `cart`)
            sidecars.append(start_sidecar(run_app, grpc_port, dashboard.url, pod="cart-5b7c-a"))
        gone = free_port()  # a pod whose sidecar does not answer
        targets = [pod_target(f"127.0.0.1:{s.port}", s.pod, port=s.admin_port, app=s.pod.split("-")[0])
                   for s in sidecars]
        targets.append(pod_target("127.0.0.1:1", "shop-7d9f-gone", port=gone))
        targets.append(pod_target("127.0.0.1:2", "other-pod", port=None, scrape="false"))
        targets.append(pod_target(f"127.0.0.1:{dashboard.port}", "mothership-5c6d-x", port=dashboard.port, labels={
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": "mothership",
            "__meta_kubernetes_pod_label_app_kubernetes_io_component": "dashboard"}))
        stop = threading.Event()

        def traffic() -> None:
            channel = grpc.insecure_channel(f"127.0.0.1:{sidecars[-1].port}") if grpc_port is not None else None
            i = 0
            while not stop.is_set():
                for sidecar in sidecars[:2]:
                    fetch(sidecar.port, PATHS[i % len(PATHS)], timeout=5)
                if channel is not None:  # reads (some NOT_FOUND, some UNAVAILABLE) and a method it lacks
                    method, request = GRPC_CALLS[i % len(GRPC_CALLS)]
                    with suppress(grpc.RpcError):
                        channel.unary_unary(f"/demo.v1.Inventory/{method}")(request, timeout=2)
                i += 1
                time.sleep(0.01)
            if channel is not None:
                channel.close()

        worker = threading.Thread(target=traffic, daemon=True)
        worker.start()
        try:
            with prometheus(tmp_path, targets) as port:
                check(port, sidecars, dashboard.port, gone)
        finally:
            stop.set()
            worker.join(10)


def check(port: int, sidecars: list[Any], dashboard_port: int, gone: int) -> None:
    # Targets: relabelled as in a cluster (namespace, pod, app; the admin port from the annotation).
    deadline = time.monotonic() + 60
    while True:
        active = api(port, "targets")["activeTargets"]
        if len(active) == len(sidecars) + 2 and sum(t["health"] == "up" for t in active) == len(sidecars) + 1:
            break
        assert time.monotonic() < deadline, active
        time.sleep(0.5)
    by_pod = {t["labels"]["pod"]: t for t in active}
    for sidecar in sidecars:
        target = by_pod[sidecar.pod]
        assert target["labels"]["job"] == "mothership-sidecars"
        assert (target["labels"]["namespace"], target["labels"]["app"]) == ("shop-ns", sidecar.pod.split("-")[0])
        assert target["scrapeUrl"] == f"http://127.0.0.1:{sidecar.admin_port}/metrics"
    assert by_pod["shop-7d9f-gone"]["health"] == "down" and str(gone) in by_pod["shop-7d9f-gone"]["scrapeUrl"]
    assert "other-pod" not in by_pod  # not annotated: dropped
    assert by_pod["mothership-5c6d-x"]["labels"]["job"] == "mothership-dashboard"
    assert by_pod["mothership-5c6d-x"]["scrapeUrl"] == f"http://127.0.0.1:{dashboard_port}/metrics"

    # Every recording rule gives series (those this traffic cannot feed are said, and checked empty).
    names = recorded_names()
    deadline = time.monotonic() + 90
    while True:
        why = reasons(port)
        empty = [name for name in names if not query(port, name) and not any(n in name for n in why)]
        if not empty:
            break
        assert time.monotonic() < deadline, f"recording rules without series: {empty}"
        time.sleep(1)
    print("without data here:", why)
    # A rate needs two scrapes of a pod: on a loaded machine one pod's second scrape may come a
    # rule evaluation later than another's, so wait (bounded) for every app and pod to show.
    deadline = time.monotonic() + 30
    while True:
        apps = {r["metric"]["app"] for r in query(port, "namespace_app:http_server_requests:rate5m")}
        pods = {r["metric"]["pod"] for r in query(port, "namespace_app_pod:http_server_requests:rate5m")}
        if time.monotonic() > deadline or (apps, pods) == ({s.pod.split("-")[0] for s in sidecars},
                                                          {s.pod for s in sidecars}):
            break
        time.sleep(1)
    assert apps == {s.pod.split("-")[0] for s in sidecars}
    assert pods == {s.pod for s in sidecars}

    if grpc is not None:  # gRPC methods through the real sidecar: OpenTelemetry's labels, server-side failures
        ratios = {r["metric"]["rpc_method"]: float(r["value"][1])
                  for r in query(port, "namespace_app_rpc:rpc_server_errors:ratio_rate5m")}
        assert ratios["Restock"] == 1.0  # UNIMPLEMENTED
        assert 0 < ratios["GetItem"] < 1  # some UNAVAILABLE; NOT_FOUND is the client's doing, not counted
        assert {r["metric"]["rpc_service"] for r in query(port, "namespace_app_rpc:rpc_server_requests:rate5m")} \
            == {"demo.v1.Inventory"}

    # No rule fails to evaluate.
    groups = api(port, "rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(names) + sum(1 for g in yaml.safe_load(RULES.read_text())["groups"]
                                          for r in g["rules"] if "alert" in r)
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert bad == []

    # A sixth of the requests go to /fail, half of which fail: the burn alert fires.
    deadline = time.monotonic() + 30
    while not query(port, 'ALERTS{alertname="MothershipErrorBudgetBurn", severity="critical", alertstate="firing"}'):
        assert time.monotonic() < deadline, "MothershipErrorBudgetBurn did not fire"
        time.sleep(1)

    # Every panel of the Grafana board has data.
    deadline = time.monotonic() + 30
    while True:
        why = reasons(port)
        empty = [(title, expr) for title, expr in board_queries()
                 if not query(port, expr) and not any(n in expr for n in why)]
        if not empty:
            break
        assert time.monotonic() < deadline, f"panels without data: {empty}"
        time.sleep(1)
