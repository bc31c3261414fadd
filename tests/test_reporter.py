"""Reporter: delivery to a real (fake) dashboard over loopback — intervals, retries, outages, token."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import ujson
from prometheus_client.parser import text_string_to_metric_families

from app.options import SidecarConfig
from sidecar.metrics import SidecarMetrics
from sidecar.pod.sampler import ResourceSampler
from sidecar.report.buffer import SampleBuffer
from sidecar.report.reporter import Backoff, Reporter, endpoint_url, failure_reason
from tests.receiver_support import Receiver
from tests.test_buffer import make_sample


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def make_reporter(dashboard: str, *, sampler: ResourceSampler | None = None, buffer_bytes: int = 1_000_000,
                  cap: int = 1000, request_timeout: float | None = 0.5, **config: Any) -> Reporter:
    options: dict[str, Any] = {"stats_interval": 0.1, "resources_interval": 0.1, **config}
    cfg = SidecarConfig(dashboard=dashboard, pod="shop-1-abcde", app_name="shop",
                        buffer_bytes=buffer_bytes, max_samples_per_batch=cap, **options)
    buffer = SampleBuffer(cfg.pod, cfg.app_name, max_bytes=buffer_bytes, max_samples_per_batch=cap)
    metrics = SidecarMetrics()
    metrics.watch(buffer=buffer)
    return Reporter(cfg, buffer, sampler, metrics, request_timeout=request_timeout, rng=random.Random(7))


@asynccontextmanager
async def reporting(reporter: Reporter) -> AsyncIterator[Reporter]:
    """The reporter running for the block, then stopped (its last flush) and closed, whatever happened."""
    reporter.start()
    try:
        yield reporter
    finally:
        await reporter.stop()
        reporter.close()


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def metric(reporter: Reporter, name: str, **labels: str) -> float:
    from prometheus_client import generate_latest

    text = generate_latest(reporter.metrics.registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{name} {labels} not exposed")


# --- pure helpers ------------------------------------------------------------------


@pytest.mark.parametrize(("base", "url"), [
    ("http://d:8080", "http://d:8080/stats"),
    ("http://d:8080/", "http://d:8080/stats"),
    ("https://d/mothership/", "https://d/mothership/stats"),
])
def test_endpoint_urls_have_one_slash(base: str, url: str) -> None:
    assert endpoint_url(base, "stats") == url


def test_backoff_grows_with_jitter_and_resets() -> None:
    backoff = Backoff(1.0, 8.0, random.Random(1))
    delays = [backoff.delay() for _ in range(6)]
    for delay, base in zip(delays, (1, 2, 4, 8, 8, 8), strict=True):
        assert base / 2 <= delay <= base
    assert len({round(d, 6) for d in delays[3:]}) == 3  # jittered, not in step
    backoff.reset()
    assert backoff.delay() <= 1.0


def test_failure_reasons_are_bounded_words() -> None:
    from tornado.iostream import StreamClosedError

    assert failure_reason(599, TimeoutError()) == "timeout"
    assert failure_reason(599, ConnectionRefusedError()) == "connection"
    assert failure_reason(599, StreamClosedError()) == "connection"
    assert failure_reason(503, None) == "status_5xx"
    assert failure_reason(401, None) == "status_4xx"


# --- delivery -------------------------------------------------------------------------


@pytest.mark.gen_test(timeout=10)
async def test_stats_are_posted_only_when_there_is_something_new(io_loop: Any, receiver: Receiver) -> None:
    reporter = make_reporter(receiver.url)
    async with reporting(reporter):
        await asyncio.sleep(0.5)
        assert receiver.stats(answered=None) == []  # nothing happened: nothing posted
        for i in range(3):
            reporter.buffer.add(make_sample(i))
        await until(lambda: len(receiver.stats()) == 1)
        await asyncio.sleep(0.5)  # several intervals with nothing new
        assert len(receiver.stats(answered=None)) == 1
        body = receiver.stats()[0].body
        assert (body["pod"], body["app"], len(body["stats"])) == ("shop-1-abcde", "shop", 3)
        assert receiver.stats()[0].headers["Content-Type"] == "application/json"
        assert "Authorization" not in receiver.stats()[0].headers
        assert reporter.buffer.queued_exchanges == 0
        assert metric(reporter, "mothership_reporter_posts_total", endpoint="stats") == 1


@pytest.mark.gen_test(timeout=10)
async def test_stats_follow_their_interval_under_steady_traffic(io_loop: Any, receiver: Receiver) -> None:
    reporter = make_reporter(receiver.url, stats_interval=0.2)
    async with reporting(reporter):
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 1.1:
            reporter.buffer.add(make_sample(i, started=time.time() * 1000))
            i += 1
            await asyncio.sleep(0.01)
        await until(lambda: receiver.counted()[0] == i)
        elapsed = time.monotonic() - started
        times = [p.at for p in receiver.stats()]
        # One per 0.2 s, not one per sample (a loaded machine only stretches the intervals).
        assert 2 <= len(times) <= elapsed / 0.2 + 2, (len(times), elapsed, i)
        assert all(b - a >= 0.1 for a, b in itertools.pairwise(times))


@pytest.mark.gen_test(timeout=10)
async def test_resources_follow_their_interval_with_token_and_path_prefix(io_loop: Any) -> None:
    receiver = Receiver(prefix="/mothership").start()
    try:
        reporter = make_reporter(receiver.url + "/", sampler=ResourceSampler(), token="s3cret",
                                 resources_interval=0.1, stats_interval=5)
        reporter.start()
        started = time.monotonic()
        await until(lambda: len(receiver.resources()) >= 6)
        elapsed = time.monotonic() - started
        await reporter.stop()
        reporter.close()
        posts = receiver.resources()
        assert elapsed >= 0.45, elapsed  # one every 0.1 s, not a burst (a loaded machine only stretches them)
        assert {p.path for p in posts} == {"/mothership/resources"}
        assert {p.headers["Authorization"] for p in posts} == {"Bearer s3cret"}
        body = posts[-1].body
        assert body["pod"] == "shop-1-abcde" and body["app"] == "shop"
        assert {"free_memory", "total_memory", "cpus", "container", "sidecar"} <= set(body["resource"])
        assert receiver.stats(answered=None) == []
    finally:
        receiver.stop()


@pytest.mark.gen_test(timeout=15)
async def test_failed_batch_is_retried_with_the_same_id_and_new_samples_wait_behind(
        io_loop: Any, receiver: Receiver) -> None:
    receiver.set_mode("fail")
    reporter = make_reporter(receiver.url)
    async with reporting(reporter):
        reporter.buffer.add(make_sample(1))
        await until(lambda: len(receiver.stats(answered=500)) >= 3)
        reporter.buffer.add(make_sample(2))  # recorded while the first batch keeps failing
        await asyncio.sleep(0.2)
        first_ids = {p.body["batch"] for p in receiver.stats(answered=500)}
        assert len(first_ids) == 1, "a retry must resend the same batch id"
        attempts = [p.at for p in receiver.stats(answered=500)]
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert all(g >= 0.04 for g in gaps), gaps  # backed off, not a hot loop
        receiver.set_mode("ok")
        await until(lambda: receiver.counted()[0] == 2)
        ok = receiver.stats()
        assert ok[0].body["batch"] in first_ids  # the same batch went through first
        assert [s["endpoint"] for s in ok[0].body["stats"]] == ["/users/1"]
        assert [s["endpoint"] for p in ok[1:] for s in p.body["stats"]] == ["/users/2"]
        assert metric(reporter, "mothership_reporter_failed_posts_total", endpoint="stats", reason="status_5xx") >= 3


@pytest.mark.gen_test(timeout=20)
async def test_no_loss_across_an_outage_within_the_buffer(io_loop: Any, receiver: Receiver) -> None:
    receiver.refuse()
    reporter = make_reporter(receiver.url, cap=100)
    async with reporting(reporter):
        added = 0
        for _ in range(10):  # 1 s of outage, traffic all along
            for _ in range(30):
                reporter.buffer.add(make_sample(added, started=time.time() * 1000))
                added += 1
            await asyncio.sleep(0.1)
        assert receiver.stats(answered=None) == []
        assert reporter.buffer.queued_batches >= 5
        assert metric(reporter, "mothership_reporter_failed_posts_total", endpoint="stats", reason="connection") >= 1
        assert metric(reporter, "mothership_reporter_queue_samples") == added
        receiver.accept()
        await until(lambda: receiver.counted()[0] == added, timeout=10)
        assert receiver.counted() == (added, 0)
        raw = sum(len(p.body["stats"]) for p in receiver.stats())
        assert raw == added  # 30 per interval, well under the cap of 100: every raw sample too
        assert reporter.buffer.queued_exchanges == 0


@pytest.mark.gen_test(timeout=10)
async def test_posts_reuse_one_connection(io_loop: Any, receiver: Receiver) -> None:
    reporter = make_reporter(receiver.url, sampler=ResourceSampler(), resources_interval=0.05)
    async with reporting(reporter):
        for i in range(5):
            reporter.buffer.add(make_sample(i))
            await until(lambda: receiver.counted()[0] == i + 1)  # noqa: B023 (awaited before i changes)
        await until(lambda: len(receiver.resources()) >= 10)
        # Stats and resources may be out at the same moment: at most two connections, each kept.
        assert len({p.peer for p in receiver.posts}) <= 2 and len(receiver.posts) >= 15


@pytest.mark.gen_test(timeout=20)
async def test_a_dashboard_that_goes_down_and_comes_back_loses_and_doubles_nothing(
        io_loop: Any, receiver: Receiver) -> None:
    reporter = make_reporter(receiver.url)
    async with reporting(reporter):
        reporter.buffer.add(make_sample(0))
        await until(lambda: receiver.counted()[0] == 1)
        receiver.refuse()  # down: the kept connection is closed, new ones are refused
        for i in range(1, 4):
            reporter.buffer.add(make_sample(i))
            await asyncio.sleep(0.15)
        assert metric(reporter, "mothership_reporter_failed_posts_total", endpoint="stats", reason="connection") >= 1
        assert receiver.counted()[0] == 1
        receiver.accept()
        await until(lambda: receiver.counted()[0] == 4)
        posts = receiver.stats()
        assert len(posts) == len({p.body["batch"] for p in posts})  # each batch sent (and answered) once
        assert sorted(s["endpoint"] for p in posts for s in p.body["stats"]) == [f"/users/{i}" for i in range(4)]
        assert len({p.peer for p in posts[1:]}) == 1 and posts[0].peer != posts[1].peer  # a new kept connection


@pytest.mark.gen_test(timeout=20)
async def test_beyond_the_buffer_the_oldest_are_dropped_and_counted(io_loop: Any, receiver: Receiver) -> None:
    receiver.set_mode("fail")
    reporter = make_reporter(receiver.url, buffer_bytes=20_000)
    async with reporting(reporter):
        added = 0
        for _ in range(15):
            for _ in range(20):
                reporter.buffer.add(make_sample(added, started=time.time() * 1000))
                added += 1
            await asyncio.sleep(0.1)
            assert reporter.buffer.bytes <= 20_000 + 12_000  # at most one oversize batch in flight
        dropped = reporter.buffer.stats.dropped
        assert dropped > 0
        assert metric(reporter, "mothership_reporter_dropped_samples_total") == dropped
        receiver.set_mode("ok")
        await until(lambda: sum(receiver.counted()) == added, timeout=10)
        exchanges, reported = receiver.counted()
        assert reported == dropped and exchanges == added - dropped
        # What survived is the newest: the last sample added was delivered.
        delivered = {s["endpoint"] for p in receiver.stats() for s in p.body["stats"]}
        assert f"/users/{added - 1}" in delivered and "/users/0" not in delivered


@pytest.mark.gen_test(timeout=15)
async def test_a_hanging_dashboard_times_out_and_the_batch_is_resent(io_loop: Any, receiver: Receiver) -> None:
    receiver.set_mode("hang")
    reporter = make_reporter(receiver.url, request_timeout=0.3)
    async with reporting(reporter):
        reporter.buffer.add(make_sample(1))
        await until(lambda: len(receiver.stats(answered=None)) >= 2)  # the first timed out, then a retry
        assert metric(reporter, "mothership_reporter_failed_posts_total", endpoint="stats", reason="timeout") >= 1
        # The loop stayed free while the POST hung.
        start = time.monotonic()
        await asyncio.sleep(0.01)
        assert time.monotonic() - start < 0.05
        receiver.set_mode("ok")
        await until(lambda: receiver.counted()[0] == 1)
        assert len({p.body["batch"] for p in receiver.stats(answered=None)}) == 1


@pytest.mark.gen_test(timeout=10)
async def test_a_refused_batch_is_not_retried_forever(io_loop: Any, receiver: Receiver,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    receiver.set_mode("reject")
    reporter = make_reporter(receiver.url)
    async with reporting(reporter):
        reporter.buffer.add(make_sample(1))
        await until(lambda: len(receiver.stats(answered=400)) == 1)
        receiver.set_mode("ok")
        reporter.buffer.add(make_sample(2))
        await until(lambda: len(receiver.stats()) == 1)
        assert receiver.stats()[0].body["dropped"] == 1  # the refused exchange is reported lost
        assert len(receiver.stats(answered=400)) == 1
        assert "refused stats batch" in caplog.text


@pytest.mark.gen_test(timeout=10)
async def test_failures_are_logged_at_a_bounded_rate(io_loop: Any, receiver: Receiver,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mothership.sidecar.reporter")
    receiver.set_mode("fail")
    reporter = make_reporter(receiver.url, sampler=ResourceSampler(), resources_interval=0.05)
    async with reporting(reporter):
        reporter.buffer.add(make_sample(1))
        await until(lambda: len(receiver.resources()) >= 10 and len(receiver.stats(answered=500)) >= 2)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2  # one per endpoint, however many failures
        receiver.set_mode("ok")
        await until(lambda: "works again" in caplog.text)


@pytest.mark.gen_test(timeout=10)
async def test_no_dashboard_means_no_reporting_and_no_errors(io_loop: Any,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sampler = ResourceSampler()
    reporter = make_reporter("", sampler=sampler)
    assert not reporter.enabled
    reporter.start()
    reporter.buffer.add(make_sample(1))
    await asyncio.sleep(0.35)
    assert sampler.latest is not None  # still sampled, for /metrics
    assert await reporter.flush(1.0)
    await reporter.stop()
    reporter.close()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.gen_test(timeout=10)
async def test_flush_sends_what_is_open_at_once(io_loop: Any, receiver: Receiver) -> None:
    reporter = make_reporter(receiver.url, stats_interval=60)
    reporter.start()
    for i in range(4):
        reporter.buffer.add(make_sample(i))
    await reporter.stop()
    started = time.monotonic()
    assert await reporter.flush(2.0)
    assert time.monotonic() - started < 1.0
    reporter.close()
    assert receiver.counted() == (4, 0)


@pytest.mark.gen_test(timeout=10)
async def test_flush_gives_up_at_its_deadline(io_loop: Any, receiver: Receiver) -> None:
    receiver.refuse()
    reporter = make_reporter(receiver.url, stats_interval=60)
    reporter.buffer.add(make_sample(1))
    started = time.monotonic()
    assert not await reporter.flush(0.5)
    assert time.monotonic() - started < 1.0
    assert reporter.buffer.queued_exchanges == 1
    reporter.close()


# --- against the real dashboard -------------------------------------------------------


@pytest.mark.gen_test(timeout=30)
async def test_a_batch_whose_ack_was_lost_is_counted_once_by_the_real_dashboard(io_loop: Any, run_app: Any) -> None:
    from tornado.httpclient import AsyncHTTPClient

    from tests.conftest import free_port

    port = free_port()
    run_app(["--mode", "dashboard", "--port", str(port), "--data", ":memory:"], wait_ports=[port])
    dashboard = f"http://127.0.0.1:{port}"
    relay = Receiver(forward_to=dashboard, lose_acks=2).start()
    try:
        reporter = make_reporter(relay.url)
        reporter.start()
        now = time.time() * 1000
        for i in range(5):
            reporter.buffer.add(make_sample(i, started=now))
        await until(lambda: reporter.buffer.stats.delivered == 1, timeout=10)
        for i in range(3):
            reporter.buffer.add(make_sample(10 + i, started=now))
        await until(lambda: reporter.buffer.stats.delivered == 2, timeout=10)
        await reporter.stop()
        reporter.close()
        posts = relay.stats(answered=None)
        assert len(posts) == 4 and len({p.body["batch"] for p in posts[:3]}) == 1  # sent three times
        response = await AsyncHTTPClient().fetch(f"{dashboard}/stats")
        [pod] = [p for p in ujson.loads(response.body) if p["pod"] == "shop-1-abcde"]
        assert pod["total"] == 8 and pod["dropped"] == 0  # not 5 + 5 + 5 + 3
        assert len(pod["stats"]) == 8
    finally:
        relay.stop()
