"""Command-line and environment configuration for every mode.

Each flag can also come from an environment variable (the flag wins). Values
are checked once, here, and turned into frozen config objects; the rest of
the code takes those objects and never reads the environment itself.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from app import __version__

if TYPE_CHECKING:  # the dashboard's: imported where its flags are read (below), so a sidecar never loads it
    from app.dashboard.alerts.objectives import Objective

MODES = ("sidecar", "dashboard", "demo", "inject")
# The sidecar image `inject` puts in pods unless told otherwise: this version's.
INJECT_IMAGE = f"mothership:{__version__}"
PROTOCOLS = ("auto", "http1", "http2", "opaque")  # the sidecar's --protocol


class OptionError(ValueError):
    """A flag or environment variable has a value the program cannot use."""


@dataclass(frozen=True)
class SidecarConfig:
    port: int = 8080
    host: str = "0.0.0.0"
    target_host: str = "127.0.0.1"
    target_port: int = 8087
    dashboard: str = ""  # base URL without trailing slash; "" = no reporting
    token: str = ""
    pod: str = ""
    app_name: str = ""
    namespace: str = ""  # the pod's Kubernetes namespace (downward API); "" = not known, not reported
    admin_port: int = 9901
    stats_interval: float = 5.0
    resources_interval: float = 1.0
    connect_timeout: float = 5.0
    idle_timeout: float = 60.0
    header_timeout: float = 10.0
    max_header_bytes: int = 65536
    buffer_bytes: int = 4 * 1024 * 1024
    max_samples_per_batch: int = 1000
    grace_period: float = 10.0
    record_query: bool = False
    allow_connect: bool = False  # the app is a forward proxy: CONNECT goes through (else 405)
    protocol: str = "auto"  # one of PROTOCOLS: "auto" detects each connection's from its first bytes
    detect_timeout: float = 10.0  # a client silent this long (and an app silent too) is relayed as opaque


@dataclass(frozen=True)
class DashboardConfig:
    port: int = 8080
    host: str = "0.0.0.0"
    token: str = ""
    view_token: str = ""
    data: str = "mothership.sqlite3"
    retention: float = 3600.0  # seconds of history kept
    stale_after: float = 15.0  # seconds without a report before a pod is stale
    drop_after: float = 600.0  # seconds without a report before a pod is dropped
    max_body_bytes: int = 4 * 1024 * 1024
    allowed_origins: tuple[str, ...] = ()
    # Embedded alerts (app/dashboard/alerts): objectives, receivers, a silent pod.
    objective_success: float = 0.999  # share of exchanges that must succeed
    objective_p99: float = 1000.0  # ms within which 99% of exchanges must finish
    objectives: str = ""  # JSON file of per-app objectives
    objective_apps: tuple[tuple[str, Objective], ...] = ()  # read from `objectives` at start
    alertmanager: str = ""  # Alertmanager base URL (its v2 API)
    alert_webhook: str = ""  # any URL taking Alertmanager's webhook message
    silent_after: float = 60.0  # seconds without a report before a pod is alerted on
    allowed_hosts: tuple[str, ...] = ()  # besides loopback names and IP literals (app.dashboard.hosts)
    trust_forwarded_proto: bool = False  # X-Forwarded-Proto: https from a TLS proxy makes cookies Secure
    max_pods: int = 5000  # distinct pods kept; stale ones make room first
    max_apps: int = 500  # distinct apps kept
    overview_pods: int = 500  # pods sent whole in /api/overview and /ws; past it, the busiest and a summary


@dataclass(frozen=True)
class DemoConfig:
    port: int = 8080
    pods: int = 3
    rate: float = 5.0  # requests per second of generated traffic, in all
    data: str = ":memory:"


@dataclass(frozen=True)
class InjectConfig:
    dashboard: str = "http://mothership:8080"  # the Service of openshift-template.yaml's dashboard
    image: str = INJECT_IMAGE
    token_secret: tuple[str, str] | None = ("mothership-tokens", "ingest-token")  # (Secret, key)
    target_port: int | str | None = None  # the app port to front: a number or a port name
    uninject: bool = False
    share_process_namespace: bool = False
    files: tuple[str, ...] = ()  # none: standard input


Config = SidecarConfig | DashboardConfig | DemoConfig | InjectConfig


# --- value parsers: each raises ValueError with a short reason -------------


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number from 0 to 65535")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number of seconds")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def _duration(text: str) -> float:
    """Seconds, or a number with s/m/h/d: `90`, `15m`, `24h`, `7d`."""
    text = text.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(text[-1:], 0)
    number = text[:-1] if scale else text
    return _positive_float(number) * (scale or 1)


def _host(text: str) -> str:
    text = text.strip()
    if not text or any(c.isspace() or c in "/?#@" for c in text):
        raise ValueError("must be a host name or IP address")
    return text


def _url(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL such as http://dashboard:8080")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment")
    return text.rstrip("/")


def display_url(url: str) -> str:
    """A URL fit for a log line: any password in it replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


