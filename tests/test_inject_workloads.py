"""Pod templates found in every kind that makes pods, alone or in Lists; each kind injected validates."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.inject.documents import InjectError
from app.inject.manifests import run
from app.inject.workloads import TEMPLATE_PATHS, name_of, objects, workload
from app.options import InjectConfig
from tests.inject_support import KUBERNETES_VERSIONS, containers, pod_spec

POD_SPEC = {"containers": [{"name": "app", "image": "app:1", "ports": [{"name": "http", "containerPort": 8080}]}]}
TEMPLATE = {"metadata": {"labels": {"app": "x"}}, "spec": POD_SPEC}
SELECTOR = {"matchLabels": {"app": "x"}}

# One small, valid object of each kind (OpenShift's DeploymentConfig apart: the schemas hold no OpenShift kinds).
KINDS: dict[str, dict[str, Any]] = {
    "Pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "labels": {"app": "x"}}, "spec": POD_SPEC},
    "Deployment": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                   "spec": {"selector": SELECTOR, "template": TEMPLATE}},
    "StatefulSet": {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x"},
                    "spec": {"selector": SELECTOR, "serviceName": "x", "template": TEMPLATE}},
    "DaemonSet": {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x"},
                  "spec": {"selector": SELECTOR, "template": TEMPLATE}},
    "ReplicaSet": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "x"},
                   "spec": {"selector": SELECTOR, "template": TEMPLATE}},
    "ReplicationController": {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "x"},
                              "spec": {"selector": {"app": "x"}, "template": TEMPLATE}},
    "Job": {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
            "spec": {"template": {"spec": {**POD_SPEC, "restartPolicy": "Never"}}}},
    "CronJob": {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "x"},
                "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {
                    "spec": {**POD_SPEC, "restartPolicy": "OnFailure"}}}}}},
}


def test_every_kind_with_a_template_path_is_covered() -> None:
    assert set(TEMPLATE_PATHS) == {*KINDS, "DeploymentConfig"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_is_injected_and_validates_strictly(kind: str) -> None:
    obj = copy.deepcopy(KINDS[kind])
    found = workload(obj, "f document 1")
    assert found is not None and found.where == f"f document 1, {kind}/x"
    assert found.containers[0]["name"] == "app"
    out, _ = run([("f", yaml.safe_dump(obj))], InjectConfig())
    injected = yaml.safe_load(out)
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(injected, version, strict=True)
    assert "mothership-sidecar" in containers(injected)
    in_init = kind in ("Job", "CronJob")  # they end: a native sidecar does not keep them running
    assert [c["name"] for c in pod_spec(injected).get("initContainers", [])] == (["mothership-sidecar"] * in_init)
    assert found.runs_to_completion is in_init


def test_a_pod_that_runs_to_completion_gets_a_native_sidecar_too() -> None:
    pod = copy.deepcopy(KINDS["Pod"])
    pod["spec"]["restartPolicy"] = "Never"
    found = workload(pod, "f")
    assert found is not None and found.runs_to_completion


def test_lists_nested_or_not_and_other_objects() -> None:
    inner = {"kind": "DeploymentList", "items": [KINDS["Deployment"], {"kind": "Service", "metadata": {"name": "s"}}]}
    stream = {"apiVersion": "v1", "kind": "List", "items": [inner, KINDS["Pod"]]}
    assert [name_of(o) for o in objects(stream)] == ["Deployment/x", "Service/s", "Pod/x"]
    assert list(objects({"no": "kind"})) == [] and list(objects(None)) == [] and list(objects("text")) == []
    assert [name_of(o) for o in objects({"kind": "Thing", "items": [KINDS["Pod"]]})] == ["Thing/?"]
    assert workload({"kind": "Service", "spec": {}}, "f") is None


def test_facts_read_from_the_object() -> None:
    obj = copy.deepcopy(KINDS["Deployment"])
    obj["metadata"] = {"generateName": "x-", "namespace": "shop"}
    found = workload(obj, "f")
    assert found is not None
    assert (found.namespace, found.labels) == ("shop", {"app": "x"})
    assert name_of(obj) == "Deployment/x-"


@pytest.mark.parametrize(("change", "message"), [
    (lambda o: o["spec"].pop("template"), "spec.template has no pod spec"),
    (lambda o: o["spec"]["template"].pop("spec"), "spec.template has no pod spec"),
    (lambda o: o["spec"]["template"]["spec"].pop("containers"), "the pod spec has no containers"),
    (lambda o: o["spec"]["template"]["spec"].update(containers="app"), "the pod spec has no containers"),
    (lambda o: o["spec"]["template"]["spec"]["containers"][0].pop("name"), "a container has no name"),
])
def test_malformed_workloads_are_refused_by_name(change: Any, message: str) -> None:
    obj = copy.deepcopy(KINDS["Deployment"])
    change(obj)
    with pytest.raises(InjectError, match=f"^f document 2, Deployment/x: {message}"):
        workload(obj, "f document 2")
