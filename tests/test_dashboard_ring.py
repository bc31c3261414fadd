"""`app.dashboard.ring`: the one-second tier's ring of slots, and the upkeep of a tier (freezing, dropping)."""

from __future__ import annotations

import pytest

from app.dashboard.buckets import Bucket, Slot, read_slot
from app.dashboard.ring import SlotRing, drop_before, freeze_before

T = 1_760_000_000


def bucket(n: int) -> Bucket:
    out = Bucket()
    out.count, out.total, out.low, out.high = n, float(n), 1.0, 2.0
    return out


def test_a_ring_reads_and_writes_as_a_dict_of_its_span() -> None:
    ring, plain = SlotRing(10), dict[int, Slot]()
    for t in (T, T + 3, T + 9, T + 1):
        ring[t] = plain[t] = bucket(t - T + 1)
    assert len(ring) == 4 and sorted(ring) == sorted(plain) and T + 3 in ring and T + 4 not in ring
    assert sorted(ring.items(), key=lambda kv: kv[0]) == sorted(plain.items(), key=lambda kv: kv[0])
    assert ring.get(T + 3) is plain[T + 3] and ring.get(T + 13) is None and ring.get(T - 7) is None
    assert ring.pop(T + 3) is plain[T + 3] and ring.pop(T + 3) is None and len(ring) == 3
    with pytest.raises(KeyError):
        del ring[T + 3]
    del ring[T]
    assert sorted(ring) == [T + 1, T + 9] and len(ring.values()) == 2


def test_a_slot_takes_the_place_of_the_one_a_whole_size_before() -> None:
    ring = SlotRing(10)
    ring[T] = bucket(1)
    ring[T + 10] = bucket(2)  # the same place: the older one is gone, not mistaken for it
    assert ring.get(T) is None and read_slot(ring.get(T + 10)).count == 2  # type: ignore[union-attr]
    assert len(ring) == 1 and list(ring) == [T + 10]


@pytest.mark.parametrize("make", [dict, lambda: SlotRing(400)])
def test_freezing_and_dropping_keep_what_a_tier_reads(make: type) -> None:
    slots = make()
    for t in range(T, T + 300):
        slots[t] = bucket(t - T + 1)
    floor = freeze_before(slots, T, T + 290, 1)
    assert floor == T + 290
    assert all(type(slots.get(t)) is bytes for t in range(T, T + 290))
    assert all(type(slots.get(t)) is Bucket for t in range(T + 290, T + 300))
    assert [read_slot(slots.get(t)).count for t in (T, T + 150, T + 299)] == [1, 151, 300]  # type: ignore[union-attr]
    drop_before(slots, T, T + 100, 1)
    assert len(slots) == 200 and slots.get(T + 99) is None and slots.get(T + 100) is not None
    drop_before(slots, T + 100, T + 5000, 1)  # a long silence: a scan, not 4,900 look-ups
    assert len(slots) == 0
