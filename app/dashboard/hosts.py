"""`HostGate`: which `Host` headers (and `/ws` Origins) the dashboard answers, against DNS rebinding.

A page on another site can make its own host name resolve to the dashboard's
address (DNS rebinding) and then read it as same-origin; the one thing it
cannot change is the `Host` header its browser sends. So, as Jupyter and
Grafana do, only names the dashboard is known by are answered: loopback names
and IP literals always (nobody can rebind those), plus `--allowed-hosts`.
Pure code; the cache keeps the check to one dict lookup on the ingest path.
"""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = frozenset(("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"))
_CACHE_LIMIT = 256  # distinct Host values remembered (a flood of made-up ones clears it, nothing more)


def host_name(value: str) -> str | None:
    """The lower-cased name of a `Host` value (`name`, `name:port`, `[v6]:port`), or None when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1:] and not (value[end + 1] == ":" and value[end + 2:].isdigit())):
            return None
        return value[1:end] or None
    name, colon, port = value.partition(":")
    if colon and not port.isdigit():
        return None
    name = name.rstrip(".")
    if not name or any(c in name for c in " \t/\\@?#%\x00"):
        return None
    return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostGate:
    """`allows(host)`: whether a request naming `host` may be answered.

    Entries of `allowed`: a name (`dash.example.com`), a dot-led suffix
    (`.example.com`: every name under it), a name followed by `.*` (that first
    label under any domain, for a Route host the router makes up), or `*` (any
    host: the check is off). A request with no `Host` at all (HTTP/1.0 tools)
    cannot come from a browser, so it is let through.
    """

    def __init__(self, allowed: tuple[str, ...] = ()) -> None:
        entries = [entry.strip().lower().rstrip(".") for entry in allowed if entry.strip()]
        self.any = "*" in entries
        self.names = {e for e in entries if not e.startswith(".") and not e.endswith(".*") and e != "*"}
        self.names |= LOOPBACK_NAMES
        self.suffixes = tuple(e for e in entries if e.startswith(".") and len(e) > 1)
        self.first_labels = tuple(e[:-1] for e in entries if e.endswith(".*") and len(e) > 2)
        self._cache: dict[str | bytes, bool] = {}

    def allows_name(self, name: str) -> bool:
        """Whether a bare host name (no port) is allowed."""
        if self.any or name in self.names or name.endswith(".localhost") or _is_ip(name):
            return True
        if self.suffixes and name.endswith(self.suffixes):
            return True
        return any(name.startswith(label) and "." in name[len(label):] for label in self.first_labels)

    def allows(self, host: str | bytes | None) -> bool:
        """Whether a request whose `Host` header is `host` (None: absent) may be answered."""
        if host is None or self.any:
            return True
        known = self._cache.get(host)
        if known is not None:
            return known
        text = host.decode("latin-1") if isinstance(host, bytes) else host
        name = host_name(text)
        verdict = name is not None and self.allows_name(name)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[host] = verdict
        return verdict

    def allows_origin(self, origin: str, host: str) -> bool:
        """A WebSocket's `Origin`: the page's own origin (same host and port as `host`) on an allowed name."""
        scheme, sep, rest = origin.strip().lower().partition("://")
        if not sep or scheme not in ("http", "https") or "/" in rest.rstrip("/") or "@" in rest:
            return False
        netloc = rest.rstrip("/")
        name = host_name(netloc)
        return name is not None and netloc == host.strip().lower() and self.allows_name(name)
