"""Shared test support: free ports, and real `python -m app` processes.

Everything runs on 127.0.0.1 with real sockets; nothing is mocked but the
clock, where a test says so.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _session_event_loop() -> Iterator[None]:
    """An event loop of ours as the current one for the whole run, closed at its end.

    Without it the first `io_loop` fixture (pytest-tornado) asks asyncio for the current loop to
    restore later, and asyncio makes one up: current from then on, closed by nobody. The first test
    that drops it (`asyncio.run` ends by setting no loop) let the collector find it unclosed, and its
    ResourceWarning failed whatever test was running then. Held here, it is never collected open."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1",
                  proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until `port` accepts; give up early if `proc` (the server) has exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise TimeoutError(f"the server exited ({proc.returncode}) before {host}:{port} opened") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


class AppProcess:
    """A running `python -m app ...`; output goes to a file the test can read."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.args = list(args)
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", *args], cwd=ROOT, env=env,
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, and SIGKILL if it has not ended within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def app_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process, without settings leaking in from ours."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PORT", "DASHBOARD", "MOTHERSHIP", "DASHBOARD_TOKEN", "DATA_PATH", "MODE",
                        "TARGET_PORT", "TARGET_HOST", "ADMIN_PORT", "POD_NAME", "POD_NAMESPACE", "APP_NAME"}}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@pytest.fixture
def run_app(tmp_path: Path) -> Iterator[object]:
    """`run_app(args, wait_ports=[...], env={...})` starts a real process; all stop at teardown."""
    started: list[AppProcess] = []

    def start(args: Sequence[str], wait_ports: Sequence[int] = (), env: dict[str, str] | None = None,
              timeout: float = 15.0) -> AppProcess:
        proc = AppProcess(args, app_env(env), tmp_path / f"app-{len(started)}.log")
        started.append(proc)
        for port in wait_ports:
            try:
                wait_for_port(port, timeout, proc=proc.proc)
            except TimeoutError:
                raise AssertionError(f"app did not start: {proc.output}") from None
        return proc

    yield start
    for proc in started:
        proc.stop()


@contextmanager
def sample_app(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The project's sample application (`python -m app.demo.sampleapp`) on a free port, stopped afterwards."""
    port = free_port()
    argv = [sys.executable, "-m", "app.demo.sampleapp", "--host", "127.0.0.1", "--port", str(port), *args]
    proc = subprocess.Popen(argv,
                            cwd=ROOT, env=app_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc=proc)
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(10)
