"""`SidecarMetrics`: the sidecar's Prometheus registry and what it exposes on /metrics.

Exchanges are counted as they finish in plain numbers
(`sidecar.exchange_metrics`) that become metric families at scrape time.
Everything else — proxy connection counters, the reporter's queue, resource
gauges — is read from its owner at scrape time by a custom collector, so it
costs nothing between scrapes. Names follow Prometheus conventions (base
units, `_total` on counters) and OpenTelemetry's HTTP semantic conventions
where one fits (`http.server.request.duration` ->
`http_server_request_duration_seconds`, `http.route` -> label `route`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from app import __version__
from app.core.sample import Record
from app.core.wire import Sample
from sidecar.exchange_metrics import MAX_ROUTES, ExchangeMetrics
from sidecar.report.buffer import SampleBuffer

__all__ = ["MAX_ROUTES", "ProxyCounters", "SidecarMetrics"]

POST_FAILURE_REASONS = ("timeout", "connection", "status_4xx", "status_5xx", "other")


class ProxyCounters(Protocol):
    """What `SidecarServer.counters` offers (read at scrape time)."""

    @property
    def connections_open(self) -> int: ...
    @property
    def connections_total(self) -> int: ...
    @property
    def exchanges_in_flight(self) -> int: ...
    @property
    def upstream_errors(self) -> Mapping[str, int]: ...
    @property
    def bad_requests(self) -> int: ...
    @property
    def client_closed(self) -> int: ...
    @property
    def timeouts(self) -> Mapping[str, int]: ...
    @property
    def sample_errors(self) -> int: ...
    @property
    def protocols(self) -> Mapping[str, int]: ...
    @property
    def opaque(self) -> Mapping[str, int]: ...
    @property
    def untracked(self) -> int: ...


class SidecarMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, max_routes: int = MAX_ROUTES) -> None:
        # A registry of our own, never the global one: two sidecars in one
        # process (the tests, the demo) must not share or clash.
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.exchanges = ExchangeMetrics(max_routes)
        self.registry.register(self.exchanges)
        # The hot path: the proxy calls observe_record once per exchange; observe takes a wire sample.
        self.observe_record: Callable[[Record], None] = self.exchanges.observe_record
        self.observe: Callable[[Sample], None] = self.exchanges.observe
        self.posts = Counter("mothership_reporter_posts", "POSTs the dashboard acknowledged (2xx).",
                             ("endpoint",), registry=self.registry)
        self.failed_posts = Counter("mothership_reporter_failed_posts", "POSTs to the dashboard that failed.",
                                    ("endpoint", "reason"), registry=self.registry)
        for endpoint in ("stats", "resources"):  # present from the start, so rate() works at once
            self.posts.labels(endpoint)
            for reason in POST_FAILURE_REASONS:
                self.failed_posts.labels(endpoint, reason)
        self._live = _LiveCollector()
        self.registry.register(self._live)
        ProcessCollector(registry=self.registry)  # the sidecar's own CPU seconds and RSS
        PlatformCollector(registry=self.registry)

    def identify(self, *, pod: str, app: str, namespace: str) -> None:
        """`mothership_sidecar_info{pod, app, namespace, version} 1`: who this sidecar reports as, for
        joining its series with the pod's in PromQL (`namespace` empty when the pod did not say)."""
        Info("mothership_sidecar", "The pod, app and namespace this sidecar reports as, and its version.",
             registry=self.registry).info({"pod": pod, "app": app, "namespace": namespace, "version": __version__})

    # --- sources read at scrape time --------------------------------------------

    def watch(self, *, buffer: SampleBuffer | None = None, proxy: Callable[[], ProxyCounters | None] | None = None,
              resources: Callable[[], dict[str, Any] | None] | None = None) -> None:
        if buffer is not None:
            self._live.buffer = buffer
        if proxy is not None:
            self._live.proxy = proxy
        if resources is not None:
            self._live.resources = resources

    # --- the reporter's outcomes ----------------------------------------------

    def post_succeeded(self, endpoint: str) -> None:
        self.posts.labels(endpoint).inc()

    def post_failed(self, endpoint: str, reason: str) -> None:
        self.failed_posts.labels(endpoint, reason if reason in POST_FAILURE_REASONS else "other").inc()


