"""JSON text as the dashboard writes it everywhere: ujson, UTF-8 kept, slashes not escaped."""

from __future__ import annotations

from typing import Any

import ujson


def dumps(value: Any) -> str:
    return ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False)
