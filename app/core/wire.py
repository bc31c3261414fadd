"""The wire format sidecars send and the dashboard accepts.

One module both sides import: the shape of a sample (defined in
`app.core.sample`, below the summaries, and re-exported here), a stats batch
and a resource report, and the pure checks that turn a decoded JSON body into
normalised data or a `WireError` saying what is wrong. The article's own
payloads (status as a string, no route, no ttfb) are accepted and filled in.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from app.core import resource_bounds, routes
from app.core.histogram import OVERFLOW
from app.core.sample import ERRORS as ERRORS
from app.core.sample import FAILURE_ERRORS as FAILURE_ERRORS
from app.core.sample import OPAQUE_PROTOCOLS as OPAQUE_PROTOCOLS
from app.core.sample import PROTOCOLS as PROTOCOLS
from app.core.sample import STATUS_CLASSES as STATUS_CLASSES
from app.core.sample import Response as Response
from app.core.sample import Sample as Sample
from app.core.sample import is_failure as is_failure
from app.core.sample import status_class as status_class
from app.core.summary import summarise
from app.options import app_name_from_pod, is_namespace

MAX_GRPC_STATUS = 999  # the spec's codes are 0-16; a server may send its own, kept if small

MAX_SAMPLES = 20_000  # raw samples in one batch
MAX_CELLS = 50_000  # summary cells in one batch
MAX_TEXT = 2048  # characters in any string field
MAX_MS = 86_400_000.0  # one day: longer exchange times are absurd
MAX_COUNT = 10**12


class WireError(ValueError):
    """A payload the dashboard must refuse: the message says what is wrong."""


@dataclass
class StatsBatch:
    pod: str
    app: str
    batch: str | None
    dropped: int
    samples: list[Sample]
    summary: list[dict[str, Any]]  # cells, see app.core.summary
    summarised: bool = field(default=False)  # True when the sender sent the cells
    namespace: str = ""  # the pod's Kubernetes namespace; "" when the sidecar did not say (older ones)


# A resource report's `resource` object, as the sidecar's sampler sends it.
# The article's fields come first so its consumers keep working; the rest may
# be null where the platform does not say (no cgroup files, no shared PID
# namespace):
#   time: epoch ms
#   free_memory, total_memory: bytes (the node's, as the article had it)
#   cpus: [{"model", "speed", "times": {"user", "nice", "sys", "idle", "irq"}}]
#   cpu_percent: node CPU busy, 0-100;  cpu_percent_per_core: [0-100, ...]
#   load_average: [1m, 5m, 15m]
#   memory: {"total", "available", "used", "percent"} (node)
#   container: {"cgroup": "v2"|"v1"|null, "cpu_usage_seconds", "cpu_cores_used",
#               "cpu_limit_cores", "cpu_percent" (of the limit, else of one core),
#               "memory_usage", "memory_limit", "memory_percent"}
#   processes: [{"pid", "name", "cpu_percent", "rss"}] | null
#   sidecar: {"cpu_percent", "rss"}


@dataclass
class ResourceReport:
    pod: str
    app: str
    resource: dict[str, Any]
    namespace: str = ""


# --- checks ----------------------------------------------------------------


def _text(value: Any, where: str, *, required: bool = True, default: str = "") -> str:
    if value is None and not required:
        return default
    if not isinstance(value, str):
        raise WireError(f"{where} must be a string")
    if len(value) > MAX_TEXT:
        raise WireError(f"{where} is longer than {MAX_TEXT} characters")
    return value


def _number(value: Any, where: str, *, high: float, default: float | None = None) -> float:
    if value is None and default is not None:
        return default
    if isinstance(value, str):  # the article sent some numbers as strings
        try:
            value = float(value)
        except ValueError:
            raise WireError(f"{where} must be a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WireError(f"{where} must be a number")
    # Compare before any float(): a huge JSON integer would overflow it.
    if not (0 <= value <= high) or (isinstance(value, float) and not math.isfinite(value)):
        raise WireError(f"{where} must be between 0 and {high:g}")
    return float(value)


def _count(value: Any, where: str, default: int = 0) -> int:
    number = _number(value, where, high=MAX_COUNT, default=default)
    if number != int(number):
        raise WireError(f"{where} must be a whole number")
    return int(number)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WireError(f"{where} must be an object")
    return value


def _list(value: Any, where: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise WireError(f"{where} must be a list")
    if len(value) > limit:
        raise WireError(f"{where} has more than {limit} items")
    return value


def _pod_and_app(body: dict[str, Any]) -> tuple[str, str]:
    pod = _text(body.get("pod"), "pod")
    if not pod.strip():
        raise WireError("pod must not be empty")
    app = _text(body.get("app"), "app", required=False) or app_name_from_pod(pod)
    return pod, app


def _namespace(body: dict[str, Any]) -> str:
    """The optional `namespace`: absent or null in older sidecars' reports, else a Kubernetes name."""
    namespace = _text(body.get("namespace"), "namespace", required=False)
    if namespace and not is_namespace(namespace):
        raise WireError("namespace must be a Kubernetes namespace name (lower-case letters, digits and -)")
    return namespace


