"""Running wrk and reading its report: requests/s, throughput, latency percentiles, errors.

`parse_report` is pure: it turns wrk's text (run with `--latency`) into a
`WrkReport`; `run_wrk` is the edge that starts wrk, pinned to a core, bounded in time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# wrk prints sizes with binary prefixes (format_binary in its units.c).
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class WrkError(RuntimeError):
    """wrk did not run, or printed something this parser does not understand."""


@dataclass(frozen=True)
class WrkReport:
    requests: int  # completed in the run
    seconds: float  # the run's real length, as wrk measured it
    requests_per_second: float
    bytes_per_second: float
    latency: dict[int, float]  # percentile (50, 75, 90, 99) -> seconds
    socket_errors: int  # connect + read + write + timeout
    bad_status: int  # "Non-2xx or 3xx responses"

    @property
    def p50(self) -> float:
        return self.latency[50]

    @property
    def p99(self) -> float:
        return self.latency[99]

    @property
    def errors(self) -> int:
        return self.socket_errors + self.bad_status


def _seconds(number: str, unit: str) -> float:
    return float(number) * _TIME_UNITS[unit]


def _bytes(number: str, prefix: str) -> float:
    return float(number) * _SIZE_UNITS[prefix]


def parse_report(text: str) -> WrkReport:
    """Read the report wrk prints with `--latency`; raise WrkError if a figure is missing."""
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", text, re.M)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    transfer = re.search(r"^Transfer/sec:\s+([\d.]+)([KMGT]?)B", text, re.M)
    if not (total and rate and transfer):
        raise WrkError(f"wrk's report lacks its totals:\n{text}")
    latency = {int(pct): _seconds(number, unit)
               for pct, number, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)}
    if 50 not in latency or 99 not in latency:
        raise WrkError(f"wrk's report lacks the latency distribution (run it with --latency):\n{text}")
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return WrkReport(
        requests=int(total.group(1)),
        seconds=_seconds(total.group(2), total.group(3)),
        requests_per_second=float(rate.group(1)),
        bytes_per_second=_bytes(transfer.group(1), transfer.group(2)),
        latency=latency,
        socket_errors=sum(int(n) for n in socket.groups()) if socket else 0,
        bad_status=int(bad.group(1)) if bad else 0,
    )


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, connections: int, seconds: int, cores: Sequence[int] = (), threads: int = 1,
            timeout_seconds: int = 10, during: Callable[[], None] | None = None,
            poll_seconds: float = 0.1) -> WrkReport:
    """Drive `url` for `seconds` with `connections` keep-alive connections and return wrk's report.

    `during`, if given, is called every `poll_seconds` while wrk runs (to sample memory).
    """
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"benchmarks send traffic to 127.0.0.1 only, not {url}")
    command = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s",
               f"--timeout={timeout_seconds}s", "--latency", url]
    if cores and shutil.which("taskset"):
        command = ["taskset", "-c", ",".join(map(str, cores)), *command]
    limit = seconds + timeout_seconds + 20
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise WrkError("wrk is not installed (apt-get install wrk)") from None
    deadline = time.monotonic() + limit
    try:
        while True:
            if during is not None:
                during()
            try:
                out, err = proc.communicate(timeout=poll_seconds)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise WrkError(f"wrk did not finish within {limit}s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with status {proc.returncode}: {err.strip()}")
    return parse_report(out)
