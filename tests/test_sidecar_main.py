"""The sidecar process end to end: a real `python -m app --mode sidecar` in front of the sample app,
reporting to a fake dashboard (or the real one), stopped with SIGTERM."""

from __future__ import annotations

import http.client
import json
import signal
import statistics
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import AppProcess, free_port, sample_app
from tests.receiver_support import Receiver

POD = "shop-7-x2k9q"


@pytest.fixture
def target() -> Iterator[int]:
    """The sample app, as the application behind the sidecar."""
    with sample_app("--fail-rate", "0") as (_, port):
        yield port


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@dataclass
class Sidecar:
    proc: AppProcess
    port: int
    admin_port: int

    def get(self, path: str, port: int | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def admin(self, path: str) -> tuple[int, bytes]:
        return self.get(path, port=self.admin_port)

    def metrics(self) -> dict[str, Any]:
        status, body = self.admin("/metrics")
        assert status == 200
        return {f.name: f for f in text_string_to_metric_families(body.decode())}


def start_sidecar(run_app: Any, target: int, dashboard: str = "", *extra: str) -> Sidecar:
    port, admin_port = free_port(), free_port()
    args = ["--mode", "sidecar", "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin_port),
            "--target-port", str(target), "--pod", POD, "--stats-interval", "0.2", "--resources-interval", "0.2",
            "--grace-period", "3", *extra]
    if dashboard:
        args += ["--dashboard", dashboard]
    proc = run_app(args, wait_ports=[port, admin_port])
    return Sidecar(proc, port, admin_port)


def requests_total(families: dict[str, Any]) -> float:
    return float(sum(s.value for s in families["http_server_requests"].samples
                     if s.name == "http_server_requests_total"))


def test_exchanges_reach_the_dashboard_and_metrics(run_app: Any, target: int, receiver: Receiver) -> None:
    sidecar = start_sidecar(run_app, target, receiver.url, "--token", "t0k")
    for i in range(1, 11):
        status, _ = sidecar.get(f"/users/{i}")
        assert status == 200
    receiver.wait_for(lambda: receiver.counted()[0] == 10)
    samples = [s for p in receiver.stats() for s in p.body["stats"]]
    assert {s["route"] for s in samples} == {"/users/{id}"}
    assert all(p.headers["Authorization"] == "Bearer t0k" for p in receiver.posts)
    receiver.wait_for(lambda: len(receiver.resources()) >= 2)
    resource = receiver.resources()[-1].body
    assert resource["pod"] == POD and resource["app"] == "shop"
    assert resource["resource"]["sidecar"]["rss"] > 0

    families = sidecar.metrics()
    assert requests_total(families) == 10
    assert "mothership_reporter_queue_samples" in families and "mothership_node_cpu_usage_ratio" in families
    assert sidecar.admin("/healthz")[0] == 200
    assert sidecar.admin("/readyz")[0] == 200
    assert sidecar.proc.stop() == 0


def test_the_namespace_from_the_downward_api_goes_with_every_report_and_on_metrics(
        run_app: Any, target: int, receiver: Receiver) -> None:
    port, admin_port = free_port(), free_port()
    proc = run_app(["--mode", "sidecar", "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin_port),
                    "--target-port", str(target), "--pod", POD, "--stats-interval", "0.2",
                    "--resources-interval", "0.2", "--dashboard", receiver.url],
                   wait_ports=[port, admin_port], env={"POD_NAMESPACE": "shop-prod"})
    sidecar = Sidecar(proc, port, admin_port)
    assert sidecar.get("/users/1")[0] == 200
    receiver.wait_for(lambda: receiver.counted()[0] == 1 and len(receiver.resources()) >= 1)
    assert {p.body["namespace"] for p in receiver.stats()} == {"shop-prod"}
    assert {p.body["namespace"] for p in receiver.resources()} == {"shop-prod"}
    [info] = sidecar.metrics()["mothership_sidecar_info"].samples
    assert info.name == "mothership_sidecar_info" and info.value == 1
    assert {k: info.labels[k] for k in ("pod", "app", "namespace")} == {"pod": POD, "app": "shop",
                                                                        "namespace": "shop-prod"}
    assert sidecar.proc.stop() == 0


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_the_sidecar_runs_on_uvloop_and_without_it(run_app: Any, target: int, loop: str) -> None:
    port, admin_port = free_port(), free_port()
    env = {"MOTHERSHIP_LOOP": "asyncio"} if loop == "asyncio" else None  # as where uvloop does not install
    proc = run_app(["--mode", "sidecar", "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin_port),
                    "--target-port", str(target), "--pod", POD], wait_ports=[port, admin_port], env=env)
    sidecar = Sidecar(proc, port, admin_port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for i in range(20):  # kept alive: one connection, twenty exchanges, bodies both ways
            body = bytes([65 + i]) * (i * 20000)
            conn.request("POST", "/echo", body=body)
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, body)
    finally:
        conn.close()
    status, body = sidecar.get("/download?bytes=5000000")
    assert (status, len(body)) == (200, 5_000_000)
    assert requests_total(sidecar.metrics()) == 21
    assert ("on uvloop" if loop == "uvloop" else "on asyncio's loop") in proc.output
    assert proc.stop() == 0


def test_sigterm_lets_exchanges_finish_and_sends_a_final_batch(run_app: Any, target: int,
                                                                 receiver: Receiver) -> None:
    sidecar = start_sidecar(run_app, target, receiver.url, "--stats-interval", "60")
    for i in range(5):
        assert sidecar.get(f"/users/{i + 1}")[0] == 200
    slow: dict[str, Any] = {}

    def slow_request() -> None:
        slow["result"] = sidecar.get("/slow?ms=700")

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.2)  # the slow exchange is in flight
    sidecar.proc.proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    with pytest.raises(OSError):  # no longer accepting
        sidecar.get("/users/1", timeout=1)
    assert sidecar.proc.proc.wait(10) == 0
    thread.join(5)
    assert slow["result"][0] == 200  # finished, not cut
    assert receiver.counted() == (6, 0)  # five fast ones and the slow one, in the final batch
    assert len(receiver.stats()) == 1
    assert "sidecar stopped" in sidecar.proc.output


