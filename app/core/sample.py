"""The shape of one exchange's sample, and the words it uses (errors, protocols, status classes).

The lowest layer of the wire format: `app.core.wire` checks samples against it
(and re-exports it), `app.core.summary` counts them by it. A `Record` is the
same sample as an object with fields: what the sidecar makes of every
exchange and counts on its hot path; it becomes a wire `Sample` (a dict)
only when it is sent, which most are not (a batch carries at most
`--max-samples-per-batch` of them).
"""

from __future__ import annotations

from typing import Final, TypedDict

ERRORS = ("upstream_unavailable", "upstream_timeout", "upstream_reset", "client_closed", "bad_request",
          "stream_reset")
# Errors that mean the service failed the client (a client hanging up does not). An HTTP/2 stream reset
# is not one by itself: a gRPC client resets every call it cancels or lets run past its deadline; a
# reset the app sent after a 5xx status (or a gRPC code that maps to one) still counts by its status.
FAILURE_ERRORS: Final = frozenset(("upstream_unavailable", "upstream_timeout", "upstream_reset"))
# A sample's `protocol`: HTTP/1 by its version, then what the sidecar detected. The opaque ones are
# whole connections (see the README's wire format for how their endpoint, route and method read).
PROTOCOLS = ("http/1.1", "http/1.0", "h2", "grpc", "tls", "tcp")
OPAQUE_PROTOCOLS = frozenset(("tls", "tcp"))
STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx", "none")  # status // 100 - 1 -> its class (100-599)


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
    return STATUS_CLASSES[status // 100 - 1] if 100 <= status <= 599 else "none"


class Record:
    """One exchange's sample with fields, not keys: cheaper to make and to read than a dict, once per
    exchange. `to_sample` writes it as the wire's `Sample`; `from_sample` reads a wire sample (checked
    by `app.core.wire`, or the tests' own) into one, with what a missing key means to its counters."""

    __slots__ = ("alpn", "bytes_in", "bytes_out", "endpoint", "error", "file", "grpc_message", "grpc_status",
                 "message", "method", "probe", "protocol", "route", "started", "status", "time", "ttfb",
                 "untracked")

    def __init__(self, endpoint: str, route: str, method: str, status: int, message: str, time: float,
                 ttfb: float | None, started: float, file: bool, bytes_in: int, bytes_out: int, probe: bool,
                 error: str | None, protocol: str, grpc_status: int | None = None, grpc_message: str = "",
                 alpn: str = "", untracked: bool = False) -> None:
        self.endpoint = endpoint
        self.route = route
        self.method = method
        self.status = status
        self.message = message
        self.time = time  # ms, as the sample's
        self.ttfb = ttfb
        self.started = started  # epoch ms
        self.file = file
        self.bytes_in = bytes_in
        self.bytes_out = bytes_out
        self.probe = probe
        self.error = error
        self.protocol = protocol  # "" only when read from an older sidecar's sample, which had none
        self.grpc_status = grpc_status  # these four are written only where they apply (see Sample)
        self.grpc_message = grpc_message
        self.alpn = alpn
        self.untracked = untracked

    def to_sample(self) -> Sample:
        sample: Sample = {
            "endpoint": self.endpoint, "route": self.route, "method": self.method,
            "response": {"status": self.status, "message": self.message},
            "time": self.time, "ttfb": self.ttfb, "started": self.started, "file": self.file,
            "bytes_in": self.bytes_in, "bytes_out": self.bytes_out, "probe": self.probe, "error": self.error,
        }
        if self.protocol:
            sample["protocol"] = self.protocol
        if self.protocol == "grpc":
            sample["grpc_status"] = self.grpc_status
            sample["grpc_message"] = self.grpc_message
        elif self.alpn:
            sample["alpn"] = self.alpn
        if self.untracked:
            sample["untracked"] = True
        return sample

    @classmethod
    def from_sample(cls, sample: Sample) -> Record:
        response = sample.get("response")
        ttfb = sample.get("ttfb")  # JSON may have written any of these numbers as an int
        return cls(sample.get("endpoint", ""), sample.get("route", "/"), sample.get("method", "GET"),
                   response["status"] if response else 0, response.get("message", "") if response else "",
                   float(sample.get("time", 0.0)), None if ttfb is None else float(ttfb),
                   float(sample.get("started", 0.0)),
                   sample.get("file", False), sample.get("bytes_in") or 0, sample.get("bytes_out") or 0,
                   sample.get("probe", False), sample.get("error"), sample.get("protocol", ""),
                   sample.get("grpc_status"), sample.get("grpc_message", ""), sample.get("alpn", ""),
                   sample.get("untracked", False))

    def __repr__(self) -> str:
        return f"<Record {self.method} {self.route} -> {self.status} {self.time:.3f}ms {self.protocol}>"


def is_failure(sample: Sample) -> bool:
    return sample["response"]["status"] >= 500 or sample.get("error") in FAILURE_ERRORS
