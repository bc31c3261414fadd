"""The container `inject` adds, and the names and numbers it takes in the pod.

It runs `python -m app --mode sidecar` in front of the app's port, reports to the dashboard
with the ingest token from a Secret, exposes its admin port to the kubelet's probes and to
Prometheus, and asks for nothing a restricted pod may not have (OpenShift's `restricted-v2`
SCC, Kubernetes' "restricted" Pod Security Standard).
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml.comments import CommentedMap

from app.inject.documents import flow, mapping, quoted
from app.options import InjectConfig

CONTAINER = "mothership-sidecar"
PROXY_PORT = 9900  # where the pod's clients now connect; beside the admin port, unlikely to be an app's
ADMIN_PORT = 9901  # /metrics, /healthz, /readyz (the sidecar's default)
PROXY_PORT_NAME = "ms-proxy"  # when the app's port had no name to take over
ADMIN_PORT_NAME = "ms-admin"
PORTS = {PROXY_PORT, ADMIN_PORT}

# On the pod template: Prometheus scrapes the sidecar's admin port by these.
PROMETHEUS_ANNOTATIONS: dict[str, str] = {
    "prometheus.io/scrape": quoted("true"),
    "prometheus.io/port": quoted(str(ADMIN_PORT)),
    "prometheus.io/path": "/metrics",
}
# `kubectl logs` and `kubectl exec` pick the app, not the sidecar, when no -c is given.
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


def container(config: InjectConfig, *, target_port: int, port_name: str, app_name: str | None,
              native: bool) -> CommentedMap:
    """The sidecar container; `native` makes it a Kubernetes 1.29 sidecar (an init container that
    keeps running), which lets a Job's pod end when its work does."""
    env: list[CommentedMap] = [
        mapping(name="PORT", value=quoted(str(PROXY_PORT))),
        mapping(name="TARGET_PORT", value=quoted(str(target_port))),
        mapping(name="ADMIN_PORT", value=quoted(str(ADMIN_PORT))),
    ]
    if config.dashboard:
        env.append(mapping(name="DASHBOARD", value=config.dashboard))
    if config.token_secret:
        secret, key = config.token_secret
        # optional: a missing Secret leaves the sidecar unauthenticated (its posts refused and
        # counted) rather than the whole pod unable to start.
        env.append(mapping(name="DASHBOARD_TOKEN", valueFrom=mapping(
            secretKeyRef=mapping(name=secret, key=key, optional=True))))
    env.append(mapping(name="POD_NAME", valueFrom=mapping(fieldRef=mapping(fieldPath="metadata.name"))))
    env.append(mapping(name="POD_NAMESPACE", valueFrom=mapping(fieldRef=mapping(fieldPath="metadata.namespace"))))
    if app_name:
        env.append(mapping(name="APP_NAME", value=app_name))
    result = mapping(
        name=CONTAINER,
        image=config.image,
        command=flow([quoted(word) for word in ("python", "-m", "app", "--mode", "sidecar")]),
        env=env,
        ports=[
            mapping(name=port_name, containerPort=PROXY_PORT, protocol="TCP"),
            mapping(name=ADMIN_PORT_NAME, containerPort=ADMIN_PORT, protocol="TCP"),
        ],
        # /healthz: the sidecar runs; /readyz: the app behind it accepts connections. The port by
        # number: Kubernetes takes a name or a number, podman 4.3's `kube play` only a number.
        readinessProbe=mapping(httpGet=mapping(path="/readyz", port=ADMIN_PORT), periodSeconds=5),
        livenessProbe=mapping(httpGet=mapping(path="/healthz", port=ADMIN_PORT),
                              initialDelaySeconds=5, periodSeconds=10, failureThreshold=6),
        # One Python process: at most one core; about 40 MB under load plus its sample buffer.
        resources=mapping(requests=mapping(cpu="50m", memory="64Mi"), limits=mapping(cpu=quoted("1"), memory="128Mi")),
        securityContext=mapping(
            allowPrivilegeEscalation=False,
            runAsNonRoot=True,
            capabilities=mapping(drop=flow([quoted("ALL")])),
            seccompProfile=mapping(type="RuntimeDefault"),
        ),
    )
    if native:
        result["restartPolicy"] = "Always"
    return result


def app_name(labels: dict[str, str]) -> str | None:
    """The app the dashboard groups the pod under: the recommended label, else the common one."""
    return labels.get("app.kubernetes.io/name") or labels.get("app") or None


def is_sidecar(entry: Any) -> bool:
    return isinstance(entry, dict) and entry.get("name") == CONTAINER