def test_proxied_latency_is_unchanged_while_the_dashboard_hangs(run_app: Any, target: int,
                                                                receiver: Receiver) -> None:
    sidecar = start_sidecar(run_app, target, receiver.url)
    conn = http.client.HTTPConnection("127.0.0.1", sidecar.port, timeout=5)

    def latencies(n: int) -> list[float]:
        times = []
        for i in range(n):
            start = time.perf_counter()
            conn.request("GET", f"/users/{i % 50 + 1}")
            response = conn.getresponse()
            response.read()
            times.append((time.perf_counter() - start) * 1000)
            assert response.status == 200
        return times

    latencies(50)  # warm up
    healthy: list[float] = []
    hung: list[float] = []
    for _ in range(3):  # interleaved, so load from elsewhere on the machine hits both alike
        receiver.set_mode("ok")
        healthy += latencies(60)
        receiver.set_mode("hang")
        receiver.wait_for(lambda: any(p.status == 0 for p in receiver.posts))  # a POST is stuck right now
        hung += latencies(60)
    conn.close()
    print(f"median through the sidecar: dashboard healthy {statistics.median(healthy):.3f} ms, "
          f"hanging {statistics.median(hung):.3f} ms (max {max(hung):.1f} ms)")
    assert statistics.median(hung) < statistics.median(healthy) * 1.5 + 0.5
    assert max(hung) < 500  # no request waited for the dashboard (its POSTs time out after 1 s)

    def timeouts() -> float:
        return float(sum(s.value for s in sidecar.metrics()["mothership_reporter_failed_posts"].samples
                         if s.name.endswith("_total") and s.labels["reason"] == "timeout"))

    receiver.wait_for(lambda: timeouts() >= 1)  # counted as a failed post, not a crash
    receiver.set_mode("ok")
    receiver.wait_for(lambda: receiver.counted()[0] >= 410, timeout=15)
    assert receiver.counted() == (410, 0)  # nothing lost while it hung


def test_without_a_dashboard_it_proxies_and_reports_nothing(run_app: Any, target: int) -> None:
    sidecar = start_sidecar(run_app, target)
    assert sidecar.get("/users/3")[0] == 200
    time.sleep(0.5)
    families = sidecar.metrics()
    assert requests_total(families) == 1
    assert [s.value for s in families["mothership_reporter_queue_samples"].samples] == [0]  # nothing piles up
    assert sidecar.proc.stop() == 0
    output = sidecar.proc.log_path.read_text()
    assert "not reporting" in output
    assert "WARNING" not in output and "ERROR" not in output


def test_readyz_is_503_while_the_target_is_down(run_app: Any) -> None:
    sidecar = start_sidecar(run_app, free_port())
    status, body = sidecar.admin("/readyz")
    assert status == 503 and b"does not accept connections" in body
    assert sidecar.admin("/healthz")[0] == 200


def test_a_retried_batch_is_counted_once_by_the_real_dashboard(run_app: Any, target: int) -> None:
    port = free_port()
    run_app(["--mode", "dashboard", "--port", str(port), "--host", "127.0.0.1", "--data", ":memory:"],
            wait_ports=[port], env={"DASHBOARD_TOKEN": "s3cret"})
    dashboard = f"http://127.0.0.1:{port}"
    relay = Receiver(forward_to=dashboard, lose_acks=1).start()
    try:
        sidecar = start_sidecar(run_app, target, relay.url, "--token", "s3cret")
        for i in range(12):
            assert sidecar.get(f"/users/{i + 1}")[0] == 200
        relay.wait_for(lambda: relay.counted()[0] == 12)
        assert len(relay.stats(answered=None)) > len({p.body["batch"] for p in relay.stats(answered=None)})
        with urllib.request.urlopen(f"{dashboard}/stats", timeout=5) as response:
            pods = json.loads(response.read())
        [pod] = [p for p in pods if p["pod"] == POD]
        assert pod["total"] == 12 and pod["app"] == "shop"
        assert sidecar.proc.stop() == 0
    finally:
        relay.stop()


