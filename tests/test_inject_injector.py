"""One pod template injected and given back: what changes, what is recorded, what undoes it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from app.inject import injector
from app.inject.documents import InjectError
from app.inject.workloads import Workload, workload
from app.options import InjectConfig


def deployment(**pod_spec: Any) -> dict[str, Any]:
    spec = {"containers": [{"name": "web", "image": "web:1", "ports": [{"name": "http", "containerPort": 8080}]}],
            **pod_spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "shop"}},
                     "template": {"metadata": {"labels": {"app": "shop"}}, "spec": spec}}}


def found(obj: dict[str, Any]) -> Workload:
    result = workload(obj, "f")
    assert result is not None
    return result


def round_trip(obj: dict[str, Any], config: InjectConfig | None = None) -> tuple[dict[str, Any], list[str]]:
    """Inject, check that uninject gives the original back, and return the injected form."""
    original = copy.deepcopy(obj)
    notes: list[str] = []
    injector.inject(found(obj), config or InjectConfig(), notes)
    injected = copy.deepcopy(obj)
    assert injector.uninject(found(obj)) is True
    assert obj == original
    return injected, notes


def test_what_inject_records_is_exactly_what_it_changed() -> None:
    injected, notes = round_trip(deployment())
    annotations = injected["spec"]["template"]["metadata"]["annotations"]
    record = json.loads(annotations.pop(injector.RECORD))
    assert record == {"container": "mothership-sidecar", "port": ["web", "http", "app-http"],
                      "created": ["annotations"], "annotations": list(annotations)}
    assert annotations == {"kubectl.kubernetes.io/default-container": "web", "prometheus.io/scrape": "true",
                           "prometheus.io/port": "9901", "prometheus.io/path": "/metrics"}
    assert notes == []


def test_share_process_namespace_is_set_when_asked_and_put_back_as_it_was() -> None:
    config = InjectConfig(share_process_namespace=True)
    for before in ({}, {"shareProcessNamespace": False}, {"shareProcessNamespace": True}):
        injected, _ = round_trip(deployment(**before), config)
        assert injected["spec"]["template"]["spec"]["shareProcessNamespace"] is True
        record = json.loads(injected["spec"]["template"]["metadata"]["annotations"][injector.RECORD])
        assert ("shareProcessNamespace" in record) is (before.get("shareProcessNamespace") is not True)


def test_annotations_the_user_set_are_kept_and_never_taken_away() -> None:
    obj = deployment()
    obj["spec"]["template"]["metadata"]["annotations"] = {"kubectl.kubernetes.io/default-container": "web",
                                                          "team": "checkout"}
    injected, _ = round_trip(obj)
    record = json.loads(injected["spec"]["template"]["metadata"]["annotations"][injector.RECORD])
    assert "kubectl.kubernetes.io/default-container" not in record["annotations"]
    assert "created" not in record or record["created"] == []


def test_a_job_without_metadata_or_init_containers_gets_both_and_loses_them_again() -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "work", "image": "w", "ports": [{"containerPort": 8080}]}]}}}}
    injected, _ = round_trip(job)
    template = injected["spec"]["template"]
    assert [c["name"] for c in template["spec"]["initContainers"]] == ["mothership-sidecar"]
    record = json.loads(template["metadata"]["annotations"][injector.RECORD])
    assert record["in"] == "initContainers" and set(record["created"]) == {"initContainers", "metadata", "annotations"}
    # A Job's own init containers run first, the sidecar after them, then the work.
    job["spec"]["template"]["spec"]["initContainers"] = [{"name": "fetch", "image": "f"}]
    injected, _ = round_trip(job)
    assert [c["name"] for c in injected["spec"]["template"]["spec"]["initContainers"]] == [
        "fetch", "mothership-sidecar"]


def test_injecting_again_replaces_the_sidecar() -> None:
    obj = deployment()
    injector.inject(found(obj), InjectConfig(), [])
    injector.inject(found(obj), InjectConfig(image="new:2"), [])
    names = [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]]
    assert names == ["web", "mothership-sidecar"]
    assert obj["spec"]["template"]["spec"]["containers"][1]["image"] == "new:2"
    assert obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] == "app-http"


def test_uninject_of_a_plain_pod_changes_nothing() -> None:
    obj = deployment()
    original = copy.deepcopy(obj)
    assert injector.uninject(found(obj)) is False
    assert obj == original


def test_host_network_pods_are_left_alone_with_a_note() -> None:
    obj = deployment(hostNetwork=True)
    original = copy.deepcopy(obj)
    notes: list[str] = []
    assert injector.inject(found(obj), InjectConfig(), notes) is None
    assert obj == original and notes == [
        "f, Deployment/shop: uses the node's network (hostNetwork), where the sidecar's ports would clash between "
        "pods: left as it was"]


@pytest.mark.parametrize(("record", "message"), [
    ("not json", "its mothership/injected annotation is not one inject wrote"),
    ('{"container": "someone-else"}', "its mothership/injected annotation is not one inject wrote"),
    ('{"container": "mothership-sidecar", "port": 5}', "is not one inject wrote"),
    ('{"container": "mothership-sidecar", "port": ["a", "b"]}', "is not one inject wrote"),
    ('{"container": "mothership-sidecar", "in": "volumes"}', "is not one inject wrote"),
    ('{"container": "mothership-sidecar", "annotations": [1]}', "is not one inject wrote"),
    ('["mothership-sidecar"]', "is not one inject wrote"),
])
def test_a_record_inject_did_not_write_is_refused(record: str, message: str) -> None:
    obj = deployment()
    obj["spec"]["template"]["metadata"]["annotations"] = {injector.RECORD: record}
    with pytest.raises(InjectError, match=message):
        injector.uninject(found(obj))
