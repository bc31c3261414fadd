"""The demo's gRPC traffic: a weighted mix of `demo.v1.Inventory` calls through a sidecar, at a Poisson rate.

`next_call` draws one call (pure); `GrpcTraffic` makes such calls on one
grpc.aio channel (HTTP/2, many calls on one connection, as gRPC clients do)
with a deadline each, so the page shows successes, failures of several codes,
a deadline passing and a streaming method. Needs `grpcio` (the `demo` extra).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import grpc.aio

from app.demo.grpcservice import SERVICE
from app.demo.traffic import InFlight

DEADLINE = 1.0  # seconds: the service's slow Reserve calls take longer, so some end DEADLINE_EXCEEDED
WATCH_DEADLINE = 5.0


@dataclass(frozen=True)
class Call:
    method: str  # the method's name in SERVICE
    request: bytes
    streaming: bool = False


# (weight, call maker): mostly reads, reservations that sometimes fail or run past their
# deadline, bad ids, streams, and now and then a method the server does not have.
MIX: tuple[tuple[float, Callable[[random.Random], Call]], ...] = (
    (50, lambda rng: Call("GetItem", str(rng.randint(1, 1000)).encode())),  # ids over 900: NOT_FOUND
    (4, lambda rng: Call("GetItem", rng.choice([b"abc", b"-1", b""]))),  # INVALID_ARGUMENT
    (25, lambda rng: Call("Reserve", f"{rng.randint(1, 900)}:{rng.randint(1, 4)}".encode())),
    (10, lambda rng: Call("Watch", str(rng.randint(2, 8)).encode(), streaming=True)),
    (2, lambda rng: Call("Restock", b"1")),  # UNIMPLEMENTED
)
_WEIGHTS = [weight for weight, _ in MIX]
_MAKERS = [maker for _, maker in MIX]


def next_call(rng: random.Random) -> Call:
    maker = rng.choices(_MAKERS, weights=_WEIGHTS)[0]
    return maker(rng)


@dataclass
class GrpcCounts:
    sent: int = 0
    codes: dict[str, int] = field(default_factory=dict)  # status code name -> calls


class GrpcTraffic:
    """Calls the mix on `target` (host:port) at `rate` calls/s until `stop()`."""

    def __init__(self, target: str, rate: float, max_in_flight: int = 32, rng: random.Random | None = None) -> None:
        self.target = target
        self.rate = rate
        self.max_in_flight = max_in_flight
        self.counts = GrpcCounts()
        self._rng = rng or random.Random()
        self._channel: grpc.aio.Channel | None = None
        self._loop: asyncio.Task[None] | None = None
        self.in_flight = InFlight(max_in_flight)

    def start(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.target)
        self._loop = asyncio.create_task(self.in_flight.poisson(self._rng, self.rate, self._next))

    async def stop(self, drain: float = 2.0) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        await self.in_flight.drain(drain)
        if self._channel is not None:
            await self._channel.close()

    async def _next(self) -> None:
        await self.call(next_call(self._rng))

    async def call(self, call: Call) -> grpc.StatusCode:
        """Make one call; its status code (counted)."""
        assert self._channel is not None, "start() first"
        self.counts.sent += 1
        path = f"/{SERVICE}/{call.method}"
        try:
            if call.streaming:
                streaming: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = self._channel.unary_stream(path)
                async for _ in streaming(call.request, timeout=WATCH_DEADLINE):
                    pass
            else:
                unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(path)
                await unary(call.request, timeout=DEADLINE)
            code = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
        self.counts.codes[code.name] = self.counts.codes.get(code.name, 0) + 1
        return code
