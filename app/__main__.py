"""Entry point: `python -m app --mode sidecar|dashboard|demo|inject [flags]`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from app.options import DashboardConfig, DemoConfig, InjectConfig, OptionError, SidecarConfig, parse


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse(sys.argv[1:] if argv is None else argv)
    except OptionError as exc:
        print(f"python -m app: error: {exc}", file=sys.stderr)
        return 2
    if isinstance(config, SidecarConfig):
        from sidecar.main import run as run_sidecar

        return run_sidecar(config)
    if isinstance(config, DashboardConfig):
        from app.dashboard.server import run as run_dashboard

        return run_dashboard(config)
    if isinstance(config, InjectConfig):
        from app.inject.cli import run as run_inject

        return run_inject(config)
    assert isinstance(config, DemoConfig)
    from app.demo.demo import run as run_demo

    return run_demo(config)


def main_exit() -> None:
    """The `mothership` console script."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
