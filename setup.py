"""Packaging for Mothership: `pip install .` gives the `mothership` command (same as `python -m app`)."""

import os
import re
import tomllib
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
# One version, kept in app/__init__.py: `inject` names the sidecar image after it.
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "app/__init__.py").read_text(), re.M).group(1)
# What `make demo` installs beyond the package itself: grpcio (gRPC's own implementation) for the demo's
# gRPC service and its client (app/demo/grpcservice.py, grpctraffic.py). Without it the demo runs, less its
# gRPC pod.
DEMO: list[str] = ["grpcio>=1.60"]


def _compiled() -> list:
    """With MOTHERSHIP_COMPILE=1, the sidecar's hot path compiled to C by mypyc (pyproject.toml's
    [tool.mothership] compiled); else nothing: the same modules run as Python. The build then needs mypy,
    a C compiler and Python's headers (`pip install --no-build-isolation`, with mypy installed), and the
    package's dependencies and type stubs installed too: mypyc type-checks what it compiles, strictly."""
    if os.environ.get("MOTHERSHIP_COMPILE", "") not in ("1", "true", "yes"):
        return []
    from mypyc.build import mypycify  # only here: a plain install does not need mypy

    modules = tomllib.loads((HERE / "pyproject.toml").read_text())["tool"]["mothership"]["compiled"]
    return mypycify(modules, opt_level="3")


def _files(folder: str) -> list[str]:
    """Every file under `folder`, relative to it: package_data's "*" would miss subfolders."""
    root = HERE / folder
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


setup(
    name="mothership",
    version=VERSION,
    description="Service-mesh telemetry without a control plane: a timing sidecar and a live dashboard.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    # What CI, the S2I builder (python:3.11-ubi9) and the Containerfile run.
    python_requires=">=3.11",
    # static/ and templates/ sit beside the packages in the repository; in a
    # wheel they become `app/static` and `app/templates` (app/paths.py looks
    # there first). The sdist carries them through MANIFEST.in.
    packages=[
        *find_packages(include=["app", "app.*", "sidecar", "sidecar.*"]),
        "app.static",
        "app.templates",
    ],
    package_dir={"app.static": "static", "app.templates": "templates"},
    package_data={"app.static": _files("static"), "app.templates": _files("templates")},
    install_requires=[
        "tornado>=6.3,<7",
        "psutil>=5.9,<8",
        "ujson>=5.8,<7",
        "httptools>=0.6,<1",  # the dashboard reads the sidecars' POSTs with it (llhttp)
        "prometheus-client>=0.17,<1",
        "hpack>=4.0,<5",  # decodes HTTP/2 header blocks (python-hyper's HPACK; not hand-written)
        # `inject` edits the user's manifests round trip: their comments, quotes and key order survive.
        "ruamel.yaml>=0.18,<0.20",
        # The sidecar's event loop where it builds (libuv; CPython on Linux and macOS): its relay's transports
        # cost about half of asyncio's own. Elsewhere the sidecar runs on asyncio's default loop.
        'uvloop>=0.19,<1; platform_python_implementation == "CPython" and sys_platform != "win32"',
    ],
    extras_require={
        "demo": DEMO,
        "test": [
            *DEMO,  # the demo's gRPC pod, and real gRPC peers through the sidecar
            "pytest>=8.3,<9",  # pytest-tornado 0.8.1 warns under pytest 9 and breaks under 10
            "pytest-tornado==0.8.1",
            "setuptools<82",  # pytest-tornado imports pkg_resources
            "hypothesis>=6.100",
            "h2>=4.1,<5",  # builds real HTTP/2 conversations for the HTTP/2 tracker's tests
            "grpcio>=1.60",  # a real gRPC server and client through the sidecar (tests/test_protocols_grpc.py)
            "hypercorn>=0.16",  # a real h2c server, by prior knowledge and by upgrade (tests/test_protocols_h2c.py)
            "playwright>=1.45",
            "kubernetes-validate>=1.28",
            "PyYAML>=6",
            "build>=1.0",  # tests/test_packaging.py builds the sdist and the wheel
            "ruff>=0.6",
            "mypy>=1.10",
            "types-ujson",
            "types-psutil",
            "types-PyYAML",
            "types-grpcio",
            "requests>=2.28",  # tests/test_dashboard_ingest.py: a client that writes its whole body first
        ],
    },
    ext_modules=_compiled(),
    entry_points={"console_scripts": ["mothership=app.__main__:main_exit"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Operating System :: POSIX :: Linux",
        "Framework :: Tornado",
        "Topic :: System :: Monitoring",
        "Topic :: System :: Networking :: Monitoring",
    ],
)
