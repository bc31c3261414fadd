"""The whole input at once, on manifests shaped like users' (tests/manifests/inject, written after the
Kubernetes and OpenShift documentation): every output validates strictly, injecting twice is injecting
once, `--uninject` gives the input back, and Services reach the sidecar with no edit by hand."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from app.inject.documents import InjectError
from app.inject.manifests import run
from app.options import InjectConfig
from tests.inject_support import KUBERNETES_VERSIONS, containers, fixture, pod_annotations, pod_spec, validate_all

CONFIG = InjectConfig()
# (fixture, --target-port it needs)
FIXTURES = [
    ("deployment-sidecars.yaml", None),
    ("statefulset.yaml", None),
    ("cronjob.yaml", 8080),
    ("deploymentconfig.yaml", None),
    ("list.yaml", "http"),
]


def inject(text: str, **flags: Any) -> tuple[str, list[str]]:
    return run([("in.yaml", text)], replace(CONFIG, **flags))


def objects(text: str) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in validate_all(text)}


@pytest.mark.parametrize(("name", "port"), FIXTURES)
def test_each_shape_injects_validates_and_comes_back(name: str, port: int | str | None) -> None:
    original = fixture(name)
    injected, _ = inject(original, target_port=port)
    validate_all(original)
    for obj in validate_all(injected):
        if obj["kind"] in ("Service", "ConfigMap"):
            continue
        sidecar = containers(obj)["mothership-sidecar"]
        assert sidecar["command"] == ["python", "-m", "app", "--mode", "sidecar"]
        assert pod_annotations(obj)["prometheus.io/port"] == "9901"
    assert inject(injected, target_port=port)[0] == injected  # twice is once, byte for byte
    back, _ = inject(injected, uninject=True)
    canonical = fixture(name).replace('[ "ReadWriteOnce" ]', '["ReadWriteOnce"]')  # ruamel's one normalisation
    assert back == canonical
    assert inject(original, uninject=True)[0] == original  # nothing injected: untouched


def test_comments_key_order_and_quotes_survive() -> None:
    injected, _ = inject(fixture("deployment-sidecars.yaml"))
    for kept in ("# A web app with a log shipper", "# The application itself", "- name: log-shipper  # reads",
                 "targetPort: http  # by name", 'command: ["./manage.py", "migrate"]', "maxSurge: 25%"):
        assert kept in injected
    keys = list(next(yaml.safe_load_all(injected)))
    assert keys == ["apiVersion", "kind", "metadata", "spec"]
    # Untouched documents are the input's own bytes.
    assert injected.endswith(fixture("deployment-sidecars.yaml").split("---\n", 2)[2])


def test_a_port_named_in_services_is_taken_over_and_the_apps_probes_follow() -> None:
    injected, notes = inject(fixture("deployment-sidecars.yaml"))
    found = objects(injected)
    shop = containers(found["Deployment/shop"])
    assert [p["name"] for p in shop["shop"]["ports"]] == ["app-http"]
    assert shop["shop"]["readinessProbe"]["httpGet"]["port"] == "app-http"
    assert shop["shop"]["livenessProbe"]["tcpSocket"]["port"] == "app-http"
    assert {p["name"]: p["containerPort"] for p in shop["mothership-sidecar"]["ports"]} == {
        "http": 9900, "ms-admin": 9901}
    env = {e["name"]: e for e in shop["mothership-sidecar"]["env"]}
    assert env["TARGET_PORT"]["value"] == "8000" and env["APP_NAME"]["value"] == "shop"
    assert found["Service/shop"]["spec"]["ports"][0]["targetPort"] == "http"  # unchanged: the name moved
    assert notes == []
    assert pod_annotations(found["Deployment/shop"])["kubectl.kubernetes.io/default-container"] == "shop"
    assert [c["name"] for c in pod_spec(found["Deployment/shop"])["initContainers"]] == ["migrate"]


def test_a_service_that_targets_the_port_by_number_is_rewritten_and_said_so() -> None:
    injected, notes = inject(fixture("deploymentconfig.yaml"))
    found = objects(injected)
    assert found["Service/frontend"]["spec"]["ports"][0]["targetPort"] == 9900
    assert notes == ["in.yaml document 2, Service/frontend: targetPort 8080 -> 9900 (the sidecar's)"]
    sidecar = containers(found["DeploymentConfig/frontend"])["mothership-sidecar"]
    assert sidecar["ports"][0]["name"] == "ms-proxy"  # the app's port had no name to take over
    assert found["DeploymentConfig/frontend"]["spec"]["triggers"][1]["imageChangeParams"]["containerNames"] == [
        "helloworld"]
    # A Service with no targetPort targets its own port number: it gets one, and loses it again.
    injected, notes = inject(fixture("statefulset.yaml"))
    assert objects(injected)["Service/nginx"]["spec"]["ports"][0]["targetPort"] == 9900
    back = yaml.safe_load_all(inject(injected, uninject=True)[0])
    assert "targetPort" not in next(back)["spec"]["ports"][0]


def test_services_of_other_pods_or_namespaces_are_left_alone() -> None:
    text = fixture("deploymentconfig.yaml") + """---
