"""Admin port: /healthz, /readyz against a real target socket, and /metrics parsed by prometheus_client."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.httpserver import HTTPServer

from app.core.routes import OVERFLOW_ROUTE
from sidecar.admin import AdminState, make_admin_app
from sidecar.metrics import MAX_ROUTES, SidecarMetrics
from sidecar.report.buffer import SampleBuffer
from tests.conftest import free_port
from tests.test_buffer import make_sample


@dataclass
class Counters:  # the shape of SidecarServer.counters
    connections_open: int = 2
    connections_total: int = 17
    exchanges_in_flight: int = 1
    upstream_errors: dict[str, int] = field(default_factory=lambda: {"upstream_unavailable": 3})
    bad_requests: int = 4
    client_closed: int = 5
    timeouts: dict[str, int] = field(default_factory=lambda: {"idle": 6, "header": 0})
    sample_errors: int = 0
    protocols: dict[str, int] = field(default_factory=lambda: {"http1": 7, "h2": 2, "tls": 1, "tcp": 0})
    opaque: dict[str, int] = field(default_factory=lambda: {"tls": 1, "server_first": 0})
    untracked: int = 1


RESOURCE = {
    "free_memory": 1000, "total_memory": 4000, "cpu_percent": 25.0, "load_average": [0.5, 0.25, 0.1],
    "container": {"cgroup": "v2", "cpu_usage_seconds": 12.5, "cpu_limit_cores": 0.5, "cpu_percent": 40.0,
                  "memory_usage": 300, "memory_working_set": 200, "memory_limit": 1000},
    "processes": [{"pid": 1, "name": "pause", "cpu_percent": 0.0, "rss": 1}],
}


@pytest.fixture
def target() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


@dataclass
class Admin:
    port: int
    state: AdminState
    metrics: SidecarMetrics
    buffer: SampleBuffer

    async def get(self, path: str, **kwargs: Any) -> HTTPResponse:
        client = AsyncHTTPClient()
        return await client.fetch(f"http://127.0.0.1:{self.port}{path}", raise_error=False, **kwargs)

    async def families(self) -> dict[str, Any]:
        response = await self.get("/metrics")
        assert response.code == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return {f.name: f for f in text_string_to_metric_families(response.body.decode())}


@pytest.fixture
def admin(io_loop: Any, target: int) -> Iterator[Admin]:
    metrics = SidecarMetrics()
    buffer = SampleBuffer("p-1-a", "p", max_bytes=100_000, max_samples_per_batch=10)
    counters = Counters()
    metrics.watch(buffer=buffer, proxy=lambda: counters, resources=lambda: RESOURCE)
    state = AdminState("127.0.0.1", target)
    port = free_port()
    server = HTTPServer(make_admin_app(metrics.registry, state))
    server.listen(port, "127.0.0.1")
    yield Admin(port, state, metrics, buffer)
    server.stop()


@pytest.mark.gen_test(timeout=10)
async def test_healthz(admin: Admin) -> None:
    response = await admin.get("/healthz")
    assert (response.code, response.body) == (200, b"ok\n")


@pytest.mark.gen_test(timeout=10)
async def test_readyz_follows_the_target_and_the_drain(admin: Admin) -> None:
    listening = admin.state.target_port
    assert (await admin.get("/readyz")).code == 200
    admin.state.target_port = free_port()  # nothing listens there
    response = await admin.get("/readyz")
    assert response.code == 503 and b"does not accept connections" in response.body
    admin.state.target_port = listening
    assert (await admin.get("/readyz")).code == 200
    admin.state.draining = True  # SIGTERM: the target is fine but we are leaving
    assert (await admin.get("/readyz")).code == 503


@pytest.mark.gen_test(timeout=10)
async def test_metrics_expose_requests_durations_sizes_and_the_rest(admin: Admin) -> None:
    for i in range(3):
        sample = make_sample(i, ms=250.0)
        admin.metrics.observe(sample)
        admin.buffer.add(sample)
    admin.metrics.observe(make_sample(9, status=502, route="/pay", ms=70_000.0))
    admin.metrics.post_failed("stats", "timeout")
    families = await admin.families()

    requests = {(s.labels["route"], s.labels["method"], s.labels["status_class"]): s.value
                for s in families["http_server_requests"].samples if s.name == "http_server_requests_total"}
    assert requests == {("/users/{id}", "GET", "2xx"): 3, ("/pay", "GET", "5xx"): 1}

    duration = families["http_server_request_duration_seconds"]
    buckets = {(s.labels["route"], s.labels["le"]): s.value for s in duration.samples if s.name.endswith("_bucket")}
    assert buckets[("/users/{id}", "0.25")] == 3 and buckets[("/users/{id}", "0.1")] == 0  # seconds, not ms
    assert buckets[("/pay", "60.0")] == 0 and buckets[("/pay", "120.0")] == 1  # buckets reach past 60 s
    sizes = families["http_server_response_size_bytes"]
    assert any(s.name.endswith("_sum") and s.value == 6000 for s in sizes.samples)
    assert "http_server_request_size_bytes" in families

    def value(name: str, **labels: str) -> float:
        for family in families.values():
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        raise AssertionError(f"{name} {labels} missing")

    assert value("http_server_active_requests") == 1
    assert value("mothership_proxy_connections_open") == 2
    assert value("mothership_proxy_connections_total") == 17
    assert value("mothership_proxy_bad_requests_total") == 4
    assert value("mothership_proxy_upstream_errors_total", kind="upstream_unavailable") == 3
    assert value("mothership_proxy_client_closed_total") == 5
    assert value("mothership_proxy_connection_timeouts_total", kind="idle") == 6
    assert value("mothership_proxy_sample_errors_total") == 0
    assert value("mothership_proxy_protocol_connections_total", protocol="h2") == 2
    assert value("mothership_proxy_opaque_decisions_total", reason="tls") == 1
    assert value("mothership_proxy_untracked_connections_total") == 1
    assert value("mothership_reporter_queue_samples") == 3
    assert value("mothership_reporter_queue_bytes") > 0
    assert value("mothership_reporter_dropped_samples_total") == 0
    assert value("mothership_reporter_failed_posts_total", endpoint="stats", reason="timeout") == 1
    assert value("mothership_reporter_failed_posts_total", endpoint="resources", reason="connection") == 0
    assert value("mothership_node_cpu_usage_ratio") == 0.25
    assert value("mothership_node_load1") == 0.5
    assert value("mothership_container_cpu_limit_cores") == 0.5
    assert value("mothership_container_cpu_usage_seconds_total") == 12.5
    assert value("mothership_container_memory_limit_bytes") == 1000
    assert value("mothership_pod_processes") == 1
    assert value("process_resident_memory_bytes") > 0  # the sidecar's own, from prometheus_client

    for family in families.values():  # Prometheus conventions
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        assert "_ms" not in family.name and "millis" not in family.name


@pytest.mark.gen_test(timeout=10)
async def test_openmetrics_on_request(admin: Admin) -> None:
    response = await admin.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.body.rstrip().endswith(b"# EOF")


@pytest.mark.gen_test(timeout=20)
async def test_label_values_stay_bounded(admin: Admin) -> None:
    for i in range(MAX_ROUTES + 300):
        sample = make_sample(i, route=f"/r{i}")
        sample["method"] = "GET" if i % 2 else f"M{i}"
        admin.metrics.observe(sample)
    families = await admin.families()
    labels = [s.labels for s in families["http_server_requests"].samples if s.name == "http_server_requests_total"]
    routes = {lab["route"] for lab in labels}
    assert len(routes) == MAX_ROUTES + 1 and OVERFLOW_ROUTE in routes
    assert {lab["method"] for lab in labels} == {"GET", "_OTHER"}
    assert sum(s.value for s in families["http_server_requests"].samples
               if s.name == "http_server_requests_total") == MAX_ROUTES + 300  # nothing lost in the cap


def test_each_sidecar_has_its_own_registry() -> None:
    a, b = SidecarMetrics(), SidecarMetrics()
    a.observe(make_sample(1))
    assert a.registry is not b.registry
    assert b.registry.get_sample_value("http_server_requests_total",
                                       {"route": "/users/{id}", "method": "GET", "status_class": "2xx"}) is None
    assert a.registry.get_sample_value("http_server_requests_total",
                                       {"route": "/users/{id}", "method": "GET", "status_class": "2xx"}) == 1
