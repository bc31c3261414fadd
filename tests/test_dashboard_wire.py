"""The dashboard's side of `app.core.wire`: fast paths agree with the full checks, and resource readings."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.histogram import OVERFLOW
from app.core.summary import summarise
from app.core.wire import WireError, parse_cell, parse_sample, parse_stats, resource_point
from tests.dashboard_support import sample

samples = st.builds(
    lambda path, status, ms, ttfb, started, nbytes, flags, error: {
        "endpoint": path, "route": path, "method": "GET", "response": {"status": status, "message": "m"},
        "time": ms, "ttfb": ttfb, "started": started, "file": flags[0], "bytes_in": nbytes, "bytes_out": nbytes,
        "probe": flags[1], "error": error},
    st.from_regex(r"/[a-z0-9/]{0,20}", fullmatch=True), st.integers(0, 999),
    st.floats(0, 86_400_000), st.none() | st.floats(0, 1e6), st.floats(0, 1e14), st.integers(0, 10**12),
    st.tuples(st.booleans(), st.booleans()), st.sampled_from([None, "upstream_timeout", "client_closed"]))


@given(samples)
def test_a_sample_in_wire_shape_passes_as_it_is(item: dict[str, Any]) -> None:
    parsed = parse_sample(item, "s")
    assert parsed is item
    slow = dict(item, extra=1)  # not exactly wire shape: the full check, same result less the extra key
    assert parse_sample(slow, "s") == {**item, "time": float(item["time"])}


protocol_samples = st.builds(
    lambda base, protocol, extras: {**base, "protocol": protocol, **extras},
    samples, st.sampled_from(["http/1.1", "http/1.0", "h2", "grpc", "tls", "tcp"]),
    st.fixed_dictionaries({}, optional={
        "grpc_status": st.none() | st.integers(0, 999), "grpc_message": st.text(max_size=30),
        "alpn": st.text(max_size=30), "untracked": st.just(True)}))


@given(protocol_samples)
def test_a_sample_with_a_protocol_and_its_optional_keys_passes_as_it_is(item: dict[str, Any]) -> None:
    assert parse_sample(item, "s") is item
    slow = dict(item, extra=1)
    assert parse_sample(slow, "s") == {**item, "time": float(item["time"])}


def test_an_opaque_sample_may_be_named_by_a_host_not_a_path() -> None:
    tls = {**sample(), "endpoint": "api.example.com", "route": "api.example.com", "method": "TLS",
           "response": {"status": 0, "message": ""}, "protocol": "tls", "alpn": "h2"}
    assert parse_sample(tls, "s") is tls
    # Only opaque samples: an HTTP one still needs a path (else the full check makes it one).
    http = {**tls, "protocol": "h2"}
    del http["alpn"]
    assert parse_sample(http, "s") is not http


@pytest.mark.parametrize("change", [
    {"protocol": "spdy"}, {"protocol": 2}, {"grpc_status": -1}, {"grpc_status": 1000}, {"grpc_status": "x"},
    {"grpc_status": 1.5}, {"grpc_status": True}, {"grpc_message": 5}, {"grpc_message": "x" * 3000}, {"alpn": ["h2"]},
    {"error": "stream_resets"},
])
def test_bad_new_fields_are_refused_whatever_the_path(change: dict[str, Any]) -> None:
    for base in ({**sample(), "protocol": "grpc", "grpc_status": 0, "grpc_message": ""}, sample()):
        with pytest.raises(WireError):
            parse_sample({**base, **change}, "s")


def test_the_new_error_word_and_old_samples_are_accepted() -> None:
    reset = {**sample(), "error": "stream_reset", "protocol": "h2"}
    assert parse_sample(reset, "s") is reset
    old = sample()
    assert parse_sample(old, "s") is old and "protocol" not in old
    # An untracked mark that is false is dropped, not kept.
    assert "untracked" not in parse_sample({**sample(), "protocol": "h2", "untracked": False, "x": 1}, "s")


def test_cells_with_a_protocol_and_grpc_codes_pass_as_they_are_and_bad_ones_do_not() -> None:
    calls = [{**sample(status=200 if code == 0 else 404), "protocol": "grpc", "grpc_status": code,
              "grpc_message": ""} for code in (0, 0, 5)]
    [cell] = summarise(calls)
    assert cell["protocol"] == "grpc" and cell["grpc"] == {"0": 2, "5": 1}
    assert parse_cell(cell, "c") is cell
    [h1] = summarise([{**sample(), "protocol": "http/1.1"}])
    assert parse_cell(h1, "c") is h1
    for change in ({"protocol": "spdy"}, {"grpc": {"0": 4}}, {"grpc": {"x": 1}}, {"grpc": {"0": -1}},
                   {"grpc": [0]}, {"grpc": {"1000": 1}}):
        bad = {**copy.deepcopy(cell), **change}
        with pytest.raises(WireError):
            parse_cell(bad, "c")
    slow = {**copy.deepcopy(cell), "grpc": {"00": 2, "5": 1}}  # not in exact shape: normalised by the full check
    assert parse_cell(slow, "c")["grpc"] == {"0": 2, "5": 1}


@pytest.mark.parametrize("change", [
    {"time": -1.0}, {"time": float("nan")}, {"time": float("inf")}, {"started": 1e15}, {"bytes_in": -1},
    {"bytes_in": True}, {"response": {"status": 1000, "message": ""}}, {"response": {"status": "x", "message": ""}},
    {"error": "boom"}, {"method": 5}, {"endpoint": "/" + "x" * 3000}, {"ttfb": -2.0},
])
def test_a_bad_sample_is_refused_whatever_the_path(change: dict[str, Any]) -> None:
    with pytest.raises(WireError):
        parse_sample({**sample(), **change}, "s")


def test_cells_from_our_summaries_pass_as_they_are_and_bad_ones_do_not() -> None:
    cells = summarise([sample(ms=float(i), status=200 + i % 2 * 300) for i in range(1, 50)])
    for cell in cells:
        assert parse_cell(cell, "c") is cell
    for change in ({"count": 1}, {"hist": [[OVERFLOW + 1, 49]]}, {"status": {"2xx": 48}},
                   {"status": {"9xx": 49}}, {"failures": -1}, {"min": float("nan")}, {"t": -5}):
        bad = {**copy.deepcopy(cells[0]), **change}
        with pytest.raises(WireError):
            parse_cell(bad, "c")


def test_parse_stats_refuses_the_whole_batch_for_one_bad_sample() -> None:
    good = sample()
    with pytest.raises(WireError, match=r"stats\[1\]\.time"):
        parse_stats({"pod": "a-1-x", "stats": [good, {**good, "time": -3}]})


def test_resource_point_prefers_the_container() -> None:
    full = {"cpu_percent": 50.0, "memory": {"used": 4.0, "total": 8.0}, "cpu_percent_per_core": [1, "x", 2.5],
            "container": {"cpu_limit_cores": 0.5, "cpu_percent": 20.0, "memory_usage": 1.0, "memory_limit": 2.0}}
    point = resource_point(full)
    assert (point.cpu, point.memory, point.memory_limit, point.cores) == (20.0, 1.0, 2.0, [1.0, 2.5])
    node = resource_point({**full, "container": {"cgroup": None, "cpu_percent": None, "memory_limit": None}})
    assert (node.cpu, node.memory, node.memory_limit) == (50.0, 4.0, 8.0)
    article = resource_point({"free_memory": 3.0, "total_memory": 8.0, "cpus": []})
    assert (article.cpu, article.memory, article.memory_limit, article.cores) == (None, 5.0, 8.0, None)
    junk = resource_point({"container": "x", "memory": [], "cpu_percent": float("nan")})
    assert (junk.cpu, junk.memory, junk.memory_limit) == (None, None, None)


def cpu_of(container: dict[str, Any], **node: Any) -> float | None:
    return resource_point({"cpu_percent": 50.0, "cpu_percent_per_core": [40.0, 60.0, 45.0, 55.0],
                           **node, "container": container}).cpu


def test_cpu_is_of_the_containers_limit_when_it_has_one() -> None:
    assert cpu_of({"cpu_limit_cores": 0.5, "cpu_cores_used": 0.2, "cpu_percent": 40.0}) == 40.0
    # The sidecar did not compute the percent: it is worked out from the cores used.
    assert cpu_of({"cpu_limit_cores": 0.5, "cpu_cores_used": 0.2, "cpu_percent": None}) == 40.0
    # Two counters read a moment apart can put a throttled pod a little over its limit.
    assert cpu_of({"cpu_limit_cores": 0.5, "cpu_cores_used": 0.52, "cpu_percent": 104.0}) == 100.0
    assert cpu_of({"cpu_limit_cores": 0.5, "cpu_percent": -0.5}) == 0.0


def test_cpu_without_a_limit_is_of_the_whole_node_not_of_one_core() -> None:
    # 1.75 cores busy: the sidecar says 175 (of one core); the page wants percent of the node's 4 cores.
    assert cpu_of({"cpu_limit_cores": None, "cpu_cores_used": 1.75, "cpu_percent": 175.0}) == 43.75
    # The article's `cpus` list counts the cores when the per-core percentages are missing.
    cpus = [{"model": "x", "speed": 1, "times": {}}] * 2
    assert cpu_of({"cpu_cores_used": 1.5, "cpu_percent": 150.0}, cpu_percent_per_core=None, cpus=cpus) == 75.0
    assert cpu_of({"cpu_cores_used": 2.1}, cpu_percent_per_core=[10.0, 20.0]) == 100.0  # jitter past all cores


def test_cpu_falls_back_to_the_nodes_percent() -> None:
    # Cores used unknown (no cgroup), or no way to count the node's cores: the node's own figure.
    assert cpu_of({"cgroup": None, "cpu_cores_used": None, "cpu_percent": 175.0}) == 50.0
    assert cpu_of({"cpu_cores_used": 1.0}, cpu_percent_per_core=[], cpus=None) == 50.0
    assert cpu_of({"cpu_limit_cores": 1.0, "cpu_cores_used": None, "cpu_percent": None}) == 50.0
    assert cpu_of({}, cpu_percent=None) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)
sample_keys = st.sampled_from(["endpoint", "route", "method", "response", "time", "ttfb", "started", "file",
                               "bytes_in", "bytes_out", "probe", "error", "status", "protocol", "grpc_status",
                               "grpc_message", "alpn", "untracked"])


@given(st.dictionaries(sample_keys, json_values, max_size=17), json_values, json_values)
def test_any_body_is_either_a_batch_or_a_wire_error(item: dict[str, Any], pod: Any, cells: Any) -> None:
    """Whatever arrives, parsing ends in a batch the store can take, or in WireError: nothing else escapes."""
    from app.dashboard.aggregate import PodStore
    from app.dashboard.jsontext import dumps
    from tests.dashboard_support import T0, FakeClock

    for body in ({"pod": "a-1-x", "stats": [item]}, {"pod": pod, "stats": []},
                 {"pod": "a-1-x", "summary": cells}, {"pod": "a-1-x", "summary": [item]}, item):
        try:
            batch = parse_stats(body)
        except WireError:
            continue
        store = PodStore(clock=FakeClock(T0))
        store.ingest_stats(batch)
        store.tick()
        dumps(store.overview()).encode("utf-8", "surrogatepass")
        store.drain(final=True)


@pytest.mark.parametrize("literal, refused", [("NaN", True), ("-Infinity", True), ("1e999", True),
                                              ("1.5e+308", False), ("12.5", False)])
def test_non_finite_numbers_in_a_resource_report_are_refused_with_or_without_the_raw_text(
        literal: str, refused: bool) -> None:
    import ujson

    from app.core.wire import parse_resources

    raw = b'{"pod": "a-1-x", "resource": {"memory": {"percent": LITERAL}, "cpus": []}}'.replace(
        b"LITERAL", literal.encode())
    for given_raw in (raw, None):
        if refused:
            with pytest.raises(WireError, match="finite"):
                parse_resources(ujson.loads(raw), raw=given_raw)
        else:
            assert parse_resources(ujson.loads(raw), raw=given_raw).resource["memory"]["percent"] == float(literal)


@given(st.text(alphabet="NaInfityeE+-0123456789.,:[]{} \"x", max_size=40))
def test_the_not_finite_prefilter_matches_exactly_the_texts_it_did(text: str) -> None:
    import re

    from app.core.wire import _maybe_not_finite

    raw = text.encode()
    assert _maybe_not_finite(raw) == bool(re.search(rb"NaN|Infinity|[eE][+-]?\d{3}", raw))