def _name(text: str) -> str:
    text = text.strip()
    if len(text) > 253 or any(c.isspace() or ord(c) < 32 for c in text):
        raise ValueError("must be a name without spaces, at most 253 characters")
    return text


# A Kubernetes namespace name is a DNS-1123 label (RFC 1123): what the API server accepts.
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def is_namespace(text: str) -> bool:
    """True for a name Kubernetes accepts as a namespace's (the dashboard checks reports by it too)."""
    return _NAMESPACE.fullmatch(text) is not None


def _namespace(text: str) -> str:
    text = text.strip()
    if text and not is_namespace(text):
        raise ValueError("must be a Kubernetes namespace name: lower-case letters, digits and -, at most 63")
    return text


def _text(text: str) -> str:
    return text


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_PORT_NAME = re.compile(r"(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _image(text: str) -> str:
    text = text.strip()
    if not text or any(c.isspace() for c in text):
        raise ValueError("must be an image name such as mothership:0.1.0 or registry.example.com/team/mothership:0.1.0")
    return text


def _secret_key(text: str) -> tuple[str, str] | None:
    """`NAME/KEY` of a Secret holding the ingest token; empty = no token."""
    text = text.strip()
    if not text:
        return None
    name, _, key = text.partition("/")
    if not re.fullmatch(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*", name) or len(name) > 253 \
            or not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
        raise ValueError("must be SECRET/KEY, such as mothership-tokens/ingest-token (empty: no token)")
    return name, key


def _port_or_name(text: str) -> int | str:
    text = text.strip()
    if text.isdigit():
        value = int(text)
        if not 1 <= value <= 65535:
            raise ValueError("must be a port number from 1 to 65535 or a port name")
        return value
    if len(text) > 15 or "--" in text or not _PORT_NAME.fullmatch(text):
        raise ValueError("must be a port number or a container port's name (such as http)")
    return text


def _protocol(text: str) -> str:
    value = text.strip().lower()
    if value not in PROTOCOLS:
        raise ValueError(f"must be one of {', '.join(PROTOCOLS)}")
    return value


def _origins(text: str) -> tuple[str, ...]:
    return tuple(o.strip().rstrip("/") for o in text.split(",") if o.strip())


def _hosts(text: str) -> tuple[str, ...]:
    entries = tuple(h.strip().lower() for h in text.split(",") if h.strip())
    for entry in entries:
        if any(c.isspace() or c in "/?#@\\" for c in entry):
            raise ValueError(f"must be host names, .suffixes or * separated by commas ({entry!r} is not)")
    return entries


# The objectives' parsers live with the dashboard's alerts; imported when a dashboard flag is read, as the
# sidecar, which reads this module too, has no use for them (issue 17: its memory).
def _success(text: str) -> float:
    from app.dashboard.alerts.objectives import parse_success

    return parse_success(text)


def _latency(text: str) -> float:
    from app.dashboard.alerts.objectives import parse_latency

    return parse_latency(text)


def _data_path(text: str) -> str:
    if not text.strip():
        raise ValueError("must be a file path or :memory:")
    return text


def app_name_from_pod(pod: str) -> str:
    """`j-slow-9-5rt8f` -> `j-slow`: a pod name less its last two `-` parts."""
    parts = pod.split("-")
    return "-".join(parts[:-2]) if len(parts) > 2 else pod


# --- the flag table --------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    name: str  # the config field
    envs: tuple[str, ...]
    parse: Callable[[str], Any]
    help: str
    switch: bool = False  # given alone (`--uninject`), no value

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SIDECAR_FLAGS = (
    Flag("port", ("PORT",), _port, "port clients connect to (8080)"),
    Flag("host", ("HOST",), _host, "address to listen on (0.0.0.0)"),
    Flag("target_host", ("TARGET_HOST",), _host, "the application's host (127.0.0.1)"),
    Flag("target_port", ("TARGET_PORT",), _port, "the application's port (8087)"),
    Flag("dashboard", ("DASHBOARD", "MOTHERSHIP"), _url, "dashboard base URL; empty = no reporting"),
    Flag("token", ("DASHBOARD_TOKEN",), _text, "bearer token sent to the dashboard"),
    Flag("pod", ("POD_NAME",), _name, "pod name (the host name)"),
    Flag("app_name", ("APP_NAME",), _name, "app name (pod name less its last two - parts)"),
    Flag("namespace", ("POD_NAMESPACE",), _namespace, "the pod's namespace, sent with its reports (none)"),
    Flag("admin_port", ("ADMIN_PORT",), _port, "port for /metrics, /healthz, /readyz (9901)"),
    Flag("stats_interval", ("STATS_INTERVAL",), _positive_float, "seconds between stats posts (5)"),
    Flag("resources_interval", ("RESOURCES_INTERVAL",), _positive_float, "seconds between resource posts (1)"),
    Flag("connect_timeout", ("CONNECT_TIMEOUT",), _positive_float, "seconds to connect to the app (5)"),
    Flag("idle_timeout", ("IDLE_TIMEOUT",), _positive_float, "seconds an idle client connection is kept (60)"),
    Flag("header_timeout", ("HEADER_TIMEOUT",), _positive_float, "seconds to receive a request's headers (10)"),
    Flag("max_header_bytes", ("MAX_HEADER_BYTES",), _positive_int, "largest request head accepted (65536)"),
    Flag("buffer_bytes", ("BUFFER_BYTES",), _positive_int, "bytes of unsent samples kept (4 MiB)"),
    Flag("max_samples_per_batch", ("MAX_SAMPLES_PER_BATCH",), _positive_int, "raw samples per stats post (1000)"),
    Flag("grace_period", ("GRACE_PERIOD",), _positive_float, "seconds to finish work on SIGTERM (10)"),
    Flag("record_query", ("RECORD_QUERY",), _bool, "keep query strings in samples (false)"),
    Flag("allow_connect", ("ALLOW_CONNECT",), _bool, "pass CONNECT to the app, a forward proxy (false: 405)"),
    Flag("protocol", ("PROTOCOL",), _protocol, "auto (detect per connection), http1, http2 or opaque (auto)"),
    Flag("detect_timeout", ("DETECT_TIMEOUT",), _positive_float,
         "seconds a silent client waits before it is relayed as opaque (10)"),
)

DASHBOARD_FLAGS = (
    Flag("port", ("PORT",), _port, "port to serve the page and API on (8080)"),
    Flag("host", ("HOST",), _host, "address to listen on (0.0.0.0)"),
    Flag("token", ("DASHBOARD_TOKEN",), _text, "bearer token every POST must carry"),
    Flag("view_token", ("VIEW_TOKEN",), _text, "token (or basic-auth password) for the page and /ws"),
    Flag("data", ("DATA_PATH",), _data_path, "SQLite file for history; :memory: keeps none"),
    Flag("retention", ("RETENTION",), _duration, "history kept: seconds or 15m, 24h, 7d (1h)"),
    Flag("stale_after", ("STALE_AFTER",), _duration, "a pod silent this long is stale (15s)"),
    Flag("drop_after", ("DROP_AFTER",), _duration, "a pod silent this long is dropped (10m)"),
    Flag("max_body_bytes", ("MAX_BODY_BYTES",), _positive_int, "largest POST body accepted (4 MiB)"),
    Flag("allowed_origins", ("ALLOWED_ORIGINS",), _origins, "extra Origins allowed on /ws, comma-separated"),
    Flag("objective_success", ("OBJECTIVE_SUCCESS",), _success, "percent of exchanges that must succeed (99.9)"),
    Flag("objective_p99", ("OBJECTIVE_P99",), _latency, "time within which 99 in 100 exchanges must finish (1s)"),
    Flag("objectives", ("OBJECTIVES",), _data_path, "JSON file of per-app objectives"),
    Flag("alertmanager", ("ALERTMANAGER_URL",), _url, "Alertmanager base URL; alerts go to its v2 API"),
    Flag("alert_webhook", ("ALERT_WEBHOOK",), _url, "URL that gets alerts as Alertmanager's webhook message"),
    Flag("silent_after", ("SILENT_AFTER",), _duration, "a pod silent this long is alerted on (60s)"),
    Flag("allowed_hosts", ("ALLOWED_HOSTS",), _hosts, "Host names answered besides loopback and IP literals, "
         "comma-separated (.suffix, name.*, * for any)"),
    Flag("trust_forwarded_proto", ("TRUST_FORWARDED_PROTO",), _bool,
         "behind a TLS proxy: X-Forwarded-Proto: https makes the view cookie Secure (false)"),
    Flag("max_pods", ("MAX_PODS",), _positive_int, "distinct pods kept; stale ones are dropped first (5000)"),
    Flag("max_apps", ("MAX_APPS",), _positive_int, "distinct apps kept (500)"),
    Flag("overview_pods", ("OVERVIEW_PODS",), _positive_int,
         "pods sent whole to the page; past it, the busiest and a summary (500)"),
)

DEMO_FLAGS = (
    Flag("port", ("PORT",), _port, "port of the demo's dashboard (8080)"),
    Flag("pods", ("DEMO_PODS",), _positive_int, "number of sample-app pods (3)"),
    Flag("rate", ("DEMO_RATE",), _positive_float, "requests per second of demo traffic (5)"),
    Flag("data", ("DATA_PATH",), _data_path, "SQLite file for the demo's history (:memory:)"),
)

INJECT_FLAGS = (
    Flag("dashboard", ("INJECT_DASHBOARD",), _url, "dashboard URL the sidecars report to (http://mothership:8080)"),
    Flag("image", ("INJECT_IMAGE",), _image, f"the sidecar's image ({INJECT_IMAGE})"),
    Flag("token_secret", ("INJECT_TOKEN_SECRET",), _secret_key,
         "SECRET/KEY holding the ingest token (mothership-tokens/ingest-token); empty = none"),
    Flag("target_port", ("INJECT_TARGET_PORT",), _port_or_name, "the app port to front: number or name"),
    Flag("uninject", ("INJECT_UNINJECT",), _bool, "take the sidecar out again", switch=True),
    Flag("share_process_namespace", ("INJECT_SHARE_PROCESS_NAMESPACE",), _bool,
         "share the pod's PID namespace (the sidecar then reports the app's processes)", switch=True),
)

FLAGS: dict[str, tuple[Flag, ...]] = {
    "sidecar": SIDECAR_FLAGS,
    "dashboard": DASHBOARD_FLAGS,
    "demo": DEMO_FLAGS,
    "inject": INJECT_FLAGS,
}
CONFIGS: dict[str, type] = {
    "sidecar": SidecarConfig,
    "dashboard": DashboardConfig,
    "demo": DemoConfig,
    "inject": InjectConfig,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit status 2
        raise OptionError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m app",
        usage="python -m app --mode sidecar|dashboard|demo|inject [flags] [FILE ...]",
        description="Mothership: service-mesh telemetry without a control plane.",
        epilog="Every flag may also be set by the environment variable shown; the flag wins.",
    )
    parser.add_argument("--mode", choices=MODES, help="what to run (env MODE)")
    parser.add_argument("files", nargs="*", metavar="FILE", help="inject: manifests to read (standard input if none)")
    seen: set[str] = set()
    for mode, flags in FLAGS.items():
        group = parser.add_argument_group(mode)
        for flag in flags:
            if flag.name in seen:
                continue
            seen.add(flag.name)
            # argparse formats help with %: a literal one ("99% of exchanges") must be doubled
            described = f"{flag.help} [env {' or '.join(flag.envs)}]".replace("%", "%%")
            if flag.switch:
                group.add_argument(flag.flag, dest=flag.name, default=None, action="store_const", const="true",
                                   help=described)
            else:
                group.add_argument(flag.flag, dest=flag.name, default=None, metavar="VALUE", help=described)
    return parser


def parse(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Turn arguments and environment into one config; raise OptionError."""
    env = os.environ if environ is None else environ
    argv = list(argv)
    if argv and argv[0] in MODES:  # `mothership inject x.yaml` is `--mode inject x.yaml`
        argv = ["--mode", *argv]
    args = vars(build_parser().parse_intermixed_args(argv))
    mode = args.pop("mode") or env.get("MODE", "")
    if mode not in MODES:
        raise OptionError(f"--mode: must be one of {', '.join(MODES)} (got {mode!r})")
    files = tuple(args.pop("files"))
    if files and mode != "inject":
        raise OptionError(f"{files[0]}: {mode} mode takes no file arguments")
    flags = FLAGS[mode]
    allowed = {f.name for f in flags}
    for name, value in args.items():
        if value is not None and name not in allowed:
            raise OptionError(f"--{name.replace('_', '-')}: not used in {mode} mode")
    values: dict[str, Any] = {}
    for flag in flags:
        raw, source = args[flag.name], flag.flag
        if raw is None:
            for var in flag.envs:
                if var in env:
                    raw, source = env[var], f"{flag.flag} (from {var})"
                    break
        if raw is None:
            continue
        try:
            values[flag.name] = flag.parse(raw)
        except ValueError as exc:
            reason = str(exc) if not str(exc).startswith(("invalid literal", "could not convert")) \
                else "is not a number"
            raise OptionError(f"{source}: {reason} (got {raw!r})") from None
    if mode == "inject":
        values["files"] = files
    config: Config = CONFIGS[mode](**values)
    if isinstance(config, SidecarConfig):
        config = _complete_sidecar(config)
    elif isinstance(config, DashboardConfig):
        config = _complete_dashboard(config)
    return config


def _complete_sidecar(config: SidecarConfig) -> SidecarConfig:
    pod = config.pod or socket.gethostname()
    app_name = config.app_name or app_name_from_pod(pod)
    if config.port == config.admin_port and config.port != 0:
        raise OptionError(f"--admin-port: must differ from --port (both {config.port})")
    return replace(config, pod=pod, app_name=app_name)


def _complete_dashboard(config: DashboardConfig) -> DashboardConfig:
    from app.dashboard.alerts.objectives import Objective, ObjectiveError, load_objectives

    default = Objective(success=config.objective_success, p99_ms=config.objective_p99)
    try:
        apps = load_objectives(config.objectives, default).apps
    except ObjectiveError as exc:
        raise OptionError(f"--objectives: {exc}") from None
    return replace(config, objective_apps=apps)
