"""The demo's gRPC traffic: the mix (pure), and the client against the real demo service."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

grpc = pytest.importorskip("grpc")  # the `demo` and `test` extras install it

from app.demo.grpcservice import InventorySettings, start_server  # noqa: E402
from app.demo.grpctraffic import Call, GrpcTraffic, next_call  # noqa: E402
from tests.conftest import free_port  # noqa: E402


def test_the_mix_has_reads_reservations_streams_bad_ids_and_an_unknown_method() -> None:
    rng = random.Random(5)
    drawn = [next_call(rng) for _ in range(2000)]
    methods = Counter(c.method for c in drawn)
    assert set(methods) == {"GetItem", "Reserve", "Watch", "Restock"}
    assert methods["GetItem"] > methods["Reserve"] > methods["Watch"] > methods["Restock"] > 0
    assert all(c.streaming == (c.method == "Watch") for c in drawn)
    assert any(not c.request.isdigit() for c in drawn if c.method == "GetItem")


def test_calls_and_rate_against_the_real_service() -> None:
    port = free_port()
    server = start_server("127.0.0.1", port, InventorySettings(fail_rate=0.5, slow_rate=0.5, slow_s=1.2, seed=2))

    async def run() -> GrpcTraffic:
        traffic = GrpcTraffic(f"127.0.0.1:{port}", rate=60.0, rng=random.Random(3))
        traffic.start()
        try:
            assert await traffic.call(Call("Watch", b"3", streaming=True)) == grpc.StatusCode.OK
            assert await traffic.call(Call("Restock", b"1")) == grpc.StatusCode.UNIMPLEMENTED
            await asyncio.sleep(3)
        finally:
            await traffic.stop()
        return traffic

    # A loop of our own, never set as the current one: asyncio.run would drop the loop another test left current.
    loop = asyncio.new_event_loop()
    try:
        traffic = loop.run_until_complete(run())
    finally:
        loop.close()
        server.stop(grace=None).wait()
    codes = traffic.counts.codes
    assert traffic.counts.sent >= 60 and sum(codes.values()) == traffic.counts.sent
    # Several outcomes, as the page should show: successes, failures of more than one code, deadlines.
    assert {"OK", "NOT_FOUND", "UNAVAILABLE", "DEADLINE_EXCEEDED"} <= set(codes), codes
