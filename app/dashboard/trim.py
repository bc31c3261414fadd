"""Freed heap memory handed back to the operating system, now and then (glibc's `malloc_trim`).

What a burst allocates and frees (a restart reading thousands of pods back, a
seven-day query's rows in the lookback thread, a history write's batch) leaves
free pages in glibc's heaps, which it keeps for reuse rather than giving back:
resident memory would stay at the burst's height. `malloc_trim` returns whole
free pages; the dashboard calls it after restoring and every TRIM_EVERY seconds.
On a C library without it, nothing (musl and others give memory back themselves).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

TRIM_EVERY = 30  # seconds between trims (what one costs: `bench.store_bench`, its `trim` part)


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


_TRIM = _malloc_trim()
AVAILABLE = _TRIM is not None


def trim() -> None:
    """Give free heap pages back (where the C library can)."""
    if _TRIM is not None:
        _TRIM(0)
