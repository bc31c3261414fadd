"""Real podman pods for tests/test_pods.py: manifests made ready to play on this
machine, `podman kube play` / `kube down`, and what the host reads from them.

Standard library and PyYAML only, so the same tests run inside the cgroup v2
VM (deploy/podman/vm/) with Debian's python3-pytest and python3-yaml.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

ROOT = Path(__file__).resolve().parent.parent
PODMAN_DIR = ROOT / "deploy" / "podman"
MANIFESTS = PODMAN_DIR / "pods"
IMAGE = os.environ.get("IMAGE", "localhost/mothership:latest")
# Every pod a run plays carries this label, so a leftover can be found and
# taken down by deploy/podman/pod-test.sh even if the test process was killed.
RUN_LABEL = "mothership.test/run"
# How many times slower than a native run this one is: every timeout here and in
# tests/test_pods.py is multiplied by it (the emulated cgroup v2 VM sets 4).
SLOW = float(os.environ.get("POD_TEST_SLOW", "1"))

T = TypeVar("T")


# --- podman ------------------------------------------------------------------


def podman_env() -> dict[str, str]:
    """Our containers.conf unless the caller named one (the VM has its own)."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(PODMAN_DIR / "containers.conf"))
    return env


def podman(*args: str, check: bool = True, timeout: float = 120,
           stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `podman ARGS` (given `timeout` seconds times SLOW); a failure raises with podman's own message."""
    done = subprocess.run(["podman", *args], env=podman_env(), input=stdin, capture_output=True,
                          text=True, timeout=timeout * SLOW, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def podman_problem() -> str | None:
    """Why pods cannot run here, or None when they can."""
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman runc; .ci/run installs them)"
    if os.geteuid() != 0:
        return "the pod tests run podman as root (cgroup limits and published ports)"
    try:
        info = podman("info", "--format", "json", timeout=60)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"podman cannot run here: {exc}"
    if json.loads(info.stdout).get("host", {}).get("ociRuntime", {}).get("name") is None:
        return "podman has no OCI runtime (apt-get install runc)"
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        return f"the image {IMAGE} is missing: `make pod-test` builds it (deploy/podman/image.sh)"
    return None


def host_cgroup_version() -> str:
    """What a container on this machine gets: v2 on a unified mount, else v1."""
    return "v2" if Path("/sys/fs/cgroup/cgroup.controllers").is_file() else "v1"


# --- manifests ---------------------------------------------------------------


def load_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Pod or a workload's pod template."""
    if doc["kind"] == "Pod":
        return dict(doc["spec"])
    return dict(doc["spec"]["template"]["spec"])


def container(doc: dict[str, Any], name: str) -> dict[str, Any]:
    for item in pod_spec(doc)["containers"]:
        if item["name"] == name:
            return dict(item)
    raise KeyError(f"{doc['kind']} {doc['metadata']['name']} has no container {name!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def publish_on_loopback(doc: dict[str, Any]) -> dict[str, int]:
    """Gives every container port a free host port on 127.0.0.1.

    podman publishes each containerPort on the host, by default at the same
    number on every address: pods would clash with each other and with
    anything on 8080, and be reachable from outside. Returns {port name or
    number: host port}.
    """
    published: dict[str, int] = {}
    for item in pod_spec(doc)["containers"]:
        for port in item.get("ports", []):
            port["hostIP"] = "127.0.0.1"
            port["hostPort"] = free_port()
            published[str(port.get("name") or port["containerPort"])] = port["hostPort"]
            published[str(port["containerPort"])] = port["hostPort"]
    return published


def rename_secret(doc: dict[str, Any], old: str, new: str) -> None:
    """Points every `secretKeyRef` to Secret `old` at `new`."""
    for item in pod_spec(doc)["containers"]:
        for env in item.get("env", []):
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref and ref.get("name") == old:
                ref["name"] = new


def slow_probes(doc: dict[str, Any], timeout: int) -> None:
    """Gives every probe `timeout` seconds to answer. podman runs a liveness
    probe as a healthcheck and restarts the container when it fails; in the
    emulated VM, a `curl` often takes longer than the 1 s default."""
    for item in pod_spec(doc)["containers"]:
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            if item.get(kind):
                item[kind]["timeoutSeconds"] = timeout


def set_env(item: dict[str, Any], name: str, value: str) -> None:
    """Sets a container's variable to a plain value, replacing any `valueFrom`."""
    env = item.setdefault("env", [])
    env[:] = [e for e in env if e["name"] != name]
    env.append({"name": name, "value": value})


def rename(doc: dict[str, Any], name: str, run: str) -> None:
    """A name unique to this run, and the run's label on the pods."""
    doc["metadata"]["name"] = name
    template = doc if doc["kind"] == "Pod" else doc["spec"]["template"]
    template.setdefault("metadata", {}).setdefault("labels", {})[RUN_LABEL] = run


def cpu_cores(quantity: str | float) -> float:
    """A Kubernetes CPU quantity in cores: `500m` -> 0.5, `2` -> 2.0."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


_MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def memory_bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity in bytes: `256Mi` -> 268435456."""
    match = re.fullmatch(r"(\d+)([KMGT]i|[kMGT])?", str(quantity))
    if match is None:
        raise ValueError(f"not a memory quantity this test knows: {quantity!r}")
    return int(match.group(1)) * _MEMORY_UNITS.get(match.group(2) or "", 1)


# --- playing pods ------------------------------------------------------------


class PlayedPods:
    """Manifests played with `podman kube play` on a network of their own;
    `down()` takes them down (SIGTERM, then the grace period) and the network
    with them. Used as a context manager so an error or Ctrl-C still does it."""

    def __init__(self, run: str, workdir: Path) -> None:
        self.run = run
        self.network = f"mothership-test-{run}"
        self.workdir = workdir
        self.played: list[Path] = []
        self.secrets: list[str] = []

    def __enter__(self) -> PlayedPods:
        podman("network", "create", self.network)
        return self

    def __exit__(self, *exc: object) -> None:
        self.down_all()

    def secret(self, name: str, data: dict[str, str]) -> None:
        """A Secret for `secretKeyRef`: podman 4.3 reads a podman secret
        whose content is JSON, each key's value in base64."""
        content = json.dumps({key: base64.b64encode(value.encode()).decode() for key, value in data.items()})
        podman("secret", "create", name, "-", stdin=content)
        self.secrets.append(name)

    def play(self, name: str, docs: list[dict[str, Any]]) -> Path:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self.played.append(path)
        podman("kube", "play", "--network", self.network, str(path), timeout=180)
        return path

    def stop(self, pod: str, timeout: int = 10, first: tuple[str, ...] = ()) -> list[str]:
        """Stops a pod's containers as the kubelet does: SIGTERM to each
        container but the infra one, SIGKILL only after `timeout` seconds.
        Returns podman's errors (none when all stopped).

        Not `podman kube down` alone: podman 4.3 kills at once there
        (containers/podman#19135). Not `podman pod stop`: it stops the infra
        container too, and with shareProcessNamespace that is PID 1 of the
        pod, whose exit makes the kernel kill every other process mid-drain.
        The containers in `first` are stopped one at a time before the rest:
        with a shared PID namespace, podman 4.3 stopping two containers at
        once sent a second SIGTERM, or a SIGKILL, to processes that were
        exiting by themselves (2 of 6 tries here)."""
        listed = podman("ps", "--filter", f"pod={pod}", "--format", "{{.Names}} {{.IsInfra}}").stdout
        names = [line.split()[0] for line in listed.splitlines() if line.split()[1:] == ["false"]]
        errors = []
        for group in [[name] for name in first if name in names] + [[n for n in names if n not in first]]:
            if group:
                done = podman("stop", "-t", str(timeout), *group, check=False, timeout=timeout / SLOW + 60)
                errors += [done.stderr.strip()] if done.returncode else []
        return errors

    def down(self, path: Path) -> subprocess.CompletedProcess[str]:
        """`podman kube down`: removes what the manifest made."""
        if path in self.played:
            self.played.remove(path)
        return podman("kube", "down", str(path), check=False, timeout=120)

    def down_all(self) -> None:
        for pod in self.pods():
            self.stop(pod)
        for path in list(reversed(self.played)):
            self.down(path)
        # Whatever a failed play left half-made, found by the run's label.
        for pod in podman("pod", "ps", "-q", "--filter", f"label={RUN_LABEL}={self.run}", check=False).stdout.split():
            podman("pod", "rm", "-f", "-t", "5", pod, check=False, timeout=120)
        podman("network", "rm", "-f", self.network, check=False)
        for secret in self.secrets:
            podman("secret", "rm", secret, check=False)

    def pods(self) -> list[str]:
        return podman("pod", "ps", "--format", "{{.Name}}", "--filter", f"label={RUN_LABEL}={self.run}",
                      check=False).stdout.split()

    def leftovers(self) -> list[str]:
        """Containers of this run still present (there must be none after down)."""
        found = podman("ps", "-a", "--format", "{{.Names}}", "--filter", f"label={RUN_LABEL}={self.run}",
                       check=False).stdout
        return found.split()


# --- reading from the host ---------------------------------------------------


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET from the host (`timeout` times SLOW); an HTTP error status is returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout * SLOW) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def get_json(url: str) -> Any:
    status, body = http_get(url)
    if status != 200:
        raise AssertionError(f"GET {url}: {status} {body[:200]!r}")
    return json.loads(body)


def wait_until(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Calls `probe` until it returns something other than None (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value is not None:
                return value
        except (OSError, ValueError, AssertionError, KeyError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def pod_resource(dashboard: str, pod: str) -> dict[str, Any] | None:
    """The dashboard's latest resource sample of `pod`, or None while it has none."""
    for row in get_json(f"{dashboard}/resources"):
        if row.get("pod") == pod and row.get("resource"):
            return dict(row)
    return None


def iter_stats(dashboard: str, pod: str) -> Iterator[dict[str, Any]]:
    """The recent samples the dashboard holds for `pod`."""
    for row in get_json(f"{dashboard}/stats"):
        if row.get("pod") == pod:
            yield from row.get("stats", [])
