"""`ExchangeMetrics`: the per-exchange Prometheus series (request count, duration, request and response size).

HTTP/1, HTTP/2 and gRPC exchanges all count in the `http_server_*` series (a
gRPC call by its status mapped to HTTP's, as the dashboard counts it); a gRPC
call also counts in OpenTelemetry's RPC histogram, and an opaque connection
(TLS, TCP) only in the `mothership_opaque_*` series.
Each finished exchange bumps plain numbers in a cell found with one dict
lookup: no lock and no prometheus_client object is touched per exchange.
The cells become metric families only when /metrics is scraped (this is a
custom collector), rendered exactly as prometheus_client's own `Counter` and
`Histogram` would render them. Not thread-safe, and it need not be: the proxy
and the admin app that scrapes it run on the same event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

from app.core.routes import RouteCap
from app.core.sample import Record
from app.core.wire import Sample, status_class

# Seconds; reaching past 60 s as DESIGN.md asks, dense where web latencies live.
DURATION_BUCKETS: Final[tuple[float, ...]] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                              1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
SMALLEST_SIZE: Final = 64
SIZE_BUCKETS: Final[tuple[float, ...]] = tuple([float(SMALLEST_SIZE * 4**i) for i in range(11)])  # 64 B .. 64 MiB
# OpenTelemetry's rule: known methods as they are, anything else as _OTHER, so
# a client cannot mint label values.
METHODS: Final = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"))
MAX_ROUTES: Final = 100  # distinct route labels before new ones become {other}
_KEY_CACHE_LIMIT: Final = 4096  # (route label, method, status) keys remembered; cleared when full

REQUESTS: Final = ("http_server_requests", "HTTP exchanges that passed through the sidecar.")
DURATION: Final = ("http_server_request_duration_seconds",
                   "Time from the request's first byte in to the response's last byte out.")
REQUEST_SIZE: Final = ("http_server_request_size_bytes", "Bytes received from the client.")
RESPONSE_SIZE: Final = ("http_server_response_size_bytes", "Bytes sent to the client.")
RPC_DURATION: Final = ("rpc_server_duration_seconds",
                       "gRPC calls: time from the request's headers in to the call's end (OpenTelemetry's RPC "
                       "conventions).")
OPAQUE_CONNECTIONS: Final = ("mothership_opaque_connections", "Connections relayed as opaque bytes (TLS, TCP).")
OPAQUE_DURATION: Final = ("mothership_opaque_connection_duration_seconds",
                          "Opaque connections: time from the client's connection to the end of the relay.")
OPAQUE_BYTES: Final = ("mothership_opaque_bytes", "Bytes relayed on opaque connections.")
_OTHER_PROTOCOLS: Final = frozenset(("grpc", "tls", "tcp"))  # what is counted besides, or instead of, HTTP
# A call that ended without a grpc-status is labelled with the code a gRPC client reports then: UNAVAILABLE
# when the app's side failed (the connection lost or timed out), CANCELLED when it was reset or abandoned.
_NO_STATUS_CODE: Final = {"upstream_unavailable": "14", "upstream_timeout": "14", "upstream_reset": "14"}
_CANCELLED: Final = "1"


class _Sizes:
    """Request and response size histograms of one (route, method); bucket counts are not cumulative."""

    __slots__ = ("count", "created", "in_buckets", "in_sum", "out_buckets", "out_sum")

    def __init__(self) -> None:
        self.count = 0
        self.in_sum = 0
        self.out_sum = 0
        self.in_buckets = [0] * (len(SIZE_BUCKETS) + 1)  # the last one is +Inf
        self.out_buckets = [0] * (len(SIZE_BUCKETS) + 1)
        self.created = time.time()


class _Cell:
    """Request count and duration histogram of one (route, method, status class)."""

    __slots__ = ("buckets", "count", "created", "seconds", "sizes")

    def __init__(self, sizes: _Sizes) -> None:
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.sizes = sizes
        self.created = time.time()


class _Durations:
    """A duration histogram of one label set (RPC calls, or opaque connections with their bytes)."""

    __slots__ = ("buckets", "count", "created", "received", "seconds", "sent")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.received = 0
        self.sent = 0
        self.created = time.time()

    def add(self, record: Record) -> None:
        seconds = record.time / 1000.0
        self.count += 1
        self.seconds += seconds
        self.buckets[duration_bucket(seconds)] += 1
        self.received += record.bytes_in
        self.sent += record.bytes_out


# The bucket of a value, as `bisect_left(bounds, value)` finds it (a value equal to a bound is in that
# bound's bucket, `le`), by a short loop: compiled, it is a few native steps, not a call and comparisons
# of objects; most values are in the first few buckets.

def duration_bucket(seconds: float) -> int:
    bounds = DURATION_BUCKETS
    index = 0
    while index < len(bounds) and bounds[index] < seconds:
        index += 1
    return index


def size_bucket(size: int) -> int:
    index, bound = 0, SMALLEST_SIZE
    while index < len(SIZE_BUCKETS) and bound < size:
        index += 1
        bound *= 4
    return index


def rpc_labels(route: str, grpc_status: int | None, error: str | None) -> tuple[str, str, str]:
    """(rpc_service, rpc_method, rpc_grpc_status_code) of a call whose route is `/pkg.Service/Method`."""
    service, _, method = route.lstrip("/").rpartition("/")
    if not service:  # not a method path (the {other} route, or a client's odd path): one bucket for it
        service, method = route, ""
    code = str(grpc_status) if grpc_status is not None else _NO_STATUS_CODE.get(error or "", _CANCELLED)
    return service, method, code


class ExchangeMetrics:
    """Counts exchanges by `observe_record` (`observe` takes a wire sample); a prometheus_client collector
    (`collect`, `describe`)."""

    def __init__(self, max_routes: int = MAX_ROUTES) -> None:
        self._routes = RouteCap(max_routes)
        self._routes.on_evict.append(self._forget)
        self._by_key: dict[tuple[str, str, int], _Cell] = {}  # raw key -> its cell (a cache)
        self._cells: dict[tuple[str, str, str], _Cell] = {}  # label values -> cell, for good
        self._sizes: dict[tuple[str, str], _Sizes] = {}
        self._rpc: dict[tuple[str, str, str], _Durations] = {}  # (service, method, status code) -> calls
        self._rpc_by_key: dict[tuple[str, int | None, str | None], _Durations] = {}  # (route, code, error): a cache
        self._opaque: dict[str, _Durations] = {}  # protocol -> connections

    # --- the hot path: once per exchange ------------------------------------------

    def observe(self, sample: Sample) -> None:
        self.observe_record(Record.from_sample(sample))

    def observe_record(self, record: Record) -> None:
        protocol = record.protocol
        if protocol in _OTHER_PROTOCOLS and protocol != "grpc":  # HTTP/1 and HTTP/2 pay for the first test only
            self._observe_opaque(protocol, record)
            return
        # The label, asked on every exchange: the cap keeps the busiest routes and counts them here.
        route = self._routes(record.route)
        if protocol == "grpc":
            self._observe_rpc(record, route)
        key = (route, record.method, record.status)
        cell = self._by_key.get(key)
        if cell is None:
            cell = self._cell(key)
        seconds = record.time / 1000.0
        cell.count += 1
        cell.seconds += seconds
        # `le` buckets: a value equal to a bound counts in that bound's bucket.
        cell.buckets[duration_bucket(seconds)] += 1
        sizes = cell.sizes
        received = record.bytes_in
        sent = record.bytes_out
        sizes.count += 1
        sizes.in_sum += received
        sizes.in_buckets[size_bucket(received)] += 1
        sizes.out_sum += sent
        sizes.out_buckets[size_bucket(sent)] += 1

    def _observe_rpc(self, record: Record, route: str) -> None:
        key = (route, record.grpc_status, record.error)
        calls = self._rpc_by_key.get(key)
        if calls is None:
            labels = rpc_labels(route, key[1], key[2])
            calls = self._rpc.get(labels)
            if calls is None:
                calls = self._rpc[labels] = _Durations()
            if len(self._rpc_by_key) >= _KEY_CACHE_LIMIT:
                self._rpc_by_key.clear()
            self._rpc_by_key[key] = calls
        calls.add(record)

    def _observe_opaque(self, protocol: str, record: Record) -> None:
        connections = self._opaque.get(protocol)
        if connections is None:
            connections = self._opaque[protocol] = _Durations()
        connections.add(record)

    def _cell(self, key: tuple[str, str, int]) -> _Cell:
        route, method, status = key
        method = method if method in METHODS else "_OTHER"
        labels = (route, method, status_class(status))
        cell = self._cells.get(labels)
        if cell is None:
            sizes = self._sizes.get((route, method))
            if sizes is None:
                sizes = self._sizes[route, method] = _Sizes()
            cell = self._cells[labels] = _Cell(sizes)
        if len(self._by_key) >= _KEY_CACHE_LIMIT:
            self._by_key.clear()  # raw routes past the cap are unbounded; the cache must not be
        self._by_key[key] = cell
        return cell

    def _forget(self, route: str) -> None:
        """A route the cap let go (grown cold): its series end (counters restart if it comes back)."""
        caches: tuple[dict[Any, Any], ...] = (self._by_key, self._cells, self._sizes, self._rpc_by_key)
        for cache in caches:
            for key in [k for k in cache if k[0] == route]:
                del cache[key]
        service, method, _ = rpc_labels(route, None, None)
        for key in [k for k in self._rpc if k[:2] == (service, method)]:
            del self._rpc[key]

    # --- scrape time ----------------------------------------------------------------

    def describe(self) -> list[Metric]:
        return [Metric(*REQUESTS, "counter"), Metric(*DURATION, "histogram"),
                Metric(*REQUEST_SIZE, "histogram"), Metric(*RESPONSE_SIZE, "histogram"),
                Metric(*RPC_DURATION, "histogram"), Metric(*OPAQUE_CONNECTIONS, "counter"),
                Metric(*OPAQUE_DURATION, "histogram"), Metric(*OPAQUE_BYTES, "counter")]

    def collect(self) -> Iterator[Metric]:
        requests, duration, request_size, response_size, rpc, opaque, opaque_duration, opaque_bytes = self.describe()
        requests_total, requests_created = f"{REQUESTS[0]}_total", f"{REQUESTS[0]}_created"
        for (route, method, klass), cell in self._cells.items():
            labels = {"route": route, "method": method, "status_class": klass}
            requests.add_sample(requests_total, labels, cell.count)
            requests.add_sample(requests_created, labels, cell.created)
            _add_histogram(duration, labels, _DURATION_LE, cell.buckets, cell.count, cell.seconds, cell.created)
        for (route, method), sizes in self._sizes.items():
            labels = {"route": route, "method": method}
            _add_histogram(request_size, labels, _SIZE_LE, sizes.in_buckets, sizes.count, sizes.in_sum,
                           sizes.created)
            _add_histogram(response_size, labels, _SIZE_LE, sizes.out_buckets, sizes.count, sizes.out_sum,
                           sizes.created)
        for (service, method, code), calls in self._rpc.items():
            labels = {"rpc_system": "grpc", "rpc_service": service, "rpc_method": method,
                      "rpc_grpc_status_code": code}
            _add_histogram(rpc, labels, _DURATION_LE, calls.buckets, calls.count, calls.seconds, calls.created)
        for protocol, connections in self._opaque.items():
            labels = {"protocol": protocol}
            opaque.add_sample(f"{OPAQUE_CONNECTIONS[0]}_total", labels, connections.count)
            opaque.add_sample(f"{OPAQUE_CONNECTIONS[0]}_created", labels, connections.created)
            _add_histogram(opaque_duration, labels, _DURATION_LE, connections.buckets, connections.count,
                           connections.seconds, connections.created)
            for direction, n in (("received", connections.received), ("sent", connections.sent)):
                opaque_bytes.add_sample(f"{OPAQUE_BYTES[0]}_total", {**labels, "direction": direction}, n)
                opaque_bytes.add_sample(f"{OPAQUE_BYTES[0]}_created", {**labels, "direction": direction},
                                        connections.created)
        yield from (requests, duration, request_size, response_size, rpc, opaque, opaque_duration, opaque_bytes)


def _le_labels(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The `le` labels of a histogram's buckets, +Inf last, written as prometheus_client writes them."""
    go_float: Callable[[float], str] = floatToGoString
    return tuple(go_float(bound) for bound in (*bounds, float("inf")))


_DURATION_LE: Final = _le_labels(DURATION_BUCKETS)
_SIZE_LE: Final = _le_labels(SIZE_BUCKETS)


def _add_histogram(family: Metric, labels: dict[str, str], bounds: tuple[str, ...], counts: list[int],
                   count: int, total: float, created: float) -> None:
    """One label set's samples, in prometheus_client's order: cumulative buckets, count, sum, created."""
    name = family.name
    cumulative = 0
    for le, n in zip(bounds, counts, strict=True):
        cumulative += n
        family.add_sample(f"{name}_bucket", {**labels, "le": le}, cumulative)
    family.add_sample(f"{name}_count", labels, count)
    family.add_sample(f"{name}_sum", labels, total)
    family.add_sample(f"{name}_created", labels, created)
