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

from app.dashboard.buckets import Bucket, Slot, Traffic, freeze, read_slot, thaw
from app.dashboard.tiers import ROUTE_TIERS, TIERS

# A row's numbers are one frozen bucket (`buckets.freeze`: fixed fields, then counts in as few bytes as they
# need): a third of the size of plain columns with 64-bit histogram slots, and nothing queries them in SQL.
SCHEMA = """
CREATE TABLE IF NOT EXISTS archive (
    scope TEXT NOT NULL, step INTEGER NOT NULL, t INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (scope, step, t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS route_archive (
    scope TEXT NOT NULL, step INTEGER NOT NULL, t INTEGER NOT NULL, route TEXT NOT NULL, method TEXT NOT NULL,
    data BLOB NOT NULL,
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


def add_buckets(db: sqlite3.Connection, rows: dict[BucketKey, Bucket]) -> list[tuple[Any, ...]]:
    """The archive's rows for `rows`' keys with `rows` added: what to write back."""
    select = "SELECT data FROM archive WHERE scope = ? AND step = ? AND t = ?"
    out = []
    for key, bucket in rows.items():
        old = db.execute(select, key).fetchone()
        if old is not None:
            merged = thaw(old[0])
            merged.merge(bucket)
            merged.merge_resources(bucket)
            bucket = merged
        out.append((*key, freeze(bucket)))
    return out


def add_routes(db: sqlite3.Connection, rows: dict[RouteKey, Traffic]) -> list[tuple[Any, ...]]:
    select = "SELECT data FROM route_archive WHERE scope = ? AND step = ? AND t = ? AND route = ? AND method = ?"
    out = []
    for key, cell in rows.items():
        old = db.execute(select, key).fetchone()
        merged = thaw(old[0]) if old is not None else Bucket()
        merged.merge(cell)
        out.append((*key, freeze(merged)))
    return out


def write_buckets(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    db.executemany("INSERT OR REPLACE INTO archive (scope, step, t, data) VALUES (?, ?, ?, ?)", rows)


def write_routes(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    db.executemany("INSERT OR REPLACE INTO route_archive (scope, step, t, route, method, data) "
                   "VALUES (?, ?, ?, ?, ?, ?)", rows)


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


def bucket_rows(db: sqlite3.Connection, scope: str, step: int, start: int, end: int) -> list[tuple[int, bytes]]:
    """(t, frozen bucket) of one scope's tier over [start, end), oldest first."""
    return db.execute("SELECT t, data FROM archive WHERE scope = ? AND step = ? AND t >= ? AND t < ? ORDER BY t",
                      (scope, step, start, end)).fetchall()


def route_rows(db: sqlite3.Connection, scope: str, step: int, start: int,
               end: int) -> list[tuple[str, str, int, bytes]]:
    """(route, method, t, frozen traffic) of one scope's route tier over [start, end)."""
    return db.execute("SELECT route, method, t, data FROM route_archive "
                      "WHERE scope = ? AND step = ? AND t >= ? AND t < ?", (scope, step, start, end)).fetchall()
