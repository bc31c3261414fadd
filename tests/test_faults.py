"""Faults end to end: real sample-app, sidecar and dashboard processes, killed, stopped and restarted.

Each test starts the processes it needs on 127.0.0.1 (short intervals via
flags), breaks one of them the way production does (SIGKILL, SIGTERM, a port
nobody listens on), and checks what the client got, what the sample says and
what the dashboard counted: every exchange once, or counted as dropped.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fault_support import (
    AckLosingRelay,
    KeepAliveClient,
    LoopThread,
    SampleApp,
    eventually,
    fetch,
    median,
    restart_dashboard,
    rss_bytes,
    start_dashboard,
    start_sidecar,
    tracebacks,
    user_paths,
)


@pytest.fixture
def app(tmp_path: Path) -> Any:
    """The sample app, not yet started (a test may want its port before it listens)."""
    sample = SampleApp(log=tmp_path / "sampleapp.log")
    yield sample
    sample.stop(signal.SIGKILL)


def samples_of(dashboard: Any, pod: str) -> list[dict[str, Any]]:
    entry = dashboard.pod(pod)
    return [] if entry is None else list(entry["stats"])


# --- the app misbehaves ------------------------------------------------------------------------------


def test_app_killed_mid_response_cuts_the_client_reports_upstream_reset_and_recovers(run_app: Any, app: Any) -> None:
    app.start()
    dashboard = start_dashboard(run_app)
    sidecar = start_sidecar(run_app, app.port, dashboard.url)
    size = 50_000_000
    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=5) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        client.sendall(f"GET /download?bytes={size} HTTP/1.1\r\nHost: app\r\n\r\n".encode())
        received = client.recv(65536)
        assert received.startswith(b"HTTP/1.1 200 OK")
        app.stop(signal.SIGKILL)  # mid-response: the app has sent part of the body
        ended = time.monotonic()
        while True:
            chunk = client.recv(1 << 20)
            if not chunk:
                break
            received += chunk
        ended = time.monotonic() - ended
    head, _, body = received.partition(b"\r\n\r\n")
    assert f"Content-Length: {size}".encode() in head
    assert 0 < len(body) < size  # cut short, and the client saw the connection end (no hang)
    assert ended < 5

    eventually(lambda: len(samples_of(dashboard, sidecar.pod)) == 1, what="the cut exchange reported")
    [sample] = samples_of(dashboard, sidecar.pod)
    assert sample["error"] == "upstream_reset" and sample["response"]["status"] == 200
    assert sample["bytes_out"] == len(received)

    # While the app is gone: a 502 at once; once it is back: served, with no sidecar restart.
    reply = sidecar.get("/users/1")
    assert reply.status == 502 and b"refused the connection" in reply.body
    app.start()
    assert sidecar.get("/users/1").status == 200
    eventually(lambda: len(samples_of(dashboard, sidecar.pod)) == 3)
    errors = [s["error"] for s in samples_of(dashboard, sidecar.pod)]
    assert errors == ["upstream_reset", "upstream_unavailable", None]
    assert sidecar.proc.proc.poll() is None and tracebacks(sidecar.proc.output) == []


def test_app_down_at_start_then_up_is_served_without_a_restart(run_app: Any, app: Any) -> None:
    dashboard = start_dashboard(run_app)
    sidecar = start_sidecar(run_app, app.port, dashboard.url)  # nothing listens on app.port yet
    for _ in range(3):
        reply = sidecar.get("/users/7")
        assert reply.status == 502
    assert fetch(sidecar.admin_port, "/readyz").status == 503
    app.start()
    assert [sidecar.get("/users/7").status for _ in range(3)] == [200] * 3
    assert fetch(sidecar.admin_port, "/readyz").status == 200
    eventually(lambda: dashboard.counted(sidecar.pod) == (6, 0), what="six exchanges counted")
    samples = samples_of(dashboard, sidecar.pod)
    assert [(s["response"]["status"], s["error"]) for s in samples] == \
        [(502, "upstream_unavailable")] * 3 + [(200, None)] * 3
    assert sidecar.metric("mothership_proxy_upstream_errors_total", kind="upstream_unavailable") == 3


def test_a_slow_app_gets_the_right_bytes_and_its_time_measured(run_app: Any, app: Any) -> None:
    app.start()
    dashboard = start_dashboard(run_app)
    sidecar = start_sidecar(run_app, app.port, dashboard.url)
    slow: dict[str, Any] = {}

    def slow_request(port: int, key: str) -> None:
        started = time.perf_counter()
        reply = fetch(port, "/slow?ms=800")
        slow[key] = (reply, (time.perf_counter() - started) * 1000)

    thread = threading.Thread(target=slow_request, args=(sidecar.port, "proxied"))
    thread.start()
    time.sleep(0.2)
    fast = KeepAliveClient(sidecar.port)
    fast.get_many(user_paths(20))  # other clients are not held up by a slow exchange
    fast.close()
    thread.join(10)
    slow_request(app.port, "direct")
    proxied, client_ms = slow["proxied"]
    direct, _ = slow["direct"]
    assert proxied.status == direct.status == 200 and proxied.body == direct.body == b'{"slept_ms": 800.0}'
    assert max(fast.latencies) < 200, fast.latencies

    eventually(lambda: dashboard.counted(sidecar.pod)[0] == 21)
    [sample] = [s for s in samples_of(dashboard, sidecar.pod) if s["endpoint"] == "/slow"]
    assert 800 <= sample["ttfb"] <= sample["time"] <= client_ms, (sample, client_ms)
    assert sample["error"] is None and sample["bytes_out"] > len(proxied.body)


# --- the dashboard goes away ---------------------------------------------------------------------------


def steady(client: KeepAliveClient, seconds: float, rate: float, start: int) -> int:
    """Requests at about `rate` per second for `seconds`; returns how many were sent."""
    sent = 0
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        client.get(f"/users/{(start + sent) % 900 + 1}")
        sent += 1
        time.sleep(max(0.0, began + sent / rate - time.monotonic()))
    return sent


@pytest.mark.slow
def test_dashboard_outage_within_the_buffer_loses_nothing_and_the_proxy_does_not_notice(
        run_app: Any, app: Any, tmp_path: Path) -> None:
    app.start()
    dashboard = start_dashboard(run_app, data=str(tmp_path / "history.sqlite3"))
    sidecar = start_sidecar(run_app, app.port, dashboard.url)
    client = KeepAliveClient(sidecar.port)
    client.get_many(user_paths(100))  # warm up
    sent = 100
    eventually(lambda: dashboard.counted(sidecar.pod) == (100, 0))
    rss = {"up": [rss_bytes(sidecar.pid)]}
    client.latencies.clear()
    sent += steady(client, 1.5, 150, sent)
    up_latencies = list(client.latencies)
    rss["up"].append(rss_bytes(sidecar.pid))

    assert dashboard.proc.stop(signal.SIGTERM) == 0
    client.latencies.clear()
    rss["down"] = []
    for _ in range(4):  # about 4 s down, with traffic
        sent += steady(client, 1.0, 150, sent)
        rss["down"].append(rss_bytes(sidecar.pid))
    down_latencies = list(client.latencies)
    queued = sidecar.metric("mothership_reporter_queue_samples")
    assert queued > 400  # held for the dashboard, not dropped
    assert sidecar.metric("mothership_reporter_failed_posts_total", reason="connection") >= 2

    dashboard = restart_dashboard(run_app, dashboard)
    sent += steady(client, 1.0, 150, sent)
    client.close()
    eventually(lambda: dashboard.counted(sidecar.pod)[0] >= sent, timeout=20, what=f"{sent} exchanges counted")
    time.sleep(1.0)  # any batch sent twice would have been counted by now
    assert dashboard.counted(sidecar.pod) == (sent, 0)
    assert sidecar.metric("mothership_reporter_queue_samples") == 0
    assert set(client.statuses) == {200}

    # Latency up against down is a figure of `python -m bench.faults outage` (timed on a shared machine
    # it was noise); here it is printed, and what must hold is that every request was served meanwhile.
    up, down = median(up_latencies), median(down_latencies)
    growth = max(rss["down"]) - max(rss["up"])
    print(f"outage ~4 s: {sent} exchanges sent, {dashboard.counted(sidecar.pod)[0]} counted, 0 dropped; "
          f"median latency up {up:.2f} ms, down {down:.2f} ms (max {max(down_latencies):.1f} ms); "
          f"sidecar RSS up {max(rss['up']) / 1e6:.1f} MB, down {max(rss['down']) / 1e6:.1f} MB")
    assert growth < 5e6  # bounded by what is queued (about 1 MB here), not by the outage
    assert tracebacks(sidecar.proc.output) == []


@pytest.mark.slow
def test_beyond_the_buffer_the_oldest_are_dropped_counted_and_shown(run_app: Any, app: Any, tmp_path: Path) -> None:
    app.start()
    dashboard = start_dashboard(run_app, data=str(tmp_path / "history.sqlite3"))
    sidecar = start_sidecar(run_app, app.port, dashboard.url, "--buffer-bytes", "40000")
    client = KeepAliveClient(sidecar.port)
    client.get_many(user_paths(50))
    eventually(lambda: dashboard.counted(sidecar.pod) == (50, 0))
    assert dashboard.proc.stop(signal.SIGTERM) == 0
    sent = 50 + steady(client, 2.0, 300, 50)  # far more than 40 kB of samples
    dashboard = restart_dashboard(run_app, dashboard)
    client.close()

    def settled() -> bool:
        counted, dropped = dashboard.counted(sidecar.pod)
        return counted + dropped == sent

    eventually(settled, timeout=20, what=f"{sent} exchanges counted or dropped")
    counted, dropped = dashboard.counted(sidecar.pod)
    print(f"buffer 40 kB, dashboard down 2 s: {sent} sent, {counted} counted, {dropped} counted as dropped")
    assert dropped > 0 and counted > 50
    assert sidecar.metric("mothership_reporter_dropped_samples_total") == dropped
    overview = dashboard.json("/api/overview")
    assert overview["totals"]["dropped"] == dropped  # what the page shows
    [pod] = [p for p in overview["pods"] if p["pod"] == sidecar.pod]
    assert pod["dropped"] == dropped


def served(dashboard: Any) -> float:
    """Exchanges in the last five minutes of the whole mesh's per-second history."""
    series = dashboard.json("/api/series?scope=all&window=300")
    assert series["step"] == 1
    return round(sum(n or 0 for n in series["rps"]["2xx"]), 6)


