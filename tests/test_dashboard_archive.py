"""The archive: tiers rolled up exactly, windows past memory read back whole, retention deleting, compactness."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.dashboard import archive
from app.dashboard.buckets import Bucket, thaw
from app.dashboard.history import History, Prune
from app.dashboard.packed import quantiles
from app.dashboard.scope import COARSE_SPAN
from app.dashboard.tiers import DAY
from bench.store_bench import deep_size
from tests.history_support import Feed


def rows(db: sqlite3.Connection, scope: str, step: int) -> dict[int, Bucket]:
    return {t: thaw(data) for t, data in archive.bucket_rows(db, scope, step, 0, 2**40)}


def test_memory_holds_minutes_and_the_archive_the_rest(tmp_path: Path) -> None:
    week, hour = Feed(tmp_path / "week.sqlite3"), Feed(tmp_path / "hour.sqlite3", retention=3600)
    sizes = []
    for _ in range(4):  # past the span memory keeps, then three more half-hours
        for feed in (week, hour):
            feed.run(1800)
        sizes.append(deep_size(week.store))
    store = week.store
    for scope in (store.all, store.apps["shop"].scope, store.pods["shop-0-x"].scope):
        assert len(scope.coarse) <= (COARSE_SPAN + 60) // 5 + 2, scope.name
        assert min(scope.coarse) >= scope.archived_to >= int(week.clock()) - COARSE_SPAN - 60
    assert max(sizes) < min(sizes) * 1.1, sizes  # flat over the hours
    assert deep_size(hour.store) < sizes[-1] * 1.1 and sizes[-1] < deep_size(hour.store) * 1.1  # whatever is kept
    week.close()
    hour.close()


def test_long_windows_are_those_of_a_store_that_kept_everything_in_memory(tmp_path: Path) -> None:
    archived, kept = Feed(tmp_path / "h.sqlite3"), Feed(None)
    for feed in (archived, kept):
        feed.run(2 * 3600 + 37)
    archived.write()
    for scope in ("all", "app:shop", "pod:cart-0-x"):
        for window in (900, 3600, 2 * 3600):
            got, want = archived.series(scope, window), kept.series(scope, window)
            assert got is not None and want is not None
            assert got["step"] == want["step"]
            assert got == want, (scope, window)
    past = archived.series("app:shop", 1800, end=int(archived.clock()) - 3600)
    assert past == kept.series("app:shop", 1800, end=int(kept.clock()) - 3600)
    assert past is not None and past["t"][-1] < archived.clock() - 3600
    archived.close()


def test_each_tier_adds_up_to_the_finer_slots_it_replaces(tmp_path: Path) -> None:
    feed = Feed(tmp_path / "h.sqlite3")
    feed.run(3600)
    feed.write()
    db = sqlite3.connect(tmp_path / "h.sqlite3")
    for scope in ("all", "app:cart", "pod:shop-1-x"):
        fine, minutes, tens = rows(db, scope, 5), rows(db, scope, 60), rows(db, scope, 600)
        assert fine and minutes and tens
        for coarse, parts_step in ((minutes, 60), (tens, 600)):
            for t, bucket in coarse.items():
                parts = [b for t5, b in fine.items() if t <= t5 < t + parts_step]
                assert bucket.count == sum(b.count for b in parts)
                assert bucket.hist == sum(b.hist for b in parts) and bucket.status == sum(b.status for b in parts)
                assert bucket.failures == sum(b.failures for b in parts)
                assert bucket.cpu_n == sum(b.cpu_n for b in parts) and bucket.mem_sum == sum(b.mem_sum for b in parts)
                if bucket.count:
                    assert bucket.low == min(b.low for b in parts if b.count)
                    assert bucket.high == max(b.high for b in parts if b.count)
                    merged = Bucket()
                    for b in parts:
                        merged.merge(b)
                    assert quantiles(bucket.hist, bucket.count, bucket.low, bucket.high) == quantiles(
                        merged.hist, merged.count, merged.low, merged.high)
    total = sum(b.count for b in rows(db, "all", 600).values())
    in_memory = sum(read.count for t5 in feed.store.all.coarse if (read := feed.store.all.bucket(5, t5)))
    assert total + in_memory == feed.exchanges  # every exchange counted once, archived or not
    db.close()
    feed.close()


def test_late_traffic_for_an_archived_slot_is_added_to_it(tmp_path: Path) -> None:
    feed = Feed(tmp_path / "h.sqlite3")
    feed.run(900)
    before = feed.exchanges
    feed.report(lag=600.0)  # a sidecar back after ten minutes away: its slots have left memory
    feed.run(20)
    feed.write()
    db = sqlite3.connect(tmp_path / "h.sqlite3")
    archived = sum(b.count for b in rows(db, "all", 600).values())
    in_memory = sum(read.count for t5 in feed.store.all.coarse if (read := feed.store.all.bucket(5, t5)))
    assert feed.exchanges > before and archived + in_memory == feed.exchanges
    assert sum(b.count for b in rows(db, "all", 5).values()) == archived  # every tier got it
    db.close()
    feed.close()


def test_a_restart_shows_the_same_long_windows_and_keeps_counting(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    first = Feed(path)
    first.run(2 * 3600)
    now = first.clock()
    before = {(scope, window): first.series(scope, window) for scope in ("all", "pod:shop-0-x")
              for window in (3600, 6 * 3600)}
    first.close()
    second = Feed(path, start=now)
    for (scope, window), series in before.items():
        assert second.series(scope, window) == series, (scope, window)
    second.run(1800)
    second.close()
    db = sqlite3.connect(path)
    archived = sum(b.count for b in rows(db, "all", 600).values())
    memory = second.store.all
    in_memory = sum(read.count for t5 in memory.coarse if (read := memory.bucket(5, t5)))
    assert archived + in_memory == first.exchanges + second.exchanges
    db.close()


def test_the_retention_deletes_and_the_file_gives_space_back(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    feed = Feed(path, retention=3 * DAY)
    feed.run(4000)
    feed.write()
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM archive WHERE step = 5").fetchone()[0] > 0
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    history = feed.history
    assert history is not None
    history.write(feed.store.drain(), Prune(feed.clock() + 2 * 3600, feed.retention))  # two hours on
    assert db.execute("SELECT min(t) FROM archive WHERE step = 5").fetchone()[0] is None  # 5 s slots: an hour
    assert db.execute("SELECT count(*) FROM archive WHERE step = 60").fetchone()[0] > 0
    history.write(feed.store.drain(), Prune(feed.clock() + 2 * DAY + 3 * 3600, feed.retention))
    assert db.execute("SELECT count(*) FROM archive WHERE step = 60").fetchone()[0] == 0  # minutes: two days
    assert db.execute("SELECT count(*) FROM route_archive WHERE step = 60").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM archive WHERE step = 600").fetchone()[0] > 0
    history.write(feed.store.drain(), Prune(feed.clock() + 3 * DAY + 3 * 3600, feed.retention))
    for table in ("archive", "route_archive", "scopes"):
        assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
    assert db.execute("PRAGMA page_count").fetchone()[0] < pages / 2  # incremental vacuum gave pages back
    db.close()
    feed.lookback.close()
    history.close()


def test_routes_of_a_past_range(tmp_path: Path) -> None:
    feed = Feed(tmp_path / "h.sqlite3")
    first = int(feed.clock()) - 60
    start = first + 180 - first % 60  # a whole minute
    feed.run(1800)
    feed.write(final=True)
    table = feed.routes(start, start + 900)
    assert table["step"] == 60 and table["start"] == start and table["end"] == start + 900
    by_key = {(r["app"], r["route"], r["method"]): r for r in table["routes"]}
    assert set(by_key) == {(app, f"/r{k}/{{id}}", "GET") for app in ("shop", "cart") for k in range(4)}
    shop = by_key["shop", "/r3/{id}", "GET"]
    # Two shop pods, one exchange per route every 5 s, 900 s.
    assert shop["count"] == 2 * 180 and shop["errors"] > 0 and shop["p95"] is not None
    assert feed.routes(start, start + 900, app="cart")["routes"][0]["app"] == "cart"
    whole = feed.routes(first, first + 1900)
    assert sum(r["count"] for r in whole["routes"]) == feed.exchanges
    feed.close()


def test_a_file_from_before_the_archive_is_archived_at_start(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    feed = Feed(None)  # the earlier store: everything in memory, written to `buckets` as it was
    feed.run(3600)
    history = History(str(path))
    history.write(feed.store.drain(final=True))
    history.close()
    again = Feed(path, start=feed.clock())
    assert again.series("all", 3600) == feed.series("all", 3600)
    again.close()
