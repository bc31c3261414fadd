"""The README documents every flag and environment variable the code reads."""

from __future__ import annotations

import re

import pytest

from app.options import FLAGS, Flag
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(mode: str) -> str:
    match = re.search(rf"^### {mode.capitalize()}\n(.*?)(?=^##|\Z)", README, re.S | re.M)
    assert match, f"README has no '### {mode.capitalize()}' section"
    return match.group(1)


@pytest.mark.parametrize(("mode", "flag"), [(m, f) for m, fs in FLAGS.items() for f in fs],
                         ids=lambda v: v if isinstance(v, str) else v.flag)
def test_every_flag_is_documented(mode: str, flag: Flag) -> None:
    section = _section(mode)
    assert f"`{flag.flag}`" in section
    for env in flag.envs:
        assert f"`{env}`" in section


def test_commands_are_between_markers() -> None:
    for name in ("demo-command", "test-command"):
        assert re.search(rf"<!-- {name} -->\n```\n\S.*\n```\n<!-- /{name} -->", README), name
