"""The history thread's pacing: every row converted, in order, with the GIL let go between short bursts."""

from __future__ import annotations

import time

import pytest

from app.dashboard import history


def test_paced_converts_everything_in_order_and_pauses_between_bursts(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(history.time, "sleep", pauses.append)

    def slow(n: int) -> tuple[int, int]:
        until = time.perf_counter() + history.PACE_BURST / 2
        while time.perf_counter() < until:
            pass
        return n, n * n

    assert history._paced(range(20), slow) == [(n, n * n) for n in range(20)]
    assert 5 <= len(pauses) <= 20 and set(pauses) == {history.PACE_PAUSE}  # about one per two or three rows

    pauses.clear()
    assert history._paced(range(1000), lambda n: (n,)) == [(n,) for n in range(1000)]
    assert len(pauses) <= 2  # cheap rows: hardly a pause