SAMPLE_KEYS = frozenset(("endpoint", "route", "method", "response", "time", "ttfb", "started", "file",
                         "bytes_in", "bytes_out", "probe", "error"))
OPTIONAL_SAMPLE_KEYS = ("grpc_status", "grpc_message", "alpn", "untracked")  # besides `protocol`
CELL_KEYS = frozenset(("t", "route", "method", "count", "status", "failures", "hist", "sum", "min", "max",
                       "bytes_in", "bytes_out"))
MAX_GRPC_CODES = 64  # distinct gRPC codes in one cell
_ERROR_WORDS = frozenset((None, *ERRORS))
_PROTOCOL_SET = frozenset(PROTOCOLS)
_STATUS_CLASS_SET = frozenset(STATUS_CLASSES)
_NUMBER_TYPES = (int, float)


def _fast_sample(item: Any) -> bool:
    """True when `item` is already exactly in wire shape, so it can be kept as it is.

    Our sidecar sends samples in this shape; checking it with plain type tests
    costs a fraction of `parse_sample`, which handles everything else (and
    says what is wrong).
    """
    # Twelve keys, all of them known (a missing one raises KeyError), is exactly the wire's key set;
    # thirteen with `protocol` (our sidecars since protocols came); more only with the optional ones.
    if type(item) is not dict:
        return False
    n = len(item)
    if n != 13 and n != 12 and not (13 < n <= 13 + len(OPTIONAL_SAMPLE_KEYS) and _fast_optional(item, n - 13)):
        return False
    try:
        protocol = item["protocol"] if n > 12 else None
        response, endpoint, route, method = item["response"], item["endpoint"], item["route"], item["method"]
        if type(response) is not dict or len(response) != 2:
            return False
        status, message = response["status"], response["message"]
        time, ttfb, started = item["time"], item["ttfb"], item["started"]
        bytes_in, bytes_out, error = item["bytes_in"], item["bytes_out"], item["error"]
        file, probe = item["file"], item["probe"]
    except KeyError:
        return False
    return (
        type(status) is int and 0 <= status <= 999 and type(message) is str and len(message) <= MAX_TEXT
        and type(endpoint) is str and len(endpoint) <= MAX_TEXT
        and (endpoint[:1] == "/" or protocol in OPAQUE_PROTOCOLS) and "?" not in endpoint and "#" not in endpoint
        and type(route) is str and 0 < len(route) <= routes.MAX_ROUTE_CHARS and type(method) is str
        and len(method) <= 16
        and type(time) in _NUMBER_TYPES and 0 <= time <= MAX_MS
        and (ttfb is None or (type(ttfb) in _NUMBER_TYPES and 0 <= ttfb <= MAX_MS))
        and type(started) in _NUMBER_TYPES and 0 <= started <= 1e14
        and type(file) is bool and type(probe) is bool
        and type(bytes_in) is int and 0 <= bytes_in <= MAX_COUNT
        and type(bytes_out) is int and 0 <= bytes_out <= MAX_COUNT
        and (error is None or (type(error) is str and error in _ERROR_WORDS))
        and (protocol is None or (type(protocol) is str and protocol in _PROTOCOL_SET))
    )


