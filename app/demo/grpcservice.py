"""The demo's gRPC service, `demo.v1.Inventory`: grpcio with generic handlers and raw bytes (no protobuf).

Its calls succeed mostly and fail the ways real services do (NOT_FOUND,
INVALID_ARGUMENT, RESOURCE_EXHAUSTED, PERMISSION_DENIED, UNAVAILABLE, and
DEADLINE_EXCEEDED when a client's deadline passes first); `Watch` streams.
Messages are short ASCII texts, so no code generation is needed. Run it with
`python -m app.demo.grpcservice --port P`; it needs `grpcio` (the `demo` extra).
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc

SERVICE = "demo.v1.Inventory"
ITEMS = range(1, 901)  # ids above answer NOT_FOUND: some 4xx-like traffic
STOCK = 3  # a reservation of more answers RESOURCE_EXHAUSTED
MAX_WATCH = 20  # updates one Watch call streams at most
WATCH_GAP = 0.05  # seconds between two updates of a Watch
WORKERS = 16  # threads serving calls (a streaming call holds one while it lasts)


@dataclass(frozen=True)
class InventorySettings:
    fail_rate: float = 0.05  # share of GetItem calls answered UNAVAILABLE
    slow_rate: float = 0.1  # share of Reserve calls that take `slow_s` (past the demo client's deadline)
    slow_s: float = 1.5
    seed: int | None = None


class Inventory:
    """The service's behaviour: each method takes the request bytes and the call's context."""

    def __init__(self, settings: InventorySettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._lock = threading.Lock()  # calls run in a thread pool; random.Random is not thread-safe

    def _draw(self) -> float:
        with self._lock:
            return self._rng.random()

    def get_item(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        item = _item_id(request, context)
        if item not in ITEMS:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no item {item}")
        if self._draw() < self.settings.fail_rate:
            context.abort(grpc.StatusCode.UNAVAILABLE, "inventory store busy, retry")
        time.sleep(0.002 + self._draw() * 0.02)
        return f'{{"item": {item}, "stock": {item % 7}}}'.encode()

    def reserve(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        item_text, _, quantity_text = request.partition(b":")
        item = _item_id(item_text, context)
        quantity = int(quantity_text) if quantity_text.isdigit() else 1
        if item % 97 == 0:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"item {item} is reserved for staff")
        if quantity > STOCK:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"only {STOCK} left of item {item}")
        time.sleep(self.settings.slow_s if self._draw() < self.settings.slow_rate else 0.005)
        return f'{{"item": {item}, "reserved": {quantity}}}'.encode()

    def watch(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        count = min(int(request), MAX_WATCH) if request.isdigit() else 3
        for n in range(count):
            if not context.is_active():  # the client cancelled
                return
            yield f'{{"update": {n}, "stock": {self._draw():.3f}}}'.encode()
            time.sleep(WATCH_GAP)


def _item_id(raw: bytes, context: grpc.ServicerContext) -> int:
    if not raw.isdigit() or len(raw) > 9:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"item id must be a number, got {raw[:20]!r}")
    return int(raw)


def handler(inventory: Inventory) -> grpc.GenericRpcHandler:
    """The service's generic handler: no serializers, so requests and responses stay bytes."""
    return grpc.method_handlers_generic_handler(SERVICE, {
        "GetItem": grpc.unary_unary_rpc_method_handler(inventory.get_item),
        "Reserve": grpc.unary_unary_rpc_method_handler(inventory.reserve),
        "Watch": grpc.unary_stream_rpc_method_handler(inventory.watch),
    })


def start_server(host: str, port: int, settings: InventorySettings) -> Any:
    """A started grpc.Server on host:port (plaintext HTTP/2, as inside a pod)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="inventory"))
    server.add_generic_rpc_handlers((handler(Inventory(settings)),))
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    return server


def _parse(argv: Sequence[str]) -> tuple[str, int, InventorySettings]:
    parser = argparse.ArgumentParser(prog="python -m app.demo.grpcservice", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fail-rate", type=float, default=InventorySettings.fail_rate)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if not 0 <= args.fail_rate <= 1:
        parser.error("--fail-rate: must be between 0 and 1")
    return args.host, args.port, InventorySettings(fail_rate=args.fail_rate, seed=args.seed)


def main(argv: Sequence[str] | None = None) -> int:
    host, port, settings = _parse(sys.argv[1:] if argv is None else argv)
    try:
        server = start_server(host, port, settings)
    except (OSError, RuntimeError) as exc:
        print(f"grpcservice: error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"{SERVICE} (gRPC) on {host}:{port}", flush=True)
    stop.wait()
    server.stop(grace=1.0).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
