"""Objectives per app: defaults, flags and environment, the per-app file, and what a bad one does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.dashboard.alerts.objectives import (
    Objective,
    ObjectiveError,
    Objectives,
    load_objectives,
    parse_latency,
    parse_success,
)
from app.options import DashboardConfig, OptionError, parse
from tests.conftest import ROOT, app_env


def test_defaults() -> None:
    config = parse(["--mode", "dashboard"], {})
    assert isinstance(config, DashboardConfig)
    assert (config.objective_success, config.objective_p99, config.objective_apps) == (0.999, 1000.0, ())
    objective = Objective()
    assert objective.error_budget == pytest.approx(0.001) and objective.latency_budget == pytest.approx(0.01)


@pytest.mark.parametrize(("text", "value"), [("99.9", 0.999), ("99.5%", 0.995), (" 90 ", 0.9), (99, 0.99)])
def test_success_values(text: object, value: float) -> None:
    assert parse_success(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["100", "0", "-1", "abc", "nan", "", True, None, "99.9x"])
def test_bad_success_values(text: object) -> None:
    with pytest.raises(ValueError, match="percentage"):
        parse_success(text)


@pytest.mark.parametrize(("text", "ms"), [("800ms", 800.0), ("1.5s", 1500.0), ("2S", 2000.0), ("250", 250.0),
                                          (300, 300.0)])
def test_latency_values(text: object, ms: float) -> None:
    assert parse_latency(text) == ms


@pytest.mark.parametrize("text", ["0s", "-5ms", "fast", "121s", "inf", True, [1]])
def test_bad_latency_values(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_latency(text)


def test_flags_environment_and_file(tmp_path: Path) -> None:
    file = tmp_path / "objectives.json"
    file.write_text(json.dumps({"shop": {"success": 99.5, "p99": "800ms"}, "search": {"p99": "2s"}}))
    config = parse(["--mode", "dashboard", "--objective-success", "99"],
                   {"OBJECTIVE_P99": "500ms", "OBJECTIVES": str(file)})
    assert isinstance(config, DashboardConfig)
    objectives = Objectives(Objective(config.objective_success, config.objective_p99), config.objective_apps)
    assert objectives.for_app("shop") == Objective(0.995, 800.0)
    assert objectives.for_app("search") == Objective(0.99, 2000.0)  # unnamed fields: the defaults
    assert objectives.for_app("other") == Objective(0.99, 500.0)


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"shop": 99.5}', "app 'shop': must be an object"),
    ('{"shop": {"sucess": 99}}', "app 'shop': unknown field 'sucess'"),
    ('{"shop": {"success": 100}}', "app 'shop': success must be a percentage"),
    ('{"shop": {"p99": "soon"}}', "app 'shop': p99 must be a duration"),
])
def test_bad_files_name_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    file = tmp_path / "objectives.json"
    file.write_text(content)
    with pytest.raises(ObjectiveError, match=message):
        load_objectives(str(file), Objective())
    with pytest.raises(OptionError, match=f"^--objectives: .*{message}"):
        parse(["--mode", "dashboard", "--objectives", str(file)], {})


def test_a_missing_file_is_an_error() -> None:
    with pytest.raises(OptionError, match=r"--objectives: .*cannot read it"):
        parse(["--mode", "dashboard", "--objectives", "/nonexistent/objectives.json"], {})


@pytest.mark.parametrize(("args", "env", "named"), [
    (["--objective-success", "101"], {}, "--objective-success"),
    ([], {"OBJECTIVE_P99": "never"}, "--objective-p99 (from OBJECTIVE_P99)"),
    (["--objectives", "BAD"], {}, "--objectives"),
    (["--alertmanager", "am:9093"], {}, "--alertmanager"),
    ([], {"ALERT_WEBHOOK": "ftp://x"}, "--alert-webhook (from ALERT_WEBHOOK)"),
])
def test_a_bad_objective_stops_the_program_with_one_line(tmp_path: Path, args: list[str], env: dict[str, str],
                                                         named: str) -> None:
    if "BAD" in args:
        (tmp_path / "bad.json").write_text('{"shop": {"success": "lots"}}')
        args = [a.replace("BAD", str(tmp_path / "bad.json")) for a in args]
    result = subprocess.run([sys.executable, "-m", "app", "--mode", "dashboard", "--data", ":memory:", *args],
                            cwd=ROOT, env=app_env(env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert result.stdout == ""


def test_help_lists_the_alert_flags() -> None:
    result = subprocess.run([sys.executable, "-m", "app", "--help"], cwd=ROOT, env=app_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for flag in ("--objective-success", "--objective-p99", "--objectives", "--alertmanager", "--alert-webhook",
                 "--silent-after"):
        assert flag in result.stdout
