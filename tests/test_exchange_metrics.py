"""ExchangeMetrics renders what prometheus_client's own Counter and Histograms would, for the same exchanges."""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.core.routes import OVERFLOW_ROUTE, RouteCap
from app.core.wire import Sample, status_class
from sidecar.exchange_metrics import (
    DURATION_BUCKETS,
    METHODS,
    OPAQUE_BYTES,
    OPAQUE_CONNECTIONS,
    OPAQUE_DURATION,
    RPC_DURATION,
    SIZE_BUCKETS,
    ExchangeMetrics,
    duration_bucket,
    size_bucket,
)

LABELS = ("route", "method", "status_class")
RPC_LABELS = ("rpc_system", "rpc_service", "rpc_method", "rpc_grpc_status_code")


class Reference:
    """The per-exchange series as prometheus_client's labelled metrics keep them (the way they used to be kept)."""

    def __init__(self, max_routes: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.routes = RouteCap(max_routes)
        self.requests = Counter("http_server_requests", "HTTP exchanges that passed through the sidecar.", LABELS,
                                registry=self.registry)
        self.duration = Histogram("http_server_request_duration_seconds",
                                  "Time from the request's first byte in to the response's last byte out.",
                                  LABELS, buckets=DURATION_BUCKETS, registry=self.registry)
        self.request_size = Histogram("http_server_request_size_bytes", "Bytes received from the client.",
                                      ("route", "method"), buckets=SIZE_BUCKETS, registry=self.registry)
        self.response_size = Histogram("http_server_response_size_bytes", "Bytes sent to the client.",
                                       ("route", "method"), buckets=SIZE_BUCKETS, registry=self.registry)
        self.rpc = Histogram(RPC_DURATION[0], RPC_DURATION[1], RPC_LABELS, buckets=DURATION_BUCKETS,
                             registry=self.registry)
        self.connections = Counter(OPAQUE_CONNECTIONS[0], OPAQUE_CONNECTIONS[1], ("protocol",), registry=self.registry)
        self.lifetimes = Histogram(OPAQUE_DURATION[0], OPAQUE_DURATION[1], ("protocol",), buckets=DURATION_BUCKETS,
                                   registry=self.registry)
        self.relayed = Counter(OPAQUE_BYTES[0], OPAQUE_BYTES[1], ("protocol", "direction"), registry=self.registry)
        self.routes.on_evict.append(self.forget)

    def forget(self, route: str) -> None:
        """A route the cap let go of: its series end, as ExchangeMetrics ends them."""
        for metric in (self.requests, self.duration, self.request_size, self.response_size):
            for labels in [k for k in metric._metrics if k[0] == route]:
                metric.remove(*labels)
        service, _, method = route.lstrip("/").rpartition("/")
        if not service:
            service, method = route, ""
        for labels in [k for k in self.rpc._metrics if k[1:3] == (service, method)]:
            self.rpc.remove(*labels)

    def observe(self, sample: Sample) -> None:
        protocol = sample.get("protocol")
        if protocol in ("tls", "tcp"):
            self.connections.labels(protocol).inc()
            self.lifetimes.labels(protocol).observe(sample["time"] / 1000.0)
            self.relayed.labels(protocol, "received").inc(sample["bytes_in"])
            self.relayed.labels(protocol, "sent").inc(sample["bytes_out"])
            return
        route = self.routes(sample["route"])
        if protocol == "grpc":
            service, _, method = route.lstrip("/").rpartition("/")
            if not service:
                service, method = route, ""
            code = sample.get("grpc_status")
            if code is None:
                code = 14 if sample["error"] in ("upstream_unavailable", "upstream_timeout", "upstream_reset") else 1
            self.rpc.labels("grpc", service, method, str(code)).observe(sample["time"] / 1000.0)
        method = sample["method"] if sample["method"] in METHODS else "_OTHER"
        klass = status_class(sample["response"]["status"])
        self.requests.labels(route, method, klass).inc()
        self.duration.labels(route, method, klass).observe(sample["time"] / 1000.0)
        self.request_size.labels(route, method).observe(sample["bytes_in"])
        self.response_size.labels(route, method).observe(sample["bytes_out"])


def ours(max_routes: int) -> tuple[ExchangeMetrics, CollectorRegistry]:
    metrics = ExchangeMetrics(max_routes)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(metrics)
    return metrics, registry


def sample(route: str = "/users/{id}", method: str = "GET", status: int = 200, ms: float = 1.5,
           bytes_in: int = 100, bytes_out: int = 2000) -> Sample:
    return {"endpoint": route, "route": route, "method": method, "response": {"status": status, "message": ""},
            "time": ms, "ttfb": ms / 2, "started": 1.7e12, "file": False, "bytes_in": bytes_in,
            "bytes_out": bytes_out, "probe": False, "error": None}


def without_created(text: str) -> list[str]:
    """The exposition's lines, the `_created` timestamps blanked (they are wall-clock times of first use)."""
    return [line.rpartition(" ")[0] if "_created{" in line else line for line in text.splitlines()]


def families(registry: CollectorRegistry) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


# Values on and either side of every bucket bound, where an off-by-one in `le` would show.
durations_ms = st.one_of(st.sampled_from([b * 1000.0 for b in DURATION_BUCKETS]),
                         st.floats(0.0, 200_000.0, allow_nan=False))
sizes = st.one_of(st.sampled_from([int(b) + d for b in SIZE_BUCKETS for d in (-1, 0, 1)]),
                  st.integers(0, 1 << 28))
http_samples = st.builds(sample, route=st.sampled_from(["/", "/users/{id}", "/pay", "/a", "/b", "/c"]),
                         method=st.sampled_from(["GET", "POST", "HEAD", "BREW", "get"]),
                         status=st.sampled_from([0, 101, 200, 204, 302, 404, 499, 500, 503, 600]),
                         ms=durations_ms, bytes_in=sizes, bytes_out=sizes)
# The same with a protocol: HTTP/1 and HTTP/2 count alike; gRPC calls count twice; opaque connections apart.
samples = st.one_of(http_samples, st.builds(
    lambda s, protocol, route, code, error: {
        **s, "protocol": protocol, "route": route if protocol != "tls" else "api.example.com",
        **({"grpc_status": code, "grpc_message": "", "error": error} if protocol == "grpc" else {})},
    http_samples, st.sampled_from(["http/1.1", "h2", "grpc", "tls", "tcp"]),
    st.sampled_from(["/a.B/C", "/a.B/D", "/x", "/e.F/G"]), st.none() | st.integers(0, 16),
    st.sampled_from([None, "stream_reset", "upstream_reset", "client_closed"])))


@settings(max_examples=150, deadline=None)
@given(st.lists(samples, max_size=40), st.integers(1, 5))
def test_the_exposition_is_prometheus_clients_own(exchanges: list[Sample], max_routes: int) -> None:
    metrics, registry = ours(max_routes)
    reference = Reference(max_routes)
    for s in exchanges:
        metrics.observe(s)
        reference.observe(s)
    assert without_created(generate_latest(registry).decode()) == \
        without_created(generate_latest(reference.registry).decode())


def test_values_in_base_units_and_le_buckets() -> None:
    metrics, registry = ours(100)
    for ms in (250.0, 250.0, 100.0000001):
        metrics.observe(sample(ms=ms, bytes_out=64))
    metrics.observe(sample(route="/pay", status=502, ms=70_000.0, bytes_in=0, bytes_out=1 << 30))
    got = families(registry)
    buckets = {(s.labels["route"], s.labels["le"]): s.value
               for s in got["http_server_request_duration_seconds"].samples if s.name.endswith("_bucket")}
    assert buckets[("/users/{id}", "0.1")] == 0 and buckets[("/users/{id}", "0.25")] == 3  # a bound is inclusive
    assert buckets[("/pay", "60.0")] == 0 and buckets[("/pay", "120.0")] == 1 and buckets[("/pay", "+Inf")] == 1
    out = {(s.labels["route"], s.name, s.labels.get("le")): s.value
           for s in got["http_server_response_size_bytes"].samples}
    assert out[("/users/{id}", "http_server_response_size_bytes_bucket", "64.0")] == 3
    assert out[("/pay", "http_server_response_size_bytes_bucket", "6.7108864e+07")] == 0
    assert out[("/pay", "http_server_response_size_bytes_sum", None)] == 1 << 30
    requests = {(s.labels["route"], s.labels["status_class"]): s.value
                for s in got["http_server_requests"].samples if s.name == "http_server_requests_total"}
    assert requests == {("/users/{id}", "2xx"): 3, ("/pay", "5xx"): 1}


def test_statuses_of_one_class_share_a_series_and_sizes_span_classes() -> None:
    metrics, registry = ours(100)
    for status in (200, 201, 204, 404):
        metrics.observe(sample(status=status, bytes_in=10))
    assert registry.get_sample_value("http_server_requests_total",
                                     {"route": "/users/{id}", "method": "GET", "status_class": "2xx"}) == 3
    assert registry.get_sample_value("http_server_request_size_bytes_count",
                                     {"route": "/users/{id}", "method": "GET"}) == 4
    assert registry.get_sample_value("http_server_request_size_bytes_sum",
                                     {"route": "/users/{id}", "method": "GET"}) == 40


def test_nothing_is_lost_when_the_key_cache_starts_afresh() -> None:
    metrics, registry = ours(10)
    n = 6000  # more distinct raw keys than the cache keeps
    for i in range(n):
        metrics.observe(sample(route=f"/r{i}", status=200 + i % 3))
    got = families(registry)["http_server_requests"].samples
    totals = [s for s in got if s.name == "http_server_requests_total"]
    assert sum(s.value for s in totals) == n
    assert {s.labels["route"] for s in totals} == {*(f"/r{i}" for i in range(10)), OVERFLOW_ROUTE}
    assert len(totals) == 11  # one series per label set, however often the cache was cleared


def test_the_families_exist_before_any_exchange() -> None:
    _, registry = ours(100)
    text = generate_latest(registry).decode()
    for name in ("http_server_requests_total", "http_server_request_duration_seconds",
                 "http_server_request_size_bytes", "http_server_response_size_bytes", "rpc_server_duration_seconds",
                 "mothership_opaque_connections_total", "mothership_opaque_connection_duration_seconds",
                 "mothership_opaque_bytes_total"):
        assert f"# TYPE {name} " in text


def call(route: str = "/shop.v1.Orders/Get", code: int | None = 0, status: int = 200, ms: float = 3.0,
         error: str | None = None) -> Sample:
    return {**sample(route=route, method="POST", status=status, ms=ms), "protocol": "grpc", "grpc_status": code,
            "grpc_message": "", "error": error}


def connection(protocol: str, ms: float = 2500.0, bytes_in: int = 517, bytes_out: int = 4096) -> Sample:
    return {**sample(route="api.example.com" if protocol == "tls" else "(tcp)", method=protocol.upper(), status=0,
                     ms=ms, bytes_in=bytes_in, bytes_out=bytes_out), "protocol": protocol}


def test_grpc_calls_follow_opentelemetrys_rpc_conventions_as_prometheus_clients_histogram_would() -> None:
    metrics, registry = ours(100)
    reference = CollectorRegistry(auto_describe=True)
    rpc = Histogram("rpc_server_duration_seconds", metrics.describe()[4].documentation,
                    ("rpc_system", "rpc_service", "rpc_method", "rpc_grpc_status_code"), buckets=DURATION_BUCKETS,
                    registry=reference)
    calls = [call(ms=1.0), call(ms=0.25), call(code=5, status=404, ms=7.5), call("/shop.v1.Orders/Watch", ms=30_000.0),
             call(code=None, status=0, error="stream_reset"), call(code=None, status=0, error="upstream_reset")]
    for c in calls:
        metrics.observe(c)
    for service, method, code, ms in (("shop.v1.Orders", "Get", "0", 1.0), ("shop.v1.Orders", "Get", "0", 0.25),
                                      ("shop.v1.Orders", "Get", "5", 7.5), ("shop.v1.Orders", "Watch", "0", 30_000.0),
                                      ("shop.v1.Orders", "Get", "1", 3.0), ("shop.v1.Orders", "Get", "14", 3.0)):
        rpc.labels("grpc", service, method, code).observe(ms / 1000.0)
    ours_text = [line for line in without_created(generate_latest(registry).decode()) if "rpc_server" in line]
    assert ours_text == [line for line in without_created(generate_latest(reference).decode()) if "rpc_server" in line]
    # Every call is an HTTP exchange too, by its mapped status: error rates mean the same for both.
    assert registry.get_sample_value("http_server_requests_total", {
        "route": "/shop.v1.Orders/Get", "method": "POST", "status_class": "4xx"}) == 1
    assert registry.get_sample_value("http_server_requests_total", {
        "route": "/shop.v1.Orders/Get", "method": "POST", "status_class": "2xx"}) == 2


def test_rpc_labels_stay_bounded_by_the_route_cap() -> None:
    metrics, registry = ours(2)
    for i in range(50):
        metrics.observe(call(f"/svc.S/M{i}"))
    services = {s.labels["rpc_method"] for s in families(registry)["rpc_server_duration_seconds"].samples}
    assert services == {"M0", "M1", ""}  # the rest as one {other} series
    assert registry.get_sample_value("rpc_server_duration_seconds_count", {
        "rpc_system": "grpc", "rpc_service": OVERFLOW_ROUTE, "rpc_method": "", "rpc_grpc_status_code": "0"}) == 48


def test_opaque_connections_are_counted_apart_from_http() -> None:
    metrics, registry = ours(100)
    for c in (connection("tls"), connection("tls", ms=100.0), connection("tcp", bytes_in=10, bytes_out=20)):
        metrics.observe(c)
    text = generate_latest(registry).decode()
    assert "http_server_requests_total{" not in text
    assert registry.get_sample_value("mothership_opaque_connections_total", {"protocol": "tls"}) == 2
    assert registry.get_sample_value("mothership_opaque_connections_total", {"protocol": "tcp"}) == 1
    assert registry.get_sample_value("mothership_opaque_connection_duration_seconds_bucket",
                                     {"protocol": "tls", "le": "0.1"}) == 1
    assert registry.get_sample_value("mothership_opaque_connection_duration_seconds_sum", {"protocol": "tls"}) == 2.6
    assert registry.get_sample_value("mothership_opaque_bytes_total", {"protocol": "tls", "direction": "received"}) \
        == 1034
    assert registry.get_sample_value("mothership_opaque_bytes_total", {"protocol": "tcp", "direction": "sent"}) == 20
    # Prometheus's own parser reads it all.
    assert {"mothership_opaque_connections", "mothership_opaque_bytes"} <= set(families(registry))


def test_the_bucket_loops_agree_with_bisect_on_every_edge() -> None:
    durations = [b + d for b in DURATION_BUCKETS for d in (-1e-9, 0.0, 1e-9)] + [-1.0, 0.0, 1e9, math.inf]
    for seconds in durations:
        assert duration_bucket(seconds) == bisect_left(DURATION_BUCKETS, seconds), seconds
    for size in [int(b) + d for b in SIZE_BUCKETS for d in (-1, 0, 1)] + [-5, 0, 1, 1 << 40]:
        assert size_bucket(size) == bisect_left(SIZE_BUCKETS, size), size
