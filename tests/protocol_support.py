"""A real sidecar on a loop thread of its own, for tests whose real peers (grpcio, curl, openssl...) block.

The sidecar (`SidecarServer`) runs on an asyncio loop in a daemon thread; the
test drives clients and servers from its own thread or as processes, and
reads the samples and counters once the sidecar has settled. Nothing here
mocks the network.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tornado.netutil import bind_sockets

from app.core.wire import Sample
from app.options import SidecarConfig
from sidecar.proxy import ProxyCounters, SidecarServer
from tests.conftest import wait_for_port
from tests.fault_support import LoopThread
from tests.proxy_support import Peer, read_all

TIMEOUT = 10.0


class ThreadedSidecar:
    """A `SidecarServer` in front of 127.0.0.1:`target_port` on a loop thread; `samples` as they come."""

    def __init__(self, target_port: int, **settings: Any) -> None:
        self.config = replace(SidecarConfig(target_host="127.0.0.1", target_port=target_port), **settings)
        self._lock = threading.Lock()
        self._samples: list[Sample] = []
        self.loop = LoopThread()
        self.server, self.port = self.loop.call(self._start)

    def _start(self) -> tuple[SidecarServer, int]:
        server = SidecarServer(self.config, self._add)
        [sock] = bind_sockets(0, "127.0.0.1")
        server.add_sockets([sock])
        return server, sock.getsockname()[1]

    def _add(self, sample: Sample) -> None:
        with self._lock:
            self._samples.append(sample)

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    @property
    def counters(self) -> ProxyCounters:
        return self.server.counters

    def settled(self, timeout: float = TIMEOUT) -> list[Sample]:
        """Wait until every connection is closed and every sample made; return all samples so far."""
        eventually(lambda: self.loop.call(lambda: self.counters.connections_open == 0
                                          and self.counters.exchanges_in_flight == 0),
                   timeout, f"sidecar settled ({self.counters})")
        return self.samples

    def wait_samples(self, n: int, timeout: float = TIMEOUT) -> list[Sample]:
        eventually(lambda: len(self.samples) >= n, timeout, f"{n} samples (have {len(self.samples)})")
        return self.samples

    def close(self) -> None:
        self.loop.call(self.server.stop)
        self.loop.call(self.server.close_all)
        self.loop.close()


@contextmanager
def sidecar_for(target_port: int, **settings: Any) -> Iterator[ThreadedSidecar]:
    proxy = ThreadedSidecar(target_port, **settings)
    try:
        yield proxy
    finally:
        proxy.close()


def eventually(check: Callable[[], bool], timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.01)


def echo(peer: Peer) -> None:
    """A binary echo protocol: each message is a 4-byte length and that many bytes, answered reversed."""
    start = 0
    while peer.read_until(start + 4, timeout=10):
        size = struct.unpack(">I", peer.received[start:start + 4])[0]
        if not peer.read_until(start + 4 + size, timeout=10):
            return
        body = bytes(peer.received[start + 4:start + 4 + size])
        peer.send(struct.pack(">I", size) + body[::-1])
        start += 4 + size


def converse(port: int, messages: list[bytes], pause: float = 0.0) -> bytes:
    """Send each message framed, read its answer; everything the server sent, in order."""
    got = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if pause:
            time.sleep(pause)
        for body in messages:
            sock.sendall(struct.pack(">I", len(body)) + body)
            got += read_all(sock, until=4 + len(body), timeout=10)
    return bytes(got)


def need(command: str, package: str) -> str:
    """The path of `command`, or skip: `.ci/run` installs `package` on a fresh machine."""
    path = shutil.which(command)
    if path is None:
        pytest.skip(f"{command} is not installed (Debian package {package}; .ci/run installs it)")
    return path


@contextmanager
def server_process(args: list[str], port: int, log: Path, cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A real server process listening on 127.0.0.1:`port`; stopped (and reaped) at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd)
    try:
        wait_for_port(port, proc=proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def make_certificate(folder: Path, name: str = "app.example.test") -> tuple[Path, Path]:
    """A self-signed certificate and key for `name`, made with the openssl command."""
    need("openssl", "openssl")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key
