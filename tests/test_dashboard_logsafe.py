"""What reaches the log: control and bidirectional characters escaped, whatever logged them."""

from __future__ import annotations

import io
import logging

from app.dashboard.logsafe import EscapeControls, escape


def test_escape_makes_one_visible_line() -> None:
    assert escape("GET /x\n2026 ERROR forged") == "GET /x\\x0a2026 ERROR forged"
    assert escape("a\x00b\x1b[31m\x7f\u0085") == "a\\x00b\\x1b[31m\\x7f\\x85"
    assert escape("zz-\u202eevil\u2066\u2028") == "zz-\\u202eevil\\u2066\\u2028"
    assert escape("plain /päth ünïcode") == "plain /päth ünïcode"


def test_the_filter_escapes_messages_and_arguments_but_keeps_tracebacks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(EscapeControls())
    logger = logging.getLogger("test.logsafe")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("%d %s", 404, "/a\nFORGED")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.error("failed %s", "\r\n", exc_info=True)
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert lines[0] == "404 /a\\x0aFORGED"
    assert lines[1] == "failed \\x0d\\x0a" and lines[2].startswith("Traceback")
