"""The archive: history's downsampled tiers in SQLite, written by adding, pruned per scope.

Coarse slots that left memory (`PodStore.drain`'s `archive` and `late`) are
added to one row per tier (`app.dashboard.tiers`): counts, histogram buckets
and resource sums add, so a minute or ten-minute row is exactly its 5-second
parts. Routes are added per minute and per hour. Rows are keyed scope first,
so a query for one scope reads its rows in order; writes come a minute at a
time per scope, so they land in few pages. These functions run inside
`History.write`'s transaction, on its connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from app.dashboard.buckets import Bucket, BucketRow, Slot, Traffic, read_slot
from app.dashboard.packed import to_bytes
from app.dashboard.tiers import ROUTE_TIERS, TIERS

BUCKET_COLUMNS = ("count, status, failures, hist, total, low, high, bytes_in, bytes_out, "
                  "cpu_sum, cpu_n, mem_sum, mem_n, mem_limit")  # the order of `Bucket.to_row`
TRAFFIC_COLUMNS = "count, status, failures, hist, total, low, high, bytes_in, bytes_out"  # `traffic_row`
_TRAFFIC_TYPES = ("count INTEGER NOT NULL, status BLOB NOT NULL, failures INTEGER NOT NULL, hist BLOB NOT NULL, "
                  "total REAL NOT NULL, low REAL, high REAL, bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS archive (
    scope TEXT NOT NULL, step INTEGER NOT NULL, t INTEGER NOT NULL, {_TRAFFIC_TYPES},
    cpu_sum REAL NOT NULL, cpu_n INTEGER NOT NULL, mem_sum REAL NOT NULL, mem_n INTEGER NOT NULL, mem_limit REAL,
    PRIMARY KEY (scope, step, t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS route_archive (
    scope TEXT NOT NULL, step INTEGER NOT NULL, t INTEGER NOT NULL, route TEXT NOT NULL, method TEXT NOT NULL,
    {_TRAFFIC_TYPES},
    PRIMARY KEY (scope, step, t, route, method)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scopes (scope TEXT PRIMARY KEY, archived_to INTEGER NOT NULL, last INTEGER NOT NULL);
"""

BucketKey = tuple[str, int, int]  # scope, step, t
RouteKey = tuple[str, int, int, str, str]  # scope, step, t, route, method


def tier_buckets(slots: Iterable[tuple[str, int, Slot | Bucket]]) -> dict[BucketKey, Bucket]:
    """Each 5-second slot added into its row of every tier."""
    out: dict[BucketKey, Bucket] = {}
    for scope, t5, slot in slots:
        bucket = read_slot(slot)
        if bucket is None:
            continue
        for step, _ in TIERS:
            key = (scope, step, t5 - t5 % step)
            acc = out.get(key)
            if acc is None:
                acc = out[key] = Bucket()
            acc.merge(bucket)
            acc.merge_resources(bucket)
    return out


def tier_routes(minutes: Iterable[tuple[str, str, str, int, Traffic]]) -> dict[RouteKey, Traffic]:
    out: dict[RouteKey, Traffic] = {}
    for scope, route, method, t60, cell in minutes:
        for step, _ in ROUTE_TIERS:
            key = (scope, step, t60 - t60 % step, route, method)
            acc = out.get(key)
            if acc is None:
                acc = out[key] = Traffic()
            acc.merge(cell)
    return out


def traffic_row(cell: Traffic) -> tuple[Any, ...]:
    counted = cell.count > 0
    return (cell.count, to_bytes(cell.status), cell.failures, to_bytes(cell.hist), cell.total,
            cell.low if counted else None, cell.high if counted else None, cell.bytes_in, cell.bytes_out)


def traffic_from_row(row: tuple[Any, ...]) -> Traffic:
    cell = Traffic()
    count, status, cell.failures, hist, cell.total, low, high, cell.bytes_in, cell.bytes_out = row
    cell.count = count
    cell.status, cell.hist = int.from_bytes(status, "little"), int.from_bytes(hist, "little")
    if count:
        cell.low, cell.high = low, high
    return cell


