"""`app.dashboard.trim`: freed heap pages go back to the system (glibc), so resident memory follows use."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from app.dashboard.trim import AVAILABLE, trim


def heap_kib() -> int:
    """Resident KiB of this process's [heap] mapping (glibc's main arena)."""
    lines = Path("/proc/self/smaps").read_text().splitlines()
    total, inside = 0, False
    for line in lines:
        head = line.split()
        if "-" in head[0] and not head[0].endswith(":"):
            inside = head[-1] == "[heap]"
        elif inside and head[0] == "Rss:":
            total += int(head[1])
    return total


@pytest.mark.skipif(not AVAILABLE or not sys.platform.startswith("linux"), reason="glibc's malloc_trim only")
def test_freed_heap_goes_back_after_a_trim() -> None:
    # Many mid-sized strings (past pymalloc's 512 bytes: glibc's heap), every other one kept: the heap
    # cannot shrink from its top, its freed pages stay resident until trimmed.
    strings = [os.urandom(2000).hex() for _ in range(40_000)]
    kept = strings[::50]
    del strings
    before = heap_kib()
    trim()
    after = heap_kib()
    assert before - after > 40_000, (before, after)  # most of the ~150 MiB freed comes back
    assert all(len(s) == 4000 for s in kept)
