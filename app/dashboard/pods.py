"""A reporting pod and an app's group of pods: what the store keeps per pod and per app.

`Pod` holds one pod's scope, latest resources, recent exchanges and the batch
ids it sent; `AppGroup` the pods of one app with their merged scope;
`ResourceTotals` running sums of the live pods' latest readings. Pure code.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import ujson

from app.core.wire import ResourcePoint, Sample, resource_point
from app.dashboard.batchids import BATCH_IDS, BatchIds
from app.dashboard.jsontext import dumps
from app.dashboard.scope import Scope

# Newest exchanges per pod, in GET /stats (the page's own lists, recent and slowest, are the store's): at 50,
# as dicts, they were 50 kB of every pod's 0.3 MB.
RECENT_PER_POD = 20
NO_POINT = ResourcePoint(cpu=None, memory=None, memory_limit=None, cores=None)


class ResourceTotals:
    """Running sums of the latest readings of the live pods of one app (or all)."""

    __slots__ = ("cpu_n", "cpu_sum", "limit_missing", "limit_sum", "memory_n", "memory_sum", "pods")

    def __init__(self) -> None:
        self.cpu_sum = 0.0
        self.cpu_n = 0
        self.memory_sum = 0.0
        self.memory_n = 0
        self.limit_sum = 0.0
        self.limit_missing = 0
        self.pods = 0

    def add(self, point: ResourcePoint, sign: int = 1) -> None:
        self.pods += sign
        if point.cpu is not None:
            self.cpu_sum += sign * point.cpu
            self.cpu_n += sign
        if point.memory is not None:
            self.memory_sum += sign * point.memory
            self.memory_n += sign
        if point.memory_limit is not None:
            self.limit_sum += sign * point.memory_limit
        else:
            self.limit_missing += sign

    @property
    def cpu(self) -> float | None:
        return round(self.cpu_sum / self.cpu_n, 2) if self.cpu_n > 0 else None

    @property
    def memory(self) -> float | None:
        return round(self.memory_sum) if self.memory_n > 0 else None

    @property
    def memory_limit(self) -> float | None:
        return round(self.limit_sum) if self.pods > 0 and not self.limit_missing else None


class Pod:
    """One reporting pod: its scope, latest resources, recent exchanges and batch ids."""

    __slots__ = ("_point_text", "_prefix", "_tail", "app", "batches", "dropped", "first_seen", "name", "namespace",
                 "point", "recent", "resource", "resource_seen", "scope", "seen", "stale", "total")

    def __init__(self, name: str, app: str, now: float) -> None:
        self.name = name
        self.app = app
        self.namespace = ""  # as its sidecar last said; "" when it never did (older sidecars)
        self.scope = Scope(f"pod:{name}", persist_fine=False)
        self.first_seen = now
        self.seen = now
        self.stale = False
        self.dropped = 0  # samples the sidecar reported it could not keep
        self.total = 0  # exchanges counted, lifetime
        self.resource: dict[str, Any] | None = None
        self.resource_seen = 0.0
        self.point = NO_POINT
        self.recent = RecentSamples()
        self.batches = BatchIds()
        # The overview entry's parts, each kept as JSON text until what it shows changes.
        self._prefix = ("", "", "")  # (app, namespace, text)
        self._point_text: tuple[ResourcePoint | None, str] = (None, "")
        self._tail: tuple[str, str, int, str] = ("", "", -1, "")  # (trend, routes, route count, text)

    def overview_text(self, now: float, route_limit: int) -> str:
        """This pod in the Overview (docs/live-protocol.md), as JSON text.

        Every pod is in every update: the parts that change with each report
        (resources each second, traffic every few seconds) are encoded when they
        change, the rest reused, so an update costs little more than joining text.
        """
        if self._prefix[0] != self.app or self._prefix[1] != self.namespace:
            namespace = f'"namespace":{dumps(self.namespace)},' if self.namespace else ""
            self._prefix = (self.app, self.namespace, f'{{"pod":{dumps(self.name)},"app":{dumps(self.app)},{namespace}')
        point = self.point
        if self._point_text[0] is not point:
            self._point_text = (point, dumps({
                "cpu": None if point.cpu is None else round(point.cpu, 2), "cores": point.cores,
                "memory": None if point.memory is None else round(point.memory),
                "memory_limit": None if point.memory_limit is None else round(point.memory_limit)})[1:-1])
        scope = self.scope
        trend = scope.trend_json(now)
        routes = scope.routes_json(now, limit=route_limit)
        count = len(scope.route_rows(now))
        tail = self._tail
        if tail[0] is not trend or tail[1] is not routes or tail[2] != count:
            tail = self._tail = (trend, routes, count, f',"route_count":{count},"trend":{trend},"routes":{routes}}}')
        return (f'{self._prefix[2]}"stale":{"true" if self.stale else "false"},"seen":{round(self.seen * 1000)},'
                f'"dropped":{self.dropped},{scope.window(now).headline_text()},{self._point_text[1]}{tail[3]}')

    def to_json(self) -> dict[str, Any]:
        """The small part, written whenever the pod reports; `recent` and `batches` go separately."""
        return {"app": self.app, "namespace": self.namespace, "first_seen": self.first_seen, "seen": self.seen,
                "dropped": self.dropped, "total": self.total, "resource": self.resource,
                "resource_seen": self.resource_seen}

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any], recent: str | None, batches: list[str | bytes]) -> Pod:
        """A pod as history kept it; `recent` (JSON text of its recent exchanges) is decoded when first read."""
        pod = cls(name, str(data["app"]), float(data["first_seen"]))
        pod.namespace = str(data.get("namespace") or "")  # absent in what older versions wrote
        pod.seen = float(data["seen"])
        pod.dropped, pod.total = int(data["dropped"]), int(data["total"])
        pod.resource, pod.resource_seen = data.get("resource"), float(data.get("resource_seen") or 0.0)
        if pod.resource is not None:
            pod.point = resource_point(pod.resource)
        if recent:
            pod.recent.restore(recent)
        for batch in batches[-BATCH_IDS:]:
            pod.batches.add(batch)
        return pod


class RecentSamples:
    """A pod's newest exchanges, oldest first, kept as the JSON text of each batch's last ones.

    As dicts they were a dozen objects each, 20 kB a pod at 20; as text, 5 kB,
    for one encoding per batch (the history writer then stores the text as it
    is). Read only by GET /stats, which decodes it. After a restart, history's
    text is kept the same way, undecoded.
    """

    __slots__ = ("_chunks", "_count")

    def __init__(self) -> None:
        self._chunks: deque[tuple[str, int]] = deque()  # (JSON text of a list of samples, how many), oldest first
        self._count = 0

    def extend(self, samples: list[Sample]) -> None:
        if not samples:
            return
        kept = samples[-RECENT_PER_POD:]
        self._add(dumps(kept), len(kept))

    def restore(self, text: str) -> None:
        """History's text, counted as a full list: it is the oldest, so it goes once enough newer ones came."""
        self._add(text, RECENT_PER_POD)

    def _add(self, text: str, n: int) -> None:
        chunks = self._chunks
        chunks.append((text, n))
        self._count += n
        while self._count - chunks[0][1] >= RECENT_PER_POD:
            self._count -= chunks.popleft()[1]

    def samples(self) -> list[Sample]:
        out: list[Sample] = []
        for text, _ in self._chunks:
            out.extend(ujson.loads(text))
        return out[-RECENT_PER_POD:]

    def __iter__(self) -> Any:
        return iter(self.samples())

    def __len__(self) -> int:
        return len(self.samples())

    def snapshot(self) -> list[Sample] | str:
        """The list for history: one batch's text as it is (no decoding), else the list."""
        if len(self._chunks) == 1:
            return self._chunks[0][0]
        return self.samples()


class AppGroup:
    """The pods of one app, their merged scope and their resource totals."""

    __slots__ = ("name", "pods", "scope", "totals")

    def __init__(self, name: str, route_history: bool = False) -> None:
        self.name = name
        self.pods: set[str] = set()
        self.scope = Scope(f"app:{name}", settle=5.0, route_details=True, route_history=route_history)
        self.totals = ResourceTotals()


