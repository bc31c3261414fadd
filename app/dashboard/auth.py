"""Who may post and who may look: the ingest bearer token and the view token.

Pure functions over header and cookie values; every comparison of a secret
is constant-time (`hmac.compare_digest`) so timing does not leak it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

VIEW_COOKIE = "mothership_view"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def bearer_ok(authorization: str | None, token: str) -> bool:
    """True when no token is configured, or the header is `Bearer <token>`."""
    if not token:
        return True
    if not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and _same(given.strip(), token)


def basic_password(authorization: str | None) -> str | None:
    """The password of an `Authorization: Basic ...` header, whatever the user name."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, sep, password = decoded.partition(":")
    return password if sep else None


def view_cookie(view_token: str) -> str:
    """The cookie value proving the view token was given: derived, so the token itself is not stored."""
    return hmac.new(view_token.encode("utf-8"), b"mothership view cookie", hashlib.sha256).hexdigest()


def view_ok(view_token: str, *, query_token: str | None, cookie: str | None, authorization: str | None) -> bool:
    """True when no view token is set, or the query, the cookie or basic auth carries it."""
    if not view_token:
        return True
    if query_token is not None and _same(query_token, view_token):
        return True
    if cookie is not None and _same(cookie, view_cookie(view_token)):
        return True
    password = basic_password(authorization)
    return password is not None and _same(password, view_token)
