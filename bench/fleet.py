"""The processes a benchmark starts, and the promise that every one of them stops.

A `Fleet` starts each child in its own session (so a child's own children stop
with it), optionally pinned to CPU cores with `taskset`, with its output in a
log file; leaving the `with` block, by any route including Ctrl-C or SIGTERM,
terminates them all, then kills what is left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType

ROOT = Path(__file__).resolve().parent.parent


class Fleet:
    """A group of child processes that all stop when the block ends."""

    def __init__(self, keep_dir: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mothership-bench-"))
        self.dir.chmod(0o755)  # nginx workers may run as another user
        self._keep_dir = keep_dir
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._old_handlers: dict[int, object] = {}

    def __enter__(self) -> Fleet:
        # SIGTERM and SIGHUP become exceptions so the `with` block unwinds
        # and stops the children, as Ctrl-C already does.
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, _raise_exit)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop_all()
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        if not self._keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, name: str, argv: Sequence[str], cores: Sequence[int] = (), env: dict[str, str] | None = None,
              cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        """Start `argv` (pinned to `cores` when given); its output goes to `<dir>/<name>.log`."""
        command = list(argv)
        if cores and shutil.which("taskset"):
            command = ["taskset", "-c", ",".join(map(str, cores)), *command]
        with open(self.log_path(name), "wb") as log:
            proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self._procs.append((name, proc))
        return proc

    def log_path(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """SIGTERM the child's whole session, then SIGKILL it if it lingers."""
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        # The leader may be gone while its children linger (nginx workers).
        _signal_group(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(5)
        self._procs = [(n, p) for n, p in self._procs if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(self._procs):
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        for _, proc in list(self._procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            _signal_group(proc.pid, signal.SIGKILL)
            if proc.poll() is None:
                proc.wait(5)
        self._procs.clear()


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def python_argv(module: str, *args: str) -> list[str]:
    """`python -m module args` with this interpreter (the project's venv)."""
    return [sys.executable, "-m", module, *args]
