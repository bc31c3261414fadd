"""One exchange: the `Exchange` record a tracker fills in as the bytes pass, and the wire `Sample` it becomes.

`SampleMaker` owns the choices a sample makes about its request: the path
without the query, the route (templated, then capped so label sets stay
bounded), the method (unknown ones become `_OTHER`, as OpenTelemetry does),
the static-file and probe flags, the protocol; a gRPC call's route is its
method path, an opaque connection's route its TLS server name (or a fixed
word). Headers are never copied into a sample.
"""

from __future__ import annotations

import re
from typing import Final

from app.core import routes
from app.core.sample import Record
from app.core.wire import MAX_TEXT, PROTOCOLS, Sample


class Exchange:
    """One request and its response, as far as they have been seen.

    Times are the caller's monotonic seconds: `t_start` when the request's
    first byte came in, `t_first` when the response's first byte came in
    (1xx interim responses included), `t_end` when its last byte went out.
    """

    # Class-level defaults: a new exchange sets only its start time (this is
    # made once per request, on the hot path); the rest is set as it is seen.
    t_first: float | None = None
    t_end: float | None = None
    method = b""
    target = b""
    version = 1  # minor version: HTTP/1.0 or HTTP/1.1
    user_agent = b""
    keep_alive = True
    upgrade = b""  # the Upgrade field's value (lowercased) when Connection: upgrade asked for it
    status = 0
    reason = ""  # the reason phrase, or why the proxy refused the request
    bytes_in = 0
    bytes_out = 0
    error: str | None = None
    head_done = False
    request_done = False
    response_done = False
    tunnel = False
    refused = False
    orphan = False  # a response nobody asked for: forwarded, never reported
    # Set by the protocols other than HTTP/1 (HTTP/1 leaves them as they are):
    protocol = ""  # "" means HTTP/1 (`version` says which); else "h2", "grpc", "tls" or "tcp"
    grpc_status: int | None = None  # from grpc-status in trailers (or a Trailers-Only response)
    grpc_message = ""  # grpc-message, percent-decoded
    alpn = ""  # opaque TLS: the protocols the ClientHello offered, comma-separated
    untracked = False  # the tracker lost the connection's framing; bytes still flowed

    def __init__(self, t_start: float) -> None:
        self.t_start = t_start

    def __repr__(self) -> str:
        return (f"<Exchange {self.method.decode('latin-1')} {self.target[:80]!r} -> {self.status}"
                f" in={self.bytes_in} out={self.bytes_out} error={self.error}>")



PROBE_AGENT: Final = b"kube-probe/"  # how the kubelet's User-Agent begins
OTHER_METHOD: Final = "_OTHER"
METHODS: Final = {m.encode(): m for m in (
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
)}
STATIC_EXTENSIONS: Final = frozenset((
    "css", "js", "mjs", "map", "json", "html", "htm", "txt", "xml", "wasm",
    "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "avif", "bmp",
    "woff", "woff2", "ttf", "otf", "eot",
    "mp3", "mp4", "webm", "ogg", "wav", "pdf", "zip", "gz", "tar",
))
_CACHE_SIZE: Final = 4096  # distinct raw paths remembered; cleared when full
_NO_TARGET: Final = ("", "", False)  # a request refused before its target could be read (not "/")
# An opaque connection has no HTTP method or path: its method names the protocol, its endpoint and route
# are the TLS server name (SNI) when the client sent one, else these words (see the README's wire format).
OPAQUE_METHODS: Final = {"tls": "TLS", "tcp": "TCP"}
NO_SNI: Final = "(no sni)"
TCP_ENDPOINT: Final = "(tcp)"
MAX_SNI: Final = 253  # the longest DNS name
_NOT_DNS: Final = re.compile(r"[^a-z0-9._-]")  # a client may send anything as SNI; samples get a host name


def is_static(path: str) -> bool:
    """A static asset, judged by the extension of the path's last segment."""
    last = path.rpartition("/")[2]
    stem, dot, ext = last.rpartition(".")
    return bool(dot and stem) and ext.lower() in STATIC_EXTENSIONS


def is_probe(user_agent: bytes) -> bool:
    return user_agent.startswith(PROBE_AGENT)


def server_name(sni: bytes) -> str:
    """A TLS server name as an endpoint: lower case, DNS characters only (others become `_`), or NO_SNI."""
    name = sni[:MAX_SNI].decode("ascii", "replace").lower()
    return _NOT_DNS.sub("_", name) or NO_SNI


def method_name(method: bytes) -> str:
    return METHODS.get(method, OTHER_METHOD)


