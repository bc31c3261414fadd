"""curl over cleartext HTTP/2 (h2c) through a real sidecar to real servers: hypercorn (by prior knowledge and
by `Upgrade: h2c`) and nghttpd; every answer as going direct, every stream one sample."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, free_port
from tests.protocol_support import need, server_process, sidecar_for


@pytest.fixture(scope="module")
def hypercorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = tmp_path_factory.mktemp("hypercorn") / "hypercorn.log"
    with server_process([sys.executable, "-m", "hypercorn", "tests.asgi_echo:app", "--bind", f"127.0.0.1:{port}"],
                        port, log, cwd=ROOT):
        yield port


def run(command: str, package: str, *args: str) -> str:
    done = subprocess.run([need(command, package), *args], capture_output=True, timeout=30, check=True)
    return done.stdout.decode()


def curl(*args: str) -> str:
    """curl's answer to one URL (its own connection), then `code version`."""
    return run("curl", "curl", "-s", "--max-time", "20", "-w", "%{http_code} %{http_version}", *args)


def nghttp(*args: str) -> str:
    """nghttp's bodies for its URLs, all on one connection (prior knowledge; with -u, by upgrade)."""
    return run("nghttp", "nghttp2-client", "-t", "20", *args)


def urls(port: int, *paths: str) -> list[str]:
    return [f"http://127.0.0.1:{port}{path}" for path in paths]


def samples_of(proxy: Any) -> list[dict[str, Any]]:
    return proxy.settled()  # type: ignore[no-any-return]


def test_curl_by_prior_knowledge_one_sample_per_stream(hypercorn: int) -> None:
    with sidecar_for(hypercorn) as proxy:
        for path in ("/users/42?q=1", "/missing"):
            [direct], [proxied] = urls(hypercorn, path), urls(proxy.port, path)
            assert curl("--http2-prior-knowledge", proxied) == curl("--http2-prior-knowledge", direct)
        samples = samples_of(proxy)
    assert [(s["protocol"], s["method"], s["endpoint"], s["route"], s["response"]["status"])
            for s in samples] == [("h2", "GET", "/users/42", "/users/{id}", 200),
                                  ("h2", "GET", "/missing", "/missing", 404)]
    # hypercorn ends a stream with an empty DATA frame after the body; curl leaves as soon as it has
    # content-length bytes, at times before that frame reaches the sidecar: the response is complete all the same.
    assert [s["error"] for s in samples] == [None, None]
    assert [s["bytes_out"] for s in samples] == [len("GET /users/42 0 bytes over HTTP/2\n"),
                                                 len("GET /missing 0 bytes over HTTP/2\n")]
    assert all(0 < s["ttfb"] <= s["time"] for s in samples)
    assert proxy.counters.protocols == {"http1": 0, "h2": 2, "tls": 0, "tcp": 0}


def test_nghttp_streams_on_one_connection(hypercorn: int) -> None:
    paths = ("/a", "/users/1", "/users/2", "/missing")
    with sidecar_for(hypercorn) as proxy:
        assert nghttp(*urls(proxy.port, *paths)) == nghttp(*urls(hypercorn, *paths))
        samples = samples_of(proxy)
    assert sorted((s["endpoint"], s["route"], s["response"]["status"]) for s in samples) == [
        ("/a", "/a", 200), ("/missing", "/missing", 404), ("/users/1", "/users/{id}", 200),
        ("/users/2", "/users/{id}", 200)]
    assert proxy.counters.protocols["h2"] == 1


def test_a_body_upload_and_a_large_download(hypercorn: int, tmp_path: Path) -> None:
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"u" * (3 << 20))
    post = ("--http2-prior-knowledge", "--data-binary", f"@{upload}")
    with sidecar_for(hypercorn) as proxy:
        [direct], [proxied] = urls(hypercorn, "/up"), urls(proxy.port, "/up")
        assert curl(*post, proxied) == curl(*post, direct) == f"POST /up {3 << 20} bytes over HTTP/2\n200 2"
        out = tmp_path / "big.out"
        curl("--http2-prior-knowledge", "-o", str(out), *urls(proxy.port, f"/big/{10 << 20}"))
        samples = samples_of(proxy)
    assert out.read_bytes() == b"z" * (10 << 20)
    assert [(s["method"], s["bytes_in"], s["bytes_out"]) for s in samples] == \
        [("POST", 3 << 20, len(f"POST /up {3 << 20} bytes over HTTP/2\n")), ("GET", 0, 10 << 20)]


