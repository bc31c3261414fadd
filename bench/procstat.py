"""What Linux says about a process and its descendants: CPU seconds, resident memory, open files.

Read from /proc, so the figures are the kernel's own and cost nothing to the
process measured. Every reader accepts a vanished process and counts it as zero.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name, which may hold spaces and parentheses."""
    text = (PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2:].split()


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (nginx's workers, a shell's child)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time the processes have used so far."""
    total = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLOCK_TICKS


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident memory of the processes, summed."""
    total = 0
    for pid in pids:
        try:
            total += int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):
            continue
    return total


def open_fds(pid: int) -> int:
    """Open file descriptors (sockets included) of one process; 0 if it is gone."""
    try:
        return len(os.listdir(PROC / str(pid) / "fd"))
    except OSError:
        return 0


def alive(pid: int) -> bool:
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def set_affinity(pids: Iterable[int], cores: Iterable[int]) -> None:
    """Move every thread of the processes onto `cores` (as `taskset -a -p` does)."""
    allowed = set(cores)
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(PROC / str(pid) / "task")]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, allowed)
            except OSError:
                continue  # the thread ended meanwhile


def memory_parts(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes of one process, from /proc/PID/smaps_rollup: the heap, stacks
    and arenas it wrote, against the shared libraries and code it mapped; (0, 0) if it is gone."""
    fields: dict[str, int] = {}
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("Rss", "Anonymous"):
                fields[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return 0, 0
    anonymous = fields.get("Anonymous", 0)
    return anonymous, max(0, fields.get("Rss", 0) - anonymous)
