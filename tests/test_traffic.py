"""The demo's traffic: the mix (pure) and the generator against a real sample app."""

from __future__ import annotations

import asyncio
import random
import socket
from collections import Counter

import pytest
import tornado.web

from app.core import routes
from app.demo.sampleapp import SampleSettings, make_app
from app.demo.traffic import MIX, PROBE_USER_AGENT, TrafficGenerator, next_request


def test_mix_covers_every_kind_of_route() -> None:
    rng = random.Random(3)
    drawn = [next_request(rng) for _ in range(3000)]
    templated = Counter(routes.template(routes.split_target(r.path)[0]) for r in drawn)
    for route in ("/", "/api/items", "/users/{id}", "/orders/{id}", "/orders", "/slow", "/fail",
                  "/static/logo.png", "/static/style.css", "/static/app.js", "/favicon.ico"):
        assert templated[route] > 0, route
    # Ids vary, so the templating has work to do; few routes remain after it.
    assert len({r.path for r in drawn}) > 500 and len(templated) == len(MIX)
    posts = [r for r in drawn if r.method == "POST"]
    assert posts and all(r.body and r.headers["Content-Type"] == "application/json" for r in posts)
    # Weighted: fast reads dominate, slow calls stay rare.
    assert templated["/api/items"] > 2 * templated["/slow"]


@pytest.fixture
def app() -> tornado.web.Application:
    return make_app(SampleSettings(slow_min_ms=5, slow_max_ms=20, fail_rate=0.6, seed=1))


@pytest.mark.gen_test(timeout=30)
async def test_generator_sends_the_mix_and_probes(app: tornado.web.Application, http_server: object,
                                                  http_port: int) -> None:
    seen: list[tuple[str, str, int, str]] = []

    def record(handler: tornado.web.RequestHandler) -> None:
        request = handler.request
        seen.append((request.method or "", request.path, handler.get_status(),
                     request.headers.get("User-Agent", "")))

    def probes() -> list[tuple[str, str, int, str]]:
        return [s for s in seen if s[3] == PROBE_USER_AGENT]

    app.settings["log_function"] = record
    generator = TrafficGenerator([f"http://127.0.0.1:{http_port}"], rate=200, probe_interval=0.2,
                                 rng=random.Random(5))
    loop = asyncio.get_running_loop()
    started = loop.time()
    generator.start()
    # Until 150 answers and 4 probes, however long a loaded machine takes: the loop's sleeps only
    # ever get longer there, so what is asserted of the time is a lower bound (the rate is a cap).
    while generator.counts.answered < 150 or len(probes()) < 4:
        await asyncio.sleep(0.02)
    elapsed = loop.time() - started
    await generator.stop()
    count = len(seen)
    await asyncio.sleep(0.3)
    assert len(seen) == count  # stopped means stopped
    # 150 answers (a few of them probes) take ~145 random gaps at 200/s: 0.73 s on average, 3.7
    # standard deviations above 0.5 s (and the seed fixes them);
    # the first probe waits up to one interval, then one every 0.2 s.
    assert elapsed > 0.5, elapsed
    assert len(probes()) <= elapsed / 0.2 + 2, (len(probes()), elapsed)

    counts = generator.counts
    assert counts.sent == counts.answered + counts.failed and counts.failed == 0
    assert counts.answered == len(seen) >= 150
    statuses = Counter(status for _, _, status, _ in seen)
    assert statuses[200] and statuses[201] and statuses[500]
    assert counts.server_errors == statuses[500]
    assert all(path == "/healthz" and status == 200 for _, path, status, _ in probes())
    assert all(path != "/healthz" for _, path, _, agent in seen if agent != PROBE_USER_AGENT)


@pytest.mark.gen_test(timeout=15)
async def test_generator_survives_a_target_that_refuses() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connections are refused
        generator = TrafficGenerator([f"http://127.0.0.1:{port}"], rate=100, probe_interval=10)
        generator.start()
        await asyncio.sleep(0.5)
        await generator.stop()
    assert generator.counts.sent > 10 and generator.counts.failed == generator.counts.sent
    assert generator.counts.answered == 0


def test_generator_needs_a_target() -> None:
    with pytest.raises(ValueError):
        TrafficGenerator([], rate=1)
