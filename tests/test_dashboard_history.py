"""History in SQLite: write/load, pruning, one transaction per write, and restarts keeping what was shown."""

from __future__ import annotations

import signal
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import ujson

from app.core.wire import parse_resources, parse_stats
from app.dashboard.aggregate import Changes, PodStore
from app.dashboard.buckets import freeze_row
from app.dashboard.history import BUCKET_COLUMNS, History, Prune
from app.options import DashboardConfig
from tests.conftest import free_port
from tests.dashboard_support import T0, FakeClock, resource_body, running, sample, stats_body


def fill(store: PodStore, clock: FakeClock, seconds: int = 60) -> None:
    for second in range(seconds):
        clock.now = T0 + second
        if second % 5 == 4:
            body = stats_body(f"shop-{second % 2}-x", [sample(ms=float(second), started=T0 + second - 2)] * 3,
                              batch=f"b{second}")
            store.ingest_stats(parse_stats(body))
        store.ingest_resources(parse_resources(resource_body("shop-0-x", cpu=float(second))))
        store.tick()


def test_write_then_load_restores_the_store(tmp_path: Path) -> None:
    path = str(tmp_path / "h.sqlite3")
    clock = FakeClock()
    store = PodStore(clock=clock)
    fill(store, clock)
    history = History(path)
    assert history.write(store.drain(final=True)) > 0
    history.close()

    again = PodStore(clock=clock)
    history = History(path)
    again.restore(history.load(clock(), 3600, 600))
    history.close()
    assert again.overview() == store.overview()
    assert again.series("app:shop", 300) == store.series("app:shop", 300)
    assert again.series("pod:shop-0-x", 900) == store.series("pod:shop-0-x", 900)


def test_a_file_from_before_slots_were_frozen_restores_the_same(tmp_path: Path) -> None:
    """Files written before `slots` kept memory's buckets as plain columns (`buckets`): read as well."""
    clock = FakeClock()
    store = PodStore(clock=clock)
    fill(store, clock)
    changes = store.drain(final=True)
    path = str(tmp_path / "h.sqlite3")
    history = History(path)
    history.write(changes)
    history.db.execute("DELETE FROM slots")
    history.db.executemany(f"INSERT INTO buckets (scope, step, t, {BUCKET_COLUMNS}) VALUES (?, ?, ?, "
                           f"{', '.join('?' for _ in BUCKET_COLUMNS.split(','))})",
                           [(scope, step, t, *row) for scope, step, t, row in changes.buckets])
    restored = history.load(clock(), 3600, 600)
    history.close()
    assert sorted(restored.buckets) == sorted((s, step, t, freeze_row(row)) for s, step, t, row in changes.buckets)
    again = PodStore(clock=clock)
    again.restore(restored)
    assert again.overview() == store.overview()
    assert again.series("app:shop", 300) == store.series("app:shop", 300)


def test_prune_and_dropped_pods(tmp_path: Path) -> None:
    path = str(tmp_path / "h.sqlite3")
    clock = FakeClock()
    store = PodStore(clock=clock, retention=600, drop_after=100)
    fill(store, clock, 30)
    history = History(path)
    history.write(store.drain(final=True))
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM slots WHERE step = 1").fetchone()[0] == 30 * 2  # app, all: not pods
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 6
    clock.advance(400)  # past FINE_SPAN, not past the retention
    history.write(Changes(), Prune(clock(), 600))
    assert db.execute("SELECT count(*) FROM slots WHERE step = 1").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM slots WHERE step = 5").fetchone()[0] > 0
    store.tick()  # both pods silent for 400 s > drop_after
    history.write(store.drain())
    for table in ("pods", "recent", "batches"):
        assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
    assert db.execute("SELECT count(*) FROM slots WHERE scope LIKE 'pod:%'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM slots WHERE scope = 'app:shop'").fetchone()[0] > 0
    db.close()
    history.close()


def test_a_failed_write_keeps_nothing_of_it(tmp_path: Path) -> None:
    path = str(tmp_path / "h.sqlite3")
    history = History(path)
    bad = Changes(pods=[("ok-1-x", {"seen": 1.0, "app": "ok"}), ("bad-1-x", {"seen": 2.0, "x": {1, 2}})])
    with pytest.raises(TypeError):
        history.write(bad)  # a set cannot be encoded: the second row fails
    assert sqlite3.connect(path).execute("SELECT count(*) FROM pods").fetchone()[0] == 0
    assert history.write(Changes(pods=[("ok-1-x", {"seen": 1.0, "app": "ok"})])) == 1
    history.close()


@pytest.mark.gen_test(timeout=30)
async def test_two_apps_on_one_file_show_the_same_after_a_restart(io_loop: Any, tmp_path: Path) -> None:
    config = DashboardConfig(data=str(tmp_path / "dash.sqlite3"))
    clock = FakeClock(T0 + 30)
    async with running(config, clock) as first:
        for i in range(5):
            await first.post("/stats", stats_body("shop-1-a", [sample(ms=float(10 * i + 1), started=T0 + 20 + i)] * 4,
                                                  batch=f"b{i}"))
        await first.post("/resources", resource_body("shop-1-a"))
        clock.advance(1)
        await first.app.dashboard.tick()
        before = {path: await first.get_json(path) for path in
                  ("/stats", "/resources", "/api/overview", "/api/series?scope=pod:shop-1-a&window=900",
                   "/api/series?scope=all&window=300", "/api/series?scope=app:shop&window=3600")}
    async with running(config, clock) as second:
        after = {path: await second.get_json(path) for path in before}
        assert after == before
        retried = await second.post("/stats", stats_body("shop-1-a", [sample(started=T0 + 22)] * 4, batch="b2"))
        assert ujson.loads(retried.body)["duplicate"] is True
        (pod,) = await second.get_json("/stats")
        assert pod["count"] == 20


def get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return ujson.loads(response.read())


def post(port: int, path: str, body: Any) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=ujson.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return ujson.loads(response.read())


def test_a_real_process_restarted_with_the_same_data_keeps_history(run_app: Any, tmp_path: Path) -> None:
    data = str(tmp_path / "proc.sqlite3")
    port = free_port()
    args = ["--mode", "dashboard", "--port", str(port), "--host", "127.0.0.1", "--data", data]
    first = run_app(args, wait_ports=[port])
    now = time.time()
    batch = stats_body("shop-1-abcde", [sample(ms=7.0, started=now - 10)] * 6, batch="once")
    assert post(port, "/stats", batch)["duplicate"] is False
    post(port, "/resources", resource_body("shop-1-abcde"))
    before = get(port, "/stats")
    assert before[0]["count"] == 6
    assert first.stop(signal.SIGTERM) == 0  # SIGTERM: history written before exit

    run_app(args, wait_ports=[port])
    after = get(port, "/stats")
    assert after[0]["stats"] == before[0]["stats"] and after[0]["count"] == 6 and after[0]["total"] == 6
    assert post(port, "/stats", batch)["duplicate"] is True  # a sidecar's retry after the restart
    assert get(port, "/stats")[0]["count"] == 6
    overview = get(port, "/api/overview")
    assert overview["pods"][0]["pod"] == "shop-1-abcde" and overview["recent"][-1]["time"] == 7.0
    series = get(port, "/api/series?scope=app:shop&window=300")
    assert sum(v for v in series["rps"]["2xx"] if v) == 6
