"""A bare Tornado IOStream relay: bytes in, bytes out, no parsing and no timing.

It is the floor of the sidecar's design (a Tornado TCPServer piping IOStreams),
so the benchmark can tell what the sidecar's HTTP tracking and telemetry cost
on top of it. Run: `python -m bench.bare_relay --port P --target-port T`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket

from tornado.iostream import IOStream, StreamClosedError
from tornado.netutil import bind_sockets
from tornado.tcpserver import TCPServer

CHUNK = 64 * 1024


async def pipe(source: IOStream, sink: IOStream) -> None:
    """Copy until either side closes; awaiting each write lets a slow reader slow the writer."""
    try:
        while True:
            data = await source.read_bytes(CHUNK, partial=True)
            await sink.write(data)
    except StreamClosedError:
        pass
    finally:
        source.close()
        sink.close()


class BareRelay(TCPServer):
    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(max_buffer_size=CHUNK * 4)
        self.target = (target_host, target_port)

    async def handle_stream(self, stream: IOStream, address: tuple[str, int]) -> None:
        upstream = IOStream(socket.socket(socket.AF_INET, socket.SOCK_STREAM), max_buffer_size=CHUNK * 4)
        try:
            await upstream.connect(self.target)
        except StreamClosedError:
            stream.close()
            return
        for side in (stream, upstream):
            side.set_nodelay(True)
        await asyncio.gather(pipe(stream, upstream), pipe(upstream, stream))


async def serve(host: str, port: int, target_host: str, target_port: int) -> None:
    relay = BareRelay(target_host, target_port)
    relay.add_sockets(bind_sockets(port, host, backlog=4096))
    await until_signalled()
    relay.stop()


async def until_signalled() -> None:
    """Wait for SIGTERM or SIGINT (how the benchmarks stop a relay)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def relay_arguments(description: str | None) -> argparse.ArgumentParser:
    """The command line every bench relay takes: where it listens and where it relays to."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target-host", default="127.0.0.1")
    parser.add_argument("--target-port", type=int, required=True)
    return parser


def main() -> None:
    args = relay_arguments(__doc__).parse_args()
    asyncio.run(serve(args.host, args.port, args.target_host, args.target_port))


if __name__ == "__main__":
    main()
