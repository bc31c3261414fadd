"""One pod template injected, or given back: the sidecar added, the port's name taken over,
the annotations and `shareProcessNamespace` set, and what undoes all of it kept in the
`mothership/injected` annotation, so that `--uninject` restores the original exactly.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

from ruamel.yaml.comments import CommentedMap

from app.inject import ports, sidecar
from app.inject.documents import InjectError
from app.inject.workloads import Obj, Workload
from app.options import InjectConfig

RECORD = "mothership/injected"  # annotation holding what inject changed; its presence means "injected"


def inject(workload: Workload, config: InjectConfig, notes: list[str]) -> ports.Fronted | None:
    """Add the sidecar (after taking out any earlier one); None when the pod cannot have one."""
    uninject(workload)
    spec = workload.spec
    if spec.get("hostNetwork"):
        notes.append(f"{workload.where}: uses the node's network (hostNetwork), where the sidecar's ports would "
                     "clash between pods: left as it was")
        return None
    if any(sidecar.is_sidecar(c) for c in [*spec["containers"], *(spec.get("initContainers") or [])]):
        raise InjectError(f"{workload.where}: has a {sidecar.CONTAINER} container but no {RECORD} annotation: "
                          "remove that container and inject again")
    app_port = ports.choose(workload, config.target_port)
    ports.check_free(workload, app_port)
    record: dict[str, Any] = {"container": sidecar.CONTAINER}

    name, renamed = app_port.name, ports.app_name_for(app_port)
    if name is not None and renamed is not None:
        ports.rename(app_port.container, name, renamed)
        record["port"] = [app_port.container["name"], name, renamed]
    added = sidecar.container(config, target_port=app_port.number, port_name=name or sidecar.PROXY_PORT_NAME,
                              app_name=sidecar.app_name(workload.labels), native=workload.runs_to_completion)
    if workload.runs_to_completion:
        record["in"] = "initContainers"
        if "initContainers" not in spec or spec["initContainers"] is None:
            record["created"] = ["initContainers"]
            spec["initContainers"] = []
        spec["initContainers"].append(added)
    else:
        spec["containers"].append(added)
    if config.share_process_namespace and spec.get("shareProcessNamespace") is not True:
        record["shareProcessNamespace"] = spec.get("shareProcessNamespace", "absent")
        spec["shareProcessNamespace"] = True

    annotations, created = annotations_of(workload.template)
    record["created"] = record.get("created", []) + created
    wanted = {sidecar.DEFAULT_CONTAINER_ANNOTATION: str(app_port.container["name"])}
    if "prometheus.io/scrape" in annotations:
        notes.append(f"{workload.where}: keeps its own prometheus.io annotations, so Prometheus does not scrape "
                     f"the sidecar's /metrics (port {sidecar.ADMIN_PORT}) by annotation")
    else:
        wanted.update(sidecar.PROMETHEUS_ANNOTATIONS)
    record["annotations"] = [key for key in wanted if key not in annotations]
    for key in record["annotations"]:
        annotations[key] = wanted[key]
    annotations[RECORD] = json.dumps(record, separators=(",", ":"))
    return ports.Fronted(workload.where, workload.namespace, workload.labels, app_port.number, named=name is not None)


def uninject(workload: Workload) -> bool:
    """Give the pod template back as it was before inject; False when it was not injected."""
    metadata = workload.template.get("metadata")
    if not isinstance(metadata, MutableMapping):
        return False
    annotations = metadata.get("annotations")
    if not isinstance(annotations, MutableMapping) or RECORD not in annotations:
        return False
    record = _read(annotations[RECORD], workload.where)
    spec = workload.spec
    where = str(record.get("in", "containers"))
    _remove_sidecar(spec, where)
    if "port" in record:
        container_name, old, new = record["port"]
        for container in spec["containers"]:
            if container.get("name") == container_name:
                ports.rename(container, new, old)
    if "shareProcessNamespace" in record:
        if record["shareProcessNamespace"] == "absent":
            spec.pop("shareProcessNamespace", None)
        else:
            spec["shareProcessNamespace"] = record["shareProcessNamespace"]
    for key in [*record.get("annotations", []), RECORD]:
        annotations.pop(key, None)
    created = record.get("created", [])
    if "initContainers" in created and not spec.get("initContainers"):
        spec.pop("initContainers", None)
    if "annotations" in created and not annotations:
        metadata.pop("annotations", None)
    if "metadata" in created and not metadata:
        workload.template.pop("metadata", None)
    return True


def _remove_sidecar(spec: Obj, where: str) -> None:
    entries = spec.get(where)
    if isinstance(entries, list):
        for index in reversed(range(len(entries))):
            if sidecar.is_sidecar(entries[index]):
                del entries[index]  # in place: the list keeps its comments


def annotations_of(template: Obj) -> tuple[Obj, list[str]]:
    """The pod template's annotations, made if missing; which of `metadata`/`annotations` were made."""
    created = []
    if not isinstance(template.get("metadata"), MutableMapping):
        template["metadata"] = CommentedMap()
        created.append("metadata")
    metadata = template["metadata"]
    if not isinstance(metadata.get("annotations"), MutableMapping):
        metadata["annotations"] = CommentedMap()
        created.append("annotations")
    annotations: Obj = metadata["annotations"]
    return annotations, created


def _read(text: Any, where: str) -> dict[str, Any]:
    """The record, checked to be one inject wrote before anything is undone from it."""
    try:
        record = json.loads(str(text))
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("container") != sidecar.CONTAINER \
            or record.get("in", "containers") not in ("containers", "initContainers") \
            or not _strings(record.get("port", ["", "", ""])) or len(record.get("port", "...")) != 3 \
            or not _strings(record.get("annotations", [])) or not _strings(record.get("created", [])):
        raise InjectError(f"{where}: its {RECORD} annotation is not one inject wrote: remove the annotation "
                          f"and the {sidecar.CONTAINER} container, then inject again")
    return record


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
