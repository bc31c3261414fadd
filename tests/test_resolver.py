"""CachingResolver: IP literals without a thread, names through the pool at most once per TTL."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from sidecar.resolver import CachingResolver, numeric_addresses


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Every getaddrinfo call as (host, made on the main thread); each still goes to the real one."""
    calls: list[tuple[str, bool]] = []
    real = socket.getaddrinfo

    def recording(host: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append((host, threading.current_thread() is threading.main_thread()))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    return calls


def test_numeric_addresses() -> None:
    assert numeric_addresses("127.0.0.1", 8087) == [(socket.AF_INET, ("127.0.0.1", 8087))]
    [(family, address)] = numeric_addresses("::1", 8087) or []
    assert family == socket.AF_INET6 and address[:2] == ("::1", 8087)
    for name in ("localhost", "app.default.svc", "", "a\x00b", "x" * 300):
        assert numeric_addresses(name, 80) is None


@pytest.mark.gen_test(timeout=10)
async def test_ip_literals_are_read_on_the_loop_thread(io_loop: Any, lookups: list[tuple[str, bool]]) -> None:
    resolver = CachingResolver()
    for _ in range(3):
        assert await resolver.resolve("127.0.0.1", 9000) == [(socket.AF_INET, ("127.0.0.1", 9000))]
    assert lookups == [("127.0.0.1", True)] * 3  # no thread hop, nothing cached that needs none


@pytest.mark.gen_test(timeout=10)
async def test_names_go_to_the_pool_once_per_ttl(io_loop: Any, lookups: list[tuple[str, bool]]) -> None:
    now = [100.0]
    resolver = CachingResolver(ttl=5.0, clock=lambda: now[0])
    first = await resolver.resolve("localhost", 9000, socket.AF_INET)
    assert first == [(socket.AF_INET, ("127.0.0.1", 9000))]
    now[0] += 4.9
    assert await resolver.resolve("localhost", 9000, socket.AF_INET) == first
    assert [host for host, main in lookups if not main] == ["localhost"]  # looked up once, in the pool
    now[0] += 0.2  # past the TTL: DNS changes are followed
    assert await resolver.resolve("localhost", 9000, socket.AF_INET) == first
    assert await resolver.resolve("localhost", 9001, socket.AF_INET) == [(socket.AF_INET, ("127.0.0.1", 9001))]
    assert [host for host, main in lookups if not main] == ["localhost"] * 3