def _fast_optional(item: dict[str, Any], expected: int) -> bool:
    """True when exactly `expected` of the optional sample keys are there, each well formed."""
    found = 0
    if "grpc_status" in item:
        code = item["grpc_status"]
        if not (code is None or (type(code) is int and 0 <= code <= MAX_GRPC_STATUS)):
            return False
        found += 1
    for key in ("grpc_message", "alpn"):
        if key in item:
            text = item[key]
            if type(text) is not str or len(text) > MAX_TEXT:
                return False
            found += 1
    if "untracked" in item:
        if type(item["untracked"]) is not bool:
            return False
        found += 1
    return found == expected


def _fast_cell(cell: Any, overflow: int) -> bool:
    """True when `cell` is exactly in wire shape and consistent, so it can be kept as it is."""
    if type(cell) is not dict:
        return False
    n = len(cell)
    if n != 12:  # then `protocol` and perhaps `grpc` too (a gRPC cell)
        protocol = cell.get("protocol")
        if not (type(protocol) is str and protocol in _PROTOCOL_SET):
            return False
        if n == 14:
            if not _fast_grpc(cell.get("grpc"), cell.get("count")):
                return False
        elif n != 13:
            return False
    try:
        t, count, status, failures, hist = cell["t"], cell["count"], cell["status"], cell["failures"], cell["hist"]
        route, method, low, high, whole = cell["route"], cell["method"], cell["min"], cell["max"], cell["sum"]
        bytes_in, bytes_out = cell["bytes_in"], cell["bytes_out"]
    except KeyError:
        return False
    if not (type(t) is int and 0 <= t <= MAX_COUNT and type(count) is int and 0 <= count <= MAX_COUNT
            and type(failures) is int and 0 <= failures <= count and type(status) is dict
            and type(hist) is list and len(hist) <= overflow + 1):
        return False
    if not (type(route) is str and len(route) <= routes.MAX_ROUTE_CHARS and type(method) is str
            and len(method) <= 16):
        return False
    total = 0
    for klass, n in status.items():
        if klass not in _STATUS_CLASS_SET or type(n) is not int or n < 0:
            return False
        total += n
    if total != count:
        return False
    total = 0
    for pair in hist:
        if type(pair) is not list:
            return False
        try:
            index, n = pair
        except ValueError:
            return False
        if type(index) is not int or type(n) is not int or not 0 <= index <= overflow or n < 0:
            return False
        total += n
    if total != count:
        return False
    return (type(low) in _NUMBER_TYPES and 0 <= low <= MAX_MS and type(high) in _NUMBER_TYPES
            and 0 <= high <= MAX_MS and type(whole) in _NUMBER_TYPES and 0 <= whole <= MAX_MS * MAX_COUNT
            and type(bytes_in) is int and 0 <= bytes_in <= MAX_COUNT
            and type(bytes_out) is int and 0 <= bytes_out <= MAX_COUNT)


