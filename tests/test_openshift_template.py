"""The OpenShift template, offline: rendered as `oc process` would, validated, and checked against the code.

`render` substitutes `${P}` as text and a whole-string `${{P}}` as a JSON
value, generates `generate: expression` parameters and refuses missing
required ones, as `oc process` does. Kubernetes objects are validated with
kubernetes-validate in strict mode; the OpenShift kinds (ImageStream,
BuildConfig, Route) are checked by hand. The ports, probe paths and
environment variables are checked against the option tables and, at the
end, against the real processes started with the template's own settings.
"""

from __future__ import annotations

import base64
import json
import random
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app import __version__
from app.dashboard.hosts import HostGate
from app.demo import sampleapp
from app.inject.manifests import run as inject
from app.options import FLAGS, INJECT_IMAGE, DashboardConfig, InjectConfig, SidecarConfig, parse
from tests.conftest import ROOT, app_env, free_port, wait_for_port

TEMPLATE_PATH = ROOT / "openshift-template.yaml"
OPENSHIFT_KINDS = {"ImageStream", "BuildConfig", "Route"}
# OpenShift 4.14 and 4.16 run Kubernetes 1.27 and 1.29; the newest schemas catch deprecations.
KUBERNETES_VERSIONS = ("1.27.0", "1.29.0", kubernetes_validate.latest_version())
GIVEN = {"GIT_URI": "https://git.example.com/team/mothership.git"}
POD_NAME = "shop-5d8f9c7b6-x2x1a"  # what the downward API gives a Deployment's pod
SIDECAR = "mothership-sidecar"  # the container `inject` adds
NAMESPACE = "team-shop"  # and its namespace

Obj = dict[str, Any]


# --- rendering as `oc process` does --------------------------------------------


class RenderError(ValueError):
    pass


_CLASS = {r"\w": "a-zA-Z0-9_", r"\d": "0-9", r"\a": "a-zA-Z", r"\A": "!-/:-@[-`{-~"}


def _charset(spec: str) -> str:
    for short, long in _CLASS.items():
        spec = spec.replace(short, long)
    chars, i = [], 0
    while i < len(spec):
        if i + 2 < len(spec) and spec[i + 1] == "-":
            chars += [chr(c) for c in range(ord(spec[i]), ord(spec[i + 2]) + 1)]
            i += 3
        else:
            chars.append(spec[i])
            i += 1
    return "".join(chars)


def generate(expression: str, rng: random.Random) -> str:
    """OpenShift's expression generator for what templates use: `[a-z0-9]{32}`, `\\w{8}`, literals."""
    out = []
    for match in re.finditer(r"\[([^\]]+)\]\{(\d+)\}|(\\[wdaA])\{(\d+)\}|(.)", expression):
        spec, count = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
        if spec:
            out += [rng.choice(_charset(spec)) for _ in range(int(count))]
        else:
            out.append(match.group(5))
    return "".join(out)


def parameter_values(template: Obj, given: dict[str, str], rng: random.Random) -> dict[str, str]:
    declared = {p["name"]: p for p in template["parameters"]}
    unknown = set(given) - set(declared)
    if unknown:
        raise RenderError(f"unknown parameter name {sorted(unknown)}")
    values = {}
    for name, param in declared.items():
        value = given.get(name, param.get("value", ""))
        if not value and param.get("generate") == "expression":
            value = generate(param["from"], rng)
        if param.get("required") and not value:
            raise RenderError(f"template.parameters[{name}]: Required value")
        values[name] = value
    return values


_TEXT = re.compile(r"\$\{(\w+)\}|\$\{\{(\w+)\}\}")
_WHOLE_VALUE = re.compile(r"^\$\{\{(\w+)\}\}$")


def substitute(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: substitute(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [substitute(item, values) for item in node]
    if isinstance(node, str):
        whole = _WHOLE_VALUE.match(node)
        if whole and whole.group(1) in values:
            try:  # `${{P}}` alone puts the value in unquoted: a number, a list, an object
                return json.loads(values[whole.group(1)])
            except ValueError:
                return values[whole.group(1)]
        return _TEXT.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), node)
    return node


