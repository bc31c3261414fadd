"""Ingest and view credentials (`app.dashboard.auth`), as pure functions."""

from __future__ import annotations

import base64

from app.dashboard.auth import basic_password, bearer_ok, view_cookie, view_ok


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_bearer_token() -> None:
    assert bearer_ok(None, "")  # no token configured: anyone may post
    assert bearer_ok("Bearer t0k", "t0k") and bearer_ok("bearer  t0k ", "t0k")
    for header in (None, "", "Bearer", "Bearer t0", "Bearer t0kk", "Basic t0k", "t0k", "Bearer t0k x"):
        assert not bearer_ok(header, "t0k"), header
    assert not bearer_ok("Bearer \udcff", "t0k")  # undecodable input is just wrong


def test_basic_password() -> None:
    assert basic_password(basic("me", "pa:ss")) == "pa:ss"
    for header in (None, "Bearer x", "Basic ###", "Basic " + base64.b64encode(b"no-colon").decode(),
                   "Basic " + base64.b64encode(b"\xff:\xfe").decode()):
        assert basic_password(header) is None, header


def test_view_access() -> None:
    assert view_ok("", query_token=None, cookie=None, authorization=None)
    assert view_ok("v", query_token="v", cookie=None, authorization=None)
    assert view_ok("v", query_token=None, cookie=view_cookie("v"), authorization=None)
    assert view_ok("v", query_token=None, cookie=None, authorization=basic("anyone", "v"))
    assert not view_ok("v", query_token="w", cookie=view_cookie("w"), authorization=basic("v", "w"))
    assert not view_ok("v", query_token=None, cookie="v", authorization=None)  # the cookie is derived, not the token
    assert view_cookie("v") != view_cookie("w") and len(view_cookie("v")) == 64
