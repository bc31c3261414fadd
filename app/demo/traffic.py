"""The demo's traffic: a weighted mix of the sample app's routes at a random (Poisson) rate.

`next_request` draws one request (pure); `TrafficGenerator` sends such
requests through the sidecars with Tornado's HTTP client, and a
kube-probe-like health check to each of them every few seconds, as a
kubelet would.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

PROBE_USER_AGENT = "kube-probe/1.30"
REQUEST_TIMEOUT = 10.0  # seconds; /slow takes at most 1.5 s


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _order_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _new_order(rng: random.Random) -> Request:
    body = json.dumps({"item": rng.randint(1, 500), "quantity": rng.randint(1, 5)}).encode()
    return Request("POST", "/orders", body, {"Content-Type": "application/json"})


# (weight, request maker): mostly fast reads, some slow and failing calls,
# static files, and ids the sidecar must template (`/users/{id}`).
MIX: tuple[tuple[float, Callable[[random.Random], Request]], ...] = (
    (10, lambda rng: Request("GET", "/")),
    (20, lambda rng: Request("GET", f"/api/items?page={rng.randint(1, 20)}")),
    (18, lambda rng: Request("GET", f"/users/{rng.randint(1, 1100)}")),  # ids over 999 are 404s
    (10, lambda rng: Request("GET", f"/orders/{_order_id(rng)}")),
    (5, _new_order),
    (6, lambda rng: Request("GET", "/slow")),
    (8, lambda rng: Request("GET", "/fail")),
    (8, lambda rng: Request("GET", "/static/logo.png")),
    (5, lambda rng: Request("GET", "/static/style.css")),
    (5, lambda rng: Request("GET", "/static/app.js")),
    (2, lambda rng: Request("GET", "/favicon.ico")),
)
_WEIGHTS = [weight for weight, _ in MIX]
_MAKERS = [maker for _, maker in MIX]


def next_request(rng: random.Random) -> Request:
    """One request drawn from the mix."""
    maker = rng.choices(_MAKERS, weights=_WEIGHTS)[0]
    return maker(rng)


def probe_request() -> Request:
    return Request("GET", "/healthz", headers={"User-Agent": PROBE_USER_AGENT})


@dataclass
class TrafficCounts:
    sent: int = 0
    answered: int = 0
    server_errors: int = 0  # 5xx answers
    failed: int = 0  # no answer at all


class InFlight:
    """The calls a traffic source has under way, as tasks: at most `limit` at once, drained on stop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tasks: set[asyncio.Task[None]] = set()
        self.skipped = 0  # calls not made: too many already under way

    def start(self, call: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(call)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def poisson(self, rng: random.Random, rate: float,
                      next_call: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start `next_call()` at a random rate until cancelled (skipped, and counted, when `limit` are under way)."""
        while True:
            # Exponential gaps give a Poisson process: the gentle unevenness of real users.
            await asyncio.sleep(rng.expovariate(rate))
            if len(self.tasks) >= self.limit:
                self.skipped += 1
                continue
            self.start(next_call())

    async def drain(self, timeout: float) -> None:
        """Give the calls under way `timeout` seconds to finish, then cancel the rest."""
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=timeout)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class TrafficGenerator:
    """Sends the mix to `targets` (base URLs) at `rate` requests/s until `stop()`."""

    def __init__(self, targets: Sequence[str], rate: float, probe_interval: float = 5.0,
                 max_in_flight: int = 64, rng: random.Random | None = None) -> None:
        if not targets:
            raise ValueError("traffic needs at least one target")
        self.targets = list(targets)
        self.rate = rate
        self.probe_interval = probe_interval
        self.max_in_flight = max_in_flight
        self.counts = TrafficCounts()
        self._rng = rng or random.Random()
        self._client = AsyncHTTPClient(force_instance=True, max_clients=max_in_flight)
        self.in_flight = InFlight(max_in_flight)
        self._loops: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._loops.append(asyncio.create_task(self.in_flight.poisson(self._rng, self.rate, self._next)))
        for target in self.targets:
            self._loops.append(asyncio.create_task(self._probe_loop(target)))

    async def stop(self, drain: float = 2.0) -> None:
        """Stop sending; give requests in flight `drain` seconds to finish."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self.in_flight.drain(drain)
        self._client.close()

    def _next(self) -> Coroutine[Any, Any, None]:
        return self._send(self._rng.choice(self.targets), next_request(self._rng))

    async def _probe_loop(self, target: str) -> None:
        await asyncio.sleep(self._rng.uniform(0, self.probe_interval))  # kubelets do not probe in lockstep
        while True:
            self.in_flight.start(self._send(target, probe_request()))
            await asyncio.sleep(self.probe_interval)

    async def _send(self, target: str, request: Request) -> None:
        self.counts.sent += 1
        http_request = HTTPRequest(target + request.path, method=request.method, body=request.body,
                                   headers=request.headers, request_timeout=REQUEST_TIMEOUT,
                                   follow_redirects=False)
        try:
            response = await self._client.fetch(http_request, raise_error=False)
        except Exception:  # refused, reset or timed out: the sidecar records it; we only count it
            self.counts.failed += 1
            return
        if response.code >= 599 or response.code == 0:  # Tornado's code for "no response"
            self.counts.failed += 1
            return
        self.counts.answered += 1
        if response.code >= 500:
            self.counts.server_errors += 1
