"""SampleBuffer: batches sealed once, resent unchanged, bounded in bytes, losses counted."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import ujson
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.wire import Sample, parse_stats
from sidecar.report.buffer import SampleBuffer, encode_body, estimate_bytes


def make_sample(i: int = 0, *, route: str = "/users/{id}", status: int = 200, started: float | None = None,
                ms: float = 1.5) -> Sample:
    return {
        "endpoint": f"/users/{i}", "route": route, "method": "GET",
        "response": {"status": status, "message": "OK"}, "time": ms, "ttfb": ms / 2,
        "started": 1_732_470_000_000.0 + i * 10 if started is None else started,
        "file": False, "bytes_in": 100, "bytes_out": 2000, "probe": False, "error": None,
    }


def make_buffer(max_bytes: int = 1_000_000, cap: int = 1000) -> SampleBuffer:
    counter = itertools.count(1)
    return SampleBuffer("shop-1-abcde", "shop", max_bytes=max_bytes, max_samples_per_batch=cap,
                        new_id=lambda: f"b{next(counter)}")


def decode(body: bytes) -> dict[str, Any]:
    data = ujson.loads(body)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("samples", [0, 1, 3])
def test_a_body_encoded_piece_by_piece_is_the_json_of_the_whole(samples: int) -> None:
    head = {"pod": "shop-1-abcde", "app": "shop", "namespace": "ünï/cöde", "batch": "b1", "dropped": 2}
    stats = [make_sample(i, route="/a/\"{id}\"") for i in range(samples)]
    cells = [{"second": 1, "count": 3, "histogram": [1, 2]}, {"second": 2, "count": 1}][:samples]
    body = encode_body(head, stats, cells)
    assert decode(body) == {**head, "stats": stats, "summary": cells}
    assert body.isascii() and b": " not in body and b", " not in body  # compact, as ujson's was


def test_nothing_to_seal_means_no_batch() -> None:
    buffer = make_buffer()
    assert buffer.seal() is None
    assert buffer.next_batch() is None


def test_sealed_batch_is_valid_wire_and_carries_every_exchange() -> None:
    buffer = make_buffer()
    for i in range(5):
        buffer.add(make_sample(i))
    buffer.add(make_sample(9, status=503, route="/pay"))
    batch = buffer.seal()
    assert batch is not None and batch.id == "b1"
    body = decode(batch.body)
    assert (body["pod"], body["app"], body["batch"], body["dropped"]) == ("shop-1-abcde", "shop", "b1", 0)
    assert len(body["stats"]) == 6
    parsed = parse_stats(body)  # the dashboard's own check accepts it
    assert parsed.summarised and sum(cell["count"] for cell in parsed.summary) == 6
    assert {c["route"]: c["status"] for c in parsed.summary} == {"/users/{id}": {"2xx": 5}, "/pay": {"5xx": 1}}
    assert "namespace" not in body and parsed.namespace == ""  # not given one: the key is left out


def test_a_batch_carries_the_pods_namespace_when_the_sidecar_knows_it() -> None:
    buffer = SampleBuffer("shop-1-abcde", "shop", max_bytes=100_000, max_samples_per_batch=10, namespace="shop-prod")
    buffer.add(make_sample(1))
    batch = buffer.seal()
    assert batch is not None
    body = decode(batch.body)
    assert body["namespace"] == "shop-prod" and parse_stats(body).namespace == "shop-prod"


def test_samples_added_while_a_batch_is_in_flight_go_to_the_next_batch() -> None:
    buffer = make_buffer()
    buffer.add(make_sample(1))
    first = buffer.seal()
    assert first is not None
    sending = buffer.next_batch()
    assert sending is first and sending.in_flight
    buffer.add(make_sample(2))  # arrives during the POST
    buffer.acknowledge(sending)
    second = buffer.seal()
    assert second is not None
    assert [s["endpoint"] for s in decode(second.body)["stats"]] == ["/users/2"]
    assert buffer.stats.delivered == 1


def test_failed_batch_is_resent_unchanged_with_the_same_id() -> None:
    buffer = make_buffer()
    buffer.add(make_sample(1))
    batch = buffer.seal()
    assert batch is not None
    first_try = buffer.next_batch()
    assert first_try is not None
    buffer.release(first_try)
    buffer.add(make_sample(2))
    buffer.seal()
    retry = buffer.next_batch()
    assert retry is batch and retry.body == batch.body and retry.attempts == 2
    buffer.acknowledge(retry)
    following = buffer.next_batch()
    assert following is not None and following.id == "b2"


def test_raw_samples_are_capped_per_batch_but_the_summary_stays_exact() -> None:
    buffer = make_buffer(cap=10)
    for i in range(25):
        buffer.add(make_sample(i))
    batch = buffer.seal()
    assert batch is not None
    body = decode(batch.body)
    assert [s["endpoint"] for s in body["stats"]] == [f"/users/{i}" for i in range(15, 25)]  # the newest
    assert sum(cell["count"] for cell in body["summary"]) == 25
    assert body["dropped"] == 0  # nothing was lost: the summary counts all 25
    assert buffer.stats.left_out == 15 and buffer.stats.dropped == 0


def test_when_full_the_oldest_batch_is_dropped_and_reported_in_the_next() -> None:
    buffer = make_buffer(max_bytes=4000)
    sent = 0
    for i in range(12):  # twelve one-sample batches of ~500 bytes each: more than 4000
        buffer.add(make_sample(i))
        buffer.seal()
        sent += 1
    assert buffer.bytes <= 4000
    assert buffer.stats.dropped > 0
    delivered_exchanges, reported_dropped = 0, 0
    while (batch := buffer.next_batch()) is not None:
        body = decode(batch.body)
        delivered_exchanges += sum(c["count"] for c in body["summary"])
        reported_dropped += body["dropped"]
        buffer.acknowledge(batch)
    last = buffer.seal()  # the loss after the last batch is reported by the next one
    if last is not None:
        reported_dropped += decode(last.body)["dropped"]
    assert delivered_exchanges + reported_dropped == sent
    assert reported_dropped == buffer.stats.dropped
    # The newest batches survived, the oldest went.
    assert buffer.stats.dropped == 12 - delivered_exchanges


def test_the_batch_in_flight_is_never_dropped() -> None:
    buffer = make_buffer(max_bytes=1500)
    buffer.add(make_sample(0))
    buffer.seal()
    in_flight = buffer.next_batch()
    assert in_flight is not None
    for i in range(1, 30):
        buffer.add(make_sample(i))
    buffer.seal()
    assert in_flight in [buffer.next_batch()]  # still the head
    buffer.acknowledge(in_flight)
    assert buffer.stats.delivered == 1
    assert buffer.bytes <= 1500


def test_a_refused_batch_counts_as_lost_and_is_reported() -> None:
    buffer = make_buffer()
    for i in range(3):
        buffer.add(make_sample(i))
    batch = buffer.seal()
    assert batch is not None
    buffer.reject(buffer.next_batch() or batch)
    assert buffer.stats.dropped == 3
    follow = buffer.seal()  # nothing new but the loss: still worth a batch
    assert follow is not None and decode(follow.body)["dropped"] == 3
    assert decode(follow.body)["stats"] == []


def test_the_open_batch_alone_is_bounded_too() -> None:
    buffer = make_buffer(max_bytes=3000, cap=1000)
    for i in range(200):
        buffer.add(make_sample(i, started=1_732_470_000_000.0 + i * 1000))  # a new cell every second
        assert buffer.bytes <= 3000
    batch = buffer.seal()
    assert batch is not None
    body = decode(batch.body)
    assert sum(c["count"] for c in body["summary"]) + buffer.stats.dropped == 200
    assert buffer.stats.dropped > 0


def test_estimate_is_close_to_the_encoded_size() -> None:
    sample = make_sample(123456)
    real = len(ujson.dumps(sample))
    assert 0.8 * real <= estimate_bytes(sample) <= 1.3 * real


def test_ids_are_unique_across_buffers() -> None:
    a = SampleBuffer("p", "a", max_bytes=10_000, max_samples_per_batch=10)
    b = SampleBuffer("p", "a", max_bytes=10_000, max_samples_per_batch=10)
    ids = set()
    for buffer in (a, b, a, b):
        buffer.add(make_sample())
        batch = buffer.seal()
        assert batch is not None
        ids.add(batch.id)
    assert len(ids) == 4


def test_bad_bounds_fail_early() -> None:
    with pytest.raises(ValueError):
        SampleBuffer("p", "a", max_bytes=0, max_samples_per_batch=10)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["add", "add", "add", "seal", "send", "ok", "fail"]), max_size=120),
       st.integers(min_value=800, max_value=20_000), st.integers(min_value=1, max_value=8))
def test_every_exchange_is_delivered_or_counted_as_dropped(ops: list[str], max_bytes: int, cap: int) -> None:
    """The invariant the dashboard relies on, over any interleaving of adds,
    seals, sends, successes and failures."""
    buffer = make_buffer(max_bytes=max_bytes, cap=cap)
    added, delivered, reported = 0, 0, 0
    in_flight = None
    for i, op in enumerate(ops):
        if op == "add":
            buffer.add(make_sample(i, started=1_732_470_000_000.0 + i * 400))
            added += 1
        elif op == "seal":
            buffer.seal()
        elif op == "send" and in_flight is None:
            in_flight = buffer.next_batch()
        elif op in ("ok", "fail") and in_flight is not None:
            if op == "ok":
                body = decode(in_flight.body)
                delivered += sum(c["count"] for c in body["summary"])
                reported += body["dropped"]
                buffer.acknowledge(in_flight)
            else:
                buffer.release(in_flight)
            in_flight = None
        assert buffer.bytes <= max_bytes or in_flight is not None
    if in_flight is not None:
        buffer.release(in_flight)
    buffer.seal()
    while (batch := buffer.next_batch()) is not None:  # the dashboard comes back for good
        body = decode(batch.body)
        delivered += sum(c["count"] for c in body["summary"])
        reported += body["dropped"]
        buffer.acknowledge(batch)
        buffer.seal()
    assert delivered + reported == added
    assert reported == buffer.stats.dropped
    assert buffer.queued_exchanges == 0 and buffer.bytes == 0


def test_a_busy_interval_stays_bounded_and_its_summary_exact() -> None:
    """Twenty thousand exchanges in one interval (what bench.buffer_bench times): the raw samples are
    capped at the newest, the bytes stay bounded, and the summary still counts every exchange."""
    buffer = make_buffer(max_bytes=4 * 1024 * 1024)
    for i in range(20_000):
        buffer.add(make_sample(i, route=f"/r{i % 20}"))
        assert buffer.bytes <= 4 * 1024 * 1024
    batch = buffer.seal()
    assert batch is not None
    body = decode(batch.body)
    assert [s["endpoint"] for s in body["stats"]] == [f"/users/{i}" for i in range(19_000, 20_000)]
    assert sum(cell["count"] for cell in body["summary"]) == 20_000
    assert {cell["route"] for cell in body["summary"]} == {f"/r{k}" for k in range(20)}
    assert buffer.stats.left_out == 19_000 and buffer.stats.dropped == 0


def test_a_huge_summary_is_split_into_batches_the_dashboard_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    import sidecar.report.buffer

    monkeypatch.setattr(sidecar.report.buffer, "MAX_CELLS_PER_BATCH", 4)
    buffer = make_buffer()
    for i in range(10):  # ten cells: ten seconds
        buffer.add(make_sample(i, started=1_732_470_000_000.0 + i * 1000))
    last = buffer.seal()
    assert buffer.queued_batches == 3
    bodies = []
    while (batch := buffer.next_batch()) is not None:
        bodies.append(decode(batch.body))
        buffer.acknowledge(batch)
    assert [len(b["summary"]) for b in bodies] == [4, 4, 2]
    assert [len(b["stats"]) for b in bodies] == [0, 0, 10]  # the samples ride with the last
    assert last is not None and bodies[-1]["batch"] == last.id
    assert len({b["batch"] for b in bodies}) == 3
    assert sum(sum(c["count"] for c in parse_stats(b).summary) for b in bodies) == 10


def test_the_per_batch_cap_never_exceeds_what_the_dashboard_accepts() -> None:
    from app.core.wire import MAX_SAMPLES

    buffer = SampleBuffer("p", "a", max_bytes=10**9, max_samples_per_batch=10**6)
    assert buffer.max_samples_per_batch == MAX_SAMPLES
