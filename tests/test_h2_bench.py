"""bench/h2_bench.py: h2load's report read right, and a one-second run of every target so the script cannot rot."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from bench.h2_bench import parse
from tests.conftest import ROOT, app_env

H2LOAD = """\
starting benchmark...
spawning thread #0: 16 total client(s). Timing-based test with 1s of warm-up time and 3s of main duration.
Main benchmark duration is started for client #0.
finished in 3.00s, 12345.67 req/s, 1.50MB/s
requests: 37037 total, 37053 started, 37037 done, 37030 succeeded, 7 failed, 7 errored, 0 timeout
status codes: 37030 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 4.50MB (4718592) total, 362.70KB (371404) headers (space savings 91.24%), 481.48KB (493037) data
"""


def test_h2load_summary_and_the_median_of_its_log() -> None:
    result = parse(H2LOAD, [0.003, 0.001, 0.002], cpu=3.7037)
    assert result.per_second == 12345.67 and result.bytes_per_second == 1.5 * (1 << 20)
    assert result.median == 0.002 and result.failed == 7
    assert result.cpu_per_request == pytest.approx(3.7037 / 37037)
    assert parse(H2LOAD, [], cpu=None).median is None


def test_what_h2load_did_not_print_stops_the_bench() -> None:
    with pytest.raises(SystemExit, match="does not understand"):
        parse("h2load: connection refused", [], None)


@pytest.mark.slow
def test_a_short_run_measures_every_target() -> None:
    missing = [tool for tool in ("h2load", "nghttpd", "nginx") if shutil.which(tool) is None
               and shutil.which(f"/usr/sbin/{tool}") is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (.ci/run installs them)")
    done = subprocess.run([sys.executable, "-m", "bench.h2_bench", "--seconds", "1", "--rounds", "1"], cwd=ROOT,
                          env=app_env(), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("c1 ", "c16 ", "10 MiB", "HTTP/1"))]
    assert len(rows) == 5 * 3 + 2 * 3, done.stdout
    assert all(row[-1] == "0" for row in rows), done.stdout  # nothing failed
    for target in ("CPU per HTTP/2 stream", "path new to the header table", "10 MiB streams",
                   "added to one stream's median", "the detector's cost"):
        assert target in done.stdout, done.stdout
