"""`ResourceSampler`: one resource sample of the node, the container and the sidecar.

It fills the `resource` object described in `app.core.wire` (above
`ResourceReport`): the article's `free_memory`, `total_memory` and `cpus` so
its consumers keep working, then CPU percent, load, the container's cgroup
usage and limits, the pod's other processes and the sidecar's own use. Every
call is cheap (no psutil interval waits, cached `Process` objects, a few small
file reads) because it runs on the event loop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from sidecar.pod.cgroup import CgroupReader, CgroupReading

# More processes than this means we see a host's PID namespace, not a pod's:
# only the first few are listed so a sample stays cheap and small.
MAX_PROCESSES = 16
PROCESS_READS_PER_SAMPLE = 4


def cpu_models(cpuinfo: str) -> list[str]:
    """`model name` per processor from /proc/cpuinfo text (empty where absent, e.g. on ARM)."""
    return [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
            if line.startswith("model name") and ":" in line]


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def container_view(reading: CgroupReading, previous: tuple[float, float] | None,
                   now: float) -> dict[str, Any]:
    """The `container` object from a cgroup reading and the last (time, cpu seconds).

    CPU cores used is the usage delta over wall time; its percent is of the
    limit when there is one, else of one core (as `top` shows it).
    """
    cores_used: float | None = None
    if previous is not None and reading.cpu_usage_seconds is not None and now > previous[0]:
        cores_used = max(0.0, (reading.cpu_usage_seconds - previous[1]) / (now - previous[0]))
    cpu_percent: float | None = None
    if cores_used is not None:
        cpu_percent = 100.0 * cores_used / (reading.cpu_limit_cores or 1.0)
    memory_percent: float | None = None
    if reading.memory_usage is not None and reading.memory_limit:
        memory_percent = 100.0 * (reading.memory_working_set or reading.memory_usage) / reading.memory_limit
    return {
        "cgroup": reading.version,
        "cpu_usage_seconds": _round(reading.cpu_usage_seconds, 6),
        "cpu_cores_used": _round(cores_used, 4),
        "cpu_limit_cores": _round(reading.cpu_limit_cores, 4),
        "cpu_percent": _round(cpu_percent, 2),
        "memory_usage": reading.memory_usage,
        "memory_working_set": reading.memory_working_set,
        "memory_limit": reading.memory_limit,
        "memory_percent": _round(memory_percent, 2),
        "cpu_periods": reading.cpu_periods,
        "cpu_throttled_periods": reading.cpu_throttled_periods,
        "cpu_throttled_seconds": _round(reading.cpu_throttled_seconds, 6),
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class ResourceSampler:
    """Takes resource samples; keeps the state that percentages need between calls."""

    def __init__(self, cgroup: CgroupReader | None = None, clock: Callable[[], float] = time.monotonic,
                 max_processes: int = MAX_PROCESSES) -> None:
        self._cgroup = cgroup or CgroupReader()
        self._clock = clock
        self._max_processes = max_processes
        self._me = psutil.Process()
        self._pid = self._me.pid
        self._others: dict[int, psutil.Process] = {}
        self._figures: dict[int, dict[str, Any]] = {}
        self._read_at: dict[int, int] = {}
        self._reads = 0
        models = cpu_models(_cpuinfo())
        freq = _cpu_freq()
        count = psutil.cpu_count() or 1
        # Model and speed do not change while we run: read them once.
        self._models = [models[i] if i < len(models) else (models[0] if models else "") for i in range(count)]
        self._speed = int(freq)
        self._last_cgroup: tuple[float, float] | None = None
        self.latest: dict[str, Any] | None = None
        # The first call of each cpu_percent(interval=None) only sets a baseline.
        psutil.cpu_percent(interval=None, percpu=True)
        psutil.cpu_percent(interval=None)
        self._me.cpu_percent(interval=None)

    def sample(self) -> dict[str, Any]:
        now = self._clock()
        memory = psutil.virtual_memory()
        per_core = psutil.cpu_percent(interval=None, percpu=True)
        times = psutil.cpu_times(percpu=True)
        reading = self._cgroup.read()
        container = container_view(reading, self._last_cgroup, now)
        if reading.cpu_usage_seconds is not None:
            self._last_cgroup = (now, reading.cpu_usage_seconds)
        with self._me.oneshot():
            sidecar = {"cpu_percent": round(self._me.cpu_percent(interval=None), 2),
                       "rss": self._me.memory_info().rss}
        resource: dict[str, Any] = {
            "time": int(time.time() * 1000),
            "free_memory": memory.available,
            "total_memory": memory.total,
            "cpus": [
                {"model": self._models[i] if i < len(self._models) else "", "speed": self._speed,
                 # Node's os.cpus() gives milliseconds; psutil gives seconds.
                 "times": {"user": int(t.user * 1000), "nice": int(t.nice * 1000), "sys": int(t.system * 1000),
                           "idle": int(t.idle * 1000), "irq": int(getattr(t, "irq", 0.0) * 1000)}}
                for i, t in enumerate(times)
            ],
            "cpu_percent": round(sum(per_core) / len(per_core), 2) if per_core else None,
            "cpu_percent_per_core": [round(p, 2) for p in per_core],
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "memory": {"total": memory.total, "available": memory.available, "used": memory.used,
                       "percent": memory.percent},
            "container": container,
            "processes": self._processes(),
            "sidecar": sidecar,
        }
        self.latest = resource
        return resource

    def _processes(self) -> list[dict[str, Any]] | None:
        """The other processes we can see: only when the PID namespace is shared
        (in a pod without `shareProcessNamespace` we see ourselves alone).

        Reading a process costs ~70 us, so each call refreshes at most
        `PROCESS_READS_PER_SAMPLE` of them in turn and repeats the others'
        last figures; a process's CPU percent covers the time since its last
        read, so it stays right, only less fresh.
        """
        try:
            pids = [p for p in psutil.pids() if p != self._pid][: self._max_processes]
        except OSError:
            return None
        for gone in set(self._others) - set(pids):
            del self._others[gone]
            self._figures.pop(gone, None)
        if not pids:
            return None
        fresh = [p for p in pids if p not in self._figures]
        stale = sorted((p for p in pids if p in self._figures), key=lambda p: self._read_at.get(p, 0))
        for pid in (fresh + stale)[:PROCESS_READS_PER_SAMPLE]:
            self._read_process(pid)
        return [self._figures[p] for p in pids if p in self._figures]

    def _read_process(self, pid: int) -> None:
        self._reads += 1
        try:
            proc = self._others.get(pid)
            if proc is None:
                proc = self._others[pid] = psutil.Process(pid)
            with proc.oneshot():
                self._figures[pid] = {"pid": pid, "name": proc.name(),
                                      "cpu_percent": round(proc.cpu_percent(interval=None), 2),
                                      "rss": proc.memory_info().rss}
            self._read_at[pid] = self._reads
        except (psutil.Error, OSError):  # gone, or not ours to read
            self._others.pop(pid, None)
            self._figures.pop(pid, None)


def _cpu_freq() -> float:
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        return 0.0
    return float(freq.current) if freq else 0.0
