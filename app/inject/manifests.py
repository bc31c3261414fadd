"""The whole input injected (or given back) at once: every pod template in every document,
then the Services in the same input that reach an injected port by number. Nothing is
written unless every document could be handled.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

from app.inject import injector, ports, sidecar
from app.inject.documents import Document, InjectError, load, plain
from app.inject.workloads import Obj, name_of, objects, workload
from app.options import InjectConfig


def run(sources: list[tuple[str, str]], config: InjectConfig) -> tuple[str, list[str]]:
    """(the output stream, notes for standard error) from (name, text) inputs; InjectError on bad input."""
    documents = [doc for name, text in sources for doc in load(text, name)]
    before = [plain(doc.data) for doc in documents]
    found = [(doc, obj) for doc in documents for obj in objects(doc.data)]
    notes: list[str] = []
    for doc, obj in found:  # a Service injected before is given back first: injecting twice is injecting once
        if obj.get("kind") == "Service":
            _restore_service(obj, f"{doc.where}, {name_of(obj)}")
    fronted: list[ports.Fronted] = []
    for doc, obj in found:
        if obj.get("kind") == "Template" and not config.uninject:
            notes.append(f"{doc.where}, {name_of(obj)}: an OpenShift template passes through unchanged: "
                         "inject what `oc process` makes of it")
        pod = workload(obj, doc.where)
        if pod is None:
            continue
        if config.uninject:
            injector.uninject(pod)
        elif (result := injector.inject(pod, config, notes)) is not None:
            fronted.append(result)
    reached: set[str] = set()
    for doc, obj in found:
        if obj.get("kind") == "Service" and fronted:
            reached |= _retarget_service(obj, f"{doc.where}, {name_of(obj)}", fronted, notes)
    for entry in fronted:
        if not entry.named and entry.where not in reached:
            notes.append(f"{entry.where}: its port {entry.number} has no name, so Services elsewhere that target it "
                         f"still reach the app directly: point them at port {sidecar.PROXY_PORT}")
    return _join(documents, before), notes


def _retarget_service(service: Obj, where: str, fronted: list[ports.Fronted], notes: list[str]) -> set[str]:
    if not isinstance(service.get("spec"), MutableMapping):
        return set()
    old = ports.retarget(service, fronted)
    if not old:
        return set()
    annotations, created = injector.annotations_of(service)
    record = {"targetPort": {str(i): v for i, v in old.items()}, "created": created}
    annotations[injector.RECORD] = json.dumps(record, separators=(",", ":"))
    numbers = sorted({str(v if v is not None else service["spec"]["ports"][i].get("port")) for i, v in old.items()})
    notes.append(f"{where}: targetPort {', '.join(numbers)} -> {sidecar.PROXY_PORT} (the sidecar's)")
    return {f.where for f in fronted if ports.selects(service, f)}


def _restore_service(service: Obj, where: str) -> None:
    metadata = service.get("metadata")
    if not isinstance(metadata, MutableMapping):
        return
    annotations = metadata.get("annotations")
    if not isinstance(annotations, MutableMapping) or injector.RECORD not in annotations:
        return
    try:
        record: Any = json.loads(str(annotations[injector.RECORD]))
        old = {int(i): v for i, v in record["targetPort"].items()}
        if not all(v is None or isinstance(v, int | str) for v in old.values()):
            raise TypeError
    except (ValueError, TypeError, KeyError, AttributeError):
        raise InjectError(f"{where}: its {injector.RECORD} annotation is not one inject wrote: "
                          "remove it and set the targetPort you want") from None
    if isinstance(service.get("spec"), MutableMapping):
        ports.restore(service, old)
    annotations.pop(injector.RECORD)
    created = record.get("created", [])
    if "annotations" in created and not annotations:
        metadata.pop("annotations", None)
    if "metadata" in created and not metadata:
        service.pop("metadata", None)


def _join(documents: list[Document], before: list[Any]) -> str:
    """The documents written back, each file's start kept apart from the previous file's end."""
    out: list[str] = []
    for previous, doc, original in zip([None, *documents], documents, before, strict=False):
        if previous is not None and doc.source != previous.source and out:
            if not out[-1].endswith("\n"):
                out.append("\n")
            if not doc.head:
                out.append("---\n")
        out.append(doc.render(changed=plain(doc.data) != original))
    return "".join(out)
