"""The container's own CPU and memory usage and limits, read from cgroup v2 or v1 files.

Parsing is pure (text in, numbers out) so v1 and v2 layouts are tested on
fixture files; `CgroupReader` is the thin edge that finds this process's
cgroup directories once and reads a handful of small files per sample. A
missing or unreadable file gives `None`, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# cgroup v1 writes "no limit" as the largest page-aligned int64; anything this
# big is no limit in practice.
_V1_UNLIMITED = 2**62


@dataclass(frozen=True)
class CgroupReading:
    version: str | None  # "v2", "v1" or None when no cgroup files were found
    cpu_usage_seconds: float | None = None  # CPU time used by the container since it started
    cpu_limit_cores: float | None = None  # quota / period; None = no limit
    memory_usage: int | None = None  # bytes, page cache included (as the kernel counts it)
    memory_limit: int | None = None  # bytes; None = no limit
    memory_working_set: int | None = None  # usage less inactive file cache: what the OOM killer sees
    # CFS bandwidth: enforcement periods, those in which the quota ran out, and the time held back.
    cpu_periods: int | None = None
    cpu_throttled_periods: int | None = None
    cpu_throttled_seconds: float | None = None


# --- pure parsing ----------------------------------------------------------


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """`/proc/self/cgroup` -> {controller: path}; the v2 entry's key is ""."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[""] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths


def parse_int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def parse_flat_keyed(text: str | None) -> dict[str, int]:
    """`key value` lines (cpu.stat, memory.stat) -> {key: value}; bad lines skipped."""
    values: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.strip().partition(" ")
        number = parse_int(value)
        if key and number is not None:
            values[key] = number
    return values


def parse_cpu_max(text: str | None) -> float | None:
    """v2 `cpu.max`: `"200000 100000"` -> 2.0 cores; `"max 100000"` -> None."""
    if text is None:
        return None
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    quota = parse_int(parts[0])
    period = parse_int(parts[1]) if len(parts) > 1 else 100_000
    if quota is None or not period or quota <= 0 or period <= 0:
        return None
    return quota / period


def parse_cfs_quota(quota_text: str | None, period_text: str | None) -> float | None:
    """v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` -> cores; a quota of -1 means no limit."""
    quota, period = parse_int(quota_text), parse_int(period_text)
    if quota is None or quota <= 0 or not period or period <= 0:
        return None
    return quota / period


def parse_memory_limit(text: str | None) -> int | None:
    """v2 `memory.max` ("max" = none) or v1 `memory.limit_in_bytes` (huge = none)."""
    if text is None or text.strip() == "max":
        return None
    value = parse_int(text)
    if value is None or value <= 0 or value >= _V1_UNLIMITED:
        return None
    return value


def working_set(usage: int | None, stat: dict[str, int], inactive_key: str) -> int | None:
    """Usage less inactive file cache, as the kubelet computes it (never below zero)."""
    if usage is None:
        return None
    return max(0, usage - stat.get(inactive_key, 0))


def reading_v2(files: dict[str, str | None]) -> CgroupReading:
    """Numbers from the contents of a v2 cgroup's files, keyed by file name."""
    cpu_stat = parse_flat_keyed(files.get("cpu.stat"))
    usage_usec = cpu_stat.get("usage_usec")
    memory = parse_int(files.get("memory.current"))
    return CgroupReading(
        version="v2",
        cpu_usage_seconds=None if usage_usec is None else usage_usec / 1e6,
        cpu_limit_cores=parse_cpu_max(files.get("cpu.max")),
        memory_usage=memory,
        memory_limit=parse_memory_limit(files.get("memory.max")),
        memory_working_set=working_set(memory, parse_flat_keyed(files.get("memory.stat")), "inactive_file"),
        cpu_periods=cpu_stat.get("nr_periods"),
        cpu_throttled_periods=cpu_stat.get("nr_throttled"),
        cpu_throttled_seconds=None if "throttled_usec" not in cpu_stat else cpu_stat["throttled_usec"] / 1e6,
    )


def reading_v1(files: dict[str, str | None]) -> CgroupReading:
    """Numbers from the contents of v1 controller files, keyed `controller/file`."""
    usage_ns = parse_int(files.get("cpuacct/cpuacct.usage"))
    memory = parse_int(files.get("memory/memory.usage_in_bytes"))
    cpu_stat = parse_flat_keyed(files.get("cpu/cpu.stat"))
    return CgroupReading(
        version="v1",
        cpu_usage_seconds=None if usage_ns is None else usage_ns / 1e9,
        cpu_limit_cores=parse_cfs_quota(files.get("cpu/cpu.cfs_quota_us"), files.get("cpu/cpu.cfs_period_us")),
        memory_usage=memory,
        memory_limit=parse_memory_limit(files.get("memory/memory.limit_in_bytes")),
        memory_working_set=working_set(
            memory, parse_flat_keyed(files.get("memory/memory.stat")), "total_inactive_file"),
        cpu_periods=cpu_stat.get("nr_periods"),
        cpu_throttled_periods=cpu_stat.get("nr_throttled"),
        cpu_throttled_seconds=None if "throttled_time" not in cpu_stat else cpu_stat["throttled_time"] / 1e9,
    )


V2_FILES = ("cpu.stat", "cpu.max", "memory.current", "memory.max", "memory.stat")
V1_FILES = {
    "cpuacct": ("cpuacct.usage",),
    "cpu": ("cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.stat"),
    "memory": ("memory.usage_in_bytes", "memory.limit_in_bytes", "memory.stat"),
}


# --- the I/O edge ----------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _own_dir(mount: Path, path: str | None) -> Path:
    """This process's cgroup under a mount. Inside a container's cgroup
    namespace the mount already is our cgroup and the path is `/`; on a host
    (or without a namespace) the path from /proc/self/cgroup leads to it."""
    if path and path != "/":
        candidate = mount / path.lstrip("/")
        if candidate.is_dir():
            return candidate
    return mount


class CgroupReader:
    """Finds this process's cgroup directories once; `read()` reads the few files."""

    def __init__(self, root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> None:
        paths = parse_proc_cgroup(_read(proc_cgroup) or "")
        self.version: str | None = None
        self._v2_dir: Path | None = None
        self._v1_dirs: dict[str, Path] = {}
        if (root / "cgroup.controllers").is_file():  # a pure v2 (unified) mount
            self.version = "v2"
            self._v2_dir = _own_dir(root, paths.get(""))
            return
        for controller in V1_FILES:
            mount = _v1_mount(root, controller)
            if mount is not None:
                self._v1_dirs[controller] = _own_dir(mount, paths.get(controller))
        if self._v1_dirs:
            self.version = "v1"

    def read(self) -> CgroupReading:
        if self._v2_dir is not None:
            return reading_v2({name: _read(self._v2_dir / name) for name in V2_FILES})
        if self._v1_dirs:
            files: dict[str, str | None] = {}
            for controller, directory in self._v1_dirs.items():
                for name in V1_FILES[controller]:
                    files[f"{controller}/{name}"] = _read(directory / name)
            return reading_v1(files)
        return CgroupReading(version=None)


def _v1_mount(root: Path, controller: str) -> Path | None:
    """The v1 hierarchy holding a controller: `cpuacct`, or a joint one like `cpu,cpuacct`."""
    direct = root / controller
    if direct.is_dir():
        return direct
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return None
    for entry in entries:
        if controller in entry.name.split(",") and entry.is_dir():
            return entry
    return None