@pytest.mark.slow
def test_dashboard_restart_keeps_history_and_a_batch_retried_across_it_counts_once(
        run_app: Any, app: Any, tmp_path: Path) -> None:
    app.start()
    dashboard = start_dashboard(run_app, data=str(tmp_path / "history.sqlite3"))
    loop = LoopThread()
    relay = AckLosingRelay(loop, dashboard.url)
    try:
        sidecar = start_sidecar(run_app, app.port, relay.url)
        client = KeepAliveClient(sidecar.port)
        client.get_many(user_paths(30))
        eventually(lambda: dashboard.counted(sidecar.pod) == (30, 0))
        relay.lose_one_ack_then_hold()
        client.get_many(user_paths(20, 30))  # stored by the dashboard, but the sidecar hears 500
        eventually(lambda: bool(relay.lost), what="an acknowledgement lost")
        assert dashboard.counted(sidecar.pod)[0] > 30
        before = served(dashboard)

        assert dashboard.proc.stop(signal.SIGTERM) == 0
        dashboard = restart_dashboard(run_app, dashboard)
        assert served(dashboard) == before  # history kept across the restart
        client.get_many(user_paths(10, 50))
        relay.release()
        eventually(lambda: dashboard.counted(sidecar.pod)[0] >= 60, what="sixty exchanges counted")
        time.sleep(0.6)
        assert dashboard.counted(sidecar.pod) == (60, 0)
        answers = [(status, answer["duplicate"]) for batch, status, answer in relay.answers if batch == relay.lost[0]]
        assert answers == [(200, False), (200, True)]  # stored once; the retry after the restart was known
        assert dashboard.metric("mothership_ingest_requests_total", endpoint="stats", outcome="duplicate") == 1
        assert served(dashboard) == 60
        client.close()
        assert sidecar.proc.stop() == 0
    finally:
        relay.close()
        loop.close()


