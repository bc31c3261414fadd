"""Shared by the inject tests: the fixture manifests, the real CLI as a subprocess, and strict validation."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tests.conftest import ROOT, app_env

MANIFESTS = ROOT / "tests" / "manifests" / "inject"
# OpenShift 4.16 runs Kubernetes 1.29 (the first with native sidecars on by default); the newest catches deprecations.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def cli(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> Result:
    """`python -m app --mode inject ARGS`, for real."""
    proc = subprocess.run([sys.executable, "-m", "app", "--mode", "inject", *args], input=stdin, cwd=cwd,
                          env=app_env(), capture_output=True, text=True, timeout=60)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def fixture(name: str) -> str:
    return (MANIFESTS / name).read_text()


def validate_all(text: str, versions: Sequence[str] = KUBERNETES_VERSIONS) -> list[dict[str, Any]]:
    """Every object of the stream validated strictly; an OpenShift DeploymentConfig's pod template is
    validated as a Deployment's (the schemas hold no OpenShift kinds). Returns the objects."""
    found = []
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        for obj in doc["items"] if doc["kind"].endswith("List") else [doc]:
            found.append(obj)
            checked = obj
            if obj["kind"] == "DeploymentConfig":
                checked = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": obj["metadata"],
                           "spec": {"selector": {"matchLabels": obj["spec"]["selector"]},
                                    "template": copy.deepcopy(obj["spec"]["template"])}}
            for version in versions:
                kubernetes_validate.validate(checked, version, strict=True)
    return found


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "Pod":
        return dict(obj["spec"])
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(obj["spec"]["template"]["spec"])


def pod_annotations(obj: dict[str, Any]) -> dict[str, str]:
    if obj["kind"] == "Pod":
        return dict(obj["metadata"].get("annotations", {}))
    template = obj["spec"]["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob" else obj["spec"]["template"]
    return dict(template["metadata"].get("annotations", {}))


def containers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = pod_spec(obj)
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}