class _LiveCollector:
    """Reads proxy counters, the buffer and the latest resource sample at scrape time."""

    def __init__(self) -> None:
        self.buffer: SampleBuffer | None = None
        self.proxy: Callable[[], ProxyCounters | None] = lambda: None
        self.resources: Callable[[], dict[str, Any] | None] = lambda: None

    def describe(self) -> list[Metric]:
        return []  # names are fixed and unique; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        yield from self._proxy()
        yield from self._buffer()
        yield from self._resources()

    def _proxy(self) -> Iterator[Metric]:
        counters = self.proxy()
        if counters is None:
            return
        yield GaugeMetricFamily("http_server_active_requests", "Exchanges in flight.",
                                value=counters.exchanges_in_flight)
        yield GaugeMetricFamily("mothership_proxy_connections_open", "Client connections open.",
                                value=counters.connections_open)
        yield CounterMetricFamily("mothership_proxy_connections", "Client connections accepted.",
                                  value=counters.connections_total)
        yield CounterMetricFamily("mothership_proxy_bad_requests", "Requests the sidecar could not parse.",
                                  value=counters.bad_requests)
        yield CounterMetricFamily("mothership_proxy_client_closed", "Exchanges the client abandoned.",
                                  value=counters.client_closed)
        yield CounterMetricFamily("mothership_proxy_sample_errors", "Exchanges that could not be recorded.",
                                  value=counters.sample_errors)
        yield _by_label("mothership_proxy_upstream_errors", "Exchanges failed by the app, by kind.", "kind",
                        counters.upstream_errors)
        yield _by_label("mothership_proxy_protocol_connections",
                        "Client connections by the protocol they were relayed as "
                        "(detected or forced; an h2c upgrade counts under http1 and h2).", "protocol",
                        counters.protocols)
        yield _by_label("mothership_proxy_opaque_decisions",
                        "Client connections relayed as opaque, by why: a TLS ClientHello, bytes that are not "
                        "HTTP, a silent client, an app that spoke first, --protocol opaque.", "reason", counters.opaque)
        yield CounterMetricFamily("mothership_proxy_untracked_connections",
                                  "HTTP/2 connections whose tracking stopped (framing not followed); "
                                  "their bytes still flowed.", value=counters.untracked)
        yield _by_label("mothership_proxy_connection_timeouts", "Client connections closed for a timeout, by kind.",
                        "kind", counters.timeouts)

    def _buffer(self) -> Iterator[Metric]:
        buffer = self.buffer
        if buffer is None:
            return
        yield GaugeMetricFamily("mothership_reporter_queue_samples",
                                "Exchanges recorded and not yet acknowledged by the dashboard.",
                                value=buffer.queued_exchanges)
        yield GaugeMetricFamily("mothership_reporter_queue_bytes", "Bytes held for the dashboard.",
                                value=buffer.bytes)
        yield GaugeMetricFamily("mothership_reporter_queue_batches", "Sealed batches waiting for a 2xx.",
                                value=buffer.queued_batches)
        yield GaugeMetricFamily("mothership_reporter_buffer_limit_bytes", "The buffer's bound.",
                                value=buffer.max_bytes)
        yield CounterMetricFamily("mothership_reporter_dropped_samples",
                                  "Exchanges lost before the dashboard counted them (buffer full or refused).",
                                  value=buffer.stats.dropped)
        yield CounterMetricFamily("mothership_reporter_left_out_samples",
                                  "Raw samples not sent; their exchanges still count in the summaries.",
                                  value=buffer.stats.left_out)
        yield CounterMetricFamily("mothership_reporter_batches_delivered", "Stats batches acknowledged.",
                                  value=buffer.stats.delivered)

    def _resources(self) -> Iterator[Metric]:
        resource = self.resources()
        if not resource:
            return
        gauges: list[tuple[str, str, Any]] = [
            ("mothership_node_cpu_usage_ratio", "Node CPU busy, 0-1.", _ratio(resource.get("cpu_percent"))),
            ("mothership_node_memory_total_bytes", "Node memory.", resource.get("total_memory")),
            ("mothership_node_memory_available_bytes", "Node memory available.", resource.get("free_memory")),
        ]
        load = resource.get("load_average") or []
        for name, value in zip(("load1", "load5", "load15"), load, strict=False):
            gauges.append((f"mothership_node_{name}", f"Node load average ({name[4:]} min).", value))
        container = resource.get("container") or {}
        gauges += [
            ("mothership_container_cpu_limit_cores", "The container's CPU limit (quota / period).",
             container.get("cpu_limit_cores")),
            ("mothership_container_cpu_usage_ratio", "Container CPU used, of its limit (else of one core).",
             _ratio(container.get("cpu_percent"))),
            ("mothership_container_memory_usage_bytes", "Container memory use (cgroup).",
             container.get("memory_usage")),
            ("mothership_container_memory_working_set_bytes", "Container memory less inactive file cache.",
             container.get("memory_working_set")),
            ("mothership_container_memory_limit_bytes", "Container memory limit.", container.get("memory_limit")),
        ]
        for name, documentation, value in gauges:
            if isinstance(value, (int, float)):
                yield GaugeMetricFamily(name, documentation, value=value)
        counters: list[tuple[str, str, Any]] = [
            ("mothership_container_cpu_usage_seconds", "Container CPU time used.", container.get("cpu_usage_seconds")),
            ("mothership_container_cpu_periods", "CFS enforcement periods of the container (cpu.stat nr_periods).",
             container.get("cpu_periods")),
            ("mothership_container_cpu_throttled_periods", "Periods in which the container used up its CPU quota "
             "and was held back (cpu.stat nr_throttled).", container.get("cpu_throttled_periods")),
            ("mothership_container_cpu_throttled_seconds", "Time the container was held back by its CPU quota.",
             container.get("cpu_throttled_seconds")),
        ]
        for name, documentation, value in counters:
            if isinstance(value, (int, float)):
                yield CounterMetricFamily(name, documentation, value=value)
        processes = resource.get("processes")
        if isinstance(processes, list):
            yield GaugeMetricFamily("mothership_pod_processes", "Other processes visible in the pod (listed).",
                                    value=len(processes))


def _by_label(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> CounterMetricFamily:
    """A counter family with one sample per key of `counts`, in key order."""
    family = CounterMetricFamily(name, documentation, labels=(label,))
    for key, n in sorted(counts.items()):
        family.add_metric((key,), n)
    return family


def _ratio(percent: Any) -> float | None:
    return percent / 100.0 if isinstance(percent, (int, float)) else None
