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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
    skipped: int = 0  # not sent: too many already in flight


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
        self._in_flight: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._loops.append(asyncio.create_task(self._send_loop()))
        for target in self.targets:
            self._loops.append(asyncio.create_task(self._probe_loop(target)))

    async def stop(self, drain: float = 2.0) -> None:
        """Stop sending; give requests in flight `drain` seconds to finish."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=drain)
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._client.close()

    async def _send_loop(self) -> None:
        while True:
            # Exponential gaps give a Poisson process: the gentle unevenness of real users.
            await asyncio.sleep(self._rng.expovariate(self.rate))
            if len(self._in_flight) >= self.max_in_flight:
                self.counts.skipped += 1
                continue
            self._launch(self._rng.choice(self.targets), next_request(self._rng))

    async def _probe_loop(self, target: str) -> None:
        await asyncio.sleep(self._rng.uniform(0, self.probe_interval))  # kubelets do not probe in lockstep
        while True:
            self._launch(target, probe_request())
            await asyncio.sleep(self.probe_interval)

    def _launch(self, target: str, request: Request) -> None:
        task = asyncio.create_task(self._send(target, request))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

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