def parse_sample(raw: Any, where: str) -> Sample:
    if _fast_sample(raw):
        return raw  # type: ignore[no-any-return]
    item = _object(raw, where)
    response = item.get("response")
    if isinstance(response, dict):
        status = _count(response.get("status"), f"{where}.response.status", default=0)
        message = _text(response.get("message"), f"{where}.response.message", required=False)
    elif response is None:
        status, message = 0, ""
    else:
        status, message = _count(response, f"{where}.response"), ""
    if status > 999:
        raise WireError(f"{where}.response.status must be between 0 and 999")
    endpoint = _text(item.get("endpoint"), f"{where}.endpoint", required=False, default="/")
    path, _query = routes.split_target(endpoint)
    route = routes.cut(_text(item.get("route"), f"{where}.route", required=False) or routes.template(path))
    error = item.get("error")
    if error is not None and error not in ERRORS:
        raise WireError(f"{where}.error must be null or one of {', '.join(ERRORS)}")
    ttfb = item.get("ttfb")
    out: Sample = {
        "endpoint": path,
        "route": route,
        "method": _text(item.get("method"), f"{where}.method", required=False, default="GET")[:16],
        "response": {"status": status, "message": message},
        "time": _number(item.get("time"), f"{where}.time", high=MAX_MS),
        "ttfb": None if ttfb is None else _number(ttfb, f"{where}.ttfb", high=MAX_MS),
        "started": _number(item.get("started"), f"{where}.started", high=1e14),
        "file": bool(item.get("file", False)),
        "bytes_in": _count(item.get("bytes_in"), f"{where}.bytes_in"),
        "bytes_out": _count(item.get("bytes_out"), f"{where}.bytes_out"),
        "probe": bool(item.get("probe", False)),
        "error": error,
    }
    protocol = item.get("protocol")
    if protocol is not None:
        if protocol not in _PROTOCOL_SET:
            raise WireError(f"{where}.protocol must be one of {', '.join(PROTOCOLS)}")
        out["protocol"] = protocol
    _parse_optional(item, out, where)
    return out


def _parse_optional(item: dict[str, Any], out: Sample, where: str) -> None:
    """The optional keys of a sample (gRPC's status and message, TLS's ALPN, the untracked mark) into `out`."""
    if "grpc_status" in item:
        code = item["grpc_status"]
        if code is not None:
            code = _count(code, f"{where}.grpc_status")
            if code > MAX_GRPC_STATUS:
                raise WireError(f"{where}.grpc_status must be between 0 and {MAX_GRPC_STATUS}")
        out["grpc_status"] = code
    if "grpc_message" in item:
        out["grpc_message"] = _text(item["grpc_message"], f"{where}.grpc_message", required=False)
    if "alpn" in item:
        out["alpn"] = _text(item["alpn"], f"{where}.alpn", required=False)
    if item.get("untracked"):
        out["untracked"] = True


def _fast_grpc(codes: Any, count: Any) -> bool:
    if type(codes) is not dict or len(codes) > MAX_GRPC_CODES or type(count) is not int:
        return False
    total = 0
    for code, n in codes.items():
        if not (type(code) is str and _is_code(code) and type(n) is int and n >= 0):
            return False
        total += n
    return total <= count


def _is_code(text: str) -> bool:
    """A gRPC code as a cell writes it: ASCII digits, no leading zero, at most MAX_GRPC_STATUS."""
    return 0 < len(text) <= 3 and text.isascii() and text.isdigit() and (text[0] != "0" or text == "0")


def _parse_grpc(raw: Any, count: int, where: str) -> dict[str, int]:
    codes = _object(raw, where)
    if len(codes) > MAX_GRPC_CODES:
        raise WireError(f"{where} has more than {MAX_GRPC_CODES} codes")
    out: dict[str, Any] = {}
    for code, n in codes.items():
        if not (type(code) is str and 0 < len(code) <= 3 and code.isascii() and code.isdigit()):
            raise WireError(f"{where} keys must be gRPC status codes (0-{MAX_GRPC_STATUS})")
        key = str(int(code))
        out[key] = out.get(key, 0) + _count(n, f"{where}.{code}")
    if sum(out.values()) > count:
        raise WireError(f"{where} must add up to at most count")
    return out


