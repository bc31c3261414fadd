"""What the in-process CPU benches share: their `--samples` / `--rounds` / `--quick` command line.

Each times pure code on prepared samples with `time.process_time`, keeping the
best of a few rounds (the least disturbed on a shared machine).
"""

from __future__ import annotations

import argparse


def samples_and_rounds(prog: str, description: str, argv: list[str] | None,
                       samples: int = 20_000, rounds: int = 7) -> tuple[int, int]:
    """How many samples a round and how many rounds, from the command line (`--quick`: 2,000 and 2)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--samples", type=int, default=samples)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--quick", action="store_true", help="2,000 samples, 2 rounds")
    args = parser.parse_args(argv)
    return (2000, 2) if args.quick else (args.samples, args.rounds)
