"""A stand-in dashboard that answers every POST with 200 and keeps nothing.

The benchmark prefers the real dashboard as the sidecar's receiver; this sink
is the fallback while the dashboard cannot start, so that the sidecar's
reporting still runs. Run: `python -m bench.post_sink --port P`.
"""

from __future__ import annotations

import argparse
import asyncio

from tornado.web import Application, RequestHandler

from bench.bare_relay import until_signalled


class SinkHandler(RequestHandler):
    def post(self, _: str) -> None:
        self.application.settings["counts"]["posts"] += 1
        self.write({"response": "saved"})

    def get(self, _: str) -> None:
        self.write(self.application.settings["counts"])


async def serve(host: str, port: int) -> None:
    app = Application([(r"/(.*)", SinkHandler)], counts={"posts": 0})
    server = app.listen(port, host, max_body_size=64 * 1024 * 1024)
    await until_signalled()
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
