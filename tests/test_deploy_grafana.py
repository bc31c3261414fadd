"""deploy/grafana/mothership.json: the board's structure, as Grafana would read it (Grafana itself cannot run here).

Its queries are run against a real Prometheus in tests/test_deploy_prometheus_live.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.conftest import ROOT

BOARD = json.loads((ROOT / "deploy" / "grafana" / "mothership.json").read_text())
RULES = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yaml").read_text())
PANEL_TYPES = {"timeseries", "table", "stat", "gauge", "bargauge"}


def panels() -> list[dict[str, Any]]:
    return [p for p in BOARD["panels"] if p["type"] != "row"]


def test_board_identity() -> None:
    assert BOARD["title"] == "Mothership" and BOARD["uid"] == "mothership-fleet"
    assert isinstance(BOARD["schemaVersion"], int) and BOARD["schemaVersion"] >= 36
    assert BOARD["id"] is None  # importable into any Grafana


def test_variables_datasource_namespace_app() -> None:
    variables = {v["name"]: v for v in BOARD["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "app"]
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "app"):
        variable = variables[name]
        assert variable["type"] == "query" and variable["includeAll"] and variable["multi"]
        assert variable["allValue"] == ".*"
        assert variable["query"]["query"].startswith("label_values(") and variable["query"]["query"].endswith(
            f", {name})")
    assert "$namespace" in variables["app"]["query"]["query"]  # apps of the chosen namespaces


def test_sections() -> None:
    rows = [p["title"] for p in BOARD["panels"] if p["type"] == "row"]
    assert rows == ["Apps", "Routes", "Pods", "gRPC methods", "Resources against limits", "Reporting health"]


def test_panels_are_laid_out_without_overlap() -> None:
    ids = [p["id"] for p in BOARD["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in BOARD["panels"]:
        grid = panel["gridPos"]
        x0, y0 = grid["x"], grid["y"]
        assert x0 >= 0 and x0 + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        cells = {(x, y) for x in range(x0, x0 + grid["w"]) for y in range(y0, y0 + grid["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_panel_queries_the_chosen_prometheus() -> None:
    for panel in panels():
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        targets = panel["targets"]
        assert targets, panel["title"]
        assert len({t["refId"] for t in targets}) == len(targets)
        for target in targets:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), expr
            if 'job="mothership-dashboard"' not in expr:  # the dashboard's own series carry no app
                assert 'namespace=~"$namespace"' in expr and 'app=~"$app"' in expr, (panel["title"], expr)


def test_recorded_series_the_board_reads_exist_in_the_rules() -> None:
    recorded = {r["record"] for g in RULES["groups"] for r in g["rules"] if "record" in r}
    used = {name for p in panels() for t in p["targets"] for name in re.findall(r"\b\w+:\w+:\w+\b", t["expr"])}
    assert used and used <= recorded, used - recorded
    # The golden signals per app, route and pod, gRPC methods, resources and reporting are all shown.
    for needed in ("namespace_app:http_server_requests:rate5m", "namespace_app_route:http_server_requests:rate5m",
                   "namespace_app_pod:http_server_requests:rate5m", "namespace_app_rpc:rpc_server_requests:rate5m",
                   "namespace_app_pod:mothership_container_memory:ratio",
                   "namespace_app_pod:mothership_reporter_dropped_samples:increase5m"):
        assert needed in used