class SampleMaker:
    """Makes samples (`record`; calling it makes a wire sample); remembers each raw path's (endpoint, route,
    file) to keep templating off the hot path.

    The route remembered is the template; the cap (the busiest routes, `RouteCap`) is asked on every
    exchange, since it counts them and its answer for a route can change.
    """

    def __init__(self, *, record_query: bool = False, route_cap: routes.RouteCap | None = None) -> None:
        self.record_query = record_query
        self.route_cap = route_cap if route_cap is not None else routes.RouteCap()
        self.clock_offset = 0.0  # epoch seconds minus monotonic seconds
        self._paths: dict[bytes, tuple[str, str, bool]] = {b"": _NO_TARGET}
        self._names: dict[tuple[str, bytes], tuple[str, str]] = {}  # (protocol, raw name) -> (endpoint, route)

    def describe(self, raw_path: bytes) -> tuple[str, str, bool]:
        """(endpoint, route, file) of a request target without its query."""
        known = self._paths.get(raw_path)
        if known is not None:
            return known
        path, _query = routes.split_target(raw_path.decode("utf-8", "replace"))
        known = (path, routes.template(path), is_static(path))
        if len(self._paths) >= _CACHE_SIZE:
            self._paths.clear()
            self._paths[b""] = _NO_TARGET
        self._paths[raw_path] = known
        return known

    def __call__(self, ex: Exchange) -> Sample:
        return self.record(ex).to_sample()

    def record(self, ex: Exchange) -> Record:
        """The exchange's sample, as a record (the sidecar's hot path: once per exchange)."""
        if ex.protocol:  # HTTP/2, gRPC or opaque; HTTP/1 pays for this test only
            return self._other(ex)
        endpoint, route, static = self._target(ex.target)
        return self._record(ex, endpoint, route, METHODS.get(ex.method, OTHER_METHOD), static,
                            ex.user_agent.startswith(PROBE_AGENT), "http/1.1" if ex.version else "http/1.0")

    def _target(self, target: bytes) -> tuple[str, str, bool]:
        """(endpoint, route, file) of an HTTP request's target, its route counted by the cap (HTTP/1, h2)."""
        raw_path, mark, raw_query = target.partition(b"?")
        endpoint, route, static = self._paths.get(raw_path) or self.describe(raw_path)
        if mark and self.record_query:
            endpoint = f"{endpoint}?{raw_query.decode('utf-8', 'replace')}"
        return endpoint, self.route_cap(route), static

    def _name(self, protocol: str, target: bytes) -> tuple[str, str]:
        """(endpoint, route) of a gRPC call's method path or an opaque connection's server name, remembered."""
        if protocol == "grpc":
            # The method path names the call (`/pkg.Service/Method`): not templated, only capped.
            endpoint = target.partition(b"?")[0].decode("utf-8", "replace")[:routes.MAX_PATH_CHARS]
            route = routes.cut(endpoint) if endpoint else ""
        else:
            endpoint = server_name(target) if protocol == "tls" else TCP_ENDPOINT
            route = routes.cut(endpoint)
        if len(self._names) >= _CACHE_SIZE:
            self._names.clear()
        self._names[protocol, target] = (endpoint, route)
        return endpoint, route

    def _record(self, ex: Exchange, endpoint: str, route: str, method: str, static: bool, probe: bool,
                protocol: str) -> Record:
        t_start = ex.t_start
        t_end = ex.t_end or t_start
        t_first = ex.t_first
        return Record(endpoint, route, method, ex.status, ex.reason, (t_end - t_start) * 1000.0,
                      None if t_first is None else (t_first - t_start) * 1000.0,
                      (t_start + self.clock_offset) * 1000.0, static, ex.bytes_in, ex.bytes_out, probe, ex.error,
                      protocol)

    def _other(self, ex: Exchange) -> Record:
        """The record of an HTTP/2 stream, a gRPC call or an opaque connection."""
        protocol = ex.protocol
        method = METHODS.get(ex.method, OTHER_METHOD)
        static = probe = False
        if protocol in OPAQUE_METHODS or protocol == "grpc":
            named = self._names.get((protocol, ex.target))
            if named is None:
                named = self._name(protocol, ex.target)
            endpoint, route = named
            route = self.route_cap(route) if route else ""  # asked each time: the cap counts
            if protocol == "grpc":
                probe = ex.user_agent.startswith(PROBE_AGENT)
            else:
                method = OPAQUE_METHODS[protocol]
        else:  # h2: as HTTP/1
            endpoint, route, static = self._target(ex.target)
            probe = ex.user_agent.startswith(PROBE_AGENT)
        record = self._record(ex, endpoint, route, method, static, probe, protocol if protocol in PROTOCOLS else "tcp")
        if protocol == "grpc":
            record.grpc_status = ex.grpc_status
            record.grpc_message = ex.grpc_message[:MAX_TEXT]
        elif protocol == "tls" and ex.alpn:
            record.alpn = ex.alpn[:MAX_TEXT]
        record.untracked = ex.untracked
        return record