def test_curl_upgrade_from_http1_continues_as_http2_with_the_upgrade_request_as_stream_1(hypercorn: int) -> None:
    with sidecar_for(hypercorn) as proxy:
        [direct], [proxied] = urls(hypercorn, "/users/7"), urls(proxy.port, "/users/7")
        assert curl("--http2", proxied) == curl("--http2", direct) == "GET /users/7 0 bytes over HTTP/2\n200 2"
        [sample] = samples_of(proxy)
    assert (sample["protocol"], sample["route"], sample["response"]["status"], sample["error"]) == \
        ("h2", "/users/{id}", 200, None)
    assert sample["bytes_out"] == len("GET /users/7 0 bytes over HTTP/2\n")  # DATA, not the 101's head
    assert 0 < sample["ttfb"] <= sample["time"]
    assert proxy.counters.protocols == {"http1": 1, "h2": 1, "tls": 0, "tcp": 0}  # counted as it began, and after


def test_nghttp_upgrade_then_more_streams(hypercorn: int) -> None:
    paths = ("/users/7", "/b", "/missing")
    with sidecar_for(hypercorn) as proxy:
        assert nghttp("-u", *urls(proxy.port, *paths)) == nghttp("-u", *urls(hypercorn, *paths))
        samples = samples_of(proxy)
    assert sorted((s["protocol"], s["route"], s["response"]["status"], s["error"]) for s in samples) == [
        ("h2", "/b", 200, None), ("h2", "/missing", 404, None), ("h2", "/users/{id}", 200, None)]


def test_an_upgrade_with_a_body_is_answered_as_the_app_chooses(hypercorn: int) -> None:
    with sidecar_for(hypercorn) as proxy:
        [direct], [proxied] = urls(hypercorn, "/form"), urls(proxy.port, "/form")
        got = curl("--http2", "-d", "x=1", proxied)
        assert got == curl("--http2", "-d", "x=1", direct)
        [sample] = samples_of(proxy)
    assert sample["route"] == "/form" and sample["method"] == "POST" and sample["error"] is None
    assert sample["protocol"] == ("h2" if got.endswith(" 2") else "http/1.1")


@pytest.fixture(scope="module")
def nghttpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    binary = need("nghttpd", "nghttp2-server")
    docroot = tmp_path_factory.mktemp("docroot")
    (docroot / "index.html").write_text("<p>served by nghttpd</p>\n")
    (docroot / "app.js").write_bytes(b"x" * 100_000)
    port = free_port()
    with server_process([binary, "--no-tls", "-a", "127.0.0.1", "-d", str(docroot), str(port)], port,
                        docroot.parent / "nghttpd.log"):
        yield port, docroot


def test_nghttpd_which_speaks_first(nghttpd: tuple[int, Path]) -> None:
    # nghttpd sends its SETTINGS as soon as a client connects: the app speaking first in HTTP/2 decides it.
    port, _ = nghttpd
    paths = ("/index.html", "/app.js", "/nothing")
    with sidecar_for(port) as proxy:
        [direct], [proxied] = urls(port, "/index.html"), urls(proxy.port, "/index.html")
        assert curl("--http2-prior-knowledge", proxied) == curl("--http2-prior-knowledge", direct) == \
            "<p>served by nghttpd</p>\n200 2"
        assert nghttp(*urls(proxy.port, *paths)) == nghttp(*urls(port, *paths))
        samples = samples_of(proxy)
    assert [(s["endpoint"], s["response"]["status"], s["file"]) for s in samples[:1]] == [("/index.html", 200, True)]
    assert sorted((s["endpoint"], s["response"]["status"], s["file"]) for s in samples[1:]) == [
        ("/app.js", 200, True), ("/index.html", 200, True), ("/nothing", 404, False)]
    assert [s["bytes_out"] for s in samples if s["endpoint"] == "/app.js"] == [100_000]
    assert all(s["protocol"] == "h2" and s["error"] is None for s in samples)
    assert proxy.counters.protocols["h2"] == 2 and proxy.counters.opaque["server_first"] == 0


def test_forced_http2_needs_no_detection(hypercorn: int) -> None:
    paths = ("/users/5", "/c")
    with sidecar_for(hypercorn, protocol="http2") as proxy:
        assert nghttp(*urls(proxy.port, *paths)) == nghttp(*urls(hypercorn, *paths))
        samples = samples_of(proxy)
    assert sorted(s["route"] for s in samples) == ["/c", "/users/{id}"]
    assert proxy.counters.protocols["h2"] == 1 and proxy.counters.opaque == dict.fromkeys(proxy.counters.opaque, 0)
