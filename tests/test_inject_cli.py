"""`python -m app --mode inject` as users run it: a real process, files or standard input in, manifests
out; every kind of bad input ends with one line on standard error, exit status 2 and nothing written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, app_env
from tests.inject_support import MANIFESTS, cli, containers, fixture, validate_all

PLAIN = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
spec:
  selector:
    matchLabels: {app: shop}
  template:
    metadata:
      labels: {app: shop}
    spec:
      containers:
        - name: shop
          image: shop:1
          ports:
            - {name: http, containerPort: 8080}
"""


def test_standard_input_to_standard_output() -> None:
    result = cli(stdin=PLAIN)
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    (deployment,) = validate_all(result.stdout)
    assert set(containers(deployment)) == {"shop", "mothership-sidecar"}


def test_files_and_dash_for_standard_input_are_read_in_order(tmp_path: Path) -> None:
    first = tmp_path / "first.yaml"
    first.write_text(PLAIN)
    result = cli(str(first), "-", str(MANIFESTS / "deployment-sidecars.yaml"),
                 stdin=PLAIN.replace("shop", "cart"))
    assert result.code == 0, result.stderr
    objects = validate_all(result.stdout)
    assert [o["metadata"]["name"] for o in objects] == ["shop", "cart", "shop", "shop", "shop-settings"]
    assert result.stdout.count("\n---\n") == 4  # a file's first document kept apart from the last one's end


def test_the_mothership_command_takes_inject_as_its_first_word() -> None:
    script = Path(sys.executable).parent / "mothership"
    if not script.exists():
        pytest.skip("the mothership console script is not installed in this environment")
    proc = subprocess.run([str(script), "inject", "--dashboard", "http://dash.monitoring:8080", "-"], input=PLAIN,
                          env=app_env(), capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    (deployment,) = validate_all(proc.stdout)
    env = {e["name"]: e.get("value") for e in containers(deployment)["mothership-sidecar"]["env"]}
    assert env["DASHBOARD"] == "http://dash.monitoring:8080"


def test_notes_go_to_standard_error_and_the_output_stays_clean() -> None:
    result = cli("--target-port", "8080", str(MANIFESTS / "deploymentconfig.yaml"))
    assert result.code == 0
    assert result.stderr.splitlines() == [
        f"python -m app: note: {MANIFESTS / 'deploymentconfig.yaml'} document 2, Service/frontend: "
        "targetPort 8080 -> 9900 (the sidecar's)"]
    assert "note" not in result.stdout


def test_uninject_through_the_cli_gives_back_the_input() -> None:
    original = fixture("deployment-sidecars.yaml")
    injected = cli(stdin=original)
    assert injected.code == 0
    assert cli("--uninject", stdin=injected.stdout).stdout == original


BROKEN_DEPLOYMENT = PLAIN.replace("""      containers:
        - name: shop
          image: shop:1
          ports:
            - {name: http, containerPort: 8080}
""", "      containers: []\n")


@pytest.mark.parametrize(("args", "stdin", "expected"), [
    ((), "kind: Deployment\nspec: [unclosed\n", r"standard input document 1: not YAML \(.* at line 3\)"),
    ((), "{\"kind\": \"Pod\", \"spec\": {\"containers\": [}}", "standard input document 1: not YAML"),
    ((), BROKEN_DEPLOYMENT, "Deployment/shop: the pod spec has no containers"),
    ((), "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", "Pod/p: the object has no pod spec"),
    (("--target-port", "http"),
     PLAIN.replace("containerPort: 8080}", "containerPort: 8080}\n            - {name: adm, containerPort: 9901}"),
     "declares port 9901, which the sidecar needs"),
    ((), PLAIN.replace("8080", "9900"), "the app listens on 9900, which the sidecar needs"),
    ((), PLAIN.replace("{name: http, containerPort: 8080}",
                       "{containerPort: 8080}\n            - {containerPort: 8443}"),
     r"several ports \(shop:8080, shop:8443\): choose the one to front with --target-port"),
    (("--target-port", "grpc"), PLAIN, "no container port is named 'grpc'"),
    ((), PLAIN.replace("          ports:\n            - {name: http, containerPort: 8080}\n", ""),
     "no container declares a port: say which port the app listens on with --target-port"),
    ((), PLAIN + "        - name: mothership-sidecar\n          image: old\n",
     "has a mothership-sidecar container but no mothership/injected annotation"),
    ((), PLAIN.replace("labels: {app: shop}\n    spec:",
                       "labels: {app: shop}\n      annotations: {mothership/injected: 'x'}\n    spec:"),
     "its mothership/injected annotation is not one inject wrote"),
    (("/no/such/file.yaml",), "", r"/no/such/file.yaml: cannot read it \(No such file or directory\)"),
    (("--token-secret", "Bad Name/key"), PLAIN, "--token-secret: must be SECRET/KEY"),
    (("--target-port", "0"), PLAIN, "--target-port: must be a port number"),
    (("--image", " "), PLAIN, "--image: must be an image name"),
    (("--dashboard", "dash:8080"), PLAIN, "--dashboard: must be an http:// or https:// URL"),
    (("--port", "8080"), PLAIN, "--port: not used in inject mode"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(args: tuple[str, ...], stdin: str, expected: str) -> None:
    result = cli(*args, stdin=stdin)
    assert (result.code, result.stdout) == (2, ""), result
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("python -m app: error: ")
    assert re.search(expected, result.stderr), result.stderr


def test_a_bad_document_late_in_the_input_stops_everything(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(PLAIN)
    bad.write_bytes(b"kind: Pod\n\xff\xfe")
    result = cli(str(good), str(bad))
    assert (result.code, result.stdout) == (2, "")
    assert result.stderr == f"python -m app: error: {bad}: not text (UTF-8): " \
                            "give Kubernetes manifests in YAML or JSON\n"
    later = cli(str(good), stdin=None)
    assert later.code == 0 and yaml.safe_load(later.stdout)["kind"] == "Deployment"
