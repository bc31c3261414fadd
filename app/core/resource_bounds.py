"""What of a sidecar's resource report the dashboard keeps: its known fields, bounded, and a bounded rest.

A report is stored as sent and served again by `GET /resources`, written to
history and re-read at every restart, so one sender must not be able to make
it large: the known fields (`app.core.wire`'s comment lists them) are kept
with their lists cut short, anything else only while it stays small, and the
whole is always checked for depth and for NaN and infinities. Pure code.
"""

from __future__ import annotations

import math
from typing import Any


class BoundsError(ValueError):
    """A report refused whatever is cut from it (`app.core.wire` turns it into a WireError)."""

MAX_DEPTH = 6  # levels of objects and lists under `resource` (the sampler's deepest: cpus[i].times.user)
KEEP_BYTES = 16 * 1024  # a report whose body is smaller is kept whole (the sampler's is 1-3 kB)
REST_BYTES = 4 * 1024  # of fields nobody reads, kept from a larger report (about, as JSON)
KNOWN_BYTES = 256 * 1024  # of the known fields, once their lists are cut: past it the report is refused
KNOWN_LISTS = {"cpus": 1024, "cpu_percent_per_core": 1024, "load_average": 3, "processes": 200}
KNOWN = frozenset(("time", "free_memory", "total_memory", "cpu_percent", "memory", "container", "sidecar",
                   *KNOWN_LISTS))


def _too_deep(value: dict[str, Any] | list[Any], depth: int = 1) -> bool:
    """Whether containers nest past MAX_DEPTH under `value` (the quick look: containers only, no paths)."""
    if depth >= MAX_DEPTH:
        return True
    for item in value.values() if type(value) is dict else value:
        if (type(item) is dict or type(item) is list) and _too_deep(item, depth + 1):
            return True
    return False


def check(value: Any, where: str = "resource", depth: int = 0) -> int:
    """Refuse NaN, infinities and nesting past MAX_DEPTH anywhere in `value`; return its rough size in bytes."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BoundsError(f"{where} must be a finite number")
        return 8
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return 8
    if depth >= MAX_DEPTH:
        raise BoundsError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    size = 2
    for key, item in items:
        size += check(item, f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]", depth + 1)
        size += len(key) + 3 if isinstance(key, str) else 1
    return size


def bounded(resource: dict[str, Any], body_bytes: int | None, maybe_not_finite: bool = True) -> dict[str, Any]:
    """`resource` checked (see `check`), and cut down when its body was over KEEP_BYTES (or is unknown).

    `maybe_not_finite` False says the body's text cannot hold NaN or an infinity (most reports):
    then a small report costs only the quick look at its depth.
    """
    if body_bytes is not None and body_bytes <= KEEP_BYTES:
        if maybe_not_finite or _too_deep(resource, 0):
            check(resource)  # says where
        return resource
    kept: dict[str, Any] = {}
    known = rest = 0
    for key, value in resource.items():
        if key in KNOWN:
            limit = KNOWN_LISTS.get(key)
            if limit is not None and isinstance(value, list) and len(value) > limit:
                value = value[:limit]
            known += check(value, f"resource.{key}", 1)
            if known > KNOWN_BYTES:
                raise BoundsError(f"resource is larger than {KNOWN_BYTES} bytes even with its lists cut "
                                  f"({', '.join(f'{k} to {n}' for k, n in KNOWN_LISTS.items())})")
            kept[key] = value
            continue
        size = check(value, f"resource.{key}", 1) + len(key)
        if rest + size <= REST_BYTES:
            kept[key] = value
            rest += size
    return kept
