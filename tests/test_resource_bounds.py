"""What of a resource report is kept: small ones whole, large ones cut to the known fields and a small rest."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.core import resource_bounds
from app.core.resource_bounds import KEEP_BYTES, MAX_DEPTH, BoundsError, bounded
from tests.dashboard_support import resource_body


def nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_a_small_report_is_kept_whole_and_checked() -> None:
    resource = resource_body("a-1-x")["resource"]
    assert bounded(resource, 1500, False) is resource
    with pytest.raises(BoundsError, match="deeper than"):
        bounded({**resource, "x": nest(MAX_DEPTH)}, 1500, False)  # the depth is checked even so
    assert bounded({**resource, "x": nest(MAX_DEPTH - 1)}, 1500, False)["x"] == nest(MAX_DEPTH - 1)
    with pytest.raises(BoundsError, match=r"resource\.memory\.percent must be a finite"):
        bounded({**resource, "memory": {"percent": float("nan")}}, 1500, True)


def test_a_large_report_keeps_the_known_fields_cut_and_a_small_rest() -> None:
    resource = resource_body("a-1-x")["resource"]
    large = {**resource, "processes": [{"pid": i} for i in range(5000)], "junk": "x" * 100_000, "small": "kept"}
    kept = bounded(large, KEEP_BYTES + 1, False)
    assert len(kept["processes"]) == resource_bounds.KNOWN_LISTS["processes"]
    assert "junk" not in kept and kept["small"] == "kept" and kept["container"] == resource["container"]
    assert len(json.dumps(kept)) < 32 * 1024
    with pytest.raises(BoundsError, match="larger than"):
        bounded({**resource, "time": "t" * 300_000}, None, False)


def test_check_measures_and_names_where() -> None:
    assert resource_bounds.check({"a": [1.0, "xy"]}) > 10
    with pytest.raises(BoundsError, match=r"resource\.a\[1\] must be a finite"):
        resource_bounds.check({"a": [1.0, float("inf")]})
