"""`Reporter`: delivers stats batches and resource samples to the dashboard over kept-alive connections.

Every `stats_interval` the buffer's open batch is sealed (when there is
something new) and sealed batches are POSTed oldest first, one at a time; a
batch leaves the buffer only on a 2xx and is otherwise resent unchanged, with
exponential backoff and jitter. Every `resources_interval` a resource sample
is taken (for /metrics too) and POSTed when no earlier one is still on its
way. Nothing here raises into the proxy: failures are counted and logged at a
bounded rate. With no dashboard configured nothing is sent at all. The POSTs
go through a `DashboardClient`, which reuses its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable

from app.options import SidecarConfig
from sidecar.metrics import SidecarMetrics
from sidecar.pod.sampler import ResourceSampler
from sidecar.report.buffer import Batch, SampleBuffer
from sidecar.report.client import DashboardClient, Reply

log = logging.getLogger("mothership.sidecar.reporter")

# Statuses that will never succeed for this batch however often it is resent:
# keeping it would block every batch behind it. (401/403 are kept: the
# dashboard's token may be fixed without restarting us.)
REFUSED_FOR_GOOD = frozenset((400, 413, 415, 422))
LOG_EVERY = 30.0  # seconds between failure log lines for one endpoint


def endpoint_url(base: str, name: str) -> str:
    """`http://d:8080/` + `stats` -> `http://d:8080/stats`; a path prefix is kept."""
    return f"{base.rstrip('/')}/{name}"


def failure_reason(code: int, error: BaseException | None) -> str:
    """A bounded word for a failed POST: a label value on /metrics."""
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, OSError) or code == 599:
        return "connection"
    if 400 <= code < 500:
        return "status_4xx"
    if code >= 500:
        return "status_5xx"
    return "other"


class Backoff:
    """Exponential delays with "equal jitter": half fixed, half random, so
    many sidecars that lost the same dashboard do not retry in step."""

    def __init__(self, first: float, limit: float, rng: random.Random | None = None) -> None:
        self.first = first
        self.limit = limit
        self._rng = rng or random.Random()
        self._next = first

    def delay(self) -> float:
        base = self._next
        self._next = min(self.limit, self._next * 2)
        return base / 2 + self._rng.uniform(0, base / 2)

    def reset(self) -> None:
        self._next = self.first


class _FailureLog:
    """Logs the first failure, then at most one line per `every` seconds with
    how many were not logged, then one line when delivery works again."""

    def __init__(self, endpoint: str, every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoint = endpoint
        self.every = every
        self._clock = clock
        self._last = -float("inf")
        self._unlogged = 0
        self._failing = 0

    def failed(self, reason: str, detail: str) -> None:
        self._failing += 1
        now = self._clock()
        if now - self._last < self.every:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more since the last report)" if self._unlogged else ""
        log.warning("POST /%s to the dashboard failed: %s: %s%s", self.endpoint, reason, detail, more)
        self._last, self._unlogged = now, 0

    def succeeded(self) -> None:
        if self._failing:
            log.info("POST /%s to the dashboard works again after %d failures", self.endpoint, self._failing)
        self._failing, self._unlogged, self._last = 0, 0, -float("inf")


class Reporter:
    def __init__(self, config: SidecarConfig, buffer: SampleBuffer, sampler: ResourceSampler | None,
                 metrics: SidecarMetrics, *, request_timeout: float | None = None,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.buffer = buffer
        self.sampler = sampler
        self.metrics = metrics
        # Long enough for a big batch on a busy dashboard, short enough that a
        # hung dashboard is noticed within a couple of intervals.
        self.request_timeout = request_timeout or min(10.0, max(1.0, 2 * config.stats_interval))
        self.enabled = bool(config.dashboard)
        # Who reports, at the head of every resources post; the namespace only when known.
        self._identity: dict[str, str] = {"pod": config.pod, "app": config.app_name}
        if config.namespace:
            self._identity["namespace"] = config.namespace
        self._backoff = Backoff(min(1.0, config.stats_interval), max(30.0, config.stats_interval), rng)
        self._http: DashboardClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._resource_post: asyncio.Task[None] | None = None
        self._logs = {"stats": _FailureLog("stats"), "resources": _FailureLog("resources")}

    # --- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        if self.enabled:
            self._http = DashboardClient()
            self._tasks.append(asyncio.ensure_future(self._seal_loop()))
            self._tasks.append(asyncio.ensure_future(self._deliver_loop()))
        if self.sampler is not None:
            self._tasks.append(asyncio.ensure_future(self._resources_loop()))

    async def stop(self) -> None:
        """Stop the loops (a POST in flight is abandoned; its batch stays)."""
        tasks = [*self._tasks, *([self._resource_post] if self._resource_post else [])]
        self._tasks = []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # A cancelled POST leaves its batch marked in flight; it is not.
        self.buffer.release_all()

    async def flush(self, timeout: float) -> bool:
        """Seal what is open and try to deliver every batch within `timeout`;
        True when nothing is left. Call after `stop()` (on SIGTERM)."""
        if not self.enabled:
            return True
        if self._http is None:
            self._http = DashboardClient()
        self.buffer.seal()
        deadline = time.monotonic() + timeout
        while True:
            batch = self.buffer.next_batch()
            if batch is None:
                return True
            left = deadline - time.monotonic()
            if left <= 0.05:
                self.buffer.release(batch)
                return False
            if not await self._send_batch(batch, timeout=min(self.request_timeout, left)):
                await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # --- stats ----------------------------------------------------------------

    async def _seal_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.stats_interval)
            try:
                if self.buffer.seal() is not None:
                    self._wake.set()
            except Exception:  # a bug here must not end reporting for good
                log.exception("sealing a stats batch failed")

    async def _deliver_loop(self) -> None:
        while True:
            batch = self.buffer.next_batch()
            if batch is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                delivered = await self._send_batch(batch, timeout=self.request_timeout)
            except Exception:
                log.exception("sending stats batch %s failed", batch.id)
                self.buffer.release(batch)
                delivered = False
            if delivered:
                self._backoff.reset()
            else:
                await asyncio.sleep(self._backoff.delay())

    async def _send_batch(self, batch: Batch, timeout: float) -> bool:
        """One POST of a batch; settles it in the buffer. True when it left the queue."""
        code = await self._post("stats", batch.body, timeout)
        if 200 <= code < 300:
            self.buffer.acknowledge(batch)
            return True
        if code in REFUSED_FOR_GOOD:
            log.error("the dashboard refused stats batch %s for good (HTTP %d): %d exchanges lost",
                      batch.id, code, batch.exchanges)
            self.buffer.reject(batch)
            return True
        self.buffer.release(batch)
        return False

    # --- resources --------------------------------------------------------------

    async def _resources_loop(self) -> None:
        assert self.sampler is not None
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                resource = self.sampler.sample()
            except Exception:  # a sampler bug must not end the loop
                log.exception("resource sampling failed")
                resource = None
            if resource is not None and self.enabled and (self._resource_post is None or self._resource_post.done()):
                body = json.dumps({**self._identity, "resource": resource}, separators=(",", ":")).encode()
                self._resource_post = asyncio.ensure_future(self._post_resources(body))
            next_at += self.config.resources_interval
            now = loop.time()
            if next_at < now:  # fell behind (a stopped process, a slow loop): do not burst to catch up
                next_at = now + self.config.resources_interval
            await asyncio.sleep(next_at - now)

    async def _post_resources(self, body: bytes) -> None:
        await self._post("resources", body, min(self.request_timeout, max(1.0, 2 * self.config.resources_interval)))

    # --- one POST -----------------------------------------------------------------

    async def _post(self, endpoint: str, body: bytes, timeout: float) -> int:
        """POST and return the status (599 when no answer came); never raises."""
        assert self._http is not None
        headers = {"Content-Type": "application/json"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        error: BaseException | None = None
        code = 599
        reply: Reply | None = None
        try:
            reply = await self._http.post(endpoint_url(self.config.dashboard, endpoint), body, headers, timeout)
            code = reply.code
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # refused, reset, timed out, DNS: all mean "try again later"
            error = exc
        if 200 <= code < 300:
            self.metrics.post_succeeded(endpoint)
            self._logs[endpoint].succeeded()
            return code
        reason = failure_reason(code, error)
        self.metrics.post_failed(endpoint, reason)
        self._logs[endpoint].failed(reason, _describe(code, error, reply))
        return code


def _describe(code: int, error: BaseException | None, reply: Reply | None) -> str:
    if reply is not None:
        text = reply.body[:200].decode("utf-8", "replace").strip()
        return f"HTTP {code} {text}".strip()
    if isinstance(error, TimeoutError):
        return "no answer within the timeout"
    return f"{type(error).__name__}: {error}" if error else f"HTTP {code}"
