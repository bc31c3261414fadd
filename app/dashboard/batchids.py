"""The batch ids a pod sent lately, for deduplication: a ring of 8-byte digests.

A retried batch comes again with its id; one seen before is acknowledged and
not counted twice. The ids themselves (often 40-70 characters each) took 29 kB
of every pod's memory as an ordered dict of strings; their BLAKE2b digests in
one bytearray take 2 kB. Two ids share a 64-bit digest with a chance near
2**-64 per comparison: a false duplicate is far less likely than a lost packet.
"""

from __future__ import annotations

from hashlib import blake2b

BATCH_IDS = 256  # batch ids remembered per pod (20 minutes of 5-second batches)
_SIZE = 8  # bytes per digest


def digest(batch: str) -> bytes:
    return blake2b(batch.encode("utf-8", "surrogatepass"), digest_size=_SIZE).digest()


class BatchIds:
    """The last BATCH_IDS ids added (as digests), oldest overwritten first."""

    __slots__ = ("_next", "_ring")

    def __init__(self) -> None:
        self._ring = bytearray()  # grows to BATCH_IDS digests, then wraps
        self._next = 0  # where the next digest goes once full

    def __contains__(self, batch: str) -> bool:
        return self._find(digest(batch)) >= 0

    def _find(self, key: bytes) -> int:
        ring = self._ring
        at = ring.find(key)
        while at >= 0 and at % _SIZE:  # a match across two digests: look on
            at = ring.find(key, at + 1)
        return at

    def add(self, batch: str | bytes) -> bool:
        """Remember `batch` (an id, or its digest as history keeps it); False (nothing changes) if remembered."""
        key = batch if isinstance(batch, bytes) else digest(batch)
        if self._find(key) >= 0:
            return False
        ring = self._ring
        if len(ring) < BATCH_IDS * _SIZE:
            ring += key
        else:
            at = self._next * _SIZE
            ring[at:at + _SIZE] = key
            self._next = (self._next + 1) % BATCH_IDS
        return True

    def __len__(self) -> int:
        return len(self._ring) // _SIZE
