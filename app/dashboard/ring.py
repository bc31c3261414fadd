"""A fixed number of time slots, kept in place by time modulo the size: the one-second tier of a scope.

Every scope keeps some 300 one-second slots. As a dict they cost about 28 kB
per scope beyond the slots themselves (its table and one int object per key);
here, a list and an array of times, 6 kB. A slot written at `t` takes the
place of the one `size` seconds before it, which the scope has dropped by then
(its span is shorter than the size). And the upkeep of a tier, ring or dict:
freezing what has settled, dropping what is past its span. Pure code.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator

from app.dashboard.buckets import Bucket, Slot, freeze


class SlotRing:
    """The slots of the last `size` seconds by time, with the parts of a dict's interface the tiers use."""

    __slots__ = ("_count", "_size", "_slots", "_times")

    def __init__(self, size: int) -> None:
        self._size = size
        self._slots: list[Slot | None] = [None] * size
        self._times = array("q", bytes(8 * size))
        self._count = 0

    def get(self, t: int, default: Slot | None = None) -> Slot | None:
        i = t % self._size
        slot = self._slots[i]
        if slot is not None and self._times[i] == t:
            return slot
        return default

    def __contains__(self, t: object) -> bool:
        return isinstance(t, int) and self.get(t) is not None

    def __setitem__(self, t: int, slot: Slot) -> None:
        i = t % self._size
        if self._slots[i] is None:
            self._count += 1
        self._slots[i] = slot
        self._times[i] = t

    def pop(self, t: int, default: Slot | None = None) -> Slot | None:
        i = t % self._size
        slot = self._slots[i]
        if slot is None or self._times[i] != t:
            return default
        self._slots[i] = None
        self._count -= 1
        return slot

    def __delitem__(self, t: int) -> None:
        if self.pop(t) is None:
            raise KeyError(t)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        times = self._times
        return iter([times[i] for i, slot in enumerate(self._slots) if slot is not None])

    def items(self) -> list[tuple[int, Slot]]:
        times = self._times
        return [(times[i], slot) for i, slot in enumerate(self._slots) if slot is not None]

    def values(self) -> list[Slot]:
        return [slot for slot in self._slots if slot is not None]


def freeze_before(slots: dict[int, Slot] | SlotRing, floor: int, cut: int, step: int,
                  freezer: Callable[[Bucket], bytes] = freeze) -> int:
    """Freeze the buckets in [floor, cut); the new floor. Called every tick, so usually one slot."""
    if cut <= floor:
        return floor
    if (cut - floor) // step > len(slots):  # a long gap (a restart, a silence): scan instead
        times: Iterable[int] = [t for t, slot in slots.items() if t < cut and type(slot) is not bytes]
    else:
        times = range(floor - floor % step, cut, step)
    for t in times:
        slot = slots.get(t)
        if slot is not None and type(slot) is not bytes:
            slots[t] = freezer(slot)  # type: ignore[arg-type]
    return cut


def drop_before(buckets: dict[int, Slot] | SlotRing, floor: int, cut: int, step: int) -> None:
    if (cut - floor) // step > len(buckets):  # a long gap: scanning is cheaper than counting up
        for t in [t for t in buckets if t < cut]:
            del buckets[t]
    else:
        for t in range(floor - floor % step, cut, step):
            buckets.pop(t, None)