def render(given: dict[str, str] | None = None, seed: int = 0) -> tuple[list[Obj], str]:
    """The objects and the message `oc process -f openshift-template.yaml -p ...` would print."""
    template = yaml.safe_load(TEMPLATE_PATH.read_text())
    values = parameter_values(template, dict(GIVEN if given is None else given), random.Random(seed))
    objects = substitute(template["objects"], values)
    labels = substitute(template.get("labels", {}), values)
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(labels)
    return objects, substitute(template.get("message", ""), values)


# --- helpers over the rendered objects -----------------------------------------


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return render()[0]


def find(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def containers(deployment: Obj) -> dict[str, Obj]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def port_number(container: Obj, name_or_number: str | int) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    numbers = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == name_or_number]
    assert numbers, f"container {container['name']} has no port named {name_or_number}"
    return int(numbers[0])


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def app_mode(container: Obj) -> str | None:
    command = container.get("command", [])
    if command[:3] == ["python", "-m", "app"] and "--mode" in command:
        return str(command[command.index("--mode") + 1])
    return None


def container_env(container: Obj, secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """The container's environment as the kubelet would give it (secrets and the pod's name resolved)."""
    env = {}
    for name, entry in env_of(container).items():
        if "value" in entry:
            env[name] = entry["value"]
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["secretKeyRef"]
            env[name] = secrets[ref["name"], ref["key"]]
        elif entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[name] = POD_NAME
        elif entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[name] = NAMESPACE
        # $(VAR) names a variable defined above it, as the kubelet expands it.
        if name in env:
            env[name] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), env[name])
    return env


def config_of(container: Obj, secrets: dict[tuple[str, str], str]) -> Any:
    """What `python -m app` makes of this container's command and environment."""
    return parse(container["command"][3:], container_env(container, secrets))


def secret_values(objects: list[Obj]) -> dict[tuple[str, str], str]:
    return {(s["metadata"]["name"], key): value for s in find(objects, "Secret")
            for key, value in s.get("stringData", {}).items()}


def deployments(objects: list[Obj]) -> tuple[Obj, Obj]:
    """(the dashboard's Deployment, the example application's Deployment)."""
    dashboard = [d for d in find(objects, "Deployment") if "dashboard" in containers(d)]
    example = [d for d in find(objects, "Deployment") if SIDECAR in containers(d)]
    assert len(dashboard) == 1 and len(example) == 1
    return dashboard[0], example[0]


# --- rendering -------------------------------------------------------------------


def test_template_shape_and_parameters() -> None:
    template = yaml.safe_load(TEMPLATE_PATH.read_text())
    assert (template["apiVersion"], template["kind"]) == ("template.openshift.io/v1", "Template")
    assert template["metadata"]["name"] and template["metadata"]["annotations"]["description"]
    text = TEMPLATE_PATH.read_text()
    declared = [p["name"] for p in template["parameters"]]
    assert len(declared) == len(set(declared))
    for param in template["parameters"]:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", param["name"])
        assert param.get("description", "").strip(), f"{param['name']} has no description"
        assert param.get("displayName"), param["name"]
        assert "value" in param or param.get("generate") or param["name"] in GIVEN, \
            f"{param['name']} has no default"
        assert re.search(r"\$\{\{?" + param["name"] + r"\}\}?", text.split("\nparameters:")[0] + str(
            template["objects"])), f"{param['name']} is never used"
    used = set(re.findall(r"\$\{\{?(\w+)\}\}?", json.dumps(template["objects"]) + template["message"]))
    assert used <= set(declared), f"undeclared parameters: {used - set(declared)}"
    for name in ("NAME", "GIT_URI", "GIT_REF", "APP_IMAGE", "DASHBOARD_TOKEN"):
        assert name in declared


def test_rendering_leaves_no_placeholder_and_types_non_string_values() -> None:
    objects, message = render()
    text = json.dumps(objects) + message
    assert "${" not in text
    _, example = deployments(objects)
    assert example["spec"]["replicas"] == 2  # ${{APP_REPLICAS}}: a number, not "2"
    app = containers(example)["app"]
    assert app["command"] == ["python", "-m", "app.demo.sampleapp"]  # ${{APP_COMMAND}}: a list
    assert app["ports"][0]["containerPort"] == 8087
    assert "https://git.example.com/team/mothership.git" in message
    objects, _ = render({**GIVEN, "APP_REPLICAS": "5", "APP_PORT": "9000", "NAME": "ms"})
    _, example = deployments(objects)
    assert example["spec"]["replicas"] == 5 and containers(example)["app"]["ports"][0]["containerPort"] == 9000
    assert env_of(containers(example)[SIDECAR])["DASHBOARD"]["value"] == "http://ms:8080"