def parse_cell(raw: Any, where: str) -> dict[str, Any]:
    if _fast_cell(raw, OVERFLOW):
        return raw  # type: ignore[no-any-return]
    cell = _object(raw, where)
    status = _object(cell.get("status", {}), f"{where}.status")
    for klass, n in status.items():
        if klass not in STATUS_CLASSES:
            raise WireError(f"{where}.status has an unknown class {klass[:20]!r}")
        _count(n, f"{where}.status.{klass}")
    hist = _list(cell.get("hist"), f"{where}.hist", OVERFLOW + 1)
    total = 0
    for pair in hist:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise WireError(f"{where}.hist must hold [index, count] pairs")
        index, n = _count(pair[0], f"{where}.hist index"), _count(pair[1], f"{where}.hist count")
        if index > OVERFLOW:
            raise WireError(f"{where}.hist index must be at most {OVERFLOW}")
        total += n
    count = _count(cell.get("count"), f"{where}.count")
    if count != total:
        raise WireError(f"{where}.count must equal the histogram's total")
    if sum(status.values()) != count:
        raise WireError(f"{where}.status must add up to count")
    out = {
        "t": _count(cell.get("t"), f"{where}.t"),
        "route": routes.cut(_text(cell.get("route"), f"{where}.route")),
        "method": _text(cell.get("method"), f"{where}.method")[:16],
        "count": count,
        "status": {k: int(v) for k, v in status.items()},
        "failures": min(_count(cell.get("failures"), f"{where}.failures"), count),
        "hist": [[int(i), int(n)] for i, n in hist],
        "sum": _number(cell.get("sum"), f"{where}.sum", high=MAX_MS * MAX_COUNT, default=0.0),
        "min": _number(cell.get("min"), f"{where}.min", high=MAX_MS, default=0.0),
        "max": _number(cell.get("max"), f"{where}.max", high=MAX_MS, default=0.0),
        "bytes_in": _count(cell.get("bytes_in"), f"{where}.bytes_in"),
        "bytes_out": _count(cell.get("bytes_out"), f"{where}.bytes_out"),
    }
    protocol = cell.get("protocol")
    if protocol is not None:
        if protocol not in _PROTOCOL_SET:
            raise WireError(f"{where}.protocol must be one of {', '.join(PROTOCOLS)}")
        out["protocol"] = protocol
    if cell.get("grpc") is not None:
        out["grpc"] = _parse_grpc(cell["grpc"], count, f"{where}.grpc")
    return out


def parse_stats(body: Any) -> StatsBatch:
    """Check a decoded `POST /stats` body; raise WireError if it is refused."""
    body = _object(body, "the body")
    pod, app = _pod_and_app(body)
    raw_samples = _list(body.get("stats", []), "stats", MAX_SAMPLES)
    samples = [parse_sample(s, f"stats[{i}]") for i, s in enumerate(raw_samples)]
    batch = body.get("batch")
    if batch is not None:
        batch = _text(batch, "batch")[:128]
    if "summary" in body:
        cells = _list(body["summary"], "summary", MAX_CELLS)
        summary = [parse_cell(c, f"summary[{i}]") for i, c in enumerate(cells)]
        summarised = True
    else:
        summary, summarised = summarise(samples), False
    return StatsBatch(pod=pod, app=app, batch=batch, dropped=_count(body.get("dropped"), "dropped"),
                      samples=samples, summary=summary, summarised=summarised, namespace=_namespace(body))


_BIG_EXPONENT = re.compile(rb"[eE][+-]?\d{3}")


def _maybe_not_finite(raw: bytes) -> bool:
    """True when `raw` holds the only JSON text a decoder turns into NaN or an infinity: its NaN
    and Infinity extensions, or an exponent too large for a float. (The two words are looked for
    as plain substrings first: about twice as fast as one regex with three alternatives.)"""
    return b"NaN" in raw or b"Infinity" in raw or _BIG_EXPONENT.search(raw) is not None


