"""`Context`: what every dashboard handler and the ingest need, passed in explicitly.

It sits below both the handlers and the ingest (each takes one), so neither
has to import the other for its type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.dashboard.aggregate import PodStore
from app.dashboard.alerts.service import AlertService
from app.dashboard.hosts import HostGate
from app.dashboard.hub import LiveHub
from app.dashboard.metrics import DashboardMetrics
from app.options import DashboardConfig


@dataclass
class Context:
    """What every handler needs, passed in explicitly (no reaching into the application)."""

    config: DashboardConfig
    store: PodStore
    hub: LiveHub
    metrics: DashboardMetrics
    alerts: AlertService | None = None  # the embedded alerts
    history_ok: bool = True
    page: bytes | None = None  # the page as rendered once: the same for every request
    hosts: HostGate = field(default_factory=HostGate)
