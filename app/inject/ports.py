"""Which app port the sidecar fronts, and how traffic reaches the sidecar with no edit to the
user's Services: a port targeted by name has its name taken over by the sidecar (the app's
port gets `app-<name>`); a Service in the input that targets it by number is rewritten.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from app.inject import sidecar
from app.inject.documents import InjectError
from app.inject.workloads import Obj, Workload, namespace_of

_PROBES = ("readinessProbe", "livenessProbe", "startupProbe")
_HOOKS = ("postStart", "preStop")


@dataclass(frozen=True)
class AppPort:
    container: Obj  # the app container that declares it (the first container if none does)
    number: int
    entry: Obj | None  # its `ports` entry, when declared

    @property
    def name(self) -> str | None:
        return str(self.entry["name"]) if self.entry is not None and self.entry.get("name") else None


def declared(workload: Workload) -> list[tuple[Obj, Obj]]:
    """(container, port entry) for every TCP port the app containers declare."""
    found = []
    for container in workload.containers:
        for entry in container.get("ports") or []:
            if isinstance(entry, MutableMapping) and str(entry.get("protocol", "TCP")) == "TCP":
                found.append((container, entry))
    return found


def choose(workload: Workload, wanted: int | str | None) -> AppPort:
    """`--target-port` (a number or a name), else the one port declared; InjectError otherwise."""
    ports = declared(workload)
    if wanted is None:
        if len(ports) == 1:
            container, entry = ports[0]
            return AppPort(container, _number(workload, entry), entry)
        if not ports:
            raise InjectError(f"{workload.where}: no container declares a port: "
                              "say which port the app listens on with --target-port")
        listed = ", ".join(_describe(c, e) for c, e in ports)
        raise InjectError(f"{workload.where}: several ports ({listed}): choose the one to front with --target-port")
    for container, entry in ports:
        if wanted in (entry.get("name"), entry.get("containerPort")):
            return AppPort(container, _number(workload, entry), entry)
    if isinstance(wanted, str):
        raise InjectError(f"{workload.where}: no container port is named {wanted!r}: "
                          "give --target-port a declared port's name or number")
    return AppPort(workload.containers[0], wanted, None)  # a port the app listens on without declaring it


def check_free(workload: Workload, app_port: AppPort) -> None:
    """The sidecar's numbers and names must be free in the pod (all containers share its network)."""
    if app_port.number in sidecar.PORTS:
        raise InjectError(f"{workload.where}: the app listens on {app_port.number}, which the sidecar needs "
                          f"({sidecar.PROXY_PORT} and {sidecar.ADMIN_PORT}): move the app to another port")
    for container in [*workload.containers, *(workload.spec.get("initContainers") or [])]:
        for entry in container.get("ports") or []:
            if not isinstance(entry, MutableMapping):
                continue
            if entry.get("containerPort") in sidecar.PORTS:
                raise InjectError(f"{workload.where}: container {container['name']} declares port "
                                  f"{entry['containerPort']}, which the sidecar needs: move it to another port")
            taken = {sidecar.ADMIN_PORT_NAME, sidecar.PROXY_PORT_NAME, app_name_for(app_port)} - {None}
            if entry.get("name") in taken:
                raise InjectError(f"{workload.where}: container {container['name']} already has a port named "
                                  f"{entry['name']}, which injection needs: rename it")


def app_name_for(app_port: AppPort) -> str | None:
    """The name the app's port gets when the sidecar takes its name over: `http` -> `app-http`."""
    if app_port.name is None:
        return None
    return ("app-" + app_port.name)[:15].rstrip("-")  # port names are at most 15 characters


def rename(container: Obj, old: str, new: str) -> None:
    """Rename one of the container's ports, and its own probes and hooks that point at it by name."""
    for entry in container.get("ports") or []:
        if isinstance(entry, MutableMapping) and entry.get("name") == old:
            entry["name"] = new
    for action in _port_actions(container):
        if action.get("port") == old:
            action["port"] = new


def _port_actions(container: Obj) -> Iterator[Obj]:
    handlers = [container.get(p) for p in _PROBES]
    lifecycle = container.get("lifecycle")
    if isinstance(lifecycle, MutableMapping):
        handlers += [lifecycle.get(h) for h in _HOOKS]
    for handler in handlers:
        if isinstance(handler, MutableMapping):
            for kind in ("httpGet", "tcpSocket"):
                if isinstance(handler.get(kind), MutableMapping):
                    yield handler[kind]


@dataclass(frozen=True)
class Fronted:
    """An injected pod, as Services see it."""

    where: str
    namespace: str | None
    labels: dict[str, str]
    number: int  # the app's port, now behind the sidecar
    named: bool  # Services that target it by name reach the sidecar already


def selects(service: Obj, fronted: Fronted) -> bool:
    spec = service.get("spec")
    selector = spec.get("selector") if isinstance(spec, MutableMapping) else None
    if not isinstance(selector, MutableMapping) or not selector:
        return False
    same_namespace = None in (namespace_of(service), fronted.namespace) or namespace_of(service) == fronted.namespace
    return same_namespace and all(fronted.labels.get(str(k)) == str(v) for k, v in selector.items())


def retarget(service: Obj, fronted: list[Fronted]) -> dict[int, Any]:
    """Point the Service's ports that target an app port by number at the sidecar; the old values by index."""
    numbers = {f.number for f in fronted if selects(service, f)}
    old: dict[int, Any] = {}
    for index, port in enumerate(service["spec"].get("ports") or []):
        if not isinstance(port, MutableMapping):
            continue
        target = port.get("targetPort", port.get("port"))  # no targetPort: the port itself
        if isinstance(target, int) and target in numbers:
            old[index] = port.get("targetPort")
            port["targetPort"] = sidecar.PROXY_PORT
    return old


def restore(service: Obj, old: dict[int, Any]) -> None:
    ports = service["spec"].get("ports") or []
    for index, value in old.items():
        if index < len(ports):
            if value is None:
                ports[index].pop("targetPort", None)
            else:
                ports[index]["targetPort"] = value


def _number(workload: Workload, entry: Obj) -> int:
    number = entry.get("containerPort")
    if not isinstance(number, int) or isinstance(number, bool):
        raise InjectError(f"{workload.where}: a port's containerPort is {number!r}, not a number: fix the manifest")
    return number


def _describe(container: Obj, entry: Obj) -> str:
    name = f" {entry['name']}" if entry.get("name") else ""
    return f"{container['name']}:{entry.get('containerPort')}{name}"
