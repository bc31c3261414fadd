"""Packaging: the sdist, the wheel, the editable install, the Containerfile and the S2I start script.

The slow tests build with `python -m build` (sdist, then the wheel from the
sdist, as a user's `pip install` of the sdist would) and install into fresh
virtual environments, then run the installed `mothership` command from
another directory.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, app_env, free_port, wait_for_port

PAGE_FILES = ("static/chart.umd.min.js", "templates/index.html")


def _run(args: list[str], cwd: Path, timeout: float = 180, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{shlex.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out)
    return out


def _venv(where: Path) -> Path:
    _run([sys.executable, "-m", "venv", str(where)], cwd=where.parent)
    return where / "bin"


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


@pytest.mark.slow
def test_sdist_and_wheel_carry_the_page_and_the_deployment_files(dist: Path) -> None:
    (sdist,) = dist.glob("mothership-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for name in (*PAGE_FILES, "setup.py", "README.md", "openshift-template.yaml", "Containerfile", "app.sh",
                 ".s2i/environment", "app/demo/sampleapp.py", "sidecar/main.py", "tests/conftest.py"):
        assert name in names, f"{name} is missing from the sdist"
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]

    (wheel,) = dist.glob("mothership-*.whl")  # built from the sdist: MANIFEST.in is what makes this work
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read("mothership-0.1.0.dist-info/entry_points.txt").decode()
        metadata = archive.read("mothership-0.1.0.dist-info/METADATA").decode()
    for name in PAGE_FILES:
        assert "app/" + name in names, f"app/{name} is missing from the wheel"
    static = {p.relative_to(ROOT).as_posix() for p in (ROOT / "static").rglob("*") if p.is_file()}
    assert {"app/" + name for name in static} <= names  # every asset, subfolders too
    assert {"app/__main__.py", "app/demo/sampleapp.py", "sidecar/main.py", "app/dashboard/server.py"} <= names
    assert not [name for name in names if name.startswith(("tests/", "bench/"))]
    assert "mothership = app.__main__:main_exit" in entry_points
    for requirement in ("tornado", "psutil", "ujson", "prometheus-client", "ruamel.yaml"):
        assert f"Requires-Dist: {requirement}" in metadata
    assert "Requires-Python: >=3.11" in metadata


@pytest.mark.slow
def test_the_installed_wheel_serves_the_page_from_another_directory(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("mothership-*.whl")
    bin_dir = _venv(tmp_path / "venv")
    _run([str(bin_dir / "pip"), "install", "--quiet", str(wheel)], cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = app_env({"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"})
    env.pop("PYTHONPATH", None)  # only the installed copy may be found
    located = _run([str(bin_dir / "python"), "-c", "import app, app.paths as p; print(app.__file__, p.STATIC_DIR)"],
                   cwd=elsewhere, env=env)
    assert str(ROOT) not in located and "site-packages" in located
    assert "--mode" in _run([str(bin_dir / "mothership"), "--help"], cwd=elsewhere, env=env)
    pod = ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
           "spec:\n  containers: [{name: a, image: a, ports: [{containerPort: 80}]}]\n")
    injected = subprocess.run([str(bin_dir / "mothership"), "inject"], input=pod, cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=60)
    assert injected.returncode == 0, injected.stderr
    assert "mothership-sidecar" in injected.stdout

    port = free_port()
    with subprocess.Popen([str(bin_dir / "mothership"), "--mode", "dashboard", "--host", "127.0.0.1",
                           "--port", str(port), "--data", ":memory:"], cwd=elsewhere, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as dashboard:
        try:
            wait_for_port(port, timeout=20)
            status, page = _get(f"http://127.0.0.1:{port}/")
            assert status == 200 and b"chart.umd.min.js" in page
            status, chart = _get(f"http://127.0.0.1:{port}/static/chart.umd.min.js")
            assert status == 200 and chart == (ROOT / "static/chart.umd.min.js").read_bytes()
        finally:
            dashboard.send_signal(signal.SIGTERM)
            dashboard.wait(20)


@pytest.mark.slow
def test_editable_install_finds_the_page_files_in_the_checkout(tmp_path: Path) -> None:
    """What `make` does (`pip install -e '.[test]'`): app/paths.py must find static/ beside app/."""
    bin_dir = _venv(tmp_path / "venv")
    _run([str(bin_dir / "pip"), "install", "--quiet", "--no-deps", "-e", str(ROOT)], cwd=tmp_path)
    env = app_env()
    env.pop("PYTHONPATH", None)
    located = _run([str(bin_dir / "python"), "-c",
                    "import app.paths as p, sidecar; print(p.STATIC_DIR); print(p.TEMPLATES_DIR)"],
                   cwd=tmp_path, env=env).split()
    assert located == [str(ROOT / "static"), str(ROOT / "templates")]
    assert (tmp_path / "venv/bin/mothership").exists()


def test_make_demo_installs_only_what_the_demo_runs(tmp_path: Path) -> None:
    """`make demo` installs `.[demo]`; `make test` installs `.[test]`, which holds all of `.[demo]`."""
    venv = tmp_path / ".venv"  # none there: make shows every step it would take
    demo = _run(["make", "-n", "demo", f"VENV={venv}"], cwd=ROOT)
    assert "pip install --quiet -e '.[demo]'" in demo and ".[test]" not in demo
    test = _run(["make", "-n", "test", f"VENV={venv}"], cwd=ROOT)
    assert "pip install --quiet -e '.[test]'" in test and ".[demo]'" not in test
    assert f"touch {venv}/.installed {venv}/.installed-demo" in test
    setup = (ROOT / "setup.py").read_text()
    assert '"demo": DEMO,' in setup and '"test": [\n            *DEMO,' in setup


# --- the Containerfile, checked statically (tests/test_pods.py builds and runs it) --


def _instructions() -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in (ROOT / "Containerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.endswith("\\"):
            if current.strip():
                keyword, _, rest = current.strip().partition(" ")
                lines.append((keyword.upper(), rest.strip()))
            current = ""
    return lines


def _stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage, its FROM first."""
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def _runs(stage: list[tuple[str, str]]) -> str:
    return " ".join(rest for keyword, rest in stage if keyword == "RUN")


