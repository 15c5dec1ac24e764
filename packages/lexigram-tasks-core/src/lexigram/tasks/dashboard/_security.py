"""Who may see the dashboard, and which requests may change anything.

Authentication is a shared token (``Authorization: Bearer``, or a cookie set by the
login form) or HTTP basic credentials; with neither configured every request is let
in, which ``lexigram-tasks dashboard`` allows only on a loopback address.

Every POST must carry the per-browser CSRF token: a random value kept in an HttpOnly,
SameSite=Strict cookie and repeated in the form (``csrf_token``) or the
``X-CSRF-Token`` header; a request whose ``Origin`` or ``Sec-Fetch-Site`` says it
comes from another site is refused before that.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

CSRF_COOKIE = "lexigram_dashboard_csrf"
"""Cookie holding the browser's CSRF token."""

AUTH_COOKIE = "lexigram_dashboard_auth"
"""Cookie the token login form sets (a digest of the token, never the token)."""

CSRF_FIELD = "csrf_token"
"""Form field that repeats the CSRF token."""

CSRF_HEADER = "x-csrf-token"
"""Header that repeats the CSRF token (for requests sent by script)."""

_COOKIE_PURPOSE = b"lexigram-tasks dashboard login"


@dataclass(frozen=True, slots=True)
class DashboardAuth:
    """How the dashboard checks who is asking.

    Attributes:
        token: A shared secret: sent as ``Authorization: Bearer TOKEN``, or typed once
            into the login page (which then sets a cookie).
        username: With `password`, HTTP basic credentials the browser asks for.
        password: See `username`.
    """

    token: str | None = None
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            msg = "Dashboard basic auth needs both a username and a password."
            raise ValueError(msg)
        if self.token is not None and not self.token.strip():
            msg = "The dashboard token is empty; give a non-empty secret."
            raise ValueError(msg)

    def __repr__(self) -> str:  # never shows a secret
        kinds = [k for k, v in (("token", self.token), ("basic", self.username)) if v]
        return f"DashboardAuth({', '.join(kinds) or 'none'})"

    @property
    def enabled(self) -> bool:
        """Whether any credential is configured."""
        return self.token is not None or self.username is not None

    @property
    def uses_basic(self) -> bool:
        """Whether HTTP basic credentials are configured."""
        return self.username is not None

    def cookie_value(self) -> str:
        """What the login cookie holds: a keyed digest of the token, not the token."""
        assert self.token is not None  # noqa: S101 - only called with a token
        return hmac.new(self.token.encode(), _COOKIE_PURPOSE, hashlib.sha256).hexdigest()

    def token_matches(self, offered: str) -> bool:
        """Whether `offered` is the token (constant-time)."""
        return self.token is not None and hmac.compare_digest(offered.encode(), self.token.encode())

    def allows(self, conn: HTTPConnection) -> bool:
        """Whether the request carries a valid credential (always, when none is set)."""
        if not self.enabled:
            return True
        header = conn.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if self.token is not None:
            if scheme == "bearer" and self.token_matches(value.strip()):
                return True
            cookie = conn.cookies.get(AUTH_COOKIE, "")
            if cookie and hmac.compare_digest(cookie.encode(), self.cookie_value().encode()):
                return True
        if self.username is not None and scheme == "basic":
            return self._basic_matches(value.strip())
        return False

    def _basic_matches(self, encoded: str) -> bool:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep or self.username is None or self.password is None:
            return False
        user_ok = hmac.compare_digest(user.encode(), self.username.encode())
        password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        return user_ok and password_ok


def is_loopback(host: str) -> bool:
    """Whether binding to `host` serves this machine only (``localhost``, 127.x, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def new_csrf_token() -> str:
    """A fresh random CSRF token."""
    return secrets.token_urlsafe(32)


def cross_site_reason(conn: HTTPConnection) -> str | None:
    """Why a state-changing request looks cross-site, or None when it does not.

    Browsers send ``Sec-Fetch-Site`` and (on POST) ``Origin``; a request from another
    site names it there. A client that sends neither (curl) is judged by its CSRF token
    alone.
    """
    site = conn.headers.get("sec-fetch-site")
    if site is not None and site not in {"same-origin", "none"}:
        return f"the browser says it comes from a {site} page"
    origin = conn.headers.get("origin")
    if origin is not None:
        host = conn.headers.get("host", "")
        if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
            return f"its Origin {origin!r} is not this dashboard's ({host!r})"
    return None


def csrf_matches(cookie: str | None, offered: str | None) -> bool:
    """Whether the token the request repeats is the one its cookie holds (constant-time)."""
    if not cookie or not offered:
        return False
    return hmac.compare_digest(cookie.encode(), offered.encode())
