"""History in an embedded SQLite file: what `PodStore.drain()` hands over, read back at start.

Plain blocking `sqlite3`; the server calls `write` from one worker thread so
the event loop never waits on the disk. Each write is one transaction, so a
batch id and the counts it brought are kept or lost together. The `buckets`
table holds what memory holds (for a restart); what left memory goes to the
archive's tiers (`app.dashboard.archive`), which queries of past windows read.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import ujson

from app.dashboard import archive
from app.dashboard.aggregate import Changes, PodStore, Restored
from app.dashboard.batchids import BATCH_IDS
from app.dashboard.buckets import Bucket, freeze_row, thaw
from app.dashboard.scope import COARSE_SPAN, FINE_SPAN

# What memory holds is written to `slots`, each a frozen bucket (`buckets.freeze`, as memory keeps
# complete slots): a restart puts the bytes back as they are. As plain columns (`buckets`, still read
# in files from before) a restart at 2,000 pods spent seconds converting 180,000 rows. Keyed by time
# first: a write of thousands of scopes' current slots lands in a few neighbouring pages instead of
# one page per scope (here about 5x less CPU per row), and pruning is a range delete.
SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    scope TEXT NOT NULL, step INTEGER NOT NULL, t INTEGER NOT NULL,
    count INTEGER NOT NULL, status BLOB NOT NULL, failures INTEGER NOT NULL, hist BLOB NOT NULL,
    total REAL NOT NULL, low REAL, high REAL, bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL,
    cpu_sum REAL NOT NULL, cpu_n INTEGER NOT NULL, mem_sum REAL NOT NULL, mem_n INTEGER NOT NULL, mem_limit REAL,
    PRIMARY KEY (step, t, scope)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slots (
    scope TEXT NOT NULL, step INTEGER NOT NULL, t INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (step, t, scope)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS routes (scope TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pods (pod TEXT PRIMARY KEY, seen REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recent (pod TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    pod TEXT NOT NULL, id TEXT NOT NULL, t REAL NOT NULL, PRIMARY KEY (pod, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, data TEXT NOT NULL);
""" + archive.SCHEMA


DROP_CHUNK = 500  # dropped pods per DELETE (SQLite caps the parameters of one statement)
BUCKET_COLUMNS = ("count, status, failures, hist, total, low, high, bytes_in, bytes_out, "
                  "cpu_sum, cpu_n, mem_sum, mem_n, mem_limit")  # the order of `Bucket.to_row`
# Seconds of batch ids kept on disk: a sidecar retries an unacknowledged batch within seconds, so ten
# minutes before the last write cover a restart (memory keeps BATCH_IDS per pod while running).
BATCH_SPAN = 600
VACUUM_PAGES = 2000  # free pages handed back to the file system after each prune (8 MB at 4 kB a page)


# The writer thread pauses every PACE_BURST seconds of Python work for PACE_PAUSE. A thread
# computing in Python keeps the GIL until the interpreter makes it let go (every 5 ms), and the
# event loop lets go of it at every socket call, so without pauses each of the loop's sends and
# receives could wait up to 5 ms while rows were encoded: at 2000 pods, POST p99 70-90 ms and live
# updates up to a second late during writes, against 47 ms and 0.3 s with no history at all.
PACE_BURST = 0.0005
PACE_PAUSE = 0.0005

T = TypeVar("T")


@dataclass(frozen=True)
class Prune:
    """Delete what is past its span: memory's copies, the archive's tiers, everything past the retention."""

    now: float
    retention: float


def _dumps(value: Any) -> str:
    return ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False)