def test_containerfile_builds_from_python_and_runs_as_an_arbitrary_uid() -> None:
    instructions = _instructions()
    defaults = dict(rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG" and "=" in rest)
    final = _stages()[-1]
    assert final[0][1] == "${BASE_IMAGE}" and "python:3.11" in defaults["BASE_IMAGE"]  # the pod tests give their own
    runs = _runs(final)
    assert "pip install /tmp/dist/mothership-" in runs  # the wheel the builder compiled
    assert "chgrp -R 0" in runs and "chmod -R g=u" in runs  # group 0 owns what an arbitrary UID needs
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1].isdigit() and int(users[-1]) != 0
    exposed = {int(p) for keyword, rest in final if keyword == "EXPOSE" for p in rest.split()}
    template = yaml.safe_load((ROOT / "openshift-template.yaml").read_text())
    ports = {int(p["containerPort"]) for o in template["objects"] if o["kind"] == "Deployment"
             for c in o["spec"]["template"]["spec"]["containers"] if c["name"] != "app" for p in c["ports"]}
    assert ports <= exposed
    (command,) = [rest for keyword, rest in final if keyword == "CMD"]
    workdir = [rest for keyword, rest in final if keyword == "WORKDIR"][-1]
    script = yaml.safe_load(command)[0]  # exec form: a JSON list
    assert script.startswith(workdir + "/") and (ROOT / Path(script).name).exists()


def test_containerfile_compiles_the_sidecar_in_a_builder_stage_and_ships_no_compiler() -> None:
    """The builder compiles (mypyc needs mypy, hence no build isolation); the final stage
    takes only its wheel, and no source in the working directory shadows the compiled modules."""
    defaults = dict(rest.split("=", 1) for keyword, rest in _instructions() if keyword == "ARG" and "=" in rest)
    builder, final = _stages()
    assert builder[0][1] == "${BUILDER_IMAGE} AS builder" and defaults["BUILDER_IMAGE"].endswith("/python:3.11")
    assert "MOTHERSHIP_COMPILE=1 pip wheel --no-build-isolation --no-deps" in _runs(builder)
    assert "mypy" in _runs(builder)
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert "--from=builder /dist/ /tmp/dist/" in copies
    assert all(rest.startswith("--from=") or rest.split()[0] == "app.sh" for rest in copies), copies
    assert not any(word in _runs(final) for word in ("gcc", "apt-get", "mypy", "MOTHERSHIP_COMPILE"))


@pytest.mark.slow
def test_containerfile_copies_everything_the_package_needs(tmp_path: Path) -> None:
    """Only the COPY'd files, built: the wheel must still have the page and every package."""
    context = tmp_path / "context"
    context.mkdir()
    for keyword, rest in _instructions():
        if keyword != "COPY" or rest.startswith("--from="):  # from another stage, not the context
            continue
        *sources, target = rest.split()
        for source in sources:
            origin = ROOT / source
            assert origin.exists(), f"COPY {source}: no such file"
            if origin.is_dir():
                subprocess.run(["cp", "-r", str(origin), str(context / target.rstrip("/"))], check=True)
            else:
                subprocess.run(["cp", "-p", str(origin), str(context)], check=True)
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "out"), str(context)], cwd=tmp_path)
    (wheel,) = (tmp_path / "out").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"app/" + name for name in PAGE_FILES} <= names
    assert {"app/__main__.py", "sidecar/main.py", "app/dashboard/server.py"} <= names
    assert os.access(context / "app.sh", os.X_OK)


# --- the start script of the S2I image -------------------------------------------


@pytest.fixture
def app_sh(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_app_sh_starts_the_dashboard_unless_mode_says_otherwise(app_sh: list[subprocess.Popen[bytes]]) -> None:
    port = free_port()
    env = app_env({"PORT": str(port), "HOST": "127.0.0.1", "DATA_PATH": ":memory:",
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"})
    proc = subprocess.Popen([str(ROOT / "app.sh")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    app_sh.append(proc)
    wait_for_port(port, timeout=20)
    status, body = _get(f"http://127.0.0.1:{port}/healthz")
    assert status == 200 and b"ok" in body
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0  # `exec`: the signal reached python itself

    bad = subprocess.run([str(ROOT / "app.sh")], cwd=ROOT, env={**env, "MODE": "nonsense"}, capture_output=True,
                         text=True, timeout=20)
    assert bad.returncode == 2 and "--mode" in bad.stderr
