"""Security end to end: ingest and view tokens, the WebSocket's Origin check, and secrets kept out of everything.

Real dashboard, sidecar and sample-app processes on 127.0.0.1. Tokens are
given through the environment, as a Secret would give them in a pod. The
secret-keeping test sends credentials every way a client does (headers,
cookies, query strings, userinfo, malformed requests) and then searches the
API answers, /metrics, both logs and the SQLite files for them.
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fault_support import (
    SampleApp,
    eventually,
    fetch,
    raw_exchange,
    start_dashboard,
    start_sidecar,
    ws_handshake,
)

INGEST = "ingest-9f8e7d6c5b4a"
VIEW = "view-0a1b2c3d4e5f"


def post_stats(port: int, pod: str, headers: dict[str, str]) -> Any:
    body = json.dumps({"pod": pod, "stats": [{"endpoint": "/x", "time": 1.0, "started": time.time() * 1000,
                                              "response": {"status": 200}}]}).encode()
    return fetch(port, "/stats", "POST", body, {"Content-Type": "application/json", **headers})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- ingest token ----------------------------------------------------------------------------------------------


def test_ingest_needs_the_token_and_keeps_nothing_from_those_without_it(run_app: Any, tmp_path: Path) -> None:
    app = SampleApp(log=tmp_path / "app.log").start()
    try:
        dashboard = start_dashboard(run_app, env={"DASHBOARD_TOKEN": INGEST})
        wrong = {
            "none": {},
            "wrong": {"Authorization": "Bearer not-the-token"},
            "prefix": {"Authorization": f"Bearer {INGEST[:-1]}"},
            "longer": {"Authorization": f"Bearer {INGEST}x"},
            "no scheme": {"Authorization": INGEST},
            "basic": {"Authorization": basic("sidecar", INGEST)},
            "empty bearer": {"Authorization": "Bearer "},
            "in the query": {},  # ?token= is for the view token only
        }
        for name, headers in wrong.items():
            path_pod = f"intruder-{name.replace(' ', '-')}"
            reply = post_stats(dashboard.port, path_pod, headers) if name != "in the query" else fetch(
                dashboard.port, f"/stats?token={INGEST}", "POST", b'{"pod": "intruder-q", "stats": []}',
                {"Content-Type": "application/json"})
            assert reply.status == 401, name
            assert reply.headers["WWW-Authenticate"].startswith("Bearer"), name
            assert "error" in reply.json()
        resources = fetch(dashboard.port, "/resources", "POST", b'{"pod": "intruder-r", "resource": {}}',
                          {"Content-Type": "application/json"})
        assert resources.status == 401

        sidecar = start_sidecar(run_app, app.port, dashboard.url, env={"DASHBOARD_TOKEN": INGEST})
        assert sidecar.get("/users/1").status == 200
        eventually(lambda: dashboard.counted(sidecar.pod) == (1, 0), what="the sidecar's exchange counted")
        assert post_stats(dashboard.port, "friend-1-x", {"Authorization": f"bearer  {INGEST} "}).status == 200

        pods = {p["pod"] for p in dashboard.json("/stats")} | {p["pod"] for p in dashboard.json("/resources")}
        assert pods == {sidecar.pod, "friend-1-x"}  # no intruder, not even as an empty pod
        overview = dashboard.json("/api/overview")
        assert {p["pod"] for p in overview["pods"]} == pods
        assert dashboard.metric("mothership_ingest_requests_total", outcome="unauthorized") == len(wrong) + 1
    finally:
        app.stop()


# --- view token ----------------------------------------------------------------------------------------------------


def test_the_view_token_guards_the_page_the_reads_and_the_socket(run_app: Any) -> None:
    dashboard = start_dashboard(run_app, env={"VIEW_TOKEN": VIEW, "DASHBOARD_TOKEN": INGEST})
    port = dashboard.port
    reads = ["/", "/stats", "/resources", "/api/overview", "/api/series?scope=all&window=300"]
    for path in reads:
        assert fetch(port, path).status == 401, path  # (WWW-Authenticate: see test_a_401_asks_for_basic_auth)
        for headers in ({"Authorization": basic("me", "wrong")}, {"Authorization": f"Bearer {INGEST}"},
                        {"Cookie": f"mothership_view={VIEW}"}):  # the cookie is derived, never the token
            assert fetch(port, path, headers=headers).status == 401, (path, headers)
        sep = "&" if "?" in path else "?"
        assert fetch(port, f"{path}{sep}token=wrong").status == 401, path
    assert ws_handshake(port)[0] == 401
    assert ws_handshake(port, f"/ws?token={VIEW}x")[0] == 401
    assert fetch(port, "/healthz").status == 200  # probes need no token
    # The view token does not open ingest.
    assert post_stats(port, "viewer-1-x", {"Authorization": f"Bearer {VIEW}"}).status == 401

    # ?token= on the page becomes an HttpOnly, SameSite=Strict cookie that is not the token itself.
    reply = fetch(port, f"/?token={VIEW}")
    assert reply.status == 302 and reply.headers["Location"] == "/"
    cookie_header = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie_header and "SameSite=Strict" in cookie_header and VIEW not in cookie_header
    cookie = cookie_header.split(";", 1)[0]
    page = fetch(port, "/", headers={"Cookie": cookie})
    assert page.status == 200 and "default-src 'self'" in page.headers["Content-Security-Policy"]
    for path in reads[1:]:
        assert fetch(port, path, headers={"Cookie": cookie}).status == 200, path
        assert fetch(port, path, headers={"Authorization": basic("anyone", VIEW)}).status == 200, path
    assert ws_handshake(port, headers={"Cookie": cookie})[0] == 101
    assert ws_handshake(port, f"/ws?token={VIEW}")[0] == 101
    assert ws_handshake(port, headers={"Authorization": basic("me", VIEW)})[0] == 101


# --- Origin ------------------------------------------------------------------------------------------------------


def test_the_socket_refuses_foreign_origins(run_app: Any) -> None:
    dashboard = start_dashboard(run_app, "--allowed-origins", "https://dash.example.com")
    port = dashboard.port
    foreign = ["http://evil.example", "null", f"http://127.0.0.1:{port}.evil.example", f"http://127.0.0.1:{port + 1}",
               "https://dash.example.com.evil.example", "http://dash.example.com", f"http://evil.example/127.0.0.1:{port}",
               f"http://127.0.0.1:{port}@evil.example"]
    for origin in foreign:
        status, head = ws_handshake(port, headers={"Origin": origin})
        assert status == 403, (origin, head)
    for origin in (f"http://127.0.0.1:{port}", "https://dash.example.com", "https://dash.example.com/"):
        assert ws_handshake(port, headers={"Origin": origin})[0] == 101, origin


# --- nothing secret is recorded or logged --------------------------------------------------------------------------

SECRETS = {
    "authorization": "s3cret-authz-7a1",
    "cookie": "s3cret-cookie-7a2",
    "query": "s3cret-query-7a3",
    "proxy": "s3cret-proxy-7a4",
    "apikey": "s3cret-apikey-7a5",
    "userinfo": "s3cret-userinfo-7a6",
    "refused": "s3cret-refused-7a7",
    "fragment": "s3cret-fragment-7a8",
}


def secret_requests() -> list[bytes]:
    s = SECRETS
    return [
        (f"GET /users/5?token={s['query']}&x=1 HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer {s['authorization']}\r\n"
         f"Cookie: session={s['cookie']}; theme=dark\r\nProxy-Authorization: Basic {s['proxy']}\r\n"
         f"X-Api-Key: {s['apikey']}\r\nConnection: close\r\n\r\n").encode(),
        f"GET /api/items?access_token={s['query']} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n".encode(),
        f"GET http://user:{s['userinfo']}@app/api/items HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n".encode(),
        f"GET /healthz#{s['fragment']} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n".encode(),
        # Refused by the sidecar (both framings): its sample and log must not carry the query or headers either.
        (f"POST /orders?token={s['refused']} HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer {s['refused']}\r\n"
         f"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode(),
        # Refused before its head ended (bare LF).
        f"GET /users/6?token={s['refused']} HTTP/1.1\nCookie: {s['refused']}\n\n".encode(),
    ]


@pytest.mark.slow
def test_no_secret_reaches_the_api_metrics_logs_or_history(run_app: Any, tmp_path: Path) -> None:
    app = SampleApp(log=tmp_path / "app.log").start()
    data = tmp_path / "history.sqlite3"
    try:
        dashboard = start_dashboard(run_app, data=str(data), env={"DASHBOARD_TOKEN": INGEST})
        sidecar = start_sidecar(run_app, app.port, dashboard.url, env={"DASHBOARD_TOKEN": INGEST})
        requests = secret_requests()
        answers = [raw_exchange(sidecar.port, request) for request in requests]
        statuses = [int(a[9:12]) for a in answers]
        assert statuses[:2] == [200, 200] and statuses[4:] == [400, 400], statuses  # (the app 404s the others)
        eventually(lambda: dashboard.counted(sidecar.pod)[0] == len(requests), what="every exchange counted")
        time.sleep(2.5)  # a history write (every 2 s) and a few resource reports

        seen: dict[str, str] = {}
        scopes = ("all", "app:shop", f"pod:{sidecar.pod}")
        for path in ("/stats", "/resources", "/api/overview", "/metrics", "/healthz",
                     *(f"/api/series?scope={scope}&window={window}" for scope in scopes for window in (300, 3600))):
            reply = dashboard.get(path)
            assert reply.status == 200, path
            seen[f"dashboard {path}"] = reply.body.decode()
        seen["sidecar /metrics"] = sidecar.metrics_text()
        endpoints = {s["endpoint"] for s in dashboard.pod(sidecar.pod)["stats"]}  # type: ignore[index]
        assert {"/users/5", "/api/items", "/orders"} <= endpoints and not any("?" in e for e in endpoints)

        assert sidecar.proc.stop() == 0
        assert dashboard.proc.stop(signal.SIGTERM) == 0  # history written
        seen["sidecar log"] = sidecar.proc.output
        seen["dashboard log"] = dashboard.proc.output
        files = sorted(tmp_path.glob("history.sqlite3*"))
        assert data in files and data.stat().st_size > 0
        for file in files:
            seen[file.name] = file.read_bytes().decode("latin-1")
        assert "/users/{id}" in seen["history.sqlite3"] + seen.get("history.sqlite3-wal", "")  # history was written

        secrets = {**SECRETS, "ingest token": INGEST}
        leaks = [f"{name} in {where}" for where, text in seen.items() for name, secret in secrets.items()
                 if secret in text]
        assert leaks == []
    finally:
        app.stop()


# --- found while writing these (the log leak of the view token was fixed in ce83268) -------------------------


def test_the_view_token_is_never_logged(run_app: Any) -> None:
    dashboard = start_dashboard(run_app, env={"VIEW_TOKEN": VIEW})
    assert fetch(dashboard.port, f"/api/series?scope=pod:gone&window=300&token={VIEW}").status == 404
    assert ws_handshake(dashboard.port, f"/ws?token={VIEW}", headers={"Origin": "http://elsewhere"})[0] == 403
    assert fetch(dashboard.port, f"/api/series?scope=bad&token={VIEW}").status == 400
    assert dashboard.proc.stop() == 0
    assert VIEW not in dashboard.proc.output


def test_a_password_in_the_dashboard_url_is_not_logged(run_app: Any) -> None:
    dashboard = start_dashboard(run_app)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        target = unused.getsockname()[1]
    sidecar = start_sidecar(run_app, target, f"http://mothership:{SECRETS['userinfo']}@127.0.0.1:{dashboard.port}")
    eventually(lambda: dashboard.pod(sidecar.pod) is not None, what="the sidecar reporting")
    assert sidecar.proc.stop() == 0
    assert SECRETS["userinfo"] not in sidecar.proc.output


@pytest.mark.parametrize("path", ["/", "/api/overview"])
def test_a_401_asks_for_basic_auth(run_app: Any, path: str) -> None:
    dashboard = start_dashboard(run_app, env={"VIEW_TOKEN": VIEW})
    reply = fetch(dashboard.port, path)
    assert reply.status == 401
    assert (reply.headers["WWW-Authenticate"] or "").startswith("Basic")


# --- DNS rebinding: the Host allow-list ----------------------------------------------------------------------------

REBOUND = "rebound.evil.example"


def test_a_host_the_dashboard_is_not_known_by_gets_421_before_any_data(run_app: Any) -> None:
    dashboard = start_dashboard(run_app, "--allowed-hosts", "dash.example.com,.corp.example")
    port = dashboard.port
    assert post_stats(port, "seed-1-x", {}).status == 200
    reads = ["/", "/stats", "/resources", "/api/overview", "/api/series?scope=all&window=300", "/healthz",
             "/metrics", "/static/app.js", "/nowhere"]
    for host in (REBOUND, f"{REBOUND}:{port}", "dash.example.com.evil.example", "evil.example#@127.0.0.1",
                 "localhost.evil.example", "corp.example.evil", "127.0.0.1.evil.example", ""):
        malformed = "#" in host or not host  # Tornado itself refuses some with a 400: as good
        refused = {400, 421} if malformed else {421}
        for path in reads:
            reply = fetch(port, path, headers={"Host": host})
            assert reply.status in refused, (host, path, reply.status)
            assert b"seed-1-x" not in reply.body
        # Both ingest paths: a sidecar's connection, and one the application serves (handed off).
        assert post_stats(port, f"rebound-{len(host)}", {"Host": host}).status == 421, host
        status, head = ws_handshake(port, headers={"Host": host, "Origin": f"http://{host}"})
        assert status in refused, (host, head)
    handed = raw_exchange(port, f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nPOST /stats HTTP/1.1\r\n"
                                f"Host: {REBOUND}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                                f"Connection: close\r\n\r\n{{}}".encode())
    assert handed.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 421" in handed, handed
    assert {p["pod"] for p in dashboard.json("/stats")} == {"seed-1-x"}
    # Two Host headers (a proxy may read the first, we the last): refused too.
    twice = raw_exchange(port, f"GET /api/overview HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: {REBOUND}\r\n"
                               f"Connection: close\r\n\r\n".encode())
    assert twice.startswith(b"HTTP/1.1 421") or twice.startswith(b"HTTP/1.1 400"), twice[:100]

    for host in ("127.0.0.1", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost", f"LOCALHOST:{port}",
                 "app.localhost", "10.128.4.7:8080", "dash.example.com", "Dash.Example.Com.:443",
                 "eu.corp.example"):
        assert fetch(port, "/api/overview", headers={"Host": host}).status == 200, host
    assert post_stats(port, "friend-1-x", {"Host": "dash.example.com:8080"}).status == 200
    assert dashboard.metric("mothership_http_refused_requests_total", reason="wrong_host") >= 6 * len(reads)
    assert dashboard.metric("mothership_ingest_requests_total", outcome="wrong_host") == 8  # (+1 handed: above)


def test_the_socket_takes_only_origins_on_allowed_hosts(run_app: Any) -> None:
    dashboard = start_dashboard(run_app, "--allowed-hosts", "dash.example.com")
    port = dashboard.port
    # The rebinding attack of issue 16: Host and Origin agree, both the attacker's.
    assert ws_handshake(port, headers={"Host": REBOUND, "Origin": f"http://{REBOUND}"})[0] == 421
    # An allowed Host with a foreign Origin (a page elsewhere opening the socket): 403.
    assert ws_handshake(port, headers={"Host": "dash.example.com", "Origin": f"http://{REBOUND}"})[0] == 403
    status, _ = ws_handshake(port, headers={"Host": "dash.example.com", "Origin": "https://dash.example.com"})
    assert status == 101
    assert ws_handshake(port, headers={"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"})[0] == 101
    assert dashboard.metric("mothership_http_refused_requests_total", reason="wrong_origin") == 1


def test_allowed_hosts_star_turns_the_check_off(run_app: Any) -> None:
    dashboard = start_dashboard(run_app, env={"ALLOWED_HOSTS": "*"})
    assert fetch(dashboard.port, "/api/overview", headers={"Host": REBOUND}).status == 200


# --- cross-site writes (the browser's side is in test_page.py) and repeated credentials ---------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_a_post_a_browser_could_send_cross_site_is_415(run_app: Any, content_type: str | None) -> None:
    dashboard = start_dashboard(run_app)
    body = json.dumps({"pod": "cross-1-x", "stats": []}).encode()
    head = f"POST /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    assert raw_exchange(dashboard.port, head.encode() + b"\r\n" + body).startswith(b"HTTP/1.1 415")
    # The same on a connection the application serves.
    handed = raw_exchange(dashboard.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                          + head.encode() + b"\r\n" + body)
    # (Tornado reads a multipart body before any handler, and refuses a broken one with a 400: as good.)
    assert b"HTTP/1.1 415" in handed or (b"HTTP/1.1 400" in handed and "multipart" in str(content_type)), handed
    assert dashboard.json("/stats") == []
    assert dashboard.metric("mothership_ingest_requests_total", outcome="unsupported_type") >= 1


def test_two_authorization_headers_are_refused_on_both_paths(run_app: Any) -> None:
    dashboard = start_dashboard(run_app, env={"DASHBOARD_TOKEN": INGEST})
    body = json.dumps({"pod": "twice-1-x", "stats": []}).encode()
    for first, second in ((INGEST, "wrong"), ("wrong", INGEST), (INGEST, INGEST)):
        head = (f"POST /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {first}\r\nAuthorization: Bearer {second}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        direct = raw_exchange(dashboard.port, head + body)
        handed = raw_exchange(dashboard.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + head + body)
        assert direct.startswith(b"HTTP/1.1 400") and b"one Authorization" in direct, direct
        assert b"HTTP/1.1 400" in handed and b"one Authorization" in handed, handed
    assert dashboard.json("/stats") == []
    assert dashboard.metric("mothership_ingest_requests_total", outcome="repeated_header") == 6


# --- logs: no query string, no forged line, no 500 -----------------------------------------------------------------


def test_logs_hold_no_token_no_forged_line_and_a_nul_is_no_500(run_app: Any) -> None:
    dashboard = start_dashboard(run_app, env={"VIEW_TOKEN": VIEW})
    port = dashboard.port
    forged = "2026-12-03 08:29:00,000 mothership.dashboard ERROR FORGED LINE"
    assert fetch(port, f"/static/a%00?token={VIEW}").status == 400
    assert fetch(port, f"/static/a%00b.js?token={VIEW}").status == 400
    assert fetch(port, f"/static/%2e%2e/x%0a{forged.replace(' ', '%20')}?token={VIEW}").status in (403, 404)
    assert fetch(port, f"/static/%ff%fe?token={VIEW}").status in (400, 404)
    assert fetch(port, f"/x%0d%0a{forged.replace(' ', '%20')}?token={VIEW}").status == 404
    assert fetch(port, f"/static/%1b[31mred%e2%80%ae?token={VIEW}").status == 404
    for path in ("/api/overview", "/api/series?scope=pod:gone&window=300"):
        assert fetch(port, f"{path}&token={VIEW}" if "?" in path else f"{path}?token={VIEW}").status in (200, 404)
    assert dashboard.metric("mothership_http_refused_requests_total", reason="bad_path") == 2
    assert dashboard.proc.stop() == 0
    log = dashboard.proc.output
    assert VIEW not in log and "token=" not in log
    assert "Traceback" not in log and " 500 " not in log
    lines = log.splitlines()
    assert not any(line.startswith("2026-12-03 08:29:00") for line in lines), log
    assert not any("\x1b" in line or "\u202e" in line for line in lines)
    assert any("\\x0a2026-12-03" in line for line in lines), log  # logged, escaped, on its own request's line


# --- HEAD, and the view cookie behind a TLS proxy --------------------------------------------------------------------


def test_head_is_answered_wherever_get_is(run_app: Any) -> None:
    dashboard = start_dashboard(run_app)
    for path in ("/", "/stats", "/resources", "/api/overview", "/api/series?scope=all&window=300", "/api/alerts",
                 "/healthz", "/metrics", "/static/app.js"):
        got, head = fetch(dashboard.port, path), fetch(dashboard.port, path, "HEAD")
        assert head.status == got.status == 200, (path, head.status)
        assert head.body == b"" and head.headers["Content-Type"] == got.headers["Content-Type"], path


@pytest.mark.parametrize(("trusted", "proto", "secure"), [(True, "https", True), (True, "http", False),
                                                          (False, "https", False), (True, "https, http", True)])
def test_the_view_cookie_is_secure_behind_a_trusted_tls_proxy(run_app: Any, trusted: bool, proto: str,
                                                               secure: bool) -> None:
    extra = ("--trust-forwarded-proto", "true") if trusted else ()
    dashboard = start_dashboard(run_app, *extra, env={"VIEW_TOKEN": VIEW})
    reply = fetch(dashboard.port, f"/?token={VIEW}", headers={"X-Forwarded-Proto": proto})
    assert reply.status == 302
    assert ("; Secure" in reply.headers["Set-Cookie"]) is secure
