"""Where pods are described: the pod template of every kind that makes pods, found in plain
documents and inside `List`s. Each is a `Workload`: the object, its pod template's metadata
and spec, and the facts injection needs (name, namespace, labels, run to completion or not).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from app.inject.documents import InjectError

Obj = MutableMapping[str, Any]

# Where each kind keeps its pod template; a Pod is its own.
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "DeploymentConfig": ("spec", "template"),  # OpenShift's apps.openshift.io/v1
}


def name_of(obj: Obj) -> str:
    """`Deployment/shop`, as kubectl names objects."""
    metadata = obj.get("metadata")
    name = "?"
    if isinstance(metadata, MutableMapping):
        name = str(metadata.get("name") or metadata.get("generateName") or "?")
    return f"{obj.get('kind')}/{name}"


def namespace_of(obj: Obj) -> str | None:
    metadata = obj.get("metadata")
    if isinstance(metadata, MutableMapping) and metadata.get("namespace"):
        return str(metadata["namespace"])
    return None


@dataclass
class Workload:
    obj: Obj
    where: str  # "deploy.yaml document 2, Deployment/shop"
    template: Obj  # holds the pod's `metadata` and `spec`

    @property
    def spec(self) -> Obj:
        spec: Obj = self.template["spec"]
        return spec

    @property
    def containers(self) -> list[Obj]:
        return list(self.spec["containers"])

    @property
    def labels(self) -> dict[str, str]:
        metadata = self.template.get("metadata")
        labels = metadata.get("labels") if isinstance(metadata, MutableMapping) else None
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, MutableMapping) else {}

    @property
    def namespace(self) -> str | None:
        return namespace_of(self.obj)

    @property
    def runs_to_completion(self) -> bool:
        """Job pods end when their work does: a plain sidecar container would keep them running forever."""
        kind = self.obj.get("kind")
        ends = self.spec.get("restartPolicy") in ("Never", "OnFailure")
        return kind in ("Job", "CronJob") or (kind == "Pod" and ends)


def objects(data: Any) -> Iterator[Obj]:
    """Every Kubernetes object in a document: the document itself, or the items of a List, nested or not."""
    if not isinstance(data, MutableMapping) or "kind" not in data:
        return
    items = data.get("items")
    if str(data["kind"]).endswith("List") and isinstance(items, list):
        for item in items:
            yield from objects(item)
    else:
        yield data


def workload(obj: Obj, where: str) -> Workload | None:
    """The object's pod template, or None for a kind that makes no pods; InjectError if it is malformed."""
    path = TEMPLATE_PATHS.get(str(obj.get("kind")))
    if path is None:
        return None
    where = f"{where}, {name_of(obj)}"
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, MutableMapping) else None
    field = ".".join(path) or "the object"
    if not isinstance(node, MutableMapping) or not isinstance(node.get("spec"), MutableMapping):
        raise InjectError(f"{where}: {field} has no pod spec: give a complete manifest (kubectl get -o yaml)")
    containers = node["spec"].get("containers")
    if not isinstance(containers, list) or not containers:
        raise InjectError(f"{where}: the pod spec has no containers: give a complete manifest")
    for container in containers:
        if not isinstance(container, MutableMapping) or not container.get("name"):
            raise InjectError(f"{where}: a container has no name: every container needs one")
    return Workload(obj, where, node)
