"""Packaging for Mothership: `pip install .` gives the `mothership` command."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="mothership",
    version="0.1.0",
    description="Service-mesh telemetry without a control plane: a timing sidecar and a live dashboard.",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    # static/ and templates/ sit beside the packages in the repository; in a
    # wheel they become `app/static` and `app/templates` (see app/paths.py).
    packages=[*find_packages(include=["app", "app.*", "sidecar", "sidecar.*"]), "app.static", "app.templates"],
    package_dir={"app.static": "static", "app.templates": "templates"},
    package_data={"app.static": ["*"], "app.templates": ["*"]},
    install_requires=[
        "tornado>=6.3,<7",
        "psutil>=5.9,<8",
        "ujson>=5.8,<7",
        "prometheus-client>=0.17,<1",
    ],
    extras_require={
        "test": [
            "pytest>=8.3,<9",  # pytest-tornado 0.8.1 warns under pytest 9 and breaks under 10
            "pytest-tornado==0.8.1",
            "setuptools<82",  # pytest-tornado imports pkg_resources
            "hypothesis>=6.100",
            "playwright>=1.45",
            "kubernetes-validate>=1.28",
            "PyYAML>=6",
            "ruff>=0.6",
            "mypy>=1.10",
            "types-ujson",
            "types-psutil",
            "types-PyYAML",
        ],
    },
    entry_points={"console_scripts": ["mothership=app.__main__:main_exit"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Tornado",
        "Topic :: System :: Monitoring",
    ],
)
