"""Where a profiled process spent its time, from py-spy's collapsed stacks (`py-spy record -f raw`).

Pure: `hotspots` reads lines of `frame;frame;...;leaf count` and ranks frames
by own time (the leaf of a sample) and by inclusive time (anywhere in a sample).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Hotspots:
    samples: int
    own: list[tuple[str, int]]  # frame, samples where it was the leaf; most first
    inclusive: list[tuple[str, int]]  # frame, samples it appears in (under 90% of all); most first


def hotspots(lines: Iterable[str], top: int = 15) -> Hotspots:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):  # recursion counts once per sample
            inclusive[frame] += count
    # Frames in nearly every sample are the event loop and the entry point: they say nothing.
    telling = [(frame, n) for frame, n in inclusive.most_common() if n < 0.9 * total]
    return Hotspots(total, own.most_common(top), telling[:top])


def render(spots: Hotspots, title: str) -> str:
    if not spots.samples:
        return f"{title}: no samples"
    lines = [f"{title}: {spots.samples} busy samples", "  own time:"]
    lines += [f"    {100 * n / spots.samples:5.1f}%  {frame}" for frame, n in spots.own]
    lines.append("  inclusive time:")
    lines += [f"    {100 * n / spots.samples:5.1f}%  {frame}" for frame, n in spots.inclusive]
    return "\n".join(lines)
