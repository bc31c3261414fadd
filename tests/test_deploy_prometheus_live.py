"""A real Prometheus scraping real sidecars and the dashboard under traffic, with deploy/prometheus's rules.

Targets come through the relabelings of deploy/prometheus/scrape-config.yaml as they are,
fed by file_sd with the `__meta_kubernetes_*` labels Kubernetes discovery would give
(Debian's Prometheus is built without Kubernetes discovery): two sidecars of app `shop`,
one pod whose sidecar is gone, one pod without the scrape annotation, and the dashboard.
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, free_port, sample_app, wait_for_port
from tests.fault_support import RunApp, fetch, start_dashboard, start_sidecar

PROMETHEUS = shutil.which("prometheus")
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
SCRAPE = ROOT / "deploy" / "prometheus" / "scrape-config.yaml"
BOARD = ROOT / "deploy" / "grafana" / "mothership.json"
PATHS = ("/", "/users/42", "/users/7", "/api/items", "/fail?p=0.5", "/orders")

# What this machine and traffic cannot give: (a metric the sidecars export only then, the series and board
# queries that need it, why). Skipped only while that metric is indeed absent from Prometheus.
ABSENT = (
    ("rpc_server_duration_seconds_count", ("rpc_server",),
     "no gRPC calls pass through the sidecars in this test"),
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


def pod_target(address: str, pod: str, *, port: int | None, scrape: str = "true",
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta = {"__meta_kubernetes_namespace": "shop-ns", "__meta_kubernetes_pod_name": pod,
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": scrape,
            "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": "shop"}
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
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
    with sample_app("--fail-rate", "0.5") as (_, app_port):
        dashboard = start_dashboard(run_app)
        sidecars = [start_sidecar(run_app, app_port, dashboard.url, pod=f"shop-7d9f-{name}") for name in "ab"]
        gone = free_port()  # a pod whose sidecar does not answer
        targets = [pod_target(f"127.0.0.1:{s.port}", s.pod, port=s.admin_port) for s in sidecars]
        targets.append(pod_target("127.0.0.1:1", "shop-7d9f-gone", port=gone))
        targets.append(pod_target("127.0.0.1:2", "other-pod", port=None, scrape="false"))
        targets.append(pod_target(f"127.0.0.1:{dashboard.port}", "mothership-5c6d-x", port=dashboard.port, labels={
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": "mothership",
            "__meta_kubernetes_pod_label_app_kubernetes_io_component": "dashboard"}))
        stop = threading.Event()

        def traffic() -> None:
            i = 0
            while not stop.is_set():
                for sidecar in sidecars:
                    fetch(sidecar.port, PATHS[i % len(PATHS)], timeout=5)
                i += 1
                time.sleep(0.01)

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
        if len(active) == 4 and sum(t["health"] == "up" for t in active) == 3:
            break
        assert time.monotonic() < deadline, active
        time.sleep(0.5)
    by_pod = {t["labels"]["pod"]: t for t in active}
    for sidecar in sidecars:
        target = by_pod[sidecar.pod]
        assert target["labels"]["job"] == "mothership-sidecars"
        assert (target["labels"]["namespace"], target["labels"]["app"]) == ("shop-ns", "shop")
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
    assert {r["metric"]["app"] for r in query(port, "namespace_app:http_server_requests:rate5m")} == {"shop"}
    assert {r["metric"]["pod"] for r in query(port, "namespace_app_pod:http_server_requests:rate5m")} == \
        {s.pod for s in sidecars}

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
