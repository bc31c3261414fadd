"""Everything the dashboard knows about pods, apps and the whole mesh: `PodStore`.

Pure aggregation over validated `app.core.wire` batches: batch-id deduplication,
staleness, one `Scope` per pod, per app and for all, recent and slowest
exchanges; the read models the API and the live page serve are its other half
(`app.dashboard.views`). The clock is injected and nothing here does I/O;
`history.py` persists what `drain()` hands it.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from app.core.wire import OPAQUE_PROTOCOLS, ResourceReport, Sample, StatsBatch, resource_point
from app.dashboard.batchids import digest
from app.dashboard.buckets import Bucket, BucketRow, Slot, Traffic, freeze_row
from app.dashboard.delta import COARSE, TrafficDelta
from app.dashboard.pods import AppGroup, Pod, ResourceTotals
from app.dashboard.scope import COARSE_SPAN, FINE_SPAN, Scope, window_start
from app.dashboard.tiers import ARCHIVE_ALIGN
from app.dashboard.views import RECENT, SLOWEST, SLOWEST_SPAN, StoreViews, tagged

SLOW_FLUSH = 30.0  # seconds between history writes of the bulky, slowly useful parts (routes, recent and slowest)
# Seconds between writes of every pod's recent exchanges (for GET /stats after a restart): each pod's
# 50 are all new every few seconds, so each write encodes them all (about 11 kB of JSON a pod).
RECENT_FLUSH = 120.0
POD_FLUSH = 10.0  # seconds between writes of pods' own rows (last seen, latest resources, counters)
# Seconds after its end a bucket that took only resource readings since its last write waits before it is
# written: by then the pod's next stats batch has usually rewritten it with its traffic anyway.
RESOURCE_SETTLE = 10

Clock = Callable[[], float]


class StoreFull(Exception):
    """A report that would add a pod or an app past the store's bounds, with none stale to make room.

    `reason` is the metrics outcome (`too_many_pods`, `too_many_apps`); the message says what to do.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Ack:
    """What `POST /stats` answers."""

    duplicate: bool
    samples: int = 0
    cells: int = 0
    exchanges: int = 0


@dataclass
class Changes:
    """What changed since the last `drain()`, for `history.py` to write."""

    buckets: list[tuple[str, int, int, BucketRow]] = field(default_factory=list)  # scope, step, t, columns
    routes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # scope, data
    pods: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    recent: list[tuple[str, list[Sample] | str]] = field(default_factory=list)  # pod, its recent samples (or text)
    batch_ids: list[tuple[str, bytes, float]] = field(default_factory=list)  # pod, batch id's digest, when
    dropped_pods: list[str] = field(default_factory=list)
    samples: dict[str, Any] | None = None  # global recent and slowest lists
    # Coarse slots that left memory, whole: (scope, t5, slot); and each such scope's new boundary.
    archive: list[tuple[str, int, Slot]] = field(default_factory=list)
    archived: list[tuple[str, int]] = field(default_factory=list)  # (scope, archived_to)
    late: list[tuple[str, int, Bucket]] = field(default_factory=list)  # traffic for archived slots: added
    # Route traffic per minute since the last slow flush: (scope, route, method, minute, traffic).
    route_minutes: list[tuple[str, str, str, int, Traffic]] = field(default_factory=list)


@dataclass
class Restored:
    """What `history.py` read back, for `PodStore.restore()`."""

    buckets: list[tuple[str, int, int, bytes]] | list[tuple[str, int, int, BucketRow]]  # frozen, or columns
    routes: list[tuple[str, str]]  # scope, its route table as JSON text (decoded when first read)
    pods: list[tuple[str, dict[str, Any]]]
    samples: dict[str, Any] | None
    recent: dict[str, str] = field(default_factory=dict)  # pod -> its recent samples, JSON text
    batch_ids: dict[str, list[str | bytes]] = field(default_factory=dict)  # ids or digests, oldest first
    archived_to: int = 0  # every scope's coarse slots before this are in the archive


