"""ExchangeMetrics renders what prometheus_client's own Counter and Histograms would, for the same exchanges."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.core.routes import OVERFLOW_ROUTE, RouteCap
from app.core.wire import Sample, status_class
from sidecar.exchange_metrics import DURATION_BUCKETS, METHODS, SIZE_BUCKETS, ExchangeMetrics

LABELS = ("route", "method", "status_class")


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

    def observe(self, sample: Sample) -> None:
        route = self.routes(sample["route"])
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
samples = st.builds(sample, route=st.sampled_from(["/", "/users/{id}", "/pay", "/a", "/b", "/c"]),
                    method=st.sampled_from(["GET", "POST", "HEAD", "BREW", "get"]),
                    status=st.sampled_from([0, 101, 200, 204, 302, 404, 499, 500, 503, 600]),
                    ms=durations_ms, bytes_in=sizes, bytes_out=sizes)


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
                 "http_server_request_size_bytes", "http_server_response_size_bytes"):
        assert f"# TYPE {name} " in text