def test_required_and_unknown_parameters_are_refused() -> None:
    with pytest.raises(RenderError, match="GIT_URI"):
        render({})
    with pytest.raises(RenderError, match="unknown parameter"):
        render({**GIVEN, "NO_SUCH_PARAMETER": "x"})


def test_tokens_are_generated_unless_given() -> None:
    first = secret_values(render(seed=1)[0])
    second = secret_values(render(seed=2)[0])
    token = first["mothership-tokens", "ingest-token"]
    assert re.fullmatch(r"[a-zA-Z0-9]{32}", token)
    assert re.fullmatch(r"[a-zA-Z0-9]{24}", first["mothership-tokens", "view-token"])
    assert token != second["mothership-tokens", "ingest-token"]
    given = secret_values(render({**GIVEN, "DASHBOARD_TOKEN": "chosen"})[0])
    assert given["mothership-tokens", "ingest-token"] == "chosen"
    template = yaml.safe_load(TEMPLATE_PATH.read_text())
    param = next(p for p in template["parameters"] if p["name"] == "DASHBOARD_TOKEN")
    assert (param["generate"], param["from"]) == ("expression", "[a-zA-Z0-9]{32}")


# --- validation --------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_objects_validate_strictly(objects: list[Obj], version: str) -> None:
    kinds = set()
    for obj in objects:
        if obj["kind"] in OPENSHIFT_KINDS:
            continue
        kubernetes_validate.validate(obj, version, strict=True)
        kinds.add(obj["kind"])
    assert kinds == {"Secret", "PersistentVolumeClaim", "Deployment", "Service"}


def test_strict_validation_catches_a_mistake(objects: list[Obj]) -> None:
    broken = json.loads(json.dumps(one(objects, "Service", "mothership")))
    broken["spec"]["ports"][0]["prot"] = 8080
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_image_build(objects: list[Obj]) -> None:
    stream = one(objects, "ImageStream", "mothership")
    assert stream["apiVersion"] == "image.openshift.io/v1"
    assert stream["spec"]["lookupPolicy"]["local"] is True  # Deployments may say `mothership:0.1.0`
    build = one(objects, "BuildConfig", "mothership")
    assert build["apiVersion"] == "build.openshift.io/v1"
    spec = build["spec"]
    assert spec["source"]["type"] == "Git" and spec["source"]["git"]["uri"] == GIVEN["GIT_URI"]
    assert spec["source"]["git"]["ref"] == "main"
    assert spec["strategy"]["type"] == "Source"
    builder = spec["strategy"]["sourceStrategy"]["from"]
    assert builder == {"kind": "ImageStreamTag", "namespace": "openshift", "name": "python:3.11-ubi9"}
    assert spec["output"]["to"] == {"kind": "ImageStreamTag", "name": INJECT_IMAGE}  # what inject names by default
    # By default the example application runs the sample app from the image built here.
    _, example = deployments(objects)
    assert containers(example)["app"]["image"] == spec["output"]["to"]["name"]
    assert {t["type"] for t in spec["triggers"]} <= {"ConfigChange", "ImageChange", "GitHub", "Generic"}
    # What the builder runs: setup.py to install, .s2i/environment's APP_SCRIPT to start.
    s2i = dict(line.split("=", 1) for line in (ROOT / ".s2i/environment").read_text().splitlines()
               if line.strip() and not line.startswith("#"))
    script = ROOT / s2i["APP_SCRIPT"]
    assert script.is_file() and script.stat().st_mode & 0o111
    ours = {var for flags in FLAGS.values() for flag in flags for var in flag.envs} | {"MODE"}
    assert not set(s2i) & ours  # the image's environment configures nothing of ours behind the template's back


