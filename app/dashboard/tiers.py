"""History's downsampled tiers, and which of them a query over a past window reads.

Memory holds the last few minutes (`app.dashboard.scope`); older slots live
in SQLite only, in tiers of coarser steps kept for longer spans (5 s for an
hour, 1 min for two days, 10 min to the retention; routes per minute for two
days, per hour beyond). A coarse slot is its finer slots added together
(counts and histogram buckets add), so every tier answers exactly what its
parts would. Pure code: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DAY = 86_400
# (step, seconds kept); the last is kept to the retention.
TIERS: tuple[tuple[int, float], ...] = ((5, 3900.0), (60, 2.0 * DAY), (600, math.inf))
ROUTE_TIERS: tuple[tuple[int, float], ...] = ((60, 2.0 * DAY), (3600, math.inf))
ARCHIVE_ALIGN = 60  # memory hands slots to the archive a whole minute at a time
MAX_POINTS = 720  # points per series at most: a chart is about that many pixels wide
NICE_STEPS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 10800, 21600, 43200, DAY)
LIVE_STEPS = {300: 1, 900: 5, 3600: 10}  # the live windows keep their steps (docs/live-protocol.md)
MIN_WINDOW = 60


class WindowError(ValueError):
    """A window or range a query cannot serve; its text says what is allowed."""


def tier_for_age(age: float, tiers: tuple[tuple[int, float], ...] = TIERS) -> int:
    """The finest tier whose slots are still kept `age` seconds back."""
    for step, kept in tiers:
        if age <= kept:
            return step
    return tiers[-1][0]


def series_step(window: int, age: float) -> int:
    """The step of a series over `window` seconds reaching `age` seconds back: at most MAX_POINTS points,
    never finer than the tier that still holds its oldest slot, and a multiple of it."""
    live = LIVE_STEPS.get(window)
    if live is not None and age <= window + 60:
        return live
    tier = tier_for_age(age)
    wanted = max(window / MAX_POINTS, tier)
    for step in NICE_STEPS:
        if step >= wanted and step % tier == 0:
            return step
    return NICE_STEPS[-1]


def read_tier(step: int, age: float) -> int:
    """The coarsest archive tier that divides `step` and still holds slots `age` seconds back."""
    best = 0
    for tier, kept in TIERS:
        if step % tier == 0 and age <= kept:
            best = tier
    if not best:
        raise WindowError(f"no tier serves a step of {step} s {age:.0f} s back")
    return best


@dataclass(frozen=True)
class Read:
    """Archive rows of one tier over [start, end)."""

    tier: int
    start: int
    end: int


def archive_reads(step: int, start: int, boundary: int, now: float) -> list[Read]:
    """What to read from the archive for a series from `start`, whose slots from `boundary` on are in memory.

    A slot of the chosen tier that reaches past the boundary may still be
    taking minutes as they are archived: the part of it below the boundary is
    read from the minute tier instead (the boundary is a whole minute).
    """
    if boundary <= start:
        return []
    tier = read_tier(step, now - start)
    whole = boundary - boundary % tier
    reads = []
    if whole > start:
        reads.append(Read(tier, start, whole))
    rest = max(start, whole)
    if rest < boundary:
        reads.append(Read(ARCHIVE_ALIGN if tier > ARCHIVE_ALIGN else tier, rest, boundary))
    return reads


def route_tier(start: float, end: float, now: float) -> int:
    """Routes over [start, end): per minute while it is kept and the window is under six hours, else per hour."""
    if end - start < 6 * 3600 and now - start <= ROUTE_TIERS[0][1]:
        return ROUTE_TIERS[0][0]
    return ROUTE_TIERS[-1][0]


def parse_window(text: str | None, retention: float, longest: float) -> int:
    """A series window in whole seconds: the live ones, or MIN_WINDOW up to `longest` (what is kept)."""
    if text is None or not text.isdigit() or len(text) > 9:
        raise WindowError(f"window must be a whole number of seconds, from {MIN_WINDOW} to {int(longest)} "
                          f"(the retention, --retention {_duration(retention)})")
    window = int(text)
    if window in LIVE_STEPS:
        return window
    if not MIN_WINDOW <= window <= longest:
        raise WindowError(f"window must be from {MIN_WINDOW} to {int(longest)} seconds "
                          f"(the retention, --retention {_duration(retention)}); got {window}")
    return window


def parse_range(start_text: str | None, end_text: str | None, now: float, retention: float) -> tuple[int, int]:
    """A past range [start, end) in epoch seconds, within the retention."""
    values = []
    for name, text in (("start", start_text), ("end", end_text)):
        try:
            value = float(text) if text is not None else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise WindowError(f"{name} must be a time in epoch seconds")
        values.append(int(value))
    start, end = values
    if end <= start:
        raise WindowError("end must be after start")
    oldest = int(now - retention)
    if start < oldest - ARCHIVE_ALIGN or end > now + 60:
        raise WindowError(f"the range must lie within the retention ({_duration(retention)}): "
                          f"from {oldest} to {int(now)}")
    return max(start, oldest), min(end, int(now) + 1)


def parse_end(text: str, window: int, now: float, retention: float) -> int:
    """The end (epoch seconds) of a window of `window` seconds that must lie within the retention."""
    try:
        end = float(text)
    except ValueError:
        end = math.nan
    if not math.isfinite(end):
        raise WindowError("end must be a time in epoch seconds")
    return parse_range(repr(end - window), repr(end), now, retention)[1]


def _duration(seconds: float) -> str:
    for unit, size in (("d", DAY), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
