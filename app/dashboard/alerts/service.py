"""`AlertService`: the evaluator, the notifier and their state files, run on the dashboard's loop.

Every `interval` seconds: evaluate and tell the receivers. The state lives beside the
history: `<data>.alerts.json` (firing alerts, what each receiver has been told, the
pods; small) is written whenever it changes, and `<data>.alerts-windows.json` (each
app's per-minute counts over 6 h; about 6 kB an app) every five minutes and on stop,
encoded in a worker thread so the loop is not held up. A restarted dashboard reads
both back, so an alert is neither lost (a resolution not yet delivered is still sent)
nor duplicated (a firing alert keeps its start, and Alertmanager knows it by its labels).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.wire import StatsBatch
from app.dashboard.alerts.evaluator import AlertEvaluator, windows_json
from app.dashboard.alerts.notify import Notifier, Receiver
from app.dashboard.alerts.objectives import Objective, Objectives
from app.dashboard.jsontext import dumps
from app.options import DashboardConfig

log = logging.getLogger("mothership.alerts")

STATE_VERSION = 1
SAVE_EVERY = 60.0  # seconds: the small state is written at least this often (pods' last reports)
WINDOWS_EVERY = 300.0  # seconds between writes of the windows (a SIGKILL loses at most this much of them)


def state_path(config: DashboardConfig) -> Path | None:
    """Where the alert state lives: beside the history file; nowhere when history is kept in memory."""
    return None if config.data == ":memory:" else Path(f"{config.data}.alerts.json")


def _write(path: Path, data: Any) -> None:
    """Whole or not at all: a crash mid-write leaves the previous file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _read(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.error("ignoring the alert state in %s: %s", path, exc)
        return None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        log.error("ignoring the alert state in %s: not version %d", path, STATE_VERSION)
        return None
    return data


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
        self.windows_path = None if self.path is None else self.path.with_name(
            self.path.name.replace(".alerts.json", ".alerts-windows.json"))
        self.version = 0  # bumps whenever what the page shows changes
        self._saved_at = self._windows_at = clock()
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
            if self.clock() - self._windows_at >= WINDOWS_EVERY:
                await self.save_windows(in_thread=True)
        finally:
            self._running = False

    def health(self) -> dict[str, Any]:
        return self.evaluator.health()

    # --- state ---------------------------------------------------------------------------

    def save(self) -> None:
        """The small state: firing alerts, what each receiver was told, the pods."""
        if self.path is None:
            return
        self._saved_at = self.clock()
        try:
            _write(self.path, {"version": STATE_VERSION, "saved": self._saved_at,
                               "evaluator": self.evaluator.dump_state(), "receivers": self.notifier.dump()})
        except OSError as exc:
            log.error("cannot write the alert state to %s (%s)", self.path, exc.strerror)

    async def save_windows(self, in_thread: bool) -> None:
        """The windows: a snapshot taken here, encoded and written in a worker thread when `in_thread`."""
        if self.windows_path is None:
            return
        self._windows_at = self.clock()
        snapshot, path, saved = self.evaluator.windows_snapshot(), self.windows_path, self._windows_at

        def write() -> None:
            _write(path, {"version": STATE_VERSION, "saved": saved, **windows_json(snapshot)})

        try:
            if in_thread:
                await asyncio.to_thread(write)
            else:
                write()
        except OSError as exc:
            log.error("cannot write the alert windows to %s (%s)", path, exc.strerror)

    def _load(self) -> None:
        if self.path is None:
            return
        state = _read(self.path)
        windows = _read(self.windows_path) if self.windows_path is not None else None
        if state is None and windows is None:
            return
        evaluator = dict((state or {}).get("evaluator") or {})
        evaluator["apps"] = (windows or {}).get("apps") or {}
        self.evaluator.load(evaluator)
        self.notifier.load((state or {}).get("receivers"))
        log.info("alert state restored from %s: %d firing, windows of %d apps", self.path,
                 len(self.evaluator.firing), len(self.evaluator.apps))

    async def stop(self) -> None:
        self.save()
        await self.save_windows(in_thread=False)
        self.notifier.close()


def _name(labels: dict[str, str]) -> str:
    rest = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
    return f"{labels.get('alertname', '?')}{{{rest}}}"
