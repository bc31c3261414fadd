"""Resource sampling: cgroup v1/v2 parsing on fixture trees and the sample's shape (its cost: bench.sampler_bench)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.core.wire import parse_resources
from sidecar.pod.cgroup import (
    CgroupReader,
    CgroupReading,
    parse_cfs_quota,
    parse_cpu_max,
    parse_memory_limit,
    parse_proc_cgroup,
)
from sidecar.pod.sampler import ResourceSampler, container_view, cpu_models


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


V2_POD = {
    "cgroup.controllers": "cpuset cpu io memory pids\n",
    "cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 10\nnr_throttled 4\n"
                "throttled_usec 250000\n",
    "cpu.max": "50000 100000\n",
    "memory.current": "104857600\n",
    "memory.max": "268435456\n",
    "memory.stat": "anon 52428800\nfile 41943040\ninactive_file 20971520\nactive_file 20971520\n",
}


def test_v2_inside_a_container_namespace(tmp_path: Path) -> None:
    write_tree(tmp_path / "fs", V2_POD)
    write_tree(tmp_path, {"self-cgroup": "0::/\n"})
    reader = CgroupReader(tmp_path / "fs", tmp_path / "self-cgroup")
    assert reader.read() == CgroupReading(
        version="v2", cpu_usage_seconds=2.5, cpu_limit_cores=0.5, memory_usage=104857600,
        memory_limit=268435456, memory_working_set=104857600 - 20971520, cpu_periods=10, cpu_throttled_periods=4,
        cpu_throttled_seconds=0.25)


def test_v2_on_a_host_follows_proc_self_cgroup(tmp_path: Path) -> None:
    write_tree(tmp_path / "fs", {"cgroup.controllers": "cpu memory\n", "memory.current": "1\n"})
    write_tree(tmp_path / "fs/kubepods.slice/pod1/ctr", {**V2_POD, "cpu.max": "max 100000\n", "memory.max": "max\n"})
    write_tree(tmp_path, {"self-cgroup": "0::/kubepods.slice/pod1/ctr\n"})
    reading = CgroupReader(tmp_path / "fs", tmp_path / "self-cgroup").read()
    assert reading.version == "v2"
    assert reading.memory_usage == 104857600  # ours, not the root's
    assert reading.cpu_limit_cores is None and reading.memory_limit is None  # "max" = no limit


V1_CTR = {
    "cpu,cpuacct/cpuacct.usage": "7500000000\n",
    "cpu,cpuacct/cpu.cfs_quota_us": "200000\n",
    "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    "cpu,cpuacct/cpu.stat": "nr_periods 100\nnr_throttled 25\nthrottled_time 1500000000\n",
    "memory/memory.usage_in_bytes": "52428800\n",
    "memory/memory.limit_in_bytes": "134217728\n",
    "memory/memory.stat": "cache 1000\ntotal_inactive_file 2428800\n",
}


def test_v1_with_joint_cpu_cpuacct_hierarchy(tmp_path: Path) -> None:
    write_tree(tmp_path / "fs", V1_CTR)
    write_tree(tmp_path, {"self-cgroup": "4:memory:/\n3:cpu,cpuacct:/\n0::/\n"})
    reading = CgroupReader(tmp_path / "fs", tmp_path / "self-cgroup").read()
    assert reading == CgroupReading(version="v1", cpu_usage_seconds=7.5, cpu_limit_cores=2.0,
                                    memory_usage=52428800, memory_limit=134217728, memory_working_set=50000000,
                                    cpu_periods=100, cpu_throttled_periods=25, cpu_throttled_seconds=1.5)


def test_v1_without_limits_and_with_separate_hierarchies(tmp_path: Path) -> None:
    write_tree(tmp_path / "fs", {
        "cpuacct/docker/abc/cpuacct.usage": "1000000000\n",
        "cpu/docker/abc/cpu.cfs_quota_us": "-1\n",
        "cpu/docker/abc/cpu.cfs_period_us": "100000\n",
        "memory/docker/abc/memory.usage_in_bytes": "4096\n",
        "memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n",
    })
    write_tree(tmp_path, {"self-cgroup": "5:memory:/docker/abc\n3:cpuacct:/docker/abc\n2:cpu:/docker/abc\n"})
    reading = CgroupReader(tmp_path / "fs", tmp_path / "self-cgroup").read()
    assert reading.version == "v1"
    assert (reading.cpu_usage_seconds, reading.cpu_limit_cores) == (1.0, None)
    assert (reading.memory_usage, reading.memory_limit, reading.memory_working_set) == (4096, None, 4096)


def test_missing_or_garbled_files_give_none_not_a_crash(tmp_path: Path) -> None:
    assert CgroupReader(tmp_path / "nothing", tmp_path / "nothing-either").read() == CgroupReading(version=None)
    write_tree(tmp_path / "fs", {"cgroup.controllers": "", "cpu.max": "garbage", "memory.current": "x\n"})
    reading = CgroupReader(tmp_path / "fs", tmp_path / "none").read()
    assert reading == CgroupReading(version="v2")


@pytest.mark.parametrize(("text", "cores"), [("max 100000", None), ("150000 100000", 1.5), ("100000", 1.0),
                                             ("", None), ("-5 100000", None), (None, None)])
def test_cpu_max(text: str | None, cores: float | None) -> None:
    assert parse_cpu_max(text) == cores


def test_small_parsers() -> None:
    assert parse_cfs_quota("-1", "100000") is None
    assert parse_cfs_quota("50000", "100000") == 0.5
    assert parse_cfs_quota("50000", "0") is None
    assert parse_memory_limit("max\n") is None
    assert parse_memory_limit("9223372036854775807") is None
    assert parse_memory_limit("1048576\n") == 1048576
    assert parse_proc_cgroup("12:cpu,cpuacct:/a\n0::/b\nbad line\n") == {"cpu": "/a", "cpuacct": "/a", "": "/b"}
    assert cpu_models("processor: 0\nmodel name\t: AMD EPYC\nprocessor: 1\nmodel name : X\n") == ["AMD EPYC", "X"]


def test_container_view_rates_cpu_against_the_limit() -> None:
    first = CgroupReading(version="v2", cpu_usage_seconds=10.0, cpu_limit_cores=0.5,
                          memory_usage=100, memory_limit=400, memory_working_set=50)
    assert container_view(first, None, 100.0)["cpu_cores_used"] is None  # no rate from one reading
    later = CgroupReading(version="v2", cpu_usage_seconds=10.25, cpu_limit_cores=0.5,
                          memory_usage=100, memory_limit=400, memory_working_set=50)
    view = container_view(later, (100.0, 10.0), 101.0)
    assert view["cpu_cores_used"] == 0.25
    assert view["cpu_percent"] == 50.0  # 0.25 of a 0.5-core limit
    assert view["memory_percent"] == 12.5  # working set of the limit
    unlimited = CgroupReading(version="v1", cpu_usage_seconds=11.0)
    assert container_view(unlimited, (100.0, 10.0), 102.0)["cpu_percent"] == 50.0  # of one core


def test_sample_has_the_article_fields_and_ours(tmp_path: Path) -> None:
    write_tree(tmp_path / "fs", V2_POD)
    sampler = ResourceSampler(CgroupReader(tmp_path / "fs", tmp_path / "none"))
    resource = sampler.sample()
    assert resource["total_memory"] > resource["free_memory"] > 0
    assert len(resource["cpus"]) >= 1
    cpu = resource["cpus"][0]
    assert set(cpu) == {"model", "speed", "times"}
    assert set(cpu["times"]) == {"user", "nice", "sys", "idle", "irq"}
    assert all(isinstance(v, int) for v in cpu["times"].values())
    assert cpu["times"]["idle"] > 0
    assert len(resource["cpu_percent_per_core"]) == len(resource["cpus"])
    assert len(resource["load_average"]) == 3
    assert resource["container"]["cgroup"] == "v2" and resource["container"]["memory_limit"] == 268435456
    assert resource["sidecar"]["rss"] > 1_000_000
    assert sampler.latest is resource
    parse_resources({"pod": "p-1-a", "resource": resource})  # the dashboard accepts it


def test_busy_cpu_shows_in_the_sidecar_own_percent() -> None:
    """The sidecar's own percent is the CPU it used over the wall time between two samples: spin until 0.3 s
    of CPU is used (however long a shared machine makes that take) and compare with what we measured."""
    sampler = ResourceSampler()
    sampler.sample()
    wall, cpu = time.monotonic(), time.process_time()
    while time.process_time() - cpu < 0.3:
        pass
    resource = sampler.sample()
    expected = 100 * (time.process_time() - cpu) / (time.monotonic() - wall)
    assert 0.7 * expected <= resource["sidecar"]["cpu_percent"] <= 1.3 * expected + 5, expected
    assert 0 <= resource["cpu_percent"] <= 100


def test_other_processes_are_listed_when_visible(tmp_path: Path) -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sampler = ResourceSampler(CgroupReader(tmp_path, tmp_path / "none"), max_processes=100_000)
        for _ in range(100):  # a few processes are read per sample: ours comes up soon
            processes = sampler.sample()["processes"]
            assert processes is not None
            mine = [p for p in processes if p["pid"] == child.pid]
            if mine:
                break
        assert mine and mine[0]["rss"] > 0 and mine[0]["name"].startswith("python")
        import os

        assert os.getpid() not in {p["pid"] for p in processes}  # ourselves: under "sidecar"
    finally:
        child.kill()
        child.wait()


def test_cpu_throttling_reaches_metrics(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from sidecar.metrics import SidecarMetrics
    from sidecar.pod.sampler import container_view

    write_tree(tmp_path / "fs", V1_CTR)
    write_tree(tmp_path, {"self-cgroup": "4:memory:/\n3:cpu,cpuacct:/\n0::/\n"})
    container = container_view(CgroupReader(tmp_path / "fs", tmp_path / "self-cgroup").read(), None, 0.0)
    assert (container["cpu_periods"], container["cpu_throttled_periods"], container["cpu_throttled_seconds"]) == \
        (100, 25, 1.5)
    metrics = SidecarMetrics()
    metrics.watch(resources=lambda: {"container": container})
    text = generate_latest(metrics.registry).decode()
    assert "mothership_container_cpu_periods_total 100.0" in text
    assert "mothership_container_cpu_throttled_periods_total 25.0" in text
    assert "mothership_container_cpu_throttled_seconds_total 1.5" in text
