"""Admin port: /healthz, /readyz against a real target socket, /metrics parsed by prometheus_client, and the
HTTP around them (404, 405, HEAD, keep-alive, caching, what is logged) read as raw bytes off one connection."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.httpserver import HTTPServer

from app.core.routes import OVERFLOW_ROUTE
from sidecar.admin import AdminState, make_admin_app
from sidecar.metrics import MAX_ROUTES, SidecarMetrics
from sidecar.report.buffer import SampleBuffer
from tests.conftest import free_port
from tests.test_buffer import make_sample

TEXT = "text/plain; charset=utf-8"


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

    async def raw(self, *requests: bytes) -> list[tuple[int, dict[str, str], bytes]]:
        """Sends `requests` one after another on one connection; each answer's status, headers and body (read
        by its Content-Length: none after a HEAD, so a body sent after one would garble the next answer)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        answers = []
        try:
            for request in requests:
                writer.write(request)
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                status_line, *lines = head.rstrip("\r\n").split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines)
                length = 0 if request.startswith(b"HEAD ") else int(headers["Content-Length"])
                answers.append((int(status_line.split()[1]), headers, await reader.readexactly(length)))
        finally:
            writer.close()
        return answers


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


@pytest.mark.gen_test(timeout=10)
async def test_other_paths_are_404_and_other_methods_405_naming_those_allowed(admin: Admin) -> None:
    answers = await admin.raw(
        b"GET /healthz/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /nope HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",  # its body read and dropped
        b"DELETE /metrics HTTP/1.1\r\nHost: a\r\n\r\n",
        b"OPTIONS /readyz HTTP/1.1\r\nHost: a\r\n\r\n",
        b"BREW /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /healthz?from=kubelet HTTP/1.1\r\nHost: a\r\n\r\n",  # the query is not part of the path
    )
    assert [(status, headers.get("Allow")) for status, headers, _ in answers] == [
        (404, None), (404, None), (405, "GET, HEAD"), (405, "GET"), (405, "GET, HEAD"), (405, "GET, HEAD"),
        (200, None)]
    assert b"/healthz, /readyz and /metrics" in answers[0][2] and answers[2][2] == b"/healthz takes GET and HEAD\n"


@pytest.mark.gen_test(timeout=10)
async def test_head_answers_the_probes_length_without_a_body(admin: Admin) -> None:
    answers = await admin.raw(b"HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
                              b"HEAD /readyz HTTP/1.1\r\nHost: a\r\n\r\n",
                              b"HEAD /metrics HTTP/1.1\r\nHost: a\r\n\r\n",
                              b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    (healthz, healthz_headers, _), (readyz, readyz_headers, _), (metrics, _, _), last = answers
    assert (healthz, healthz_headers["Content-Length"]) == (200, "3")
    assert readyz == 200 and int(readyz_headers["Content-Length"]) > 0
    assert metrics == 405  # as before: scrapers GET
    assert last[0] == 200 and last[2] == b"ok\n"  # nothing left over from the HEADs on the connection


@pytest.mark.gen_test(timeout=10)
async def test_every_answer_is_dated_and_never_cached(admin: Admin) -> None:
    admin.state.draining = True
    answers = await admin.raw(*(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
                                for path in ("/healthz", "/readyz", "/metrics", "/x")),
                              b"PUT /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    assert [status for status, _, _ in answers] == [200, 503, 200, 404, 405]
    for status, headers, _ in answers:
        assert headers["Cache-Control"] == "no-store", status  # a probe's answer is only true now
        assert headers["Date"].endswith(" GMT"), status
        assert "Etag" not in headers, status  # nothing to revalidate what is never stored
    types = [headers["Content-Type"] for _, headers, _ in answers]
    assert types[2].startswith("text/plain; version=0.0.4") and types[:2] + types[3:] == [TEXT] * 4


@pytest.mark.gen_test(timeout=10)
async def test_http10_keep_alive_is_kept_and_plain_http10_closed(admin: Admin) -> None:
    [(status, headers, body)] = await admin.raw(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert (status, headers["Connection"], body) == (200, "Keep-Alive", b"ok\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", admin.port)
    writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), 5)).endswith(b"\r\n\r\nok\n")  # read to the close
    writer.close()


class Failing:
    """A collector that raises, as one reading a file that went away would."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        raise RuntimeError("the cgroup file went away")


@pytest.mark.gen_test(timeout=10)
async def test_only_our_own_failures_are_logged(admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mothership.sidecar.admin")
    admin.state.target_port = free_port()  # nothing listens there: readyz says 503, an answer, not a failure
    quiet = await admin.raw(*(f"{method} {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode() for method, path in (
        ("GET", "/healthz"), ("HEAD", "/readyz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/x"),
        ("DELETE", "/metrics"))))
    assert [status for status, _, _ in quiet] == [200, 503, 503, 200, 404, 405]
    assert caplog.records == []

    admin.metrics.registry.register(Failing())
    (status, _, body), (after, _, _) = await admin.raw(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n",
                                                       b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (status, after) == (500, 200) and b"log" in body
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.getMessage() == "500 GET /metrics"
    assert record.exc_info is not None and "cgroup file went away" in str(record.exc_info[1])
