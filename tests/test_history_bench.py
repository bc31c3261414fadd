"""bench/history_bench.py: a small run restarts the real dashboard on the file, queries it and reports every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, app_env


def test_a_small_run_restarts_queries_and_sizes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "history.json"
    result = subprocess.run([sys.executable, "-m", "bench.history_bench", "--pods", "20", "--days", "0.05",
                             "--live-seconds", "5", "--json", str(out)], cwd=ROOT, env=app_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    restart = figures["restart"]
    assert restart["restored_pods"] == 20 and restart["overview_pods"] == 20  # what was kept is served
    assert 0 < restart["serving_seconds"] < 60 and restart["rss_bytes"] > 10 * 2**20
    assert set(restart["queries"]) >= {"series all 7d", "routes all apps 7d"}
    assert all(q["first"] > 0 for q in restart["queries"].values())
    assert figures["live"]["restored_pods"] == 20 and figures["live"]["store_bytes_per_pod"] > 10_000
    assert figures["rows_written"] > 0 and figures["bytes_per_pod_first_two_days"] > 0
    assert "answered /api/overview" in result.stdout
