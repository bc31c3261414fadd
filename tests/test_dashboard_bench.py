"""bench/dashboard_bench.py: its payloads are what a sidecar sends, and a short run works end to end."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest
import ujson

from app.core.wire import parse_resources, parse_stats
from bench.dashboard_bench import percentile, resource_body, stats_body, stats_template
from tests.conftest import ROOT, app_env


def test_payloads_pass_the_dashboards_checks_untouched() -> None:
    rng = random.Random(1)
    template = stats_template(rng, rps=20)
    now = time.time()
    batch = parse_stats(ujson.loads(stats_body("app0001-1-bench", template, now, "b")))
    assert batch.summarised and len(batch.samples) == 50
    assert sum(cell["count"] for cell in batch.summary) == 100
    assert all(int(now) - 6 <= cell["t"] <= int(now) for cell in batch.summary)
    report = parse_resources(ujson.loads(resource_body("app0001-1-bench", rng)))
    assert report.app == "app0001" and report.resource["container"]["memory_limit"] == 512 * 2**20
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0


@pytest.mark.slow
def test_a_quick_run_measures_both_targets() -> None:
    result = subprocess.run([sys.executable, "-m", "bench.dashboard_bench", "--quick"], cwd=ROOT, env=app_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert any(line.strip().startswith("bare") and "POST/s" in line for line in lines)
    dashboard = next(line for line in lines if line.strip().startswith("dashboard") and "POST/s" in line)
    assert "errors 0" in dashboard and "ws behind" in dashboard
    assert any("by CPU, the dashboard carries" in line for line in lines)