def test_an_unreachable_app_shows_as_502_and_an_upstream_error(run_app: Any, receiver: Receiver) -> None:
    sidecar = start_sidecar(run_app, free_port(), receiver.url)
    assert sidecar.get("/users/1")[0] == 502
    receiver.wait_for(lambda: receiver.counted()[0] == 1)
    [sample] = receiver.stats()[0].body["stats"]
    assert sample["error"] == "upstream_unavailable" and sample["response"]["status"] == 502
    families = sidecar.metrics()
    errors = {s.labels["kind"]: s.value for s in families["mothership_proxy_upstream_errors"].samples
              if s.name.endswith("_total")}
    assert errors["upstream_unavailable"] == 1
    statuses = {s.labels["status_class"]: s.value for s in families["http_server_requests"].samples
                if s.name == "http_server_requests_total"}
    assert statuses == {"5xx": 1}


def test_a_wrong_token_keeps_batches_until_the_dashboard_accepts_them(run_app: Any, target: int) -> None:
    port = free_port()
    dashboard = run_app(["--mode", "dashboard", "--port", str(port), "--host", "127.0.0.1", "--data", ":memory:"],
                        wait_ports=[port], env={"DASHBOARD_TOKEN": "right"})
    sidecar = start_sidecar(run_app, target, f"http://127.0.0.1:{port}", "--token", "wrong")
    for i in range(3):
        assert sidecar.get(f"/users/{i + 1}")[0] == 200

    def failed(reason: str) -> float:
        return float(sum(s.value for s in sidecar.metrics()["mothership_reporter_failed_posts"].samples
                         if s.name.endswith("_total") and s.labels["reason"] == reason))

    deadline = time.monotonic() + 10
    while failed("status_4xx") < 2:  # 401s: counted and retried, not dropped
        assert time.monotonic() < deadline
        time.sleep(0.05)
    families = sidecar.metrics()
    queued = [s.value for s in families["mothership_reporter_queue_samples"].samples]
    assert queued == [3]
    assert dashboard.proc.poll() is None


def test_exchanges_past_the_grace_period_are_cut_and_still_reported(run_app: Any, target: int,
                                                                    receiver: Receiver) -> None:
    sidecar = start_sidecar(run_app, target, receiver.url, "--stats-interval", "60", "--grace-period", "0.5")
    outcome: dict[str, Any] = {}

    def slow_request() -> None:
        try:
            outcome["result"] = sidecar.get("/slow?ms=5000")
        except (OSError, http.client.HTTPException) as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    sidecar.proc.proc.send_signal(signal.SIGTERM)
    assert sidecar.proc.proc.wait(10) == 0
    assert time.monotonic() - started < 3  # the grace period, not the 5 s exchange
    thread.join(10)
    assert "error" in outcome  # the client saw its connection cut
    [post] = receiver.stats()
    [sample] = post.body["stats"]
    assert sample["endpoint"] == "/slow" and sample["time"] >= 500
    assert "grace period" in sidecar.proc.log_path.read_text()


def test_a_late_second_sigterm_after_a_complete_drain_still_exits_0(run_app: Any, target: int,
                                                                    receiver: Receiver) -> None:
    """A runtime that signals again just as the process ends (podman 4.3 did so
    with a shared PID namespace) must not turn a finished drain into 143: once
    the drain is done the signals are ignored, including while the loop closes
    and the interpreter exits."""
    sidecar = start_sidecar(run_app, target, receiver.url, "--stats-interval", "60")
    assert sidecar.get("/users/1")[0] == 200
    proc = sidecar.proc.proc
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while "sidecar stopped" not in sidecar.proc.output and proc.poll() is None:
        assert time.monotonic() < deadline, sidecar.proc.output
        time.sleep(0.001)
    sent = 0
    while proc.poll() is None:  # signal on, through the loop's close and the interpreter's exit
        proc.send_signal(signal.SIGTERM)
        sent += 1
        time.sleep(0.0005)
    assert proc.wait(10) == 0, f"exit {proc.returncode} after {sent} late SIGTERMs"
    assert receiver.counted() == (1, 0)


def test_settle_collector_freezes_start_up_and_spaces_the_young_passes() -> None:
    import gc
    import weakref

    from sidecar.main import GC_MIDDLE_THRESHOLD, GC_OLD_THRESHOLD, GC_YOUNG_THRESHOLD, settle_collector

    before = gc.get_threshold()
    try:
        settle_collector()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, GC_MIDDLE_THRESHOLD, GC_OLD_THRESHOLD)
        assert gc.get_freeze_count() > 0  # start-up's objects are out of the passes
        # A cycle made afterwards is still collected.
        class Node:
            other: Any = None

        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
