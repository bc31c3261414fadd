"""From a tracked exchange to one wire sample: pure, no sockets."""

from __future__ import annotations

from app.core import routes
from app.core.wire import parse_sample
from sidecar.exchange import NO_SNI, TCP_ENDPOINT, Exchange, SampleMaker, is_probe, is_static, method_name, server_name
from sidecar.http1.tracker import ExchangeTracker


def exchange(target: bytes = b"/users/42?token=abc", method: bytes = b"GET", status: int = 200) -> Exchange:
    ex = Exchange(100.0)
    ex.method, ex.target, ex.status, ex.reason = method, target, status, "OK"
    ex.t_first, ex.t_end = 100.0015, 100.0042
    ex.bytes_in, ex.bytes_out = 80, 1200
    return ex


def test_a_sample_has_every_field_of_the_wire_format() -> None:
    maker = SampleMaker()
    maker.clock_offset = 1_700_000_000.0
    sample = maker(exchange())
    assert sample == {
        "endpoint": "/users/42", "route": "/users/{id}", "method": "GET",
        "response": {"status": 200, "message": "OK"},
        "time": sample["time"], "ttfb": sample["ttfb"], "started": 1_700_000_100_000.0,
        "file": False, "bytes_in": 80, "bytes_out": 1200, "probe": False, "error": None, "protocol": "http/1.1",
    }
    assert abs(sample["time"] - 4.2) < 1e-6 and sample["ttfb"] is not None and abs(sample["ttfb"] - 1.5) < 1e-6
    assert parse_sample(sample, "sample") == sample  # the dashboard takes it as it is


def test_the_query_is_dropped_unless_asked_for() -> None:
    assert SampleMaker()(exchange())["endpoint"] == "/users/42"
    assert SampleMaker(record_query=True)(exchange())["endpoint"] == "/users/42?token=abc"
    assert SampleMaker(record_query=True)(exchange(b"/plain"))["endpoint"] == "/plain"


def test_absolute_form_targets_keep_only_the_path() -> None:
    assert SampleMaker()(exchange(b"http://app:8080/orders/9?x=1"))["endpoint"] == "/orders/9"


def test_routes_are_capped() -> None:
    maker = SampleMaker(route_cap=routes.RouteCap(2))
    got = [maker(exchange(path))["route"] for path in (b"/a", b"/b/1", b"/c", b"/a", b"/b/2")]
    assert got == ["/a", "/b/{id}", routes.OVERFLOW_ROUTE, "/a", "/b/{id}"]


def test_unknown_methods_are_folded_so_clients_cannot_mint_labels() -> None:
    assert method_name(b"PATCH") == "PATCH"
    assert method_name(b"get") == "_OTHER" and method_name(b"X" * 40) == "_OTHER"
    assert SampleMaker()(exchange(method=b"PURGE"))["method"] == "_OTHER"


def test_static_files_and_probes() -> None:
    assert is_static("/static/app.3f2a.js") and is_static("/favicon.ico") and is_static("/img/A.PNG")
    assert not is_static("/users/42") and not is_static("/.js") and not is_static("/v1.2/items")
    assert is_probe(b"kube-probe/1.30") and not is_probe(b"curl/8.5")


def test_an_exchange_without_a_response() -> None:
    ex = exchange()
    ex.status, ex.reason, ex.t_first, ex.error = 0, "", None, "client_closed"
    sample = SampleMaker()(ex)
    assert (sample["ttfb"], sample["error"]) == (None, "client_closed")
    assert sample["response"] == {"status": 0, "message": ""}


def test_a_refused_request_without_a_target() -> None:
    tracker = ExchangeTracker()
    tracker.feed_request(b"\x16\x03\x01 not http", 1.0)
    refused = tracker.refused
    assert refused is not None
    tracker.conclude(refused, 400, "not an HTTP request", "bad_request", 150, 2.0)
    sample = SampleMaker()(refused)
    assert (sample["endpoint"], sample["route"], sample["method"]) == ("", "", "_OTHER")
    assert sample["response"] == {"status": 400, "message": "not an HTTP request"}


def test_headers_never_reach_a_sample() -> None:
    tracker = ExchangeTracker()
    tracker.feed_request(b"GET /me HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nCookie: sid=s3cret\r\n"
                         b"User-Agent: kube-probe/1.30\r\n\r\n", 1.0)
    tracker.sent(tracker.feed_response(b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=s3cret\r\nContent-Length: 0\r\n\r\n",
                                       2.0), 3.0)
    [ex] = tracker.take_finished()
    sample = SampleMaker()(ex)
    assert "s3cret" not in repr(sample) and sample["probe"] is True


def test_the_path_cache_stays_bounded() -> None:
    maker = SampleMaker()
    for i in range(10_000):
        maker.describe(f"/p/{i}".encode())
    assert len(maker._paths) <= 4096
    assert maker.describe(b"/p/7") == ("/p/7", "/p/{id}", False)


def test_http1_names_its_version() -> None:
    old = exchange()
    old.version = 0
    assert SampleMaker()(old)["protocol"] == "http/1.0"


