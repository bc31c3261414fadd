"""One stats batch's cells summed per second, per coarse slot and per route slot: `TrafficDelta`.

Built once per batch, then merged into each scope the batch touches (its pod,
its app, all). Pure code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.dashboard.buckets import Bucket, Traffic, add_codes
from app.dashboard.packed import pack_pairs, pack_status

COARSE = 5  # seconds per coarse slot
MAX_SKEW = 60  # seconds a sender's clock may run ahead before its cells are counted now
RouteKey = tuple[str, str]  # (route, method)


class TrafficDelta:
    """One batch's cells summed per second, per coarse slot and per route slot.

    Built once per batch so each scope it touches (pod, app, all) merges a
    handful of buckets instead of every cell.
    """

    __slots__ = ("cells", "coarse", "codes", "count", "last_seen", "protocols", "routes", "seconds")

    def __init__(self, cells: Iterable[dict[str, Any]], now: float, retention: float) -> None:
        self.seconds: dict[int, Bucket] = {}
        self.coarse: dict[int, Bucket] = {}
        self.routes: dict[tuple[str, str, int], Traffic] = {}
        self.last_seen: dict[RouteKey, float] = {}
        self.protocols: dict[RouteKey, set[str]] = {}  # the protocols each route came over (cells that say)
        self.codes: dict[tuple[str, str, int], dict[str, int]] = {}  # gRPC calls by status code, per route slot
        protocols, codes = self.protocols, self.codes
        cells_seen = count = 0
        oldest, newest = int(now - retention), int(now) + MAX_SKEW
        seconds, routes, last_seen = self.seconds, self.routes, self.last_seen
        for d in cells:
            n = d["count"]
            if not n:
                continue
            t = d["t"]
            if t < oldest:
                continue  # older than anything kept
            if t > newest:
                t = int(now)  # a sender's clock far ahead: count it now rather than in the future
            status, hist = pack_status(d["status"]), pack_pairs(d["hist"])
            bucket = seconds.get(t)
            if bucket is None:
                bucket = seconds[t] = Bucket()
            bucket.add_cell(d, status, hist)
            route, method = d["route"], d["method"]
            slot_key = (route, method, t - t % COARSE)
            slot = routes.get(slot_key)
            if slot is None:
                slot = routes[slot_key] = Traffic()
            slot.add_cell(d, status, hist)
            seen = t * 1000.0
            if seen > last_seen.get((route, method), 0.0):
                last_seen[route, method] = seen
            protocol = d.get("protocol")
            if protocol is not None:
                known = protocols.get((route, method))
                if known is None:
                    protocols[route, method] = {protocol}
                else:
                    known.add(protocol)
                grpc = d.get("grpc")
                if grpc:
                    add_codes(codes.setdefault(slot_key, {}), grpc)
            cells_seen += 1
            count += n
        self.cells, self.count = cells_seen, count
        coarse = self.coarse
        for t, bucket in seconds.items():
            t5 = t - t % COARSE
            acc = coarse.get(t5)
            if acc is None:
                acc = coarse[t5] = Bucket()
            acc.merge(bucket)
