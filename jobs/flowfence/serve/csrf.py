"""Protection of `flowfence serve` against requests other sites make a browser send.

- Every request must name this server in `Host` (one of the names it listens as): a page of
  another site that a DNS name rebinds to 127.0.0.1 is refused, so it can neither read pages
  nor post.
- A write (POST) must come from a page of this server: its `Origin` (or, without one, its
  `Referer`) is this server's origin, and it carries the per-process secret token twice, in a
  hidden form field and in a `SameSite=Strict`, `HttpOnly` cookie set with the page. Another
  site can read neither, and the cookie is not sent with a request another site starts.

Anything else is refused with 403 before the request reaches a handler.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

COOKIE = "flowfence_csrf"
FIELD = "csrf_token"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_names(host: str, port: int) -> frozenset[str]:
    """The `Host` values a browser sends to this server; empty: any IP address (a wildcard
    listen, where the server cannot know its names)."""
    bare = host.strip("[]")
    if bare in ("0.0.0.0", "::"):
        return frozenset()
    names: Iterable[str] = _LOOPBACK_NAMES if is_loopback(host) else (host,)
    out = set()
    for name in names:
        shown = f"[{name}]" if ":" in name and not name.startswith("[") else name
        out.add(f"{shown}:{port}")
        if port == 80:
            out.add(shown)
    return frozenset(out)


@dataclass(frozen=True)
class Guard:
    hosts: frozenset[str]
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    def host_ok(self, host: str | None) -> bool:
        if host is None:
            return False
        if not self.hosts:
            # A wildcard listen cannot know its names, so it takes addresses only: a DNS name
            # an attacker controls could be rebound to this machine, an IP address cannot.
            return _ip_host(host)
        return host.lower() in self.hosts

    def refusal(
        self,
        *,
        host: str | None,
        origin: str | None,
        referer: str | None,
        cookie: str | None,
        form_token: str | None,
    ) -> str | None:
        """Why a POST is refused, or None to let it through."""
        if not self.host_ok(host):
            return "unknown Host"
        source = origin if origin is not None else referer
        if source is None:
            return "no Origin or Referer: the request does not come from this server's page"
        parts = urlsplit(source)
        if parts.scheme != "http" or parts.netloc.lower() != (host or "").lower():
            return "cross-site request: its Origin is not this server"
        if not cookie or not form_token:
            return "missing form token: reload the page and try again"
        if not (_same(cookie, self.token) and _same(form_token, cookie)):
            return "stale form token: reload the page and try again"
        return None


def _ip_host(host: str) -> bool:
    """Whether `host` (a Host header) is an IP address with an optional port."""
    if host.startswith("["):  # IPv6, as browsers send it: [addr] or [addr]:port
        end = host.find("]")
        bare = host[1:end] if end > 0 else ""
    else:
        bare = host.rsplit(":", 1)[0] if ":" in host else host
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        return False
    return True


def _same(a: str, b: str) -> bool:
    # As bytes: compare_digest refuses a str with characters beyond ASCII, which a forged
    # cookie or form field may hold (a 500 instead of a 403).
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))
