"""The benchmark and soak scripts under bench/: their pure parts, and each run for seconds so they cannot rot.

The runs start real nginx, wrk, relays, sidecars and dashboards on 127.0.0.1.
Without wrk or nginx they skip, except under CI=true where a missing tool fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import procstat
from bench.comparison import Run, Scenario, checks, medians
from bench.hotspots import hotspots
from bench.soak import Sample, growth
from bench.steady_client import parse_head, request_for
from bench.wrk import WrkError, parse_report
from tests.conftest import ROOT, app_env

WRK_REPORT = """\
Running 1s test @ http://127.0.0.1:8080/missing
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.21ms  350.12us   12.00ms   95.00%
    Req/Sec     1.50k   100.00     1.60k    80.00%
  Latency Distribution
     50%  820.00us
     75%    1.20ms
     90%    1.40ms
     99%    2.50s
  1500 requests in 1.00s, 1.50GB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 1500
Requests/sec:   1499.50
Transfer/sec:      1.50GB
"""

SIDECAR_BUILT = importlib.util.find_spec("sidecar.proxy") is not None


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]
    if not missing:
        return
    message = f"needs {', '.join(missing)} (apt-get install {' '.join(missing)})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def run_script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=app_env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


# --- pure parts ------------------------------------------------------------


def test_wrk_report_is_read_with_its_units() -> None:
    report = parse_report(WRK_REPORT)
    assert report.requests == 1500
    assert report.requests_per_second == 1499.5
    assert report.bytes_per_second == 1.5 * 1024**3
    assert report.p50 == pytest.approx(820e-6)
    assert report.latency[75] == pytest.approx(1.2e-3)
    assert report.p99 == pytest.approx(2.5)
    assert (report.socket_errors, report.bad_status, report.errors) == (3, 1500, 1503)


def test_memory_parts_split_a_process_rss_into_anonymous_and_file_backed() -> None:
    anonymous, file = procstat.memory_parts(os.getpid())
    rss = procstat.rss_bytes([os.getpid()])
    assert anonymous > 1_000_000 and file > 1_000_000  # our heap; the interpreter and libraries mapped in
    assert abs(anonymous + file - rss) < rss * 0.1
    assert procstat.memory_parts(2**22 + 1) == (0, 0)  # no such process


def test_wrk_report_without_the_latency_distribution_is_refused() -> None:
    without = "\n".join(line for line in WRK_REPORT.splitlines() if "%  " not in line and "%    " not in line)
    with pytest.raises(WrkError, match="latency distribution"):
        parse_report(without)
    with pytest.raises(WrkError, match="totals"):
        parse_report("unable to connect to 127.0.0.1:1 Connection refused")


def _run(target: str, scenario: str, rps: float, p50: float, rss: int | None = 30_000_000,
         mbps: float = 1.0, round_no: int = 1) -> Run:
    return Run(scenario, target, round_no, rps, mbps * 1e6, p50, p50 * 3, 0.05, rss, 0)


def test_checks_compare_the_sidecar_with_the_relay_and_going_direct() -> None:
    plan = [Scenario("c1", "/", 1), Scenario("c16", "/", 16), Scenario("big", "/1m", 4, big=True)]
    runs = [
        _run("direct", "c1", 40000, 20e-6, rss=None), _run("relay", "c1", 8000, 110e-6),
        # the sidecar's c1 rounds: the median (150 us) counts, not the outlier
        _run("sidecar", "c1", 7000, 150e-6), _run("sidecar", "c1", 6000, 900e-6, round_no=2),
        _run("sidecar", "c1", 7100, 130e-6, round_no=3),
        _run("relay", "c16", 20000, 1e-3), _run("sidecar", "c16", 15000, 1e-3, rss=45_000_000),
        _run("relay", "big", 1000, 4e-3, mbps=1000), _run("sidecar", "big", 950, 4e-3, mbps=950),
    ]
    table = medians(runs)
    assert table["c1"]["sidecar"].p50 == pytest.approx(150e-6)
    assert table["c1"]["sidecar"].rounds == 3
    found = {c.what: c for c in checks(plan, table)}
    assert found["c1: requests/s vs relay"].met  # 7000 / 8000 = 0.875
    assert not found["c16: requests/s vs relay"].met  # 0.75
    assert found["big: throughput vs relay"].met  # 0.95
    assert found["c1: median added vs direct"].measured == "130us"
    assert not found["c1: median added vs direct"].met
    assert not found["RSS under load (largest seen)"].met  # 45 MB


def _sample(t: float, rss_mb: float, fds: int) -> Sample:
    return Sample(t, int(rss_mb * 1e6), fds, 50_000_000, 12, int(t * 100))


def test_soak_verdict_ignores_warmup_and_catches_growth() -> None:
    # Growth during the warm-up (0-10 s) is not a leak; after it, flat.
    flat = [_sample(t, 20 + min(t, 10), 20) for t in range(0, 60, 5)]
    assert all(g.flat for g in growth(flat, 10, 4, 10, 8, "sidecar", "dashboard"))
    leaking = [_sample(t, 30 + t * 0.2, 20 + t // 3) for t in range(0, 60, 5)]
    by_name = {g.what: g for g in growth(leaking, 10, 4, 10, 8, "sidecar", "dashboard")}
    assert not by_name["sidecar RSS"].flat  # +8 MB
    assert not by_name["sidecar fds"].flat  # +11
    assert by_name["dashboard RSS"].flat


def test_steady_client_mix_and_response_heads() -> None:
    paths = [request_for(k)[0] for k in range(200)]
    assert paths.count("/1m") == 2 and "/missing" in paths
    assert any(p.startswith("/users/") for p in paths) and any("?token=" in p for p in paths)
    assert parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n") == (200, 13)
    assert parse_head(b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n") == (204, 0)
    with pytest.raises(ValueError):
        parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")


def test_hotspots_rank_own_and_inclusive_time() -> None:
    stacks = [
        "main (app.py);run (loop.py);handle (proxy.py);feed (framing.py) 60",
        "main (app.py);run (loop.py);handle (proxy.py) 10",
        "main (app.py);run (loop.py);report (reporter.py);dumps (json.py) 30",
        "garbage line without a count",
    ]
    spots = hotspots(stacks, top=2)
    assert spots.samples == 100
    assert spots.own == [("feed (framing.py)", 60), ("dumps (json.py)", 30)]
    # main and run are in every sample: left out as saying nothing
    assert spots.inclusive == [("handle (proxy.py)", 70), ("feed (framing.py)", 60)]
    assert spots.files == [("framing.py", 60), ("json.py", 30)]


# --- the scripts, run for seconds ------------------------------------------


@pytest.mark.slow
def test_sidecar_bench_quick_run_measures_every_target(tmp_path: Path) -> None:
    require("wrk", "nginx")
    out = tmp_path / "bench.json"
    done = run_script("bench.sidecar_bench", "--quick", "--json", str(out), timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    medians_ = json.loads(out.read_text())["medians"]
    expected = {"direct", "nginx", "relay"} | ({"sidecar", "pysidecar"} if SIDECAR_BUILT else set())
    assert set(medians_) == {"c1", "c16", "c64", "1MiB c4"}
    for scenario, row in medians_.items():
        assert expected <= set(row), (scenario, done.stdout)
        for target, figures in row.items():
            assert figures["rps"] > 0 and 0 < figures["p50"] <= figures["p99"], (scenario, target)
            assert figures["errors"] == 0, (scenario, target, done.stdout)
            if target != "direct":
                assert figures["cpu_per_1k"] > 0 and figures["rss_max"] > 1_000_000, (scenario, target)
    assert medians_["1MiB c4"]["relay"]["bytes_per_second"] > 50e6  # 1 MiB bodies really passed
    assert "median added" in done.stdout or not SIDECAR_BUILT
    assert "cpu s/1k req" in done.stdout


def test_sidecar_bench_baseline_target_needs_its_commit() -> None:
    done = run_script("bench.sidecar_bench", "--targets", "nginx,baseline", "--quick", timeout=60)
    assert done.returncode == 2 and "--baseline REF" in done.stderr, done.stderr


@pytest.mark.slow
def test_rss_bench_quick_run_reads_both_memories_in_every_phase() -> None:
    require("wrk", "nginx")
    done = run_script("bench.rss_bench", "--quick", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    # uvrelay, sidecar, pysidecar and two sets of libraries alone, which serve nothing and have no load figure
    for phase, targets in (("idle", 5), ("c16", 3), ("after", 5)):
        line = next((row for row in done.stdout.splitlines() if row.startswith(phase + " ")), "")
        figures = [float(x) for x in re.findall(r"([\d.]+) MB \(", line)]
        assert len(figures) == targets and all(10 < mb < 200 for mb in figures), (phase, done.stdout)
    assert re.search(r"sidecar's [1-9]\d* times, pysidecar's [1-9]\d* times", done.stdout), done.stdout


@pytest.mark.slow
def test_soak_through_the_bare_relay_is_flat() -> None:
    require("nginx")
    done = run_script("bench.soak", "--proxy", "relay", "--minutes", "0.1", "--interval", "1", "--rate", "300",
                      timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    samples = [line for line in done.stdout.splitlines() if line.startswith("t=")]
    assert len(samples) >= 5
    assert "connection errors 0" in done.stdout
    assert "verdict: flat" in done.stdout


@pytest.mark.slow
@pytest.mark.skipif(not SIDECAR_BUILT, reason="sidecar/proxy.py is not written yet")
def test_soak_through_the_sidecar_passes_traffic_and_reports_growth() -> None:
    require("nginx")
    done = run_script("bench.soak", "--minutes", "0.1", "--interval", "1", "--rate", "300", timeout=90)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert "through the sidecar" in done.stdout
    assert "connection errors 0" in done.stdout, done.stdout
    assert "sidecar RSS" in done.stdout and "sidecar fds" in done.stdout
    assert "verdict: flat" in done.stdout or "verdict: NOT FLAT" in done.stdout
    # Every exchange reached the dashboard, once.
    sent = re.search(r"requests sent (\d+),", done.stdout)
    assert sent and int(sent.group(1)) > 1000
    assert f"bench-sidecar-0-x1y2z: {sent.group(1)} exchanges" in done.stdout, done.stdout


@pytest.mark.slow
def test_ctrl_c_stops_every_process_the_bench_started() -> None:
    require("wrk", "nginx")
    proc = subprocess.Popen([sys.executable, "-m", "bench.sidecar_bench", "--targets", "direct,nginx,relay",
                             "--duration", "20", "--warmup", "0"], cwd=ROOT, env=app_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:  # wait until the first wrk run is under way
            if "round(s)" in line or time.monotonic() > deadline:
                break
        time.sleep(1.0)
        children = [p for p in procstat.descendants(proc.pid) if p != proc.pid]
        assert len(children) >= 4  # backend and proxy nginx (masters and workers), relay, wrk
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    time.sleep(0.2)
    assert [p for p in children if procstat.alive(p)] == []


def test_h2_tracker_bench_quick_run_times_every_shape() -> None:
    done = run_script("bench.h2_tracker_bench", "--quick", timeout=120)
    assert done.returncode == 0, done.stderr
    rows = dict(re.findall(r"^(.+?)\s+([\d.]+) us", done.stdout, re.M))
    assert set(rows) == {"HTTP/1 exchange (ExchangeTracker)", "HTTP/2 stream, h2", "HTTP/2 stream, h2-unique",
                         "HTTP/2 stream, grpc", "HTTP/2 stream, grpc-big"}, done.stdout
    assert all(float(us) > 0 for us in rows.values())


def test_sample_bench_quick_run_times_every_protocol_against_http1() -> None:
    done = run_script("bench.sample_bench", "--quick", timeout=120)
    assert done.returncode == 0, done.stderr
    rows = dict(re.findall(r"^(\S+)\s+(?:[\d.]+\s+){6}([\d.]+)x$", done.stdout, re.M))
    assert set(rows) == {"http/1.1", "h2", "grpc", "tls", "tcp"} and rows["http/1.1"] == "1.00", done.stdout


def test_buffer_bench_quick_run_prints_add_and_its_reference() -> None:
    done = run_script("bench.buffer_bench", "--quick", timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^SampleBuffer\.add\s+[\d.]+ us$", done.stdout, re.M), done.stdout
    assert re.search(r"^ujson\.dumps \(reference\)\s+[\d.]+ us$", done.stdout, re.M), done.stdout
    assert re.search(r"^add / encode: [\d.]+x$", done.stdout, re.M), done.stdout


def test_sampler_bench_prints_the_sampler_and_its_reference() -> None:
    done = run_script("bench.sampler_bench", "--samples", "5", timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^ResourceSampler\.sample\s+[\d.]+ ms", done.stdout, re.M), done.stdout
    assert re.search(r"^sampler CPU median [\d.]+ ms vs budget 1\.0 ms: (PASS|MISS)$", done.stdout, re.M), done.stdout


def test_alerts_bench_runs_and_reports_every_part() -> None:
    result = subprocess.run([sys.executable, "-m", "bench.alerts_bench", "--pods", "50", "--warmup", "2",
                             "--measure", "5"], cwd=ROOT, env=app_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for part in ("store_stats", "alerts_stats", "alerts_evaluate", "alerts / store ingest", "KiB"):
        assert part in result.stdout