def test_an_h2_stream_is_sampled_as_http1_is_with_its_protocol() -> None:
    ex = exchange(b"/users/42?token=abc")
    ex.protocol = "h2"
    ex.reason = ""
    sample = SampleMaker()(ex)
    assert sample == {**SampleMaker()(exchange()), "protocol": "h2", "response": {"status": 200, "message": ""}}
    assert parse_sample(sample, "s") is sample


def grpc_call(path: bytes, code: int | None, status: int, reason: str, message: str = "") -> Exchange:
    ex = exchange(path, b"POST", status)
    ex.protocol, ex.reason, ex.grpc_status, ex.grpc_message = "grpc", reason, code, message
    return ex


def test_a_grpc_call_has_its_method_path_as_route_and_its_status() -> None:
    maker = SampleMaker()
    ok = maker(grpc_call(b"/shop.v1.Orders/Get", 0, 200, "OK"))
    assert (ok["endpoint"], ok["route"], ok["method"], ok["protocol"]) == (
        "/shop.v1.Orders/Get", "/shop.v1.Orders/Get", "POST", "grpc")
    assert (ok["grpc_status"], ok["grpc_message"], ok["response"]) == (0, "", {"status": 200, "message": "OK"})
    # Not templated: a method named like an id stays as it is.
    odd = maker(grpc_call(b"/svc.V1/12345", 5, 404, "NOT_FOUND", "no such order: 12"))
    assert odd["route"] == "/svc.V1/12345"
    assert (odd["grpc_status"], odd["grpc_message"], odd["response"]["status"]) == (5, "no such order: 12", 404)
    reset = grpc_call(b"/svc.V1/Watch", None, 0, "")
    reset.error = "stream_reset"
    cut = maker(reset)
    assert (cut["grpc_status"], cut["error"]) == (None, "stream_reset")
    for sample in (ok, odd, cut):
        assert parse_sample(sample, "s") is sample  # the dashboard keeps it as it is


def test_grpc_routes_are_capped_too() -> None:
    maker = SampleMaker(route_cap=routes.RouteCap(1))
    assert maker(grpc_call(b"/a.A/X", 0, 200, "OK"))["route"] == "/a.A/X"
    assert maker(grpc_call(b"/a.A/Y", 0, 200, "OK"))["route"] == routes.OVERFLOW_ROUTE


def opaque(protocol: str, sni: bytes = b"", alpn: str = "") -> Exchange:
    ex = Exchange(10.0)
    ex.protocol, ex.target, ex.alpn = protocol, sni, alpn
    ex.t_first, ex.t_end, ex.bytes_in, ex.bytes_out = 10.001, 12.5, 517, 4096
    return ex


def test_an_opaque_connection_is_one_sample_named_by_its_server_name() -> None:
    maker = SampleMaker()
    tls = maker(opaque("tls", b"API.example.com", "h2,http/1.1"))
    assert (tls["endpoint"], tls["route"], tls["method"], tls["protocol"], tls["alpn"]) == (
        "api.example.com", "api.example.com", "TLS", "tls", "h2,http/1.1")
    assert tls["response"] == {"status": 0, "message": ""} and tls["error"] is None
    assert abs(tls["time"] - 2500.0) < 1e-6 and (tls["bytes_in"], tls["bytes_out"]) == (517, 4096)
    bare = maker(opaque("tls"))
    assert (bare["endpoint"], bare["route"], "alpn" in bare) == (NO_SNI, NO_SNI, False)
    tcp = maker(opaque("tcp"))
    assert (tcp["endpoint"], tcp["route"], tcp["method"], tcp["protocol"]) == (TCP_ENDPOINT, TCP_ENDPOINT, "TCP", "tcp")
    for sample in (tls, bare, tcp):
        assert parse_sample(sample, "s") is sample


def test_a_hostile_server_name_becomes_a_plain_host_name() -> None:
    assert server_name(b"Shop.Example.COM") == "shop.example.com"
    named = server_name(b"/../x?y#z\xff")
    assert named == "_.._x_y_z_" and "?" not in named and "/" not in named
    assert len(server_name(b"a" * 1000)) == 253


def test_untracked_streams_are_marked_and_others_carry_no_mark() -> None:
    ex = exchange()
    ex.protocol, ex.untracked, ex.error = "h2", True, "upstream_reset"
    sample = SampleMaker()(ex)
    assert sample["untracked"] is True and parse_sample(sample, "s") is sample
    assert "untracked" not in SampleMaker()(exchange())


def test_grpc_and_opaque_names_are_remembered_and_the_memory_stays_bounded() -> None:
    maker = SampleMaker()
    first = maker(grpc_call(b"/a.B/C", 0, 200, "OK"))
    assert maker(grpc_call(b"/a.B/C", 0, 200, "OK"))["route"] == first["route"] == "/a.B/C"
    for i in range(10_000):
        maker(opaque("tls", f"h{i}.example.com".encode()))
    assert len(maker._names) <= 4096
    assert maker(opaque("tls", b"h7.example.com"))["endpoint"] == "h7.example.com"
