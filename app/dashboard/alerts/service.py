"""`AlertService`: the evaluator, the notifier and their state file, run on the dashboard's loop.

Every `interval` seconds: evaluate, tell the receivers, and write the state (firing
alerts, what each receiver has been told, the windows) to a JSON file beside the
history (`<data>.alerts.json`) whenever it changed, and at least every minute. A
restarted dashboard reads it back, so an alert is neither lost (a resolution not yet
delivered is still sent) nor duplicated (a firing alert keeps its start, and
Alertmanager knows it by its labels).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.wire import StatsBatch
from app.dashboard.alerts.evaluator import AlertEvaluator
from app.dashboard.alerts.notify import Notifier, Receiver
from app.dashboard.alerts.objectives import Objective, Objectives
from app.dashboard.jsontext import dumps
from app.options import DashboardConfig

log = logging.getLogger("mothership.alerts")

STATE_VERSION = 1
SAVE_EVERY = 60.0  # seconds: the windows are written at least this often (alert changes at once)


def state_path(config: DashboardConfig) -> Path | None:
    """Where the alert state lives: beside the history file; nowhere when history is kept in memory."""
    return None if config.data == ":memory:" else Path(f"{config.data}.alerts.json")


def objectives_of(config: DashboardConfig) -> Objectives:
    default = Objective(success=config.objective_success, p99_ms=config.objective_p99)
    return Objectives(default, config.objective_apps)


class AlertService:
    def __init__(self, config: DashboardConfig, clock: Callable[[], float] = time.time, *,
                 on_result: Callable[[str, bool], None] | None = None, warmup: float | None = None) -> None:
        kwargs: dict[str, Any] = {} if warmup is None else {"warmup": warmup}
        self.evaluator = AlertEvaluator(objectives_of(config), clock=clock, silent_after=config.silent_after,
                                        drop_after=config.drop_after, **kwargs)
        generator = ""  # the dashboard cannot know the URL its users reach it by
        receivers = [Receiver("alertmanager", config.alertmanager, generator)] if config.alertmanager else []
        if config.alert_webhook:
            receivers.append(Receiver("webhook", config.alert_webhook, generator))
        self.notifier = Notifier(receivers, clock=clock, on_result=on_result)
        self.clock = clock
        self.path = state_path(config)
        self.version = 0  # bumps whenever what the page shows changes
        self._saved_at = clock()
        self._running = False
        self._load()

    # --- fed at ingest ---------------------------------------------------------------

    def observe_stats(self, batch: StatsBatch) -> None:
        self.evaluator.observe_stats(batch)

    def observe_seen(self, pod: str, app: str) -> None:
        self.evaluator.observe_seen(pod, app)

    # --- the timer ---------------------------------------------------------------------

    async def cycle(self) -> None:
        """Evaluate, notify, save. Skipped while the previous cycle still waits on a receiver."""
        if self._running:
            return
        self._running = True
        try:
            changes = self.evaluator.evaluate()
            if changes:
                self.version += 1
                for alert in changes.fired:
                    log.warning("alert firing: %s %s", _name(alert.labels), alert.annotations.get("summary", ""))
                for alert in changes.resolved:
                    log.info("alert resolved: %s", _name(alert.labels))
                self.notifier.resolved(changes.resolved)
            delivered = await self.notifier.send(self.evaluator.firing)
            if changes or delivered or self.clock() - self._saved_at >= SAVE_EVERY:
                self.save()
        finally:
            self._running = False

    def health(self) -> dict[str, Any]:
        return self.evaluator.health()

    # --- state ---------------------------------------------------------------------------

    def save(self) -> None:
        if self.path is None:
            return
        self._saved_at = self.clock()
        state = {"version": STATE_VERSION, "saved": self._saved_at, "evaluator": self.evaluator.dump(),
                 "receivers": self.notifier.dump()}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(dumps(state), encoding="utf-8")
            os.replace(tmp, self.path)  # a crash mid-write leaves the previous state whole
        except OSError as exc:
            log.error("cannot write the alert state to %s (%s)", self.path, exc.strerror)

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.error("ignoring the alert state in %s: %s", self.path, exc)
            return
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            log.error("ignoring the alert state in %s: not version %d", self.path, STATE_VERSION)
            return
        self.evaluator.load(state.get("evaluator"))
        self.notifier.load(state.get("receivers"))
        log.info("alert state restored from %s: %d firing", self.path, len(self.evaluator.firing))

    async def stop(self) -> None:
        self.save()
        self.notifier.close()


def _name(labels: dict[str, str]) -> str:
    rest = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
    return f"{labels.get('alertname', '?')}{{{rest}}}"