# --- SIGTERM -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_on_the_sidecar_finishes_work_within_the_grace_period_and_delivers_it(
        run_app: Any, app: Any) -> None:
    app.start()
    dashboard = start_dashboard(run_app)
    sidecar = start_sidecar(run_app, app.port, dashboard.url, "--stats-interval", "60", "--grace-period", "2")
    warm = KeepAliveClient(sidecar.port)
    warm.get_many(user_paths(10))
    warm.close()
    results: dict[str, Any] = {}

    def request(key: str, path: str) -> None:
        try:
            results[key] = fetch(sidecar.port, path, timeout=15)
        except (OSError, ConnectionError) as exc:  # http.client's RemoteDisconnected is one
            results[key] = exc

    threads = [threading.Thread(target=request, args=("within", "/slow?ms=1200")),
               threading.Thread(target=request, args=("beyond", "/slow?ms=10000"))]
    for thread in threads:
        thread.start()
    idle = socket.create_connection(("127.0.0.1", sidecar.port))  # a keep-alive client with nothing to ask
    time.sleep(0.3)
    signalled = time.monotonic()
    sidecar.proc.proc.send_signal(signal.SIGTERM)
    assert sidecar.proc.proc.wait(10) == 0
    took = time.monotonic() - signalled
    for thread in threads:
        thread.join(5)
    idle.settimeout(1)
    assert idle.recv(10) == b""  # closed at once, not after its idle timeout
    idle.close()

    assert results["within"].status == 200 and results["within"].body == b'{"slept_ms": 1200.0}'
    assert isinstance(results["beyond"], (OSError, ConnectionError))  # cut at the end of the grace period
    assert 1.9 < took < 4, took
    # Nothing acknowledged is lost: the final batch has the ten, the finished one and the cut one.
    assert dashboard.counted(sidecar.pod) == (12, 0)
    errors = sorted(str(s["error"]) for s in samples_of(dashboard, sidecar.pod) if s["endpoint"] == "/slow")
    assert errors == ["None", "upstream_reset"]
    assert "exchanges still in flight after the 2s grace period" in sidecar.proc.output


