"""bench.compiled: the mypyc-compiled tree the image's sidecar is, built from this checkout and run for real.

`make test-compiled` runs the sidecar's own tests inside that tree; here the
tree is built (or reused), each listed module must be an extension there, and
a real sidecar started from it relays a request to the sample app and counts
it on /metrics."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.request

import pytest

from bench import compiled
from tests.conftest import app_env, free_port, sample_app, wait_for_port

pytestmark = pytest.mark.slow


def test_every_listed_module_exists_and_is_the_sidecars_or_the_cores() -> None:
    modules = compiled.compiled_modules()
    assert modules and len(set(modules)) == len(modules)
    for module in modules:
        assert (compiled.ROOT / module).is_file(), module
        assert module.startswith(("sidecar/", "app/core/")), module


def test_the_digest_changes_with_a_source() -> None:
    before = compiled.digest()
    assert compiled.digest() == before
    probe = compiled.ROOT / "sidecar" / "_digest_probe.py"
    probe.write_text("# a source the tree depends on\n")
    try:
        assert compiled.digest() != before
    finally:
        probe.unlink()
    assert compiled.digest() == before


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
def test_the_compiled_sidecar_relays_and_counts() -> None:
    tree = compiled.build()
    assert all(compiled.is_compiled(tree, m) for m in compiled.compiled_modules())
    where = subprocess.run([sys.executable, "-c", "import sidecar.connection as c; print(c.__file__)"],
                           cwd=tree, capture_output=True, text=True, check=True, env=app_env()).stdout.strip()
    assert where.startswith(str(tree)) and where.endswith(".so"), where
    with sample_app("--fail-rate", "0") as (_, app_port):
        port, admin = free_port(), free_port()
        proc = subprocess.Popen([sys.executable, "-m", "app", "--mode", "sidecar", "--host", "127.0.0.1",
                                 "--port", str(port), "--admin-port", str(admin), "--target-port", str(app_port)],
                                cwd=tree, env=app_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, proc=proc)
            for _ in range(3):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
                    assert reply.status == 200
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as reply:
                metrics = reply.read().decode()
        finally:
            proc.terminate()
            assert proc.wait(15) == 0
    counted = [line for line in metrics.splitlines()
               if line.startswith('http_server_requests_total{method="GET",route="/",status_class="2xx"}')]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) == 3.0, metrics


def test_an_earlier_commit_is_exported_as_it_was() -> None:
    tree = compiled.export_at("HEAD~1")
    commit = subprocess.run(["git", "rev-parse", "HEAD~1"], cwd=compiled.ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    assert tree.name == f"at-{commit[:12]}" and (tree / ".exported").read_text().strip() == commit
    then = subprocess.run(["git", "show", f"{commit}:sidecar/proxy.py"], cwd=compiled.ROOT, capture_output=True,
                          check=True).stdout
    assert (tree / "sidecar" / "proxy.py").read_bytes() == then
    assert compiled.export_at(commit) == tree  # kept, not exported again


def test_what_is_not_a_commit_is_refused_by_name() -> None:
    with pytest.raises(compiled.CompileError, match="'no-such-ref' is not a commit"):
        compiled.build_at("no-such-ref")


def test_one_build_at_a_time() -> None:
    # While one process checks or builds a tree, another cannot take the lock (it would wait for it).
    probe = ("import fcntl, sys; f = open(sys.argv[1], 'a')\n"
             "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(3)\n")
    with compiled.exclusive():
        held = subprocess.run([sys.executable, "-c", probe, str(compiled.LOCK)], check=False)
    assert held.returncode == 3
    free = subprocess.run([sys.executable, "-c", probe, str(compiled.LOCK)], check=False)
    assert free.returncode == 0
