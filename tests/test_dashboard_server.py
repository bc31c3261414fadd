"""The dashboard process: `python -m app --mode dashboard` starts, serves, stops cleanly, and fails clearly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import ujson

from tests.conftest import ROOT, app_env, free_port


def test_starts_prints_its_url_and_stops_on_sigterm(run_app: Any) -> None:
    port = free_port()
    proc = run_app(["--mode", "dashboard", "--port", str(port), "--host", "127.0.0.1", "--data", ":memory:"],
                   wait_ports=[port])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert ujson.loads(response.read())["status"] == "ok"
    started = time.monotonic()
    assert proc.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    assert f"http://127.0.0.1:{port}/" in proc.log_path.read_text()


def test_settings_come_from_the_environment_too(run_app: Any, tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "env.sqlite3"
    proc = run_app(["--mode", "dashboard", "--host", "127.0.0.1"], wait_ports=[port],
                   env={"PORT": str(port), "DATA_PATH": str(data), "DASHBOARD_TOKEN": "tok"})
    request = urllib.request.Request(f"http://127.0.0.1:{port}/resources", method="POST",
                                     data=b'{"pod": "a-1-x", "resource": {}}',
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=5)
        raise AssertionError("posted without the token")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
    assert proc.stop(signal.SIGTERM) == 0
    assert data.exists()


def run_to_exit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", "--mode", "dashboard", "--host", "127.0.0.1", *args],
                          cwd=ROOT, env=app_env(), capture_output=True, text=True, timeout=30)


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_to_exit("--port", str(busy.getsockname()[1]), "--data", ":memory:")
    assert result.returncode == 1
    assert "--port: cannot listen" in result.stderr


def test_an_unusable_data_path_is_a_clear_error(tmp_path: Path) -> None:
    result = run_to_exit("--port", str(free_port()), "--data", str(tmp_path / "missing-dir" / "x.sqlite3"))
    assert result.returncode == 2
    assert "--data: cannot use" in result.stderr