@pytest.mark.slow
def test_sigterm_on_the_dashboard_under_load_loses_nothing_acknowledged(run_app: Any, app: Any,
                                                                          tmp_path: Path) -> None:
    app.start()
    dashboard = start_dashboard(run_app, data=str(tmp_path / "history.sqlite3"))
    sidecars = [start_sidecar(run_app, app.port, dashboard.url, "--stats-interval", "0.05", pod=f"shop-1-p{i}")
                for i in range(2)]
    # A page that never reads must not hold up the stop.
    stuck = socket.create_connection(("127.0.0.1", dashboard.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    sent = [0, 0]
    stop = threading.Event()

    def traffic(i: int) -> None:
        client = KeepAliveClient(sidecars[i].port)
        while not stop.is_set():
            client.get(f"/users/{sent[i] % 900 + 1}")
            sent[i] += 1
        client.close()

    threads = [threading.Thread(target=traffic, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    signalled = time.monotonic()
    assert dashboard.proc.stop(signal.SIGTERM) == 0  # batches are being posted right now
    took = time.monotonic() - signalled
    time.sleep(0.3)
    dashboard = restart_dashboard(run_app, dashboard)
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(10)
    stuck.close()
    eventually(lambda: all(dashboard.counted(s.pod)[0] >= n for s, n in zip(sidecars, sent, strict=True)),
               timeout=20, what=f"{sent} exchanges counted")
    time.sleep(0.5)
    print(f"dashboard stopped in {took:.2f}s under load; sent {sent}, counted "
          f"{[dashboard.counted(s.pod) for s in sidecars]}")
    assert [dashboard.counted(s.pod) for s in sidecars] == [(n, 0) for n in sent]
    assert took < 5


def test_a_batch_retried_after_a_dashboard_crash_counts_once(run_app: Any, tmp_path: Path) -> None:
    dashboard = start_dashboard(run_app, data=str(tmp_path / "history.sqlite3"))
    now = time.time()
    body = json.dumps({"pod": "crash-1-x", "batch": "only-once", "stats": [
        {"endpoint": "/x", "time": 5.0, "started": now * 1000, "response": {"status": 200}}] * 10}).encode()
    assert dashboard.post("/stats", body).json()["duplicate"] is False
    time.sleep(4.5)  # two history writes: buckets and batch ids are on disk
    assert dashboard.proc.stop(signal.SIGKILL) == -signal.SIGKILL
    dashboard = restart_dashboard(run_app, dashboard)
    # The sidecar never heard the first answer (the crash), so it sends the same batch again.
    assert dashboard.post("/stats", body).json()["duplicate"] is True
    assert served(dashboard) == 10
