"""Which port the sidecar fronts, the names it takes over, and the Services it points at itself."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.inject import ports
from app.inject.documents import InjectError
from app.inject.workloads import Workload


def pod(*containers: dict[str, Any], init: list[dict[str, Any]] | None = None) -> Workload:
    spec: dict[str, Any] = {"containers": list(containers)}
    if init:
        spec["initContainers"] = init
    template = {"metadata": {"labels": {"app": "shop"}}, "spec": spec}
    return Workload({"kind": "Deployment", "metadata": {"name": "shop"}, "spec": {"template": template}},
                    "f, Deployment/shop", template)


def web(*entries: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"name": "web", "image": "web:1", "ports": list(entries), **more}


def test_the_only_declared_tcp_port_is_fronted() -> None:
    found = ports.choose(pod(web({"name": "http", "containerPort": 8080}, {"containerPort": 53, "protocol": "UDP"}),
                             {"name": "sidekick", "image": "s"}), None)
    assert (found.number, found.name, found.container["name"]) == (8080, "http", "web")


def test_several_ports_need_target_port_which_takes_a_name_or_a_number() -> None:
    workload = pod(web({"name": "http", "containerPort": 8080}),
                   {"name": "admin", "image": "a", "ports": [{"containerPort": 9090}]})
    with pytest.raises(InjectError, match=r"^f, Deployment/shop: several ports \(web:8080 http, admin:9090\): "
                                          "choose the one to front with --target-port$"):
        ports.choose(workload, None)
    assert ports.choose(workload, "http").number == 8080
    by_number = ports.choose(workload, 9090)
    assert (by_number.container["name"], by_number.name) == ("admin", None)
    undeclared = ports.choose(workload, 3000)  # the app listens there without declaring it
    assert (undeclared.number, undeclared.entry, undeclared.container["name"]) == (3000, None, "web")
    with pytest.raises(InjectError, match="no container port is named 'grpc'"):
        ports.choose(workload, "grpc")


def test_no_declared_port_needs_target_port() -> None:
    with pytest.raises(InjectError, match="no container declares a port: say which port"):
        ports.choose(pod(web()), None)
    with pytest.raises(InjectError, match="containerPort is '8080', not a number"):
        ports.choose(pod(web({"containerPort": "8080"})), None)


@pytest.mark.parametrize(("workload", "message"), [
    (pod(web({"containerPort": 9901})), "the app listens on 9901, which the sidecar needs"),
    (pod(web({"containerPort": 80}), init=[{"name": "i", "image": "i", "ports": [{"containerPort": 9900}]}]),
     "container i declares port 9900, which the sidecar needs: move it"),
    (pod(web({"containerPort": 80}, {"name": "ms-admin", "containerPort": 81, "protocol": "UDP"})),
     "container web already has a port named ms-admin"),
    (pod(web({"name": "http", "containerPort": 80}, {"name": "app-http", "containerPort": 81, "protocol": "UDP"})),
     "container web already has a port named app-http"),
])
def test_the_sidecars_numbers_and_names_must_be_free(workload: Workload, message: str) -> None:
    with pytest.raises(InjectError, match=message):
        ports.check_free(workload, ports.choose(workload, None))


def test_renamed_ports_stay_valid_port_names() -> None:
    def renamed(name: str) -> str | None:
        return ports.app_name_for(ports.AppPort({}, 1, {"name": name}))

    assert renamed("http") == "app-http"
    assert renamed("a-very-long-nam") == "app-a-very-long"
    assert renamed("abcdefghij-klmn") == "app-abcdefghij"  # a cut that ends in `-` loses it
    assert all(len(renamed(n) or "") <= 15 for n in ("x" * 15, "web", "h2c"))


def test_rename_moves_the_containers_own_probes_and_hooks_along() -> None:
    container = web({"name": "http", "containerPort": 8080}, {"name": "grpc", "containerPort": 9000},
                    readinessProbe={"httpGet": {"path": "/", "port": "http"}},
                    livenessProbe={"tcpSocket": {"port": "http"}},
                    startupProbe={"grpc": {"port": 9000}},
                    lifecycle={"preStop": {"httpGet": {"path": "/stop", "port": "http"}},
                               "postStart": {"exec": {"command": ["true"]}}})
    original = copy.deepcopy(container)
    ports.rename(container, "http", "app-http")
    assert [p["name"] for p in container["ports"]] == ["app-http", "grpc"]
    assert container["readinessProbe"]["httpGet"]["port"] == "app-http"
    assert container["livenessProbe"]["tcpSocket"]["port"] == "app-http"
    assert container["lifecycle"]["preStop"]["httpGet"]["port"] == "app-http"
    assert container["startupProbe"] == original["startupProbe"]
    ports.rename(container, "app-http", "http")
    assert container == original


def service(selector: dict[str, str] | None, *entries: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "s"}
    if namespace:
        metadata["namespace"] = namespace
    spec: dict[str, Any] = {"ports": list(entries)}
    if selector is not None:
        spec["selector"] = selector
    return {"kind": "Service", "metadata": metadata, "spec": spec}


FRONTED = ports.Fronted("f, Deployment/shop", "prod", {"app": "shop", "tier": "web"}, 8080, named=True)


def test_services_that_select_the_pod_by_number_are_retargeted_and_restored() -> None:
    svc = service({"app": "shop"}, {"port": 80, "targetPort": 8080}, {"port": 8080},
                  {"port": 81, "targetPort": "http"}, {"port": 82, "targetPort": 9090})
    original = copy.deepcopy(svc)
    old = ports.retarget(svc, [FRONTED])
    assert old == {0: 8080, 1: None}
    assert [p.get("targetPort") for p in svc["spec"]["ports"]] == [9900, 9900, "http", 9090]
    ports.restore(svc, old)
    assert svc == original


@pytest.mark.parametrize("svc", [
    service({"app": "other"}, {"port": 80, "targetPort": 8080}),
    service({"app": "shop", "tier": "db"}, {"port": 80, "targetPort": 8080}),
    service(None, {"port": 80, "targetPort": 8080}),  # no selector: Endpoints by hand
    service({}, {"port": 80, "targetPort": 8080}),
    service({"app": "shop"}, {"port": 80, "targetPort": 8080}, namespace="staging"),
])
def test_services_of_other_pods_are_left_alone(svc: dict[str, Any]) -> None:
    original = copy.deepcopy(svc)
    assert ports.retarget(svc, [FRONTED]) == {}
    assert svc == original
    assert ports.selects(service({"app": "shop"}), FRONTED)  # no namespace on the Service: the same one
