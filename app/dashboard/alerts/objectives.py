"""Service-level objectives per app: what the embedded alerts hold each app to.

Every app gets the defaults (99.9% of exchanges succeed; 99% finish within 1 s) unless
`--objective-success` / `--objective-p99` change them for all, or a small JSON file
(`--objectives`) changes them for some apps:

    {"shop": {"success": 99.5, "p99": "800ms"}, "search": {"p99": "2s"}}

Bad values raise `ObjectiveError` naming the app and the field; `app.options` turns that
into the program's one-line error, exit status 2.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

LATENCY_TARGET = 0.99  # the share of exchanges that must finish within the bound ("p99")
MAX_LATENCY_MS = 120_000.0  # the sidecars' histograms end there: a larger bound could never be judged


class ObjectiveError(ValueError):
    """An objective the dashboard cannot use; the message names it."""


@dataclass(frozen=True)
class Objective:
    success: float = 0.999  # share of exchanges that must not fail
    p99_ms: float = 1000.0  # 99% of exchanges must finish within this

    @property
    def error_budget(self) -> float:
        return 1.0 - self.success

    @property
    def latency_budget(self) -> float:
        return 1.0 - LATENCY_TARGET


def parse_success(text: Any) -> float:
    """`99.9`, `"99.9"` or `"99.9%"` (a percentage) -> 0.999."""
    raw = text.strip().removesuffix("%") if isinstance(text, str) else text
    if isinstance(raw, bool):
        raise ValueError("must be a percentage such as 99.9")
    try:
        percent = float(raw)
    except (TypeError, ValueError):
        raise ValueError("must be a percentage such as 99.9") from None
    if not math.isfinite(percent) or not 0 < percent < 100:
        raise ValueError("must be a percentage above 0 and below 100, such as 99.9")
    return percent / 100.0


def parse_latency(text: Any) -> float:
    """`"800ms"`, `"1.5s"`, `"1s"`, or a number of milliseconds -> milliseconds."""
    if isinstance(text, bool):
        raise ValueError("must be a duration such as 800ms or 1.5s")
    if isinstance(text, (int, float)):
        ms = float(text)
    elif isinstance(text, str):
        value = text.strip().lower()
        scale = 1.0
        if value.endswith("ms"):
            value = value[:-2]
        elif value.endswith("s"):
            value, scale = value[:-1], 1000.0
        try:
            ms = float(value) * scale
        except ValueError:
            raise ValueError("must be a duration such as 800ms or 1.5s") from None
    else:
        raise ValueError("must be a duration such as 800ms or 1.5s")
    if not math.isfinite(ms) or not 0 < ms <= MAX_LATENCY_MS:
        raise ValueError(f"must be a duration above 0 and at most {MAX_LATENCY_MS / 1000:g}s")
    return ms


@dataclass(frozen=True)
class Objectives:
    """The default objective and the apps that have their own."""

    default: Objective = Objective()
    apps: tuple[tuple[str, Objective], ...] = ()

    def for_app(self, app: str) -> Objective:
        for name, objective in self.apps:
            if name == app:
                return objective
        return self.default


def parse_overrides(data: Any, default: Objective, where: str) -> tuple[tuple[str, Objective], ...]:
    """`{"app": {"success": ..., "p99": ...}}` -> per-app objectives (unnamed fields from `default`)."""
    if not isinstance(data, dict):
        raise ObjectiveError(f"{where}: must be a JSON object of app names, such as "
                             '{"shop": {"success": 99.5, "p99": "800ms"}}')
    apps: list[tuple[str, Objective]] = []
    for app, fields in data.items():
        if not app or not isinstance(fields, dict):
            raise ObjectiveError(f"{where}: app {app!r}: must be an object such as "
                                 '{"success": 99.5, "p99": "800ms"}')
        unknown = sorted(set(fields) - {"success", "p99"})
        if unknown:
            raise ObjectiveError(f"{where}: app {app!r}: unknown field {unknown[0]!r} (use success, p99)")
        objective = default
        try:
            if "success" in fields:
                objective = replace(objective, success=parse_success(fields["success"]))
        except ValueError as exc:
            raise ObjectiveError(f"{where}: app {app!r}: success {exc} (got {fields['success']!r})") from None
        try:
            if "p99" in fields:
                objective = replace(objective, p99_ms=parse_latency(fields["p99"]))
        except ValueError as exc:
            raise ObjectiveError(f"{where}: app {app!r}: p99 {exc} (got {fields['p99']!r})") from None
        apps.append((app, objective))
    return tuple(apps)


def load_objectives(path: str, default: Objective) -> Objectives:
    """The defaults plus the per-app file at `path` ("" = none)."""
    if not path:
        return Objectives(default)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ObjectiveError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ObjectiveError(f"{path}: not valid JSON ({exc})") from None
    return Objectives(default, parse_overrides(data, default, path))
