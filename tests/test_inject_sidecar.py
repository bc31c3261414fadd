"""The container `inject` adds: valid, admitted by restricted policies, and configured the way
`python -m app --mode sidecar` reads its settings."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from app.inject import sidecar
from app.options import FLAGS, InjectConfig, SidecarConfig, parse
from tests.inject_support import KUBERNETES_VERSIONS


def made(config: InjectConfig | None = None, native: bool = False, app_name: str | None = "shop") -> dict[str, Any]:
    container = sidecar.container(config or InjectConfig(), target_port=8087, port_name="http", app_name=app_name,
                                  native=native)
    return dict(json.loads(json.dumps(container)))


def in_pod(container: dict[str, Any], native: bool = False) -> dict[str, Any]:
    app = {"name": "app", "image": "app:1"}
    spec = {"containers": [app], "initContainers": [container]} if native else {"containers": [app, container]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


@pytest.mark.parametrize("native", [False, True])
def test_the_container_validates_strictly(native: bool) -> None:
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(in_pod(made(native=native), native), version, strict=True)
    assert ("restartPolicy" in made(native=native)) is native


def test_restricted_pod_security_and_openshift_restricted_v2() -> None:
    """The rules of Kubernetes' "restricted" Pod Security Standard that bind a container, and what
    OpenShift's restricted-v2 SCC refuses (a fixed UID, a host port, added capabilities)."""
    container = made()
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["runAsNonRoot"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"privileged", "runAsUser", "runAsGroup", "procMount", "sysctls"} & set(context)
    assert all("hostPort" not in port for port in container["ports"])
    assert "volumeMounts" not in container


def test_small_requests_and_limits() -> None:
    resources = made()["resources"]
    assert resources == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}


def secrets_and_pod(env: list[dict[str, Any]]) -> dict[str, str]:
    """The environment as the kubelet gives it: the Secret's value, the pod's name and namespace."""
    downward = {"metadata.name": "shop-5d8f9c7b6-x2x1a", "metadata.namespace": "shop-prod"}
    values = {}
    for entry in env:
        if "value" in entry:
            values[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"]:
            values[entry["name"]] = "s3cret"
        else:
            values[entry["name"]] = downward[entry["valueFrom"]["fieldRef"]["fieldPath"]]
    return values


def test_the_sidecar_reads_what_the_container_gives_it() -> None:
    container = made()
    assert container["command"] == ["python", "-m", "app", "--mode", "sidecar"]
    names = [e["name"] for e in container["env"]]
    assert set(names) <= {var for flag in FLAGS["sidecar"] for var in flag.envs}
    config = parse(container["command"][3:], secrets_and_pod(container["env"]))
    assert isinstance(config, SidecarConfig)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config.port == ports["http"] == sidecar.PROXY_PORT
    assert config.admin_port == ports[sidecar.ADMIN_PORT_NAME] == sidecar.ADMIN_PORT
    assert (config.target_port, config.dashboard, config.token) == (8087, "http://mothership:8080", "s3cret")
    assert (config.pod, config.app_name, config.namespace) == ("shop-5d8f9c7b6-x2x1a", "shop", "shop-prod")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        # By number: podman 4.3's `kube play` turns a named probe port into port 0.
        assert container[probe]["httpGet"] == {"path": path, "port": sidecar.ADMIN_PORT}
    assert sidecar.PROMETHEUS_ANNOTATIONS == {"prometheus.io/scrape": "true", "prometheus.io/port": "9901",
                                              "prometheus.io/path": "/metrics"}


def test_a_missing_secret_never_stops_the_pod() -> None:
    (token,) = [e for e in made()["env"] if e["name"] == "DASHBOARD_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "mothership-tokens", "key": "ingest-token", "optional": True}


def test_without_dashboard_token_or_label_those_settings_are_left_out() -> None:
    container = made(InjectConfig(dashboard="", token_secret=None), app_name=None)
    config = parse(container["command"][3:], secrets_and_pod(container["env"]))
    assert isinstance(config, SidecarConfig)
    assert {e["name"] for e in container["env"]} == {"PORT", "TARGET_PORT", "ADMIN_PORT", "POD_NAME", "POD_NAMESPACE"}
    assert (config.dashboard, config.token, config.app_name) == ("", "", "shop")  # the name from the pod's


def test_app_name_prefers_the_recommended_label() -> None:
    assert sidecar.app_name({"app": "a", "app.kubernetes.io/name": "b"}) == "b"
    assert sidecar.app_name({"app": "a"}) == "a"
    assert sidecar.app_name({"tier": "web"}) is None
