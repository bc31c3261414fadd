"""`HostGate`: the Host allow-list's rules, as pure code (the end-to-end attacks are in test_security.py)."""

from __future__ import annotations

import pytest

from app.dashboard.hosts import HostGate, host_name


@pytest.mark.parametrize(("value", "name"), [("Example.COM:8080", "example.com"), ("[::1]:80", "::1"),
                                             ("a.b.", "a.b"), ("x:port", None), ("[::1", None), ("", None),
                                             ("a b", None), ("evil@127.0.0.1", None), ("[::1]x", None)])
def test_host_name(value: str, name: str | None) -> None:
    assert host_name(value) == name


def test_defaults_allow_loopback_names_and_ip_literals_only() -> None:
    gate = HostGate()
    for host in ("localhost", "localhost:8080", "x.localhost", "127.0.0.1:1", "10.0.0.5", "[::1]:8080",
                 "[fe80::1]", None):
        assert gate.allows(host), host
    for host in ("evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "mothership", "", "::1"):
        assert not gate.allows(host), host


def test_names_suffixes_first_labels_and_star() -> None:
    gate = HostGate(("Dash.Example.com", ".corp.example", "mothership-ns.*", ""))
    assert gate.allows("dash.example.com:443") and gate.allows(b"eu.corp.example")
    assert gate.allows("mothership-ns.apps.cluster.example")
    assert not gate.allows("corp.example") and not gate.allows("x.dash.example.com")
    assert not gate.allows("mothership-ns") and not gate.allows("xmothership-ns.apps.example")
    assert HostGate(("*",)).allows("anything.example")


def test_the_cache_stays_bounded_and_right() -> None:
    gate = HostGate()
    for i in range(1000):
        assert not gate.allows(f"made-up-{i}.example".encode())
    assert len(gate._cache) <= 256 and gate.allows(b"127.0.0.1")


def test_origins_must_be_the_pages_own_on_an_allowed_host() -> None:
    gate = HostGate(("dash.example.com",))
    assert gate.allows_origin("https://dash.example.com", "dash.example.com")
    assert gate.allows_origin("http://127.0.0.1:8080/", "127.0.0.1:8080")
    assert not gate.allows_origin("http://evil.example", "evil.example")  # the rebinding case
    assert not gate.allows_origin("http://127.0.0.1:8081", "127.0.0.1:8080")
    assert not gate.allows_origin("null", "127.0.0.1:8080")
    assert not gate.allows_origin("http://u@127.0.0.1:8080", "127.0.0.1:8080")
    assert not gate.allows_origin("ftp://127.0.0.1:8080", "127.0.0.1:8080")