def parse_resources(body: Any, raw: bytes | None = None) -> ResourceReport:
    """Check a decoded `POST /resources` body; raise WireError if refused.

    `raw`, the body before decoding, lets the walk for non-finite numbers be
    skipped when nothing in the text could have produced one (most reports).
    """
    body = _object(body, "the body")
    pod, app = _pod_and_app(body)
    namespace = _namespace(body)
    try:  # depth and finiteness always; the size from the body's
        resource = resource_bounds.bounded(_object(body.get("resource"), "resource"),
                                           None if raw is None else len(raw), raw is None or _maybe_not_finite(raw))
    except resource_bounds.BoundsError as exc:
        raise WireError(str(exc)) from None
    for key in ("free_memory", "total_memory", "cpu_percent"):
        if resource.get(key) is not None:
            _number(resource[key], f"resource.{key}", high=1e18)
    if resource.get("cpus") is not None:
        _list(resource["cpus"], "resource.cpus", 4096)
    return ResourceReport(pod=pod, app=app, resource=resource, namespace=namespace)


@dataclass(frozen=True)
class ResourcePoint:
    """The few numbers the dashboard charts from one resource report."""

    cpu: float | None  # percent: of the container's limit when known, else of the node
    memory: float | None  # bytes: the container's usage when known, else the node's used
    memory_limit: float | None  # bytes: the container's limit when known, else the node's total
    cores: list[float] | None  # per-core percent of the node


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _node_cores(resource: dict[str, Any]) -> int:
    for key in ("cpu_percent_per_core", "cpus"):
        listed = resource.get(key)
        if isinstance(listed, list) and listed:
            return len(listed)
    return 0


def _cpu_percent(resource: dict[str, Any], container: dict[str, Any]) -> float | None:
    """CPU as percent 0-100 of the container's limit when it has one, else of the whole node.

    The sidecar's `container.cpu_percent` is of one core when there is no
    limit (175 for 1.75 cores busy), which is not what the page charts, so
    without a limit the cores used are divided by the node's cores instead.
    """
    limit = _finite(container.get("cpu_limit_cores"))
    used = _finite(container.get("cpu_cores_used"))
    if limit is not None and limit > 0:
        percent = _finite(container.get("cpu_percent"))
        if percent is None and used is not None:
            percent = used / limit * 100.0
        if percent is not None:
            # Usage is a difference of two cgroup counters read at slightly
            # different moments, so a pod at its limit can read a little over.
            return min(max(percent, 0.0), 100.0)
    elif used is not None and (cores := _node_cores(resource)):
        return min(max(used / cores * 100.0, 0.0), 100.0)  # same jitter as above
    return _finite(resource.get("cpu_percent"))


def resource_point(resource: dict[str, Any]) -> ResourcePoint:
    """Pick CPU and memory from a report: the container's own numbers first, then the node's."""
    container = resource.get("container")
    container = container if isinstance(container, dict) else {}
    memory_info = resource.get("memory")
    memory_info = memory_info if isinstance(memory_info, dict) else {}
    cpu = _cpu_percent(resource, container)
    memory = _finite(container.get("memory_usage"))
    if memory is None:
        memory = _finite(memory_info.get("used"))
    limit = _finite(container.get("memory_limit"))
    if limit is None:
        limit = _finite(memory_info.get("total"))
    total, free = _finite(resource.get("total_memory")), _finite(resource.get("free_memory"))
    if memory is None and total is not None and free is not None:
        memory = max(total - free, 0.0)  # the article's report: node memory only
    if limit is None:
        limit = total
    raw_cores = resource.get("cpu_percent_per_core")
    cores = None
    if isinstance(raw_cores, list):
        cores = [c for c in (_finite(v) for v in raw_cores[:1024]) if c is not None]
    return ResourcePoint(cpu=cpu, memory=memory, memory_limit=limit, cores=cores)
