"""Headless Chromium for the page tests, driven by the plain Playwright sync API.

Fixture `chromium` launches Debian's /usr/bin/chromium once per test module; `open_page(url)`
opens a fresh context and returns a `PageWatch` that records every request URL,
console error, uncaught page error and dialog, so a test can assert that none
happened. Tests skip (with the reason) when Chromium is missing, except under
CI=true, where a missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Quiet, offline Chromium: no sandbox (root in a container), no GPU, and none of
# the background traffic (updates, sync, QUIC probes) that would leave the host.
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1600, "height": 1000}


def require_chromium() -> None:
    """Skip (or, under CI, fail) when the browser or Playwright is not installed."""
    reason = ""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    elif importlib.util.find_spec("playwright") is None:
        reason = "the playwright package is not installed (pip install -e '.[test]')"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI: {reason}")
        pytest.skip(reason)


@dataclass
class PageWatch:
    """One open page and everything it did that a test may want to deny."""

    page: Any  # playwright.sync_api.Page
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    response: Any = None  # the page's own HTTP response

    def live(self) -> dict[str, Any]:
        """The page's own numbers (window.__mothership): state, counts, update timings."""
        value = self.page.evaluate("() => JSON.parse(JSON.stringify(window.__mothership || null))")
        assert isinstance(value, dict), "the page did not start (window.__mothership is missing)"
        return value

    def wait_for(self, expression: str, timeout: float = 15.0, arg: Any = None) -> Any:
        """Wait until the JS function `expression` (given `arg`) returns something truthy; return it."""
        handle = self.page.wait_for_function(expression, arg=arg, timeout=timeout * 1000, polling=100)
        return handle.json_value()

    def settle(self, seconds: float) -> None:
        """Let the page run (its timers and socket) for a while without touching it."""
        self.page.wait_for_timeout(seconds * 1000)

    def problems(self) -> list[str]:
        return ([f"console error: {m}" for m in self.console_errors] + [f"page error: {e}" for e in self.page_errors]
                + [f"dialog: {d}" for d in self.dialogs])


@pytest.fixture(name="chromium", scope="module")
def chromium_fixture() -> Iterator[Any]:
    """One browser per test module (launching takes about a second)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(name="open_page")
def open_page_fixture(chromium: Any) -> Iterator[Callable[..., PageWatch]]:
    """`open_page(url, viewport=, init_script=)` -> PageWatch in a fresh context; all closed after the test."""
    contexts: list[Any] = []

    def open_(url: str, viewport: dict[str, int] | None = None, init_script: str | None = None) -> PageWatch:
        context = chromium.new_context(viewport=viewport or VIEWPORT, service_workers="block")
        contexts.append(context)
        if init_script:  # runs before the page's own scripts, e.g. to take a browser feature away
            context.add_init_script(init_script)
        page = context.new_page()
        watch = PageWatch(page)
        page.on("request", lambda request: watch.requests.append(request.url))
        page.on("websocket", lambda socket: watch.sockets.append(socket.url))
        page.on("console", lambda message: watch.console_errors.append(message.text)
                if message.type == "error" else None)
        page.on("pageerror", lambda error: watch.page_errors.append(str(error)))

        def on_dialog(dialog: Any) -> None:
            watch.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        watch.response = page.goto(url, wait_until="load")
        return watch

    yield open_
    for context in contexts:
        with contextlib.suppress(Exception):  # a crashed browser's contexts are gone already
            context.close()
