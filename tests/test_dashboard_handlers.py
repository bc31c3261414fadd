"""The dashboard's HTTP API on a real server: every endpoint, every refusal, state unchanged after."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import pytest
import ujson

from app import paths
from app.core.wire import MAX_SAMPLES
from app.dashboard.handlers import CSP
from app.options import DashboardConfig
from tests.dashboard_support import T0, FakeClock, Running, resource_body, running, sample, stats_body

TOKEN = "s3cret-token"


async def state(server: Running) -> tuple[Any, Any, Any]:
    overview = await server.get_json("/api/overview")
    overview.pop("now")
    return await server.get_json("/stats"), await server.get_json("/resources"), overview


@pytest.mark.gen_test(timeout=20)
async def test_post_stats_then_read_it_back(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        body = stats_body("shop-1-abcde", [sample("/users/7", ms=12.5, started=T0 + 2)] * 3, batch="b-1")
        response = await server.post("/stats", body)
        assert response.code == 200
        assert ujson.loads(response.body) == {"response": "saved", "pod": "shop-1-abcde", "duplicate": False,
                                              "samples": 3, "cells": 1}
        (pod,) = await server.get_json("/stats")
        assert pod["pod"] == "shop-1-abcde" and pod["app"] == "shop" and pod["count"] == 3
        assert [s["endpoint"] for s in pod["stats"]] == ["/users/7"] * 3 and pod["p50"] == 12.5
        again = await server.post("/stats", body)
        assert again.code == 200 and ujson.loads(again.body)["duplicate"] is True
        (pod,) = await server.get_json("/stats")
        assert pod["count"] == 3 and len(pod["stats"]) == 3


@pytest.mark.gen_test(timeout=20)
async def test_post_resources_then_read_them_back(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        body = resource_body("shop-1-abcde", cpu=33.0)
        response = await server.post("/resources", body)
        assert response.code == 200 and ujson.loads(response.body) == {"response": "saved"}
        (entry,) = await server.get_json("/resources")
        assert entry == {"pod": "shop-1-abcde", "app": "shop", "resource": body["resource"],
                         "seen": (T0 + 10) * 1000, "stale": False}


@pytest.mark.gen_test(timeout=20)
async def test_article_payloads_are_accepted(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        stats = {"pod": "j-slow-9-5rt8f", "stats": [{"endpoint": "/slow?x=1", "method": "GET", "time": 812,
                                                     "response": {"status": "200", "message": "OK"},
                                                     "started": (T0 + 1) * 1000}]}
        resources = {"pod": "j-slow-9-5rt8f", "resource": {"free_memory": 1e9, "total_memory": 4e9, "cpus": [
            {"model": "x", "speed": 2400, "times": {"user": 1, "nice": 0, "sys": 1, "idle": 9, "irq": 0}}]}}
        assert (await server.post("/stats", stats)).code == 200
        assert (await server.post("/resources", resources)).code == 200
        overview = await server.get_json("/api/overview")
        assert overview["pods"][0]["memory"] == 3e9 and overview["routes"][0]["route"] == "/slow"


@pytest.mark.gen_test(timeout=20)
async def test_a_pods_namespace_is_shown_beside_it_and_reports_without_one_still_count(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        with_ns = {**stats_body("shop-1-abcde", [sample(started=T0 + 2)], batch="b-1"), "namespace": "shop-prod"}
        assert (await server.post("/stats", with_ns)).code == 200
        # An older sidecar (or one not given POD_NAMESPACE) says nothing: accepted, and what was said is kept.
        assert (await server.post("/resources", resource_body("shop-1-abcde"))).code == 200
        assert (await server.post("/stats", stats_body("old-1-abcde", [sample(started=T0 + 2)]))).code == 200
        assert (await server.post("/resources", {**resource_body("web-1-abcde"), "namespace": "web"})).code == 200
        stats = {row["pod"]: row for row in await server.get_json("/stats")}
        resources = {row["pod"]: row for row in await server.get_json("/resources")}
        pods = {row["pod"]: row for row in (await server.get_json("/api/overview"))["pods"]}
        for rows in (stats, resources, pods):
            assert rows["shop-1-abcde"]["namespace"] == "shop-prod"
            assert rows["web-1-abcde"]["namespace"] == "web"
            assert "namespace" not in rows["old-1-abcde"]
        assert stats["shop-1-abcde"]["count"] == 1 and stats["old-1-abcde"]["count"] == 1


BAD_STATS: list[tuple[str, bytes, int]] = [
    ("not JSON", b"{nope", 400),
    ("empty", b"", 400),
    ("a list", b"[]", 400),
    ("no pod", b'{"stats": []}', 400),
    ("pod not a string", b'{"pod": 5, "stats": []}', 400),
    ("empty pod", b'{"pod": "  ", "stats": []}', 400),
    ("stats not a list", b'{"pod": "a-1-x", "stats": {}}', 400),
    ("namespace not a string", b'{"pod": "a-1-x", "namespace": 5, "stats": []}', 400),
    ("namespace not a Kubernetes name", b'{"pod": "a-1-x", "namespace": "Shop Prod", "stats": []}', 400),
    ("NaN time", b'{"pod": "a-1-x", "stats": [{"time": NaN, "started": 1}]}', 400),
    ("negative time", b'{"pod": "a-1-x", "stats": [{"time": -1, "started": 1}]}', 400),
    ("absurd time", b'{"pod": "a-1-x", "stats": [{"time": 1e300, "started": 1}]}', 400),
    ("status 1000", b'{"pod": "a-1-x", "stats": [{"time": 1, "started": 1, "response": {"status": 1000}}]}', 400),
    ("unknown error word", b'{"pod": "a-1-x", "stats": [{"time": 1, "started": 1, "error": "boom"}]}', 400),
    ("huge int", b'{"pod": "a-1-x", "stats": [{"time": 1, "started": 1, "bytes_in": 1' + b"0" * 400 + b"}]}", 400),
    ("deep nesting", b'{"pod": "a-1-x", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
    ("too many samples", ujson.dumps({"pod": "a-1-x", "stats": [1] * (MAX_SAMPLES + 1)}).encode(), 400),
    ("inconsistent cell", ujson.dumps({"pod": "a-1-x", "summary": [
        {"t": 1, "route": "/", "method": "GET", "count": 5, "status": {"2xx": 5}, "hist": [[3, 4]]}]}).encode(),
     400),
    ("odd unicode pod", b'{"pod": "\\ud800", "stats": []}', 400),
    ("raw surrogate bytes", b'{"pod": "a-1-x", "stats": [{"time": 1, "started": 1, "endpoint": "/\xed\xa0\x80"}]}',
     400),
    ("invalid UTF-8", b'{"pod": "\xff", "stats": []}', 400),
]


@pytest.mark.gen_test(timeout=60)
async def test_bad_stats_are_refused_and_change_nothing(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        await server.post("/stats", stats_body("shop-1-a", [sample(started=T0 + 1)], batch="ok"))
        await server.post("/resources", resource_body("shop-1-a"))
        before = await state(server)
        for name, raw, code in BAD_STATS:
            response = await server.fetch("/stats", "POST", raw=raw, headers={"Content-Type": "application/json"})
            assert response.code == code, (name, response.body[:200])
            error = ujson.loads(response.body)["error"]
            assert isinstance(error, str) and error, name
        for raw in (b'{"pod": "a-1-x"}', b'{"pod": "a-1-x", "resource": []}',
                    b'{"pod": "a-1-x", "resource": {"cpu_percent": "lots"}}', b'{"resource": {}}',
                    b'{"pod": "a-1-x", "namespace": "-x", "resource": {}}',
                    b'{"pod": "a-1-x", "resource": {"processes": [{"name": "\\udfff"}]}}'):
            response = await server.fetch("/resources", "POST", raw=raw, headers={"Content-Type": "application/json"})
            assert response.code == 400, raw
        assert await state(server) == before


@pytest.mark.gen_test(timeout=20)
async def test_wrong_content_type_is_415(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        for path in ("/stats", "/resources"):
            response = await server.fetch(path, "POST", raw=b'{"pod": "a-1-x", "stats": []}',
                                          headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert response.code == 415 and "application/json" in ujson.loads(response.body)["error"]
        # No Content-Type at all is refused too: a browser sends such a POST cross-site without asking
        # (sendBeacon, a no-cors fetch of a Blob); Tornado's client would add one, so the bytes are written here.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = b'{"pod": "a-1-x", "stats": []}'
        writer.write(b"POST /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)).startswith(b"HTTP/1.1 415")
        writer.close()
        assert await server.get_json("/stats") == []


@pytest.mark.gen_test(timeout=20)
async def test_token_is_required_when_set(io_loop: Any) -> None:
    config = DashboardConfig(data=":memory:", token=TOKEN)
    async with running(config, FakeClock(T0 + 10)) as server:
        body = stats_body("a-1-x", [sample(started=T0 + 1)])
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}):
            for path, payload in (("/stats", body), ("/resources", resource_body("a-1-x"))):
                response = await server.post(path, payload, headers=headers)
                assert response.code == 401, (path, headers)
                assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")
        assert await server.get_json("/stats") == [] and await server.get_json("/resources") == []
        response = await server.post("/stats", body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.code == 200
        assert len(await server.get_json("/stats")) == 1


@pytest.mark.gen_test(timeout=20)
async def test_bodies_over_the_limit_are_413_by_length_or_by_stream(io_loop: Any) -> None:
    config = DashboardConfig(data=":memory:", max_body_bytes=2000)
    async with running(config, FakeClock(T0 + 10)) as server:
        big = stats_body("a-1-x", [sample(started=T0 + 1, ms=float(i)) for i in range(40)])
        response = await server.post("/stats", big)
        assert response.code == 413 and "2000" in ujson.loads(response.body)["error"]

        # Chunked: no length up front, so the count happens as the body streams in.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):
            writer.write(b"%x\r\n%s\r\n" % (1000, b" " * 1000))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 413")
        assert await asyncio.wait_for(reader.read(), 5)  # the JSON error, then the server closes
        writer.close()

        small = stats_body("a-1-x", [sample(started=T0 + 1)])
        assert (await server.post("/stats", small)).code == 200  # still serving
        (pod,) = await server.get_json("/stats")
        assert pod["count"] == 1


@pytest.mark.gen_test(timeout=20)
async def test_overview_and_series_endpoints(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        await server.post("/stats", stats_body("shop-1-a", [sample(started=T0 + 5)] * 10))
        overview = await server.get_json("/api/overview")
        assert overview["totals"]["pods"] == 1 and overview["pods"][0]["pod"] == "shop-1-a"
        series = await server.get_json("/api/series?scope=pod:shop-1-a&window=300")
        assert series["scope"] == "pod:shop-1-a" and series["step"] == 1 and len(series["t"]) == 300
        assert series["rps"]["2xx"][series["t"].index(int(T0) + 5)] == 10.0
        assert (await server.get_json("/api/series"))["scope"] == "all"
        assert (await server.get_json("/api/series?scope=app:shop&window=3600"))["step"] == 10
        for query, code in (("window=42", 400), ("window=abc", 400), ("scope=cluster", 400),
                            ("scope=pod:missing", 404)):
            response = await server.fetch(f"/api/series?{query}")
            assert response.code == code and "error" in ujson.loads(response.body), query


@pytest.mark.gen_test(timeout=20)
async def test_healthz_and_metrics(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        await server.post("/stats", stats_body("shop-1-a", [sample(started=T0 + 5)] * 4, dropped=2))
        await server.fetch("/stats", "POST", raw=b"{", headers={"Content-Type": "application/json"})
        assert await server.get_json("/healthz") == {"status": "ok", "pods": 1, "stale": 0, "history": True}
        response = await server.fetch("/metrics")
        assert response.code == 200 and response.headers["Content-Type"].startswith("text/plain")
        text = response.body.decode()
        assert 'mothership_ingest_requests_total{endpoint="stats",outcome="saved"} 1.0' in text
        assert 'mothership_ingest_requests_total{endpoint="stats",outcome="bad_request"} 1.0' in text
        assert "mothership_exchanges_total 4.0" in text
        assert "mothership_sidecar_dropped_samples_total 2.0" in text
        assert 'mothership_pods{state="live"} 1.0' in text


@pytest.mark.gen_test(timeout=20)
async def test_page_is_served_with_its_content_security_policy(io_loop: Any) -> None:
    async with running(clock=FakeClock(T0 + 10)) as server:
        response = await server.fetch("/")
        if not (paths.TEMPLATES_DIR / "index.html").is_file():
            assert response.code == 503
            return
        assert response.code == 200 and response.headers["Content-Security-Policy"] == CSP
        assert b"<html" in response.body.lower()


@pytest.mark.gen_test(timeout=20)
async def test_view_token_protects_the_page_and_reads_but_not_health(io_loop: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    config = DashboardConfig(data=":memory:", view_token="look")
    caplog.set_level(logging.INFO)
    async with running(config, FakeClock(T0 + 10)) as server:
        for path in ("/", "/api/overview", "/api/series", "/stats", "/resources"):
            response = await server.fetch(path)
            assert response.code == 401, path
            assert (await server.fetch(path + ("&" if "?" in path else "?") + "token=nope")).code == 401
        assert (await server.fetch("/healthz")).code == 200
        # POSTs need the ingest token (none here), not the view token.
        assert (await server.post("/stats", stats_body("a-1-x", []))).code == 200

        response = await server.fetch("/?token=look")
        assert response.code == 302 and response.headers["Location"] == "/"
        cookie = response.headers["Set-Cookie"]
        assert "look" not in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        jar = cookie.split(";", 1)[0]
        assert (await server.fetch("/api/overview", headers={"Cookie": jar})).code == 200
        assert (await server.fetch("/api/overview", headers={"Cookie": jar + "x"})).code == 401
        basic = base64.b64encode(b"anyone:look").decode()
        assert (await server.fetch("/stats", headers={"Authorization": f"Basic {basic}"})).code == 200
        wrong = base64.b64encode(b"anyone:nope").decode()
        assert (await server.fetch("/stats", headers={"Authorization": f"Basic {wrong}"})).code == 401
        assert "401 GET /api/overview" in caplog.text  # refusals are logged, tokens in queries are not
        assert "token=" not in caplog.text and "look" not in caplog.text
