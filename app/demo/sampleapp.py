"""The sample application the demo puts behind sidecars, and tests use as a real backend.

A small Tornado app with the kinds of routes a real service has: fast, slow,
sometimes failing, static files (by extension), id-bearing paths, an upload
echo, sized downloads and a `/healthz` for probes. Run it with
`python -m app.demo.sampleapp --port P` (or env PORT), or build it with `make_app()`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import struct
import sys
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

MAX_SLOW_MS = 30_000  # `/slow?ms=` is capped so a typo cannot hold a connection for hours
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
USER_IDS = range(1, 1000)  # users outside this range answer 404: some 4xx traffic


@dataclass(frozen=True)
class SampleSettings:
    """How the sample app behaves; the demo gives each app its own."""

    slow_min_ms: float = 200.0
    slow_max_ms: float = 1500.0
    fail_rate: float = 0.3  # share of `/fail` requests answered with 500
    seed: int | None = None  # fixes the random choices, for tests


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid one-colour PNG, so `/static/logo.png` is a real image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width  # filter byte 0, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height)) \
        + chunk(b"IEND", b"")


ASSETS: dict[str, tuple[str, bytes]] = {
    "logo.png": ("image/png", _png(32, 32, (40, 90, 160))),
    "style.css": ("text/css; charset=utf-8", b"body { font-family: sans-serif; margin: 2em; }\n" * 20),
    "app.js": ("application/javascript; charset=utf-8", b"console.log('sample app');\n" * 40),
    "favicon.ico": ("image/png", _png(16, 16, (200, 60, 40))),
}

INDEX = """<!doctype html>
<title>Sample app</title>
<link rel="stylesheet" href="/static/style.css">
<img src="/static/logo.png" alt="logo">
<h1>Sample app</h1>
<ul>
<li><a href="/api/items">/api/items</a> fast JSON</li>
<li><a href="/slow">/slow</a> 200-1500 ms (<code>?ms=</code> fixes it)</li>
<li><a href="/fail">/fail</a> 500 some of the time (<code>?p=</code> sets how often)</li>
<li><a href="/users/42">/users/42</a>, <code>/orders/&lt;uuid&gt;</code>, <code>POST /orders</code></li>
<li><code>POST /echo</code>, <code>/download?bytes=N</code>, <a href="/healthz">/healthz</a></li>
</ul>
"""


class _Base(tornado.web.RequestHandler):
    @property
    def settings_(self) -> SampleSettings:
        settings: SampleSettings = self.application.settings["sample"]
        return settings

    @property
    def rng(self) -> random.Random:
        rng: random.Random = self.application.settings["rng"]
        return rng

    def _number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise tornado.web.HTTPError(400, f"{name} must be a number") from None
        if not low <= value <= high:
            raise tornado.web.HTTPError(400, f"{name} must be between {low:g} and {high:g}")
        return value


class IndexHandler(_Base):
    def get(self) -> None:
        self.write(INDEX)


class HealthHandler(_Base):
    def get(self) -> None:
        self.write("ok\n")


class ItemsHandler(_Base):
    def get(self) -> None:
        page = int(self._number("page", 1, 1, 10_000))
        self.write({"page": page, "items": [{"id": (page - 1) * 10 + i, "name": f"item {i}"} for i in range(10)]})


class UserHandler(_Base):
    def get(self, user_id: str) -> None:
        if int(user_id) not in USER_IDS:
            raise tornado.web.HTTPError(404)
        self.write({"id": int(user_id), "name": f"user {user_id}"})


class OrderHandler(_Base):
    def get(self, order_id: str) -> None:
        self.write({"id": order_id, "status": "shipped", "total": round(self.rng.uniform(5, 500), 2)})


class OrdersHandler(_Base):
    def post(self) -> None:
        order_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.set_status(201)
        self.set_header("Location", f"/orders/{order_id}")
        self.write({"id": order_id, "received_bytes": len(self.request.body)})


class SlowHandler(_Base):
    async def get(self) -> None:
        settings = self.settings_
        default = self.rng.uniform(settings.slow_min_ms, settings.slow_max_ms)
        delay_ms = self._number("ms", default, 0, MAX_SLOW_MS)
        await asyncio.sleep(delay_ms / 1000)
        self.write({"slept_ms": round(delay_ms, 1)})


class FailHandler(_Base):
    def get(self) -> None:
        rate = self._number("p", self.settings_.fail_rate, 0, 1)
        if self.rng.random() < rate:
            self.set_status(500)
            self.write({"ok": False, "error": "failed on purpose"})
            return
        self.write({"ok": True})


class EchoHandler(_Base):
    def post(self) -> None:
        self.set_header("Content-Type", self.request.headers.get("Content-Type", "application/octet-stream"))
        self.write(self.request.body)

    put = post


class DownloadHandler(_Base):
    async def get(self) -> None:
        size = int(self._number("bytes", 1024, 0, MAX_DOWNLOAD_BYTES))
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(size))
        block = b"m" * CHUNK_BYTES
        left = size
        while left > 0:  # flush per chunk: memory stays flat and a slow reader slows us down
            part = block[: min(left, CHUNK_BYTES)]
            self.write(part)
            await self.flush()
            left -= len(part)

    def compute_etag(self) -> None:  # streamed, so no ETag (Tornado would buffer to hash it)
        return None


class AssetHandler(_Base):
    def get(self, name: str) -> None:
        if name not in ASSETS:
            raise tornado.web.HTTPError(404)
        content_type, body = ASSETS[name]
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-cache")  # revalidate: browsers send If-None-Match, we answer 304
        self.write(body)


def make_app(settings: SampleSettings | None = None) -> tornado.web.Application:
    """The sample application; `settings` tunes the slow and failing routes."""
    settings = settings or SampleSettings()
    return tornado.web.Application(
        [
            (r"/", IndexHandler),
            (r"/healthz", HealthHandler),
            (r"/api/items", ItemsHandler),
            (r"/users/([0-9]+)", UserHandler),
            (r"/orders/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})", OrderHandler),
            (r"/orders", OrdersHandler),
            (r"/slow", SlowHandler),
            (r"/fail", FailHandler),
            (r"/echo", EchoHandler),
            (r"/download", DownloadHandler),
            (r"/static/([A-Za-z0-9_.-]+)", AssetHandler),
            (r"/(favicon\.ico)", AssetHandler),
        ],
        sample=settings,
        rng=random.Random(settings.seed),
        log_function=_no_access_log,  # Tornado would print every 4xx/5xx to stderr; the sidecar is the log here
    )


def _no_access_log(handler: tornado.web.RequestHandler) -> None:
    return None


ENV_VARS = ("PORT",)  # what the sample app reads from its environment (the flag wins)


def _parse(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> tuple[str, int, SampleSettings]:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m app.demo.sampleapp", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (0.0.0.0)")
    parser.add_argument("--port", default=env.get("PORT", "8087"),
                        help="port to listen on; 0 picks one (8087) [env PORT]")
    parser.add_argument("--fail-rate", type=float, default=SampleSettings.fail_rate,
                        help="share of /fail requests answered with 500 (0.3)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the random choices")
    args = parser.parse_args(list(argv))
    try:
        port = int(args.port)
    except ValueError:
        parser.error(f"--port: must be a port number (got {args.port!r})")
    if not 0 <= port <= 65535:
        parser.error("--port: must be a port number from 0 to 65535")
    if not 0 <= args.fail_rate <= 1:
        parser.error("--fail-rate: must be between 0 and 1")
    return args.host, port, SampleSettings(fail_rate=args.fail_rate, seed=args.seed)


async def serve(host: str, port: int, settings: SampleSettings) -> None:
    """Serve until SIGTERM or SIGINT, then close connections and return."""
    sockets = bind_sockets(port, host)
    server = HTTPServer(make_app(settings))
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    print(f"sample app listening on http://{host}:{bound}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    await server.close_all_connections()


def main(argv: Sequence[str] | None = None) -> int:
    host, port, settings = _parse(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(serve(host, port, settings))
    except OSError as exc:  # the port is taken, or the address is not ours
        print(f"python -m app.demo.sampleapp: error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
