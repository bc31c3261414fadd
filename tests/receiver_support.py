"""A tiny fake dashboard for the sidecar's tests: records what it is sent, and can fail on demand.

It runs a real Tornado server on 127.0.0.1 in a thread of its own, so both
async tests (sharing nothing with the test's loop) and plain tests driving a
sidecar process can use it. Modes: `ok` (200), `fail` (500), `reject` (400),
`hang` (never answers until the mode changes or it stops), and `refuse()`
closes every connection and the listening socket until `accept()`. With `forward_to` it relays
each POST to a real dashboard first and answers with its status, or with a
500 to /stats while `lose_acks` lasts: a dashboard that stored a batch whose
acknowledgement was lost on the way back.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler

from tests.conftest import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic()
    status: int = 0  # what the receiver answered (0: it hung)
    peer: int = 0  # the client's port: which connection the POST came on


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    prefix: str = ""
    mode: str = "ok"
    posts: list[Received] = field(default_factory=list)
    forward_to: str = ""
    lose_acks: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: HTTPServer | None = None
        self._release: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._closing: asyncio.Future[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    # --- control, from the test's thread -----------------------------------

    def start(self) -> Receiver:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the receiver did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def set_mode(self, mode: str) -> None:
        assert mode in ("ok", "fail", "reject", "hang")
        self.mode = mode
        if mode != "hang" and self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def refuse(self) -> None:
        """Go down: close every connection and stop listening; connections are refused until `accept()`."""
        def down() -> None:
            if self._server is not None:
                self._server.stop()
                self._closing = asyncio.ensure_future(self._server.close_all_connections())

        self._call(down)

    def accept(self) -> None:
        self._call(self._listen)

    def stats(self, answered: int | None = 200) -> list[Received]:
        with self._lock:
            return [p for p in self.posts if p.path.endswith("/stats") and (answered is None or p.status == answered)]

    def resources(self) -> list[Received]:
        with self._lock:
            return [p for p in self.posts if p.path.endswith("/resources")]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver: condition not met in {timeout}s; got {len(self.posts)} posts")
            time.sleep(0.02)

    def counted(self) -> tuple[int, int]:
        """(exchanges in summaries, `dropped` total) over accepted batches, each id once: what
        a deduplicating dashboard would count."""
        seen: set[str] = set()
        exchanges = dropped = 0
        for post in self.stats():
            if post.body["batch"] in seen:
                continue
            seen.add(post.body["batch"])
            exchanges += sum(cell["count"] for cell in post.body["summary"])
            dropped += post.body["dropped"]
        return exchanges, dropped

    # --- the server, in its thread ------------------------------------------

    def _call(self, fn: Callable[[], object]) -> None:
        assert self._loop is not None
        done = threading.Event()

        def run() -> None:
            fn()
            done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    def _listen(self) -> None:
        self._server = HTTPServer(Application([(r".*", _Handler, {"receiver": self})],
                                               log_function=lambda handler: None))
        self._server.listen(self.port, "127.0.0.1")

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._release = asyncio.Event()
        self._listen()
        ready.set()
        try:
            loop.run_forever()
        finally:
            if self._server is not None:
                self._server.stop()
            self._release.set()
            loop.run_until_complete(asyncio.sleep(0.05))
            loop.close()

    def _record(self, post: Received) -> None:
        with self._lock:
            self.posts.append(post)

    async def _hang(self) -> None:
        assert self._release is not None
        self._release.clear()
        await self._release.wait()


class _Handler(RequestHandler):
    def initialize(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def post(self) -> None:
        receiver = self.receiver
        try:
            body = json.loads(self.request.body)
        except ValueError:
            body = None
        post = Received(self.request.path, dict(self.request.headers), body, time.monotonic(),
                        peer=self.request.connection.context.address[1])  # type: ignore[union-attr]
        receiver._record(post)
        if receiver.mode == "hang":
            await receiver._hang()
        status = {"ok": 200, "fail": 500, "reject": 400}.get(receiver.mode, 200)
        if receiver.forward_to and status == 200:
            upstream = await AsyncHTTPClient().fetch(
                receiver.forward_to + self.request.path[len(receiver.prefix):], method="POST",
                body=self.request.body, headers=self.request.headers, raise_error=False)
            status = upstream.code
            if receiver.lose_acks > 0 and status == 200 and self.request.path.endswith("/stats"):
                receiver.lose_acks -= 1
                status = 500
        post.status = status
        self.set_status(status)
        self.finish({"response": "saved"} if status == 200 else {"error": receiver.mode})
