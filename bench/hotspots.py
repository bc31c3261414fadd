"""Where a profiled process spent its time, from py-spy's collapsed stacks (`py-spy record -f raw`).

Pure: `hotspots` reads lines of `frame;frame;...;leaf count` (a frame is
`function (file)`) and ranks frames by own time (the leaf of a sample), by
inclusive time (anywhere in a sample), and files by own time.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

_FILE = re.compile(r"\(([^()]*)\)$")


@dataclass(frozen=True)
class Hotspots:
    samples: int
    own: list[tuple[str, int]]  # frame, samples where it was the leaf; most first
    inclusive: list[tuple[str, int]]  # frame, samples it appears in, the trunk left out; most first
    files: list[tuple[str, int]]  # file, samples whose leaf is in it; most first


def _file_of(frame: str) -> str:
    found = _FILE.search(frame)
    return found.group(1) if found else frame


def hotspots(lines: Iterable[str], top: int = 15) -> Hotspots:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    files: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        files[_file_of(frames[-1])] += count
        for frame in set(frames):  # recursion counts once per sample
            inclusive[frame] += count
    # The trunk (entry point, event loop) is in about as many samples as the
    # most common frame: it says nothing, so it is left out.
    widest = max(inclusive.values(), default=0)
    telling = [(frame, n) for frame, n in inclusive.most_common() if n < 0.98 * widest]
    return Hotspots(total, own.most_common(top), telling[:top], files.most_common(top))


def render(spots: Hotspots, title: str) -> str:
    if not spots.samples:
        return f"{title}: no samples"

    def block(heading: str, rows: list[tuple[str, int]]) -> list[str]:
        return [f"  {heading}:", *(f"    {100 * n / spots.samples:5.1f}%  {name}" for name, n in rows)]

    return "\n".join([f"{title}: {spots.samples} busy samples",
                      *block("own time by file", spots.files[:8]),
                      *block("own time", spots.own),
                      *block("inclusive time (below the event loop)", spots.inclusive)])