def test_routes_suit_a_websocket_and_reach_a_service_port(objects: list[Obj]) -> None:
    for route in find(objects, "Route"):
        assert route["apiVersion"] == "route.openshift.io/v1"
        spec = route["spec"]
        assert spec["to"]["kind"] == "Service"
        service = one(objects, "Service", spec["to"]["name"])
        assert spec["port"]["targetPort"] in {p["name"] for p in service["spec"]["ports"]}
        assert spec["tls"]["termination"] in {"edge", "reencrypt", "passthrough"}
        assert spec["tls"]["insecureEdgeTerminationPolicy"] in {"Redirect", "None", "Allow"}
    dashboard_route = one(objects, "Route", "mothership")
    annotations = dashboard_route["metadata"]["annotations"]
    for key in ("haproxy.router.openshift.io/timeout", "haproxy.router.openshift.io/timeout-tunnel"):
        value = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", annotations[key])
        assert value, annotations[key]
        seconds = int(value.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[value.group(2)]
        assert seconds >= 600  # a live page stays open for minutes or hours


def test_references_between_objects_resolve(objects: list[Obj]) -> None:
    secrets = secret_values(objects)
    streams = {s["metadata"]["name"] for s in find(objects, "ImageStream")}
    claims = {c["metadata"]["name"] for c in find(objects, "PersistentVolumeClaim")}
    for deployment in find(objects, "Deployment"):
        spec = deployment["spec"]
        pod_labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
        for container in spec["template"]["spec"]["containers"]:
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert (ref["name"], ref["key"]) in secrets, ref
        for volume in spec["template"]["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        triggers = json.loads(deployment["metadata"]["annotations"]["image.openshift.io/triggers"])
        names = containers(deployment)
        for trigger in triggers:
            assert trigger["from"]["kind"] == "ImageStreamTag"
            stream, _, tag = trigger["from"]["name"].partition(":")
            assert stream in streams and tag == __version__
            target = re.fullmatch(r'spec\.template\.spec\.containers\[\?\(@\.name=="([-\w]+)"\)\]\.image',
                                  trigger["fieldPath"])
            assert target and target.group(1) in names
            assert names[target.group(1)]["image"] == trigger["from"]["name"]
    for service in find(objects, "Service"):
        selected = [d for d in find(objects, "Deployment")
                    if service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(selected) == 1, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            owners = [c for c in containers(selected[0]).values()
                      if port["targetPort"] in {p["name"] for p in c.get("ports", [])}]
            assert len(owners) == 1, port


def test_everything_runs_under_an_arbitrary_uid(objects: list[Obj]) -> None:
    assert "runAsUser" not in TEMPLATE_PATH.read_text()
    assert "privileged" not in TEMPLATE_PATH.read_text()
    for deployment in find(objects, "Deployment"):
        for container in containers(deployment).values():
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True and context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"]
            assert resources["limits"]["cpu"] and resources["limits"]["memory"]


# --- agreement with the code -------------------------------------------------------


def test_environment_and_ports_agree_with_the_option_tables(objects: list[Obj]) -> None:
    secrets = secret_values(objects)
    dashboard_deployment, example = deployments(objects)
    dashboard_container = containers(dashboard_deployment)["dashboard"]
    assert app_mode(dashboard_container) == "dashboard"
    allowed = {var for flag in FLAGS["dashboard"] for var in flag.envs}
    assert set(env_of(dashboard_container)) <= allowed | {"POD_NAMESPACE"}  # (only for $(POD_NAMESPACE) below)
    dashboard = config_of(dashboard_container, secrets)
    assert isinstance(dashboard, DashboardConfig)
    assert dashboard.port == port_number(dashboard_container, "http")
    assert dashboard.token == secrets["mothership-tokens", "ingest-token"]
    assert dashboard.view_token == secrets["mothership-tokens", "view-token"]
    assert dashboard.data.startswith(dashboard_container["volumeMounts"][0]["mountPath"] + "/")
    service = one(objects, "Service", "mothership")
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    pod = containers(example)
    sidecar_container, app_container = pod[SIDECAR], pod["app"]
    assert example["spec"]["template"]["spec"]["shareProcessNamespace"] is True
    assert app_mode(sidecar_container) == "sidecar"
    assert set(env_of(sidecar_container)) <= {var for flag in FLAGS["sidecar"] for var in flag.envs}
    assert env_of(sidecar_container)["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    sidecar = config_of(sidecar_container, secrets)
    assert isinstance(sidecar, SidecarConfig)
    assert sidecar.port == port_number(sidecar_container, "http")
    assert sidecar.admin_port == port_number(sidecar_container, "ms-admin")
    assert sidecar.target_port == port_number(app_container, "app-http")
    assert sidecar.token == dashboard.token  # the same secret key on both sides
    assert (sidecar.pod, sidecar.app_name, sidecar.namespace) == (POD_NAME, "shop", NAMESPACE)
    assert sidecar.dashboard == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    app_service = one(objects, "Service", "shop")
    assert app_service["spec"]["ports"][0]["targetPort"] == "http"  # clients go through the sidecar

    # The example application: the sample app, which reads PORT only.
    assert set(env_of(app_container)) <= set(sampleapp.ENV_VARS)
    assert app_container["command"][:3] == ["python", "-m", "app.demo.sampleapp"]
    _, app_port, _ = sampleapp._parse(app_container["command"][3:], {"PORT": env_of(app_container)["PORT"]["value"]})
    assert app_port == port_number(app_container, "app-http")


def test_the_dashboard_answers_to_its_route_and_service_names_only() -> None:
    """DNS rebinding: the Host allow-list the template gives the dashboard, as the kubelet expands it."""
    objects, _ = render({**GIVEN, "ROUTE_HOST": "dash.apps.example.com"})
    dashboard_deployment, _ = deployments(objects)
    config = config_of(containers(dashboard_deployment)["dashboard"], secret_values(objects))
    assert isinstance(config, DashboardConfig) and config.trust_forwarded_proto  # TLS ends at the router
    gate = HostGate(config.allowed_hosts)
    route_host = one(objects, "Route", "mothership")["spec"]["host"]
    for host in (route_host, "mothership:8080", f"mothership.{NAMESPACE}", f"mothership.{NAMESPACE}.svc:8080",
                 f"mothership.{NAMESPACE}.svc.cluster.local", "10.128.2.17:8080"):
        assert gate.allows(host), host
    for host in ("evil.example", "mothership.evil.example", f"mothership.{NAMESPACE}.evil.example", "shop",
                 "dash.apps.example.com.evil.example"):
        assert not gate.allows(host), host
    # With no ROUTE_HOST the router makes one up, NAME-NAMESPACE.<its domain>: that is let in.
    objects, _ = render({**GIVEN, "ROUTE_HOST": ""})
    dashboard_deployment, _ = deployments(objects)
    config = config_of(containers(dashboard_deployment)["dashboard"], secret_values(objects))
    assert HostGate(config.allowed_hosts).allows(f"mothership-{NAMESPACE}.apps.cluster.example")


def test_prometheus_scrapes_the_sidecars_admin_port(objects: list[Obj]) -> None:
    dashboard_deployment, example = deployments(objects)
    scraped = ((example, SIDECAR, "ms-admin"), (dashboard_deployment, "dashboard", "http"))
    for deployment, container, port_name in scraped:
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) == port_number(containers(deployment)[container], port_name)


# --- agreement with the running code ---------------------------------------------


def _process_env(container: Obj, secrets: dict[tuple[str, str], str], overrides: dict[str, str]) -> dict[str, str]:
    return {**container_env(container, secrets), **overrides}


def _get(url: str, password: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if password is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"u:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def sample_app() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app.demo.sampleapp", "--host", "127.0.0.1"], cwd=ROOT,
                            env=app_env({"PORT": str(port)}), stdout=subprocess.DEVNULL)
    yield proc, port
    proc.terminate()
    proc.wait(10)


@pytest.mark.slow
def test_probes_metrics_and_tokens_work_on_the_real_processes(objects: list[Obj], run_app: Any, tmp_path: Path,
                                                               sample_app: tuple[Any, int]) -> None:
    """Each container started with its own command and environment from the template (ports moved to free
    ones, files to a temporary folder): every probe and scrape path answers, and the sidecar's reports
    reach the dashboard with the token both read from the same secret key."""
    secrets = secret_values(objects)
    dashboard_deployment, example = deployments(objects)
    dashboard_container = containers(dashboard_deployment)["dashboard"]
    sidecar_container, app_container = containers(example)[SIDECAR], containers(example)["app"]
    _, app_port = sample_app
    dashboard_port, sidecar_port, admin_port = free_port(), free_port(), free_port()
    local = {  # (container, template port) -> the port it got here
        ("dashboard", port_number(dashboard_container, "http")): dashboard_port,
        (SIDECAR, port_number(sidecar_container, "http")): sidecar_port,
        (SIDECAR, port_number(sidecar_container, "ms-admin")): admin_port,
        ("app", port_number(app_container, "app-http")): app_port,
    }
    run_app(dashboard_container["command"][3:], wait_ports=[dashboard_port], env=_process_env(
        dashboard_container, secrets,
        {"PORT": str(dashboard_port), "HOST": "127.0.0.1", "DATA_PATH": str(tmp_path / "history.sqlite3")}))
    run_app(sidecar_container["command"][3:], wait_ports=[sidecar_port, admin_port], env=_process_env(
        sidecar_container, secrets,
        {"PORT": str(sidecar_port), "ADMIN_PORT": str(admin_port), "TARGET_PORT": str(app_port),
         "HOST": "127.0.0.1", "DASHBOARD": f"http://127.0.0.1:{dashboard_port}", "RESOURCES_INTERVAL": "0.2",
         "STATS_INTERVAL": "0.2"}))
    wait_for_port(app_port)

    for deployment in (dashboard_deployment, example):
        for name, container in containers(deployment).items():
            for probe in ("readinessProbe", "livenessProbe"):
                get = container[probe]["httpGet"]
                port = local[name, port_number(container, get["port"])]
                deadline = time.monotonic() + 10
                while (status := _get(f"http://127.0.0.1:{port}{get['path']}")[0]) != 200:
                    assert time.monotonic() < deadline, f"{name} {probe} {get['path']}: {status}"
                    time.sleep(0.1)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        scraped = next(local[key] for key in local if key[1] == int(annotations["prometheus.io/port"])
                       and key[0] in containers(deployment))
        status, body = _get(f"http://127.0.0.1:{scraped}{annotations['prometheus.io/path']}")
        assert status == 200 and b"# TYPE" in body

    # Traffic through the sidecar shows on the dashboard: the ingest token matched.
    assert _get(f"http://127.0.0.1:{sidecar_port}/users/42")[0] == 200
    view_token = secrets["mothership-tokens", "view-token"]
    assert _get(f"http://127.0.0.1:{dashboard_port}/stats")[0] == 401  # the page is not open to all
    deadline = time.monotonic() + 15
    while True:
        status, body = _get(f"http://127.0.0.1:{dashboard_port}/stats", password=view_token)
        pods = {entry["pod"]: entry for entry in json.loads(body)} if status == 200 else {}
        if POD_NAME in pods and any(s["route"] == "/users/{id}" for s in pods[POD_NAME]["stats"]):
            break
        assert time.monotonic() < deadline, (status, body[:500])
        time.sleep(0.2)
    assert pods[POD_NAME]["app"] == "shop"


# --- one source of truth: the example application is what `inject` makes -----------


@pytest.mark.parametrize("given", [GIVEN, {**GIVEN, "NAME": "ms", "APP_NAME": "web", "APP_PORT": "9000",
                                            "IMAGE_TAG": "2.0.0", "APP_IMAGE": "quay.io/me/web:3"}])
def test_the_example_application_is_what_inject_makes_of_a_plain_one(given: dict[str, str]) -> None:
    objects = render(given)[0]
    _, example = deployments(objects)
    name = given.get("NAME", "mothership")
    config = InjectConfig(image=f"{name}:{given.get('IMAGE_TAG', __version__)}", dashboard=f"http://{name}:8080",
                          token_secret=(f"{name}-tokens", "ingest-token"), share_process_namespace=True)
    plain_text, notes = inject([("template", yaml.safe_dump(example))], replace(config, uninject=True))
    plain = yaml.safe_load(plain_text)
    # A plain Deployment: one container, whose port named `http` the Service targets.
    assert list(containers(plain)) == ["app"] and notes == []
    assert containers(plain)["app"]["ports"][0]["name"] == "http"
    assert "annotations" not in plain["spec"]["template"]["metadata"]
    assert "shareProcessNamespace" not in plain["spec"]["template"]["spec"]
    injected, notes = inject([("plain", plain_text)], config)
    assert yaml.safe_load(injected) == example
    assert notes == []