apiVersion: v1
kind: Service
metadata: {name: other}
spec:
  selector: {name: backend}
  ports: [{port: 8080, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: elsewhere, namespace: staging}
spec:
  selector: {name: frontend}
  ports: [{port: 8080, targetPort: 8080}]
"""
    found = objects(inject(text.replace("name: frontend\nspec:\n  replicas",
                                        "name: frontend\n  namespace: prod\nspec:\n  replicas"))[0])
    assert found["Service/other"]["spec"]["ports"][0]["targetPort"] == 8080
    assert found["Service/elsewhere"]["spec"]["ports"][0]["targetPort"] == 8080
    assert found["Service/frontend"]["spec"]["ports"][0]["targetPort"] == 9900  # no namespace: kubectl's own


def test_a_cronjobs_sidecar_lets_the_job_end() -> None:
    injected, notes = inject(fixture("cronjob.yaml"), target_port=8080)
    (cronjob,) = validate_all(injected)
    spec = pod_spec(cronjob)
    assert [c["name"] for c in spec["containers"]] == ["hello"]
    (native,) = spec["initContainers"]
    assert native["name"] == "mothership-sidecar" and native["restartPolicy"] == "Always"
    assert "no name" in notes[0]  # nothing in the input reaches port 8080 by number


def test_lists_and_json_as_kubectl_writes_them() -> None:
    listed = fixture("list.yaml")
    as_json = json.dumps(yaml.safe_load(listed), indent=4) + "\n"
    injected, _ = inject(as_json, target_port="http")
    data = json.loads(injected)  # JSON in, JSON out
    assert injected.startswith('{\n    "apiVersion"')
    deployment, service = data["items"]
    assert service["spec"]["ports"][0]["targetPort"] == 9900
    assert service["spec"]["ports"][1]["targetPort"] == "metrics"
    assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == ["api", "mothership-sidecar"]
    assert inject(injected, uninject=True)[0] == as_json


def test_flags_shape_the_sidecar() -> None:
    injected, _ = inject(fixture("statefulset.yaml"), image="registry.example.com/ms:9", dashboard="",
                         token_secret=("tokens", "ingest"), share_process_namespace=True)
    statefulset = objects(injected)["StatefulSet/web"]
    sidecar = containers(statefulset)["mothership-sidecar"]
    env = {e["name"]: e for e in sidecar["env"]}
    assert sidecar["image"] == "registry.example.com/ms:9"
    assert "DASHBOARD" not in env
    assert env["DASHBOARD_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "tokens", "key": "ingest", "optional": True}
    assert pod_spec(statefulset)["shareProcessNamespace"] is True
    assert env["APP_NAME"]["value"] == "nginx"  # the `app` label
    # Injecting again with other flags replaces the sidecar rather than adding a second one.
    again = objects(inject(injected, token_secret=None)[0])["StatefulSet/web"]
    assert [c["name"] for c in pod_spec(again)["containers"]] == ["nginx", "mothership-sidecar"]
    assert "DASHBOARD_TOKEN" not in {e["name"] for e in containers(again)["mothership-sidecar"]["env"]}
    assert "shareProcessNamespace" not in pod_spec(again)


def test_host_network_pods_and_their_own_prometheus_annotations_are_respected() -> None:
    text = fixture("deployment-sidecars.yaml").split("---\n")[0]
    injected, notes = inject(text.replace("      serviceAccountName: shop\n",
                                          "      serviceAccountName: shop\n      hostNetwork: true\n"))
    assert "mothership-sidecar" not in injected and "hostNetwork" in notes[0]
    own = text.replace("        tier: frontend\n", "        tier: frontend\n      annotations:\n"
                       "        prometheus.io/scrape: \"true\"\n        prometheus.io/port: \"8000\"\n")
    injected, notes = inject(own)
    annotations = pod_annotations(objects(injected)["Deployment/shop"])
    assert annotations["prometheus.io/port"] == "8000" and "keeps its own prometheus.io" in notes[0]
    assert inject(injected, uninject=True)[0] == own


def test_objects_without_pods_and_empty_documents_pass_through() -> None:
    text = "# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: '1'}\n---\n"
    assert inject(text)[0] == text
    with pytest.raises(InjectError, match=r"in\.yaml document 2, Deployment/x: spec\.template has no pod spec"):
        inject("apiVersion: apps/v1\n---\nkind: Deployment\nmetadata: {name: x}\nspec: {}\n")


def test_an_openshift_template_passes_through_with_a_note() -> None:
    text = "apiVersion: template.openshift.io/v1\nkind: Template\nmetadata: {name: t}\nobjects: []\n"
    assert inject(text) == (text, ["in.yaml document 1, Template/t: an OpenShift template passes through "
                                   "unchanged: inject what `oc process` makes of it"])


# --- generated pods: whatever shape, injection is valid, stable and undone exactly ---------

PORT_NAMES = ("http", "web", "grpc", "metrics", "api")


@st.composite
def generated_pods(draw: st.DrawFn) -> dict[str, Any]:
    numbers = draw(st.lists(st.integers(1, 65535).filter(lambda n: n not in (9900, 9901)), max_size=4, unique=True))
    names = draw(st.lists(st.sampled_from(PORT_NAMES), min_size=len(numbers), max_size=len(numbers), unique=True)) \
        if len(numbers) <= len(PORT_NAMES) else []
    count = draw(st.integers(1, 3))
    containers: list[dict[str, Any]] = [{"name": f"c{i}", "image": f"img{i}:1"} for i in range(count)]
    for index, number in enumerate(numbers):
        port: dict[str, Any] = {"containerPort": number}
        if names and draw(st.booleans()):
            port["name"] = names[index]
        owner = containers[draw(st.integers(0, count - 1))]
        owner.setdefault("ports", []).append(port)
        if "name" in port and draw(st.booleans()):
            owner["readinessProbe"] = {"httpGet": {"path": "/", "port": port["name"]}}
    template: dict[str, Any] = {"metadata": {"labels": {"app": "g"}}, "spec": {"containers": containers}}
    annotations = draw(st.dictionaries(st.sampled_from(("team", "prometheus.io/scrape",
                                                        "kubectl.kubernetes.io/default-container")),
                                       st.sampled_from(("x", "true", "c0")), max_size=2))
    if annotations:
        template["metadata"]["annotations"] = annotations
    share = draw(st.sampled_from((None, True, False)))
    if share is not None:
        template["spec"]["shareProcessNamespace"] = share
    if draw(st.booleans()):
        template["spec"]["restartPolicy"] = "Never"
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "g"}, "spec": {"template": template}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "g"},
            "spec": {"selector": {"matchLabels": {"app": "g"}}, "template": template}}


@settings(max_examples=50, deadline=None)
@given(pod=generated_pods(), share=st.booleans(), pick=st.integers(0, 5))
def test_generated_pods_inject_validly_stably_and_come_back(pod: dict[str, Any], share: bool, pick: int) -> None:
    text = yaml.safe_dump(pod, sort_keys=False)
    declared = [p for c in pod_spec(pod)["containers"] for p in c.get("ports", [])]
    target = None
    if pick < len(declared):
        target = declared[pick].get("name", declared[pick]["containerPort"])
    try:
        injected, _ = inject(text, target_port=target, share_process_namespace=share)
    except InjectError as error:  # refused only for what the contract refuses
        assert re.search(r"no container declares a port|several ports|no container port is named", str(error))
        assert len(declared) != 1 or target is not None
        return
    (obj,) = validate_all(injected, versions=KUBERNETES_VERSIONS[-1:])
    sidecar = containers(obj)["mothership-sidecar"]
    names = [p.get("name") for c in containers(obj).values() for p in c.get("ports", []) if p.get("name")]
    assert len(names) == len(set(names))  # port names stay unique in the pod
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    fronted = next(p for p in declared if target in (None, p.get("name"), p["containerPort"]))
    assert env["TARGET_PORT"] == str(fronted["containerPort"])
    assert inject(injected, target_port=target, share_process_namespace=share)[0] == injected
    assert inject(injected, uninject=True)[0] == text


@pytest.mark.parametrize("record", ["x", '{"targetPort": {"a": 1}}', '{"targetPort": {"0": {"x": 1}}}', "[]"])
def test_a_service_record_inject_did_not_write_is_refused(record: str) -> None:
    text = f"kind: Service\nmetadata:\n  name: s\n  annotations: {{mothership/injected: '{record}'}}\nspec: {{}}\n"
    with pytest.raises(InjectError, match=r"Service/s: its mothership/injected annotation is not one inject wrote"):
        inject(text)