def _paced(items: Iterable[T], convert: Callable[[T], tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """`convert` applied to each item, pausing (the GIL released) after every PACE_BURST of work."""
    out = []
    clock = time.perf_counter
    since = clock()
    for item in items:
        out.append(convert(item))
        if clock() - since > PACE_BURST:
            time.sleep(PACE_PAUSE)
            since = clock()
    return out


class History:
    """One SQLite file holding buckets, route tables, pods and the sample lists."""

    def __init__(self, path: str) -> None:
        self.path = path
        # One worker thread writes; the loop thread reads only at start, before it hands over.
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if self.db.execute("PRAGMA page_count").fetchone()[0] == 0:
            # Only a new file can take it: pages freed as rows age out are then given back (`Prune`).
            self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
        columns = [row[1] for row in self.db.execute("PRAGMA table_info(archive)")]
        if columns and "data" not in columns:  # the archive's first layout (plain columns), on main for an hour
            self.db.executescript("DROP TABLE archive; DROP TABLE route_archive; DROP TABLE scopes;")
        self.db.executescript(SCHEMA)

    def load(self, now: float, retention: float, drop_after: float) -> Restored:
        """What memory held, read back; whatever of it is older than memory keeps goes to the archive first."""
        db = self.db
        cut = PodStore.archive_cut(now)
        archived = self.settle(cut)
        pods = [(pod, ujson.loads(data)) for pod, data in
                db.execute("SELECT pod, data FROM pods WHERE seen >= ?", (now - drop_after,))]
        since = (int(now) - FINE_SPAN, max(cut, int(now - retention)))
        buckets: list[tuple[str, int, int, bytes]] = [row for row in db.execute(
            "SELECT scope, step, t, data FROM slots WHERE (step = 1 AND t >= ?) OR (step > 1 AND t >= ?)", since)
            if row[1] == 1 or row[2] >= archived.get(row[0], 0)]
        buckets.extend((row[0], row[1], row[2], freeze_row(row[3:])) for row in db.execute(
            f"SELECT scope, step, t, {BUCKET_COLUMNS} FROM buckets "
            "WHERE (step = 1 AND t >= ?) OR (step > 1 AND t >= ?)", since)
            if row[1] == 1 or row[2] >= archived.get(row[0], 0))
        # Route tables and recent exchanges stay JSON text until first read (`Scope.load_routes`, `RecentSamples`).
        routes = db.execute("SELECT scope, data FROM routes").fetchall()
        row = db.execute("SELECT data FROM meta WHERE key = 'samples'").fetchone()
        recent = dict(db.execute("SELECT pod, data FROM recent").fetchall())
        # Retries come within minutes of the last write, however long the dashboard was away.
        batch_ids: dict[str, list[str | bytes]] = {}  # digests; ids as text in files from before
        for pod, batch in db.execute("SELECT pod, id FROM batches WHERE t >= (SELECT max(t) FROM batches) - ? "
                                     "ORDER BY t", (BATCH_SPAN,)):
            batch_ids.setdefault(pod, []).append(batch)
        return Restored(buckets=buckets, routes=routes, pods=pods, samples=ujson.loads(row[0]) if row else None,
                        recent=recent, batch_ids={pod: ids[-BATCH_IDS:] for pod, ids in batch_ids.items()},
                        archived_to=cut)

    def settle(self, cut: int) -> dict[str, int]:
        """Archive the coarse slots before `cut` that memory held when the process stopped; each scope's boundary.

        A file from before the archive existed has its whole retention here: it is archived once, so.
        """
        db = self.db
        archived = dict(db.execute("SELECT scope, archived_to FROM scopes").fetchall())
        rows = [(scope, t, Bucket.from_row(row)) for scope, t, *row in db.execute(
            f"SELECT scope, t, {BUCKET_COLUMNS} FROM buckets WHERE step > 1 AND t < ?", (cut,))
            if t >= archived.get(scope, 0)]
        rows.extend((scope, t, thaw(data)) for scope, t, data in db.execute(
            "SELECT scope, t, data FROM slots WHERE step > 1 AND t < ?", (cut,)) if t >= archived.get(scope, 0))
        db.execute("BEGIN")
        try:
            tiers = archive.tier_buckets(rows)
            archive.write_buckets(db, archive.add_buckets(db, tiers))
            last: dict[str, int] = {}
            for scope, t, _ in rows:
                last[scope] = max(last.get(scope, 0), t)
            archive.mark_scopes(db, [(scope, cut) for scope in {*archived, *last}], last)
            for table in ("slots", "buckets"):
                db.execute(f"DELETE FROM {table} WHERE step > 1 AND t < ?", (cut,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return {scope: max(to, cut) for scope, to in archived.items()} | {scope: cut for scope in last}

    def write(self, changes: Changes, prune: Prune | None = None) -> int:
        """Write one drain in one transaction; with `prune`, delete what is past its span."""
        db = self.db
        rows = 0
        db.execute("BEGIN")
        try:
            if changes.buckets:  # frozen here, off the event loop (`drain` took each bucket's columns)
                db.executemany("INSERT OR REPLACE INTO slots (scope, step, t, data) VALUES (?, ?, ?, ?)",
                               _paced(changes.buckets, lambda b: (b[0], b[1], b[2], freeze_row(b[3]))))
                rows += len(changes.buckets)
            if changes.routes:
                db.executemany("INSERT OR REPLACE INTO routes (scope, data) VALUES (?, ?)",
                               _paced(changes.routes, lambda r: (r[0], _dumps(r[1]))))
                rows += len(changes.routes)
            if changes.pods:
                db.executemany("INSERT OR REPLACE INTO pods (pod, seen, data) VALUES (?, ?, ?)",
                               _paced(changes.pods, lambda p: (p[0], p[1]["seen"], _dumps(p[1]))))
                rows += len(changes.pods)
            if changes.recent:
                db.executemany("INSERT OR REPLACE INTO recent (pod, data) VALUES (?, ?)", _paced(
                    changes.recent, lambda r: (r[0], r[1] if isinstance(r[1], str) else _dumps(r[1]))))
                rows += len(changes.recent)
            if changes.batch_ids:
                db.executemany("INSERT OR REPLACE INTO batches (pod, id, t) VALUES (?, ?, ?)", changes.batch_ids)
                rows += len(changes.batch_ids)
            for pod in changes.dropped_pods:
                for sql in ("DELETE FROM pods WHERE pod = ?", "DELETE FROM recent WHERE pod = ?",
                            "DELETE FROM batches WHERE pod = ?"):
                    db.execute(sql, (pod,))
                db.execute("DELETE FROM routes WHERE scope = ?", (f"pod:{pod}",))
            # Buckets are keyed by time, not scope: one pass over the table per DROP_CHUNK dropped pods.
            for i in range(0, len(changes.dropped_pods), DROP_CHUNK):
                scopes = [f"pod:{pod}" for pod in changes.dropped_pods[i:i + DROP_CHUNK]]
                for table in ("slots", "buckets"):
                    db.execute(f"DELETE FROM {table} WHERE scope IN ({', '.join('?' for _ in scopes)})", scopes)
            if changes.samples is not None:
                db.execute("INSERT OR REPLACE INTO meta (key, data) VALUES ('samples', ?)",
                           (_dumps(changes.samples),))
                rows += 1
            rows += self._archive(changes)
            if prune is not None:
                self._prune(prune)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if prune is not None:
            # A page per step, and sqlite3 steps a statement without rows once: a script runs it out.
            db.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
        return rows

    def _archive(self, changes: Changes) -> int:
        """Add what left memory (and late traffic for it) to the archive's tiers; routes per minute and hour."""
        db = self.db
        rows = 0
        if changes.archive or changes.late:
            tiers = archive.tier_buckets([*changes.archive, *changes.late])
            out = archive.add_buckets(db, tiers)
            archive.write_buckets(db, out)
            rows += len(out)
        if changes.archived or changes.archive or changes.route_minutes:
            last: dict[str, int] = {}
            for scope, t, _ in changes.archive:
                if t > last.get(scope, 0):
                    last[scope] = t
            for scope, _, _, t60, _ in changes.route_minutes:
                if t60 > last.get(scope, 0):
                    last[scope] = t60
            archive.mark_scopes(db, changes.archived, last)
        if changes.route_minutes:
            out = archive.add_routes(db, archive.tier_routes(changes.route_minutes))
            archive.write_routes(db, out)
            rows += len(out)
        return rows

    def _prune(self, prune: Prune) -> None:
        db = self.db
        now, oldest = prune.now, int(prune.now - prune.retention)
        for table in ("slots", "buckets"):
            db.execute(f"DELETE FROM {table} WHERE step = 1 AND t < ?", (int(now) - FINE_SPAN,))
            # Memory's copies of coarse slots that have since been archived (a scope's boundary moves a minute
            # at a time); and anything past the retention.
            db.execute(f"DELETE FROM {table} WHERE step > 1 AND t < ? AND (t < ? OR t < coalesce("
                       f"(SELECT archived_to FROM scopes WHERE scopes.scope = {table}.scope), 0))",
                       (int(now) - COARSE_SPAN, oldest))
        # Retries come within minutes: older ids can go (kept to the retention, 7 days of them at 2,000 pods
        # would be 240 million rows).
        db.execute("DELETE FROM batches WHERE t < ?", (now - BATCH_SPAN,))
        archive.prune(db, now, prune.retention)

    def close(self) -> None:
        self.db.close()