class PodStore(StoreViews):
    """Pods, apps and the whole mesh, fed by batches and read by the API and the page."""

    def __init__(self, *, retention: float = 3600.0, stale_after: float = 15.0, drop_after: float = 600.0,
                 clock: Clock = time.time, max_pods: int = 5000, max_apps: int = 500,
                 overview_pods: int = 500, archive: bool = False) -> None:
        self.retention = retention
        # With an archive (history on disk), memory keeps COARSE_SPAN of coarse slots and hands older ones
        # to `drain()`; without, it keeps them over the retention, as nothing else would.
        self.archive = archive
        self.stale_after = stale_after
        self.drop_after = drop_after
        # Bounds: what one client inventing pod and app names can make the store hold and the page receive.
        self.max_pods = max_pods
        self.max_apps = max_apps
        self.overview_pods = overview_pods
        self.evicted = 0  # stale pods dropped early to make room for new ones
        self._none_stale = False  # a scan for stale pods found none since the last tick
        self.clock = clock
        self.all = Scope("all")
        self.totals = ResourceTotals()
        self.apps: dict[str, AppGroup] = {}
        self.pods: dict[str, Pod] = {}
        self.recent: deque[tuple[str, str, Sample]] = deque(maxlen=RECENT)  # (pod, app, sample), tagged when read
        self._slow: dict[int, list[tuple[float, int, dict[str, Any]]]] = {}  # minute -> min-heap
        self._seq = itertools.count()
        self.version = 0  # bumps on every change the overview shows
        self.duplicates = 0
        self._dirty_scopes: set[Scope] = set()
        self._dirty_pods: set[str] = set()
        self._recent_pods: set[str] = set()
        self._batch_ids: list[tuple[str, bytes, float]] = []
        self._slow_written = self._pods_written = self._recent_written = clock()
        self._dropped_pods: list[str] = []
        self._samples_dirty = False
        self._last_tick = 0
        self._archive: list[tuple[str, int, Slot]] = []
        self._archived: dict[str, int] = {}
        self._late_scopes: set[Scope] = set()
        self._route_minutes: list[tuple[str, str, str, int, Traffic]] = []

    # --- ingest -----------------------------------------------------------

    def ingest_stats(self, batch: StatsBatch) -> Ack:
        """Count a validated batch once; a batch id seen before is acknowledged only."""
        now = self.clock()
        pod = self._touch(batch.pod, batch.app, now)
        if batch.namespace:
            pod.namespace = batch.namespace
        if batch.batch is not None:
            key = digest(batch.batch)
            if not pod.batches.add(key):
                self.duplicates += 1
                return Ack(duplicate=True)
            self._batch_ids.append((pod.name, key, now))  # history keeps the digest: no hashing at a restart
        pod.dropped += batch.dropped
        delta = TrafficDelta(batch.summary, now, self.retention)
        exchanges = 0
        if delta.cells:
            app = self.apps[pod.app]
            for scope in (pod.scope, app.scope, self.all):
                scope.add_traffic(delta, now)
                self._dirty_scopes.add(scope)
                if scope.late:
                    self._late_scopes.add(scope)
            pod.scope.add_routes(delta)
            app.scope.add_routes(delta)
            exchanges = delta.count
            pod.total += exchanges
        if batch.samples:
            self._keep_samples(pod, batch.samples, now)
        self.version += 1
        return Ack(duplicate=False, samples=len(batch.samples), cells=delta.cells, exchanges=exchanges)

    def ingest_resources(self, report: ResourceReport) -> None:
        now = self.clock()
        pod = self._touch(report.pod, report.app, now)
        if report.namespace:
            pod.namespace = report.namespace
        point = resource_point(report.resource)
        app = self.apps[pod.app]
        app.totals.add(pod.point, -1)
        app.totals.add(point)
        self.totals.add(pod.point, -1)
        self.totals.add(point)
        pod.point = point
        pod.resource = report.resource
        pod.resource_seen = now
        pod.scope.add_resource(int(now), point.cpu, point.memory, point.memory_limit)
        self._dirty_scopes.add(pod.scope)
        self.version += 1

    def _touch(self, name: str, app_name: str, now: float) -> Pod:
        """The pod, created, revived or moved to another app as needed; marked seen now.

        Raises StoreFull (and changes nothing) when a new pod or app would pass the bounds.
        """
        pod = self.pods.get(name)
        if pod is None:
            self._make_room(app_name, now)
            pod = self.pods[name] = Pod(name, app_name, now)
            self._join(pod)
        elif pod.app != app_name:
            self._make_room(app_name, now, moving=True)
            self._leave(pod)
            pod.app = app_name
            self._join(pod)
        elif pod.stale:
            pod.stale = False
            self.apps[pod.app].totals.add(pod.point)
            self.totals.add(pod.point)
        pod.seen = now
        self._dirty_pods.add(name)
        return pod

    def _make_room(self, app_name: str, now: float, moving: bool = False) -> None:
        """Room for one more pod (unless `moving`) and for `app_name`: stale pods and podless apps go first."""
        if app_name not in self.apps and len(self.apps) >= self.max_apps:
            for name in [n for n, a in self.apps.items() if not a.pods]:  # history only: the least loss
                del self.apps[name]
            if len(self.apps) >= self.max_apps:
                raise StoreFull("too_many_apps", f"the dashboard keeps at most {self.max_apps} apps (--max-apps), "
                                "all with pods reporting; try again later or raise the limit")
        if moving or len(self.pods) < self.max_pods:
            return
        # Pods turn stale only in tick(): once a scan found none, the next look waits for it.
        stale = [] if self._none_stale else [pod for pod in self.pods.values() if pod.stale]
        if not stale:
            self._none_stale = True
            raise StoreFull("too_many_pods", f"the dashboard keeps at most {self.max_pods} pods (--max-pods), "
                            "all reporting; try again later or raise the limit")
        # Many at once, so that a flood of new names does not pay for this scan on every report.
        for pod in heapq.nsmallest(max(1, self.max_pods // 100), stale, key=lambda p: p.seen):
            self._drop(pod)
            self.evicted += 1

    def _drop(self, pod: Pod) -> None:
        """Forget a pod (silent too long, or stale and in the way of a new one); history is told."""
        self._leave(pod)
        del self.pods[pod.name]
        self._dirty_scopes.discard(pod.scope)
        self._dirty_pods.discard(pod.name)
        self._recent_pods.discard(pod.name)
        self._dropped_pods.append(pod.name)
        if self.archive:  # what memory still holds of it goes to the archive: its history stays
            self._take(pod.scope, int(self.clock()) + COARSE_SPAN)
        self.version += 1

    def _join(self, pod: Pod) -> None:
        app = self.apps.get(pod.app)
        if app is None:
            app = self.apps[pod.app] = AppGroup(pod.app, route_history=self.archive)
        app.pods.add(pod.name)
        pod.stale = False
        app.totals.add(pod.point)
        self.totals.add(pod.point)

    def _leave(self, pod: Pod) -> None:
        app = self.apps[pod.app]
        app.pods.discard(pod.name)
        if not pod.stale:
            app.totals.add(pod.point, -1)
            self.totals.add(pod.point, -1)

    def _keep_samples(self, pod: Pod, samples: list[Sample], now: float) -> None:
        pod.recent.extend(samples)
        self._recent_pods.add(pod.name)
        name, app = pod.name, pod.app
        self.recent.extend((name, app, s) for s in samples[-RECENT:])
        heap = self._slow.setdefault(int(now) // 60, [])
        for sample in samples:
            if sample.get("protocol") in OPAQUE_PROTOCOLS:
                continue  # a connection's lifetime is not a slow exchange: it would crowd out those that are
            took = sample["time"]
            if len(heap) < SLOWEST:
                heapq.heappush(heap, (took, next(self._seq), tagged(sample, pod.name, pod.app)))
            elif took > heap[0][0]:
                heapq.heapreplace(heap, (took, next(self._seq), tagged(sample, pod.name, pod.app)))
        self._samples_dirty = True

    # --- time -------------------------------------------------------------

    def tick(self) -> None:
        """Once a second: staleness, dropping, app/all resource readings, eviction."""
        now = self.clock()
        second = int(now)
        self._none_stale = False
        for pod in list(self.pods.values()):
            silent = now - pod.seen
            if silent > self.drop_after:
                self._drop(pod)
            elif silent > self.stale_after and not pod.stale:
                pod.stale = True
                self.apps[pod.app].totals.add(pod.point, -1)
                self.totals.add(pod.point, -1)
                self.version += 1
        if second != self._last_tick:
            self._last_tick = second
            for group, totals in [*((a.scope, a.totals) for a in self.apps.values()), (self.all, self.totals)]:
                if totals.pods > 0:
                    group.add_resource(second, totals.cpu, totals.memory, totals.memory_limit)
                    self._dirty_scopes.add(group)
            turn = second % COARSE  # each scope evicts and freezes every COARSE seconds, at its own turn
            cut = self.archive_cut(now)
            for scope in self._scopes():
                if scope.evict_turn == turn:
                    scope.evict(now, self.retention)
                    if self.archive:
                        self._take(scope, cut)
            for name in [n for n, a in self.apps.items() if not a.pods and not a.scope.coarse]:
                self._take_routes(self.apps.pop(name).scope)
            oldest = second // 60 - SLOWEST_SPAN // 60
            for minute in [m for m in self._slow if m < oldest]:
                del self._slow[minute]

    @staticmethod
    def archive_cut(now: float) -> int:
        """With an archive, coarse slots before this (a whole minute, COARSE_SPAN back or more) leave memory."""
        cut = int(now) - COARSE_SPAN
        return cut - cut % ARCHIVE_ALIGN

    def _take(self, scope: Scope, cut: int) -> None:
        before = scope.archived_to
        taken = scope.take_before(cut - cut % ARCHIVE_ALIGN)
        if scope.archived_to != before:  # once a minute per scope: its new boundary goes with its slots
            name = scope.name
            self._archive.extend((name, t5, slot) for t5, slot in taken)
            self._archived[name] = scope.archived_to

    def _take_routes(self, scope: Scope) -> None:
        name = scope.name
        self._route_minutes.extend((name, route, method, t60, cell)
                                   for route, method, t60, cell in scope.take_route_minutes())

    def _scopes(self) -> Iterator[Scope]:
        yield self.all
        for app in self.apps.values():
            yield app.scope
        for pod in self.pods.values():
            yield pod.scope

    # --- history ----------------------------------------------------------

    def drain(self, final: bool = False) -> Changes:
        """What changed since the last call, as plain data, for one history transaction.

        Every changed bucket goes in each drain, with the batch ids whose counts they
        hold and the rows of the pods those ids belong to: written together, a crash
        keeps both a batch and its id or neither, so a retry is counted exactly once.
        Pods' own rows otherwise follow every POD_FLUSH, the bulky parts every SLOW_FLUSH, and
        pods' recent exchanges every RECENT_FLUSH.
        """
        now = self.clock()
        changes = Changes()
        slow = final or now - self._slow_written >= SLOW_FLUSH
        if slow:
            self._slow_written = now
        settled = None if final else int(now) - RESOURCE_SETTLE
        for scope in list(self._dirty_scopes):
            for step, t, data in scope.drain_buckets(settled):
                changes.buckets.append((scope.name, step, t, data))
            if slow and scope.routes_dirty:
                scope.routes_dirty = False
                changes.routes.append((scope.name, scope.routes_json_data()))
            if not scope.dirty and not scope.later and not scope.routes_dirty:
                self._dirty_scopes.discard(scope)
        changes.batch_ids, self._batch_ids = self._batch_ids, []
        if final or now - self._pods_written >= POD_FLUSH:
            self._pods_written = now
            due = self._dirty_pods
        else:  # a pod whose ids go now must be on disk too, or a restore would not attach them
            due = self._dirty_pods & {pod for pod, _, _ in changes.batch_ids}
        changes.pods = [(name, self.pods[name].to_json()) for name in due if name in self.pods]
        self._dirty_pods -= due
        if final or now - self._recent_written >= RECENT_FLUSH:
            self._recent_written = now
            changes.recent = [(name, self.pods[name].recent.snapshot()) for name in self._recent_pods]
            self._recent_pods.clear()
        if slow and self._samples_dirty:
            self._samples_dirty = False
            changes.samples = {"recent": self.recent_samples(), "slowest": self.slowest(now)}
        changes.dropped_pods, self._dropped_pods = self._dropped_pods, []
        changes.archive, self._archive = self._archive, []
        changes.archived = list(self._archived.items())
        self._archived.clear()
        for scope in self._late_scopes:
            changes.late.extend((scope.name, t5, bucket) for t5, bucket in scope.late)
            scope.late = []
        self._late_scopes.clear()
        if slow:
            for app in self.apps.values():
                self._take_routes(app.scope)
            changes.route_minutes, self._route_minutes = self._route_minutes, []
        return changes

    def restore(self, state: Restored) -> None:
        """Rebuild from history: pods first, then their scopes' buckets and routes."""
        now = self.clock()
        for name, data in state.pods:
            if now - float(data["seen"]) > self.drop_after:
                continue
            pod = Pod.from_json(name, data, state.recent.get(name), state.batch_ids.get(name, []))
            pod.scope.fine_since = int(now)  # pods' fine buckets are not kept: spread coarse slots before now
            pod.stale = False
            self.pods[name] = pod
            self._join(pod)
            if now - pod.seen > self.stale_after:
                pod.stale = True
                self.apps[pod.app].totals.add(pod.point, -1)
                self.totals.add(pod.point, -1)
        fine_from, coarse_from = int(now) - FINE_SPAN, int(now - self.retention)
        if self.archive:
            coarse_from = max(coarse_from, state.archived_to)
        scopes: dict[str, Scope | None] = {}  # hundreds of thousands of rows, a few thousand scopes
        for scope_name, step, t, row in state.buckets:
            if t < (fine_from if step == 1 else coarse_from) or step not in (1, COARSE):
                continue
            scope = scopes.get(scope_name, self.all)
            if scope is self.all and scope_name != "all":
                scope = scopes[scope_name] = self.scope(scope_name)
                if scope is None and scope_name.startswith("app:"):
                    app_name = scope_name[4:]
                    scope = scopes[scope_name] = self.apps.setdefault(
                        app_name, AppGroup(app_name, route_history=self.archive)).scope
            if scope is not None:
                # Frozen, as memory keeps complete slots (history's are; `drain`'s columns get frozen here).
                scope.load_bucket(step, t, row if isinstance(row, bytes) else freeze_row(row))
        since = window_start(now)[0] - COARSE  # route slots before it are past every window still to be read
        for scope_name, text in state.routes:
            scope = self.scope(scope_name)
            if scope is not None:
                scope.load_routes(text, since)
        if state.samples:
            self.recent.extend((s["pod"], s["app"], s) for s in state.samples.get("recent") or [])
            heap = self._slow.setdefault(int(now) // 60, [])
            for sample in state.samples.get("slowest") or []:
                heapq.heappush(heap, (float(sample["time"]), next(self._seq), sample))
            while len(heap) > SLOWEST:
                heapq.heappop(heap)
        for scope in self._scopes():
            scope.version += 1
            scope.evict(now, self.retention)
            if self.archive:
                scope.archived_to = max(scope.archived_to, state.archived_to)
        self.version += 1
