"""A tiny ASGI app for the HTTP/2 peer tests, served by hypercorn (h2c by prior knowledge and by upgrade).

Each answer names the method, the path, the request body's size and the HTTP
version the server spoke, so a test can tell what reached the app; `/missing`
answers 404, `/big/N` answers N bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    path: str = scope["path"]
    if path.startswith("/big/"):
        body = b"z" * int(path[5:])
    else:
        body = f"{scope['method']} {path} {size} bytes over HTTP/{scope['http_version']}\n".encode()
    status = 404 if path == "/missing" else 200
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