def add_buckets(db: sqlite3.Connection, rows: dict[BucketKey, Bucket]) -> list[tuple[Any, ...]]:
    """The archive's rows for `rows`' keys with `rows` added: what to write back."""
    select = f"SELECT {BUCKET_COLUMNS} FROM archive WHERE scope = ? AND step = ? AND t = ?"
    out = []
    for key, bucket in rows.items():
        old = db.execute(select, key).fetchone()
        if old is not None:
            merged = Bucket.from_row(old)
            merged.merge(bucket)
            merged.merge_resources(bucket)
            bucket = merged
        out.append((*key, *bucket.to_row()))
    return out


def add_routes(db: sqlite3.Connection, rows: dict[RouteKey, Traffic]) -> list[tuple[Any, ...]]:
    select = (f"SELECT {TRAFFIC_COLUMNS} FROM route_archive "
              "WHERE scope = ? AND step = ? AND t = ? AND route = ? AND method = ?")
    out = []
    for key, cell in rows.items():
        old = db.execute(select, key).fetchone()
        if old is not None:
            merged = traffic_from_row(old)
            merged.merge(cell)
            cell = merged
        out.append((*key, *traffic_row(cell)))
    return out


def write_buckets(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    marks = ", ".join("?" for _ in range(3 + len(BUCKET_COLUMNS.split(","))))
    db.executemany(f"INSERT OR REPLACE INTO archive (scope, step, t, {BUCKET_COLUMNS}) VALUES ({marks})", rows)


def write_routes(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    marks = ", ".join("?" for _ in range(5 + len(TRAFFIC_COLUMNS.split(","))))
    db.executemany(f"INSERT OR REPLACE INTO route_archive (scope, step, t, route, method, {TRAFFIC_COLUMNS}) "
                   f"VALUES ({marks})", rows)


def mark_scopes(db: sqlite3.Connection, archived: Iterable[tuple[str, int]], last: dict[str, int]) -> None:
    """Each scope's boundary (slots before it are archived) and its newest archived slot.

    A scope is known up to its boundary even with nothing archived yet: `prune` forgets it a retention later.
    """
    db.executemany("INSERT INTO scopes (scope, archived_to, last) VALUES (?, ?, ?) ON CONFLICT(scope) DO UPDATE "
                   "SET archived_to = max(archived_to, excluded.archived_to), last = max(last, excluded.last)",
                   [(scope, to, max(to, last.get(scope, 0))) for scope, to in archived])
    seen = {scope for scope, _ in archived}
    db.executemany("INSERT INTO scopes (scope, archived_to, last) VALUES (?, 0, ?) ON CONFLICT(scope) DO UPDATE "
                   "SET last = max(last, excluded.last)", [(s, t) for s, t in last.items() if s not in seen])


def prune(db: sqlite3.Connection, now: float, retention: float) -> int:
    """Delete each scope's rows past its tiers' spans and the retention; scopes with nothing left. Rows deleted."""
    deleted = 0
    oldest = int(now - retention)
    for scope, last in db.execute("SELECT scope, last FROM scopes").fetchall():
        if last < oldest:
            for table in ("archive", "route_archive"):
                deleted += db.execute(f"DELETE FROM {table} WHERE scope = ?", (scope,)).rowcount
            db.execute("DELETE FROM scopes WHERE scope = ?", (scope,))
            continue
        for table, tiers in (("archive", TIERS), ("route_archive", ROUTE_TIERS)):
            for step, kept in tiers:
                cut = int(now - min(kept, retention))
                deleted += db.execute(f"DELETE FROM {table} WHERE scope = ? AND step = ? AND t < ?",
                                      (scope, step, cut)).rowcount
    return deleted


def bucket_rows(db: sqlite3.Connection, scope: str, step: int, start: int, end: int) -> list[tuple[int, BucketRow]]:
    """(t, columns) of one scope's tier over [start, end), oldest first."""
    return [(row[0], row[1:]) for row in db.execute(
        f"SELECT t, {BUCKET_COLUMNS} FROM archive WHERE scope = ? AND step = ? AND t >= ? AND t < ? ORDER BY t",
        (scope, step, start, end))]


def route_rows(db: sqlite3.Connection, scope: str, step: int, start: int,
               end: int) -> list[tuple[str, str, int, tuple[Any, ...]]]:
    """(route, method, t, traffic columns) of one scope's route tier over [start, end)."""
    return [(row[0], row[1], row[2], row[3:]) for row in db.execute(
        f"SELECT route, method, t, {TRAFFIC_COLUMNS} FROM route_archive "
        "WHERE scope = ? AND step = ? AND t >= ? AND t < ?", (scope, step, start, end))]
