"""bench/store_bench.py: its simulation feeds the store what the pods sent, and a quick run reports every part."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.store_bench import PARTS, Simulation
from tests.conftest import ROOT, app_env


def test_the_simulation_counts_every_exchange_and_writes_history(tmp_path: Path) -> None:
    sim = Simulation(20, 600.0, str(tmp_path / "h.sqlite3"))
    try:
        for _ in range(10):
            sim.step()
    finally:
        sim.close()
    store = sim.store
    assert len(store.pods) == 20 and len(store.apps) == 2
    # In ten seconds each pod sent two stats batches (one every 5 s), of 100 exchanges each.
    assert sum(pod.total for pod in store.pods.values()) == 20 * 2 * 100
    assert all(pod.resource is not None for pod in store.pods.values())
    again = Simulation(1, 600.0, str(tmp_path / "h.sqlite3"))
    try:
        restored = again.history.load(again.clock() + 10, 600.0, 600.0)
    finally:
        again.close()
    assert len(restored.pods) == 20 and restored.buckets


def test_a_quick_run_reports_every_part_and_memory(tmp_path: Path) -> None:
    out = tmp_path / "store.json"
    result = subprocess.run([sys.executable, "-m", "bench.store_bench", "--quick", "--json", str(out)], cwd=ROOT,
                            env=app_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(out.read_text())
    cpu = figures["cpu"]["cpu_ms_per_pod_s"]
    assert set(cpu) == set(PARTS)
    assert cpu["ingest_stats"] > 0 and cpu["overview"] > 0 and cpu["history_write"] > 0
    assert figures["memory"]["bytes_per_pod"] > 10_000  # a pod's scope, samples and ids, at least
    assert "us per pod per second" in result.stdout and "MB per pod" in result.stdout
