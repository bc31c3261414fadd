"""`Notifier`: firing and resolved alerts sent to Alertmanager's v2 API and to a generic webhook.

Alertmanager does the routing, grouping, silencing and repeating; we only keep it told,
as Prometheus does: every firing alert is sent when it starts and re-sent every
`resend` seconds with `endsAt` a few re-sends ahead (so an Alertmanager that stops
hearing from us resolves it by itself), and a resolved one is sent with its `endsAt`
until delivered. Never a storm: one request in flight per receiver, all that is due in
it, and after a failure the receiver waits, twice as long each time up to five minutes.
The webhook gets Alertmanager's own webhook message, so whatever reads those reads ours.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from app.dashboard.alerts.evaluator import Alert, Key
from app.dashboard.jsontext import dumps
from app.options import display_url

log = logging.getLogger("mothership.alerts")

RESEND: Final = 60.0  # seconds between re-sends of a firing alert (Prometheus's resend delay)
EXPIRY_RESENDS: Final = 4  # a firing alert's endsAt is this many re-sends ahead
TIMEOUT: Final = 10.0
BACKOFF_FIRST: Final = 5.0
BACKOFF_MAX: Final = 300.0


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fingerprint(alert: Alert) -> str:
    return hashlib.sha256(repr(alert.key).encode()).hexdigest()[:16]


class Receiver:
    """One destination: its URL, message shape, what it has been told, and its backoff."""

    def __init__(self, kind: str, url: str, generator_url: str) -> None:
        if kind not in ("alertmanager", "webhook"):
            raise ValueError(f"unknown receiver kind {kind!r}")
        self.kind = kind
        self.url = url
        self.endpoint = f"{url}/api/v2/alerts" if kind == "alertmanager" else url
        self.generator_url = generator_url
        self.sent: dict[Key, float] = {}  # firing alert -> when it was last delivered
        self.resolved: dict[Key, Alert] = {}  # resolved, not yet delivered
        self.failures = 0
        self.next_try = 0.0
        self.in_flight = False

    @property
    def name(self) -> str:
        return self.kind

    def due(self, firing: dict[Key, Alert], now: float, resend: float) -> list[Alert]:
        alerts = [alert for key, alert in firing.items() if now - self.sent.get(key, -resend) >= resend]
        alerts += [alert for key, alert in self.resolved.items() if key not in firing]
        return alerts

    def body(self, alerts: list[Alert], now: float, resend: float) -> bytes:
        expiry = now + EXPIRY_RESENDS * resend
        if self.kind == "alertmanager":
            posted = [{"labels": a.labels, "annotations": a.annotations, "startsAt": rfc3339(a.starts_at),
                       "endsAt": rfc3339(a.ends_at if a.ends_at is not None else expiry)} for a in alerts]
            if self.generator_url:
                for item in posted:
                    item["generatorURL"] = self.generator_url
            return dumps(posted).encode()
        items = [{"status": "firing" if a.ends_at is None else "resolved", "labels": a.labels,
                  "annotations": a.annotations, "startsAt": rfc3339(a.starts_at),
                  "endsAt": rfc3339(a.ends_at) if a.ends_at is not None else "0001-01-01T00:00:00Z",
                  "generatorURL": self.generator_url, "fingerprint": fingerprint(a)} for a in alerts]
        common = dict(set.intersection(*(set(a.labels.items()) for a in alerts))) if alerts else {}
        return dumps({"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0,
                      "status": "firing" if any(i["status"] == "firing" for i in items) else "resolved",
                      "receiver": "mothership", "groupLabels": {}, "commonLabels": common,
                      "commonAnnotations": {}, "externalURL": self.generator_url, "alerts": items}).encode()

    def delivered(self, alerts: Iterable[Alert], now: float) -> None:
        self.failures = 0
        self.next_try = 0.0
        for alert in alerts:
            if alert.ends_at is None:
                self.sent[alert.key] = now
            else:
                self.resolved.pop(alert.key, None)

    def failed(self, now: float) -> float:
        self.failures += 1
        wait: float = min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** (self.failures - 1))
        self.next_try = now + wait
        return wait

    # --- persistence -----------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {"url": self.url, "sent": [[list(map(list, key)), when] for key, when in self.sent.items()],
                "resolved": [a.to_json() for a in self.resolved.values()]}

    def load(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("url") != self.url:
            return  # another destination then: it was told nothing of ours
        for item in data.get("sent") or []:
            try:
                key: Key = tuple((str(k), str(v)) for k, v in item[0])
                self.sent[key] = float(item[1])
            except (TypeError, ValueError, IndexError):
                continue
        for raw in data.get("resolved") or []:
            alert = Alert.from_json(raw)
            if alert is not None and alert.ends_at is not None:
                self.resolved[alert.key] = alert


class Notifier:
    """Keeps every receiver told of the evaluator's firing alerts and of those that resolved."""

    def __init__(self, receivers: list[Receiver], *, clock: Callable[[], float] = time.time, resend: float = RESEND,
                 on_result: Callable[[str, bool], None] | None = None) -> None:
        self.receivers = receivers
        self.clock = clock
        self.resend = resend
        self.on_result = on_result or (lambda receiver, ok: None)
        self._client = AsyncHTTPClient(force_instance=True)

    def resolved(self, alerts: Iterable[Alert]) -> None:
        for alert in alerts:
            for receiver in self.receivers:
                receiver.sent.pop(alert.key, None)
                receiver.resolved[alert.key] = alert

    async def send(self, firing: dict[Key, Alert]) -> bool:
        """One round: each receiver that is due and not waiting gets one request. True if anything was delivered."""
        delivered = False
        for receiver in self.receivers:
            now = self.clock()
            if receiver.in_flight or now < receiver.next_try:
                continue
            alerts = receiver.due(firing, now, self.resend)
            if alerts:
                delivered = await self._post(receiver, alerts, now) or delivered
        return delivered

    async def _post(self, receiver: Receiver, alerts: list[Alert], now: float) -> bool:
        request = HTTPRequest(receiver.endpoint, method="POST", body=receiver.body(alerts, now, self.resend),
                              headers={"Content-Type": "application/json"}, request_timeout=TIMEOUT,
                              connect_timeout=TIMEOUT, follow_redirects=False)
        receiver.in_flight = True
        try:
            await self._client.fetch(request)
        except (HTTPClientError, OSError) as exc:
            wait = receiver.failed(self.clock())
            reason = f"HTTP {exc.code}" if isinstance(exc, HTTPClientError) else type(exc).__name__
            log.warning("sending %d alerts to %s failed (%s); next try in %.0fs", len(alerts),
                        display_url(receiver.endpoint), reason, wait)
            self.on_result(receiver.name, False)
            return False
        finally:
            receiver.in_flight = False
        receiver.delivered(alerts, now)
        self.on_result(receiver.name, True)
        return True

    def close(self) -> None:
        self._client.close()

    def dump(self) -> dict[str, Any]:
        return {r.kind: r.dump() for r in self.receivers}

    def load(self, data: Any) -> None:
        if isinstance(data, dict):
            for receiver in self.receivers:
                receiver.load(data.get(receiver.kind))
