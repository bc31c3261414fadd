"""Freed heap memory handed back to the operating system, now and then (glibc's `malloc_trim`).

Each second the dashboard builds and drops strings of a few kilobytes per pod
(the live update's pieces, route tables, report bodies) among long-lived ones;
glibc's malloc keeps the pages those leave free for reuse rather than giving
them back, and at 200 pods that was 16 MiB of resident memory beyond what was
in use (80 kB a pod; the template's 512Mi holds 2,000 pods only without it).
`malloc_trim` returns whole free pages. On a C library without it, nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

TRIM_EVERY = 30  # seconds between trims: a few milliseconds each at thousands of pods


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators give memory back themselves
        return None
    return trim


_TRIM = _malloc_trim()
AVAILABLE = _TRIM is not None


def trim() -> None:
    """Give free heap pages back (where the C library can)."""
    if _TRIM is not None:
        _TRIM(0)
