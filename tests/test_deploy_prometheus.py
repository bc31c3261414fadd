"""deploy/prometheus: the rules checked and unit-tested by a real promtool, and the operator files kept in step.

`promtool test rules` runs tests/prometheus/rules_test.yaml: synthetic series for every
alert, each expected to fire where it should and to stay quiet where it should not. A
copy of the rules with one threshold broken must fail those tests (they can fail).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.inject import sidecar
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy" / "prometheus"
RULES = DEPLOY / "rules.yaml"
UNIT_TESTS = ROOT / "tests" / "prometheus" / "rules_test.yaml"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is missing (apt-get install prometheus)")


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_names(groups: list[dict[str, Any]]) -> set[str]:
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """Each alert fires in some check, and in some check a series that fires elsewhere is quiet."""
    seen: dict[str, list[set[str]]] = {}
    for case in load(UNIT_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            firing = {repr(sorted(alert["exp_labels"].items())) for alert in check.get("exp_alerts") or []}
            seen.setdefault(check["alertname"], []).append(firing)
    for alert in sorted(alert_names(load(RULES)["groups"])):
        checks = seen.get(alert, [])
        assert any(checks), f"{alert} is never seen firing"
        ever = set().union(*checks)
        assert any(firing < ever for firing in checks), f"{alert} is never seen quiet where it fires elsewhere"


@needs_promtool
def test_a_broken_threshold_fails_the_unit_tests(tmp_path: Path) -> None:
    text = RULES.read_text()
    assert text.count("(14.4 * 0.001)") == 2
    (tmp_path / "deploy" / "prometheus").mkdir(parents=True)
    (tmp_path / "deploy" / "prometheus" / "rules.yaml").write_text(text.replace("(14.4 * 0.001)", "(144 * 0.001)"))
    (tmp_path / "tests" / "prometheus").mkdir(parents=True)
    (tmp_path / "tests" / "prometheus" / "rules_test.yaml").write_text(UNIT_TESTS.read_text())
    result = promtool("test", "rules", "tests/prometheus/rules_test.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "MothershipErrorBudgetBurn" in result.stdout + result.stderr


def test_the_prometheus_rule_has_the_same_groups() -> None:
    rule = load(DEPLOY / "operator" / "prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == load(RULES)["groups"]


def test_pod_monitors_give_the_labels_the_rules_use() -> None:
    monitors = {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all((DEPLOY / "operator" /
                                                                            "podmonitor.yaml").read_text())}
    assert set(monitors) == {"mothership-sidecars", "mothership-dashboard"}
    for name, monitor in monitors.items():
        assert monitor["kind"] == "PodMonitor"
        endpoint = monitor["spec"]["podMetricsEndpoints"][0]
        assert endpoint["path"] == "/metrics"
        jobs = [r["replacement"] for r in endpoint["relabelings"] if r.get("targetLabel") == "job"]
        assert jobs == [name]  # the job names the rules' `up{job=...}` alerts match
    sidecars = monitors["mothership-sidecars"]["spec"]["podMetricsEndpoints"][0]
    assert sidecars["port"] == sidecar.ADMIN_PORT_NAME  # the name `inject` gives the sidecar's admin port
    assert [r["targetLabel"] for r in sidecars["relabelings"] if r.get("targetLabel") == "app"] == ["app", "app"]
    rules_text = RULES.read_text()
    for job in monitors:
        assert f'job="{job}"' in rules_text


def test_scrape_config_jobs_match_the_rules() -> None:
    jobs = {job["job_name"]: job for job in load(DEPLOY / "scrape-config.yaml")["scrape_configs"]}
    assert set(jobs) == {"mothership-sidecars", "mothership-dashboard"}
    for job in jobs.values():
        targets = {r.get("target_label") for r in job["relabel_configs"]}
        assert {"__address__", "__metrics_path__", "namespace", "pod"} <= targets
    assert "app" in {r.get("target_label") for r in jobs["mothership-sidecars"]["relabel_configs"]}
