"""Where the page's templates and static files are, from a checkout or a wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    installed = _PACKAGE / name  # a wheel puts them inside the package
    return installed if installed.is_dir() else _PACKAGE.parent / name


STATIC_DIR = _find("static")
TEMPLATES_DIR = _find("templates")
