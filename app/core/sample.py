"""The shape of one exchange's sample, and the words it uses (errors, protocols, status classes).

The lowest layer of the wire format: `app.core.wire` checks samples against it
(and re-exports it), `app.core.summary` counts them by it.
"""

from __future__ import annotations

from typing import TypedDict

ERRORS = ("upstream_unavailable", "upstream_timeout", "upstream_reset", "client_closed", "bad_request",
          "stream_reset")
# Errors that mean the service failed the client (a client hanging up does not). An HTTP/2 stream reset
# is not one by itself: a gRPC client resets every call it cancels or lets run past its deadline; a
# reset the app sent after a 5xx status (or a gRPC code that maps to one) still counts by its status.
FAILURE_ERRORS = frozenset(("upstream_unavailable", "upstream_timeout", "upstream_reset"))
# A sample's `protocol`: HTTP/1 by its version, then what the sidecar detected. The opaque ones are
# whole connections (see the README's wire format for how their endpoint, route and method read).
PROTOCOLS = ("http/1.1", "http/1.0", "h2", "grpc", "tls", "tcp")
OPAQUE_PROTOCOLS = frozenset(("tls", "tcp"))
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "none")


class Response(TypedDict):
    status: int  # 0 when no response came (see `error`)
    message: str


class Sample(TypedDict, total=False):
    endpoint: str  # path, query string dropped
    route: str  # path with identifiers templated: /users/{id}
    method: str
    response: Response
    time: float  # ms: request's first byte in -> response's last byte out
    ttfb: float | None  # ms: request's first byte -> response's first byte
    started: float  # epoch ms
    file: bool  # a static asset, by extension
    bytes_in: int
    bytes_out: int
    probe: bool  # Kubernetes probe traffic (kube-probe/ user agent)
    error: str | None  # None or one of ERRORS
    # From sidecars that know protocols (absent in the article's payloads and older sidecars):
    protocol: str  # one of PROTOCOLS
    grpc_status: int | None  # gRPC only: the call's status code (None: it ended without one)
    grpc_message: str  # gRPC only: grpc-message, percent-decoded
    alpn: str  # tls only, when the ClientHello offered any: its protocols, comma-separated
    untracked: bool  # present (true) only when the sidecar lost the connection's framing


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "none"


def is_failure(sample: Sample) -> bool:
    return sample["response"]["status"] >= 500 or sample.get("error") in FAILURE_ERRORS
