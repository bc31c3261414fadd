"""The dashboard's own Prometheus metrics, in a registry of its own (not the global one).

Children with fixed labels are created once, so counting a request costs a
lock and an add, not a label lookup.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

INGEST_ENDPOINTS = ("stats", "resources")
OUTCOMES = ("saved", "duplicate", "bad_request", "unauthorized", "too_large", "unsupported_type", "wrong_host",
            "repeated_header", "too_many_pods", "too_many_apps")
FRAMING_REASONS = ("malformed", "head_too_large", "pipelined")
# Requests the application (page, API, /ws, static files) refused before any data, by reason.
HTTP_REASONS = ("wrong_host", "wrong_origin", "bad_path")
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)


class DashboardMetrics:
    """Counters and gauges about ingest, live push and history writes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        requests = Counter("mothership_ingest_requests_total", "POSTs received, by endpoint and outcome",
                           ["endpoint", "outcome"], registry=r)
        self.ingest = {(e, o): requests.labels(e, o) for e in INGEST_ENDPOINTS for o in OUTCOMES}
        seconds = Histogram("mothership_ingest_seconds", "Time to handle one POST once its body is read",
                            ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ingest_seconds = {e: seconds.labels(e) for e in INGEST_ENDPOINTS}
        refused = Counter("mothership_ingest_refused_requests_total", "Requests on sidecars' connections refused "
                          "before their endpoint was known, by reason (the connection is closed)", ["reason"],
                          registry=r)
        self.refused = {reason: refused.labels(reason) for reason in FRAMING_REASONS}
        http_refused = Counter("mothership_http_refused_requests_total", "Requests for the page, the API, /ws or "
                               "static files refused before any data, by reason", ["reason"], registry=r)
        self.http_refused = {reason: http_refused.labels(reason) for reason in HTTP_REASONS}
        self.handoffs = Counter("mothership_ingest_handoffs_total", "Sidecars' connections handed to the "
                                "application when they asked for something other than an ingest POST", registry=r)
        self.samples = Counter("mothership_samples_total", "Raw exchange samples received", registry=r)
        self.exchanges = Counter("mothership_exchanges_total", "Exchanges counted from summaries", registry=r)
        self.dropped = Counter("mothership_sidecar_dropped_samples_total",
                               "Samples sidecars reported they could not keep", registry=r)
        self.pods = Gauge("mothership_pods", "Pods known, by state", ["state"], registry=r)
        self.pods_live, self.pods_stale = self.pods.labels("live"), self.pods.labels("stale")
        self.ws_clients = Gauge("mothership_websocket_clients", "Live page connections", registry=r)
        self.ws_messages = Counter("mothership_websocket_messages_total", "Messages written to live pages",
                                   registry=r)
        self.ws_skipped = Counter("mothership_websocket_superseded_total",
                                  "Updates replaced before a slow client could take them", registry=r)
        self.render_seconds = Histogram("mothership_overview_render_seconds", "Time to build and encode "
                                        "the overview once (wall time: it is built in steps, POSTs served between)",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.history_seconds = Histogram("mothership_history_write_seconds", "Time of one history write",
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.history_rows = Counter("mothership_history_rows_total", "Rows written to history", registry=r)
        notices = Counter("mothership_alert_notifications_total", "Requests to alert receivers, by receiver "
                          "and outcome", ["receiver", "outcome"], registry=r)
        self.alert_notices = {(k, o): notices.labels(k, o) for k in ("alertmanager", "webhook")
                              for o in ("delivered", "failed")}
        self.alerts_firing = Gauge("mothership_alerts_firing", "The dashboard's own alerts firing now", registry=r)
        self.history_errors = Counter("mothership_history_errors_total", "History writes that failed",
                                      registry=r)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
