"""A bare relay on asyncio protocols and transports (uvloop's loop with `--uvloop`): bytes in, bytes out, nothing else.

The floor of a relay below Tornado's `IOStream` (issue 17): each chunk a
transport hands to `data_received` is written at once to the other side's
transport; when that transport's buffer passes its high-water mark the
source stops reading until it drains (back-pressure); an end of file is
passed on as one (half-close). Run:
`python -m bench.asyncio_relay --port P --target-port T [--uvloop]`.
"""

from __future__ import annotations

import asyncio
import socket
from typing import cast

from bench.bare_relay import relay_arguments, until_signalled


class Side(asyncio.Protocol):
    """One end of a relayed connection; `peer` is the other end once both are connected."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None
        self.early: list[bytes] = []  # the client's bytes before the app's end is connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's are not asyncio.Transport subclasses)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.early.append(data)

    def eof_received(self) -> bool:
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True  # keep the other direction open until the peer ends it too

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.close()

    # Back-pressure: this side's buffer is full, so its peer stops reading until it drains.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class ClientSide(Side):
    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__()
        self.target = target

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        assert self.transport is not None
        app = Side()
        try:
            await asyncio.get_running_loop().create_connection(lambda: app, *self.target)
        except OSError:
            self.transport.close()
            return
        app.peer, self.peer = self, app
        assert app.transport is not None
        for data in self.early:
            app.transport.write(data)
        self.early.clear()
        if self.transport.is_closing():
            app.transport.close()


async def serve(host: str, port: int, target_host: str, target_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ClientSide((target_host, target_port)), host, port, backlog=4096)
    await until_signalled()
    server.close()


def main() -> None:
    parser = relay_arguments(__doc__)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's loop (libuv)")
    args = parser.parse_args()
    coroutine = serve(args.host, args.port, args.target_host, args.target_port)
    if args.uvloop:
        import uvloop  # only here: the default loop needs nothing more

        uvloop.run(coroutine)
    else:
        asyncio.run(coroutine)


if __name__ == "__main__":
    main()
