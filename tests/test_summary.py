"""`app.core.summary`: a cell counts status classes and failures exactly as `app.core.wire` defines them."""

from __future__ import annotations

import itertools

from app.core.summary import Cell, SummaryBuilder, summarise
from app.core.wire import ERRORS, Sample, is_failure, status_class


def sample(status: int, error: str | None = None, ms: float = 1.5, started: float = 1_732_470_000_250.0) -> Sample:
    return {"endpoint": "/users/1", "route": "/users/{id}", "method": "GET",
            "response": {"status": status, "message": ""}, "time": ms, "ttfb": None, "started": started,
            "file": False, "bytes_in": 40, "bytes_out": 120, "probe": False, "error": error}


def test_status_classes_and_failures_follow_the_wire_rules() -> None:
    statuses = [0, 1, 99, 100, 101, 199, 200, 204, 299, 300, 304, 404, 499, 500, 503, 599, 600, 999, -5]
    samples = [sample(code, error) for code, error in itertools.product(statuses, [None, *ERRORS])]
    cell = Cell()
    for s in samples:
        cell.add(s)
    expected: dict[str, int] = {}
    for s in samples:
        klass = status_class(s["response"]["status"])
        expected[klass] = expected.get(klass, 0) + 1
    assert cell.status == expected
    assert cell.failures == sum(is_failure(s) for s in samples)
    assert cell.count == len(samples)
    assert (cell.bytes_in, cell.bytes_out) == (40 * len(samples), 120 * len(samples))


def test_cells_are_per_second_route_and_method() -> None:
    builder = SummaryBuilder()
    for started in (1_732_470_000_000.0, 1_732_470_000_999.9, 1_732_470_001_000.0):
        builder.add(sample(200, started=started))
    cells = builder.drain()
    assert [(c["t"], c["count"], c["status"]) for c in cells] == [
        (1_732_470_000, 2, {"2xx": 2}), (1_732_470_001, 1, {"2xx": 1})]
    assert summarise([sample(502, "upstream_unavailable")])[0]["failures"] == 1


def test_cells_are_per_protocol_and_grpc_cells_count_codes() -> None:
    t = 1_732_470_000_100.0
    h1 = {**sample(200, started=t), "protocol": "http/1.1"}
    h2 = {**sample(200, started=t), "protocol": "h2"}
    calls = [{**sample(status, started=t), "route": "/shop.Orders/Get", "method": "POST", "protocol": "grpc",
              "grpc_status": code, "grpc_message": ""} for status, code in ((200, 0), (200, 0), (404, 5), (0, None))]
    cells = summarise([h1, h2, sample(200, started=t), *calls])
    by_protocol = {c.get("protocol"): c for c in cells}
    assert {p: c["count"] for p, c in by_protocol.items()} == {None: 1, "http/1.1": 1, "h2": 1, "grpc": 4}
    # Calls without a status (a reset stream) are in `count` only.
    assert by_protocol["grpc"]["grpc"] == {"0": 2, "5": 1}
    assert "grpc" not in by_protocol["h2"] and "protocol" not in by_protocol[None]
    key, cell = Cell.from_wire(by_protocol["grpc"])
    assert key[3] == "grpc" and cell.grpc == {0: 2, 5: 1}
    other = Cell(grpc=True)
    other.add(calls[2])
    cell.merge(other)
    assert cell.grpc == {0: 2, 5: 2} and cell.to_wire(key)["grpc"] == {"0": 2, "5": 2}
