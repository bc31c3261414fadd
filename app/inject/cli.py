"""`python -m app --mode inject [flags] [FILE ...]`: manifests in (files, or standard input),
manifests out on standard output, notes on standard error. On bad input: one line on standard
error, exit status 2, and nothing on standard output.
"""

from __future__ import annotations

import sys
from typing import TextIO

from app.inject.documents import InjectError
from app.inject.manifests import run as transform
from app.options import InjectConfig

PROG = "python -m app"


def run(config: InjectConfig, stdin: TextIO | None = None, stdout: TextIO | None = None,
        stderr: TextIO | None = None) -> int:
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    try:
        sources = [_read(name, stdin) for name in config.files or ("-",)]
        output, notes = transform(sources, config)
    except InjectError as exc:
        print(f"{PROG}: error: {exc}", file=stderr)
        return 2
    for note in notes:
        print(f"{PROG}: note: {note}", file=stderr)
    stdout.write(output)
    stdout.flush()
    return 0


def _read(name: str, stdin: TextIO) -> tuple[str, str]:
    if name == "-":
        try:
            return "standard input", stdin.read()
        except UnicodeDecodeError:
            raise InjectError("standard input: not text (UTF-8): give Kubernetes manifests in YAML or JSON") from None
    try:
        with open(name, encoding="utf-8") as file:
            return name, file.read()
    except UnicodeDecodeError:
        raise InjectError(f"{name}: not text (UTF-8): give Kubernetes manifests in YAML or JSON") from None
    except OSError as exc:
        raise InjectError(f"{name}: cannot read it ({exc.strerror}): give a manifest file, or - for standard input") \
            from None
