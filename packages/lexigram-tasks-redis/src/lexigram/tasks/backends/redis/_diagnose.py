"""What went wrong with a Redis connection, in one line that names the fix.

`RedisConnector.call` hands every failure it gives up on to `diagnose`, which looks
through the exception chain (redis-py and the multiplexed client wrap the socket
error) and returns a `Diagnosis`: a short kind, whether waiting could heal it, and the
message. Every message names the masked URL, what failed and what to change.
"""

from __future__ import annotations

import socket
import ssl
from typing import NamedTuple
from urllib.parse import urlsplit

from redis import exceptions as rexc
from redis.asyncio.sentinel import MasterNotFoundError

_MAX_DETAIL = 160


class Diagnosis(NamedTuple):
    """One classified connection failure.

    Attributes:
        kind: ``refused``, ``dns``, ``tls``, ``connect_timeout``, ``silent``,
            ``auth``, ``noauth``, ``noperm``, ``db``, ``not_redis``, ``closed``,
            ``no_primary`` (Sentinel) or ``other``.
        transient: True when waiting (a restart, a failover) may heal it.
        message: The one-line message for `BackendConnectionError`.
    """

    kind: str
    transient: bool
    message: str


def _fatal(kind: str, message: str) -> Diagnosis:
    return Diagnosis(kind, transient=False, message=message)


def _healable(kind: str, message: str) -> Diagnosis:
    return Diagnosis(kind, transient=True, message=message)


class ConnectFailed(rexc.ConnectionError):
    """Opening a connection failed (TCP, TLS or the handshake): the cause is chained."""


class CommandDeadline(rexc.TimeoutError):
    """A command got no reply within the connector's `command_timeout`."""


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _detail(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


# OpenSSL's verify results for a certificate that is valid but names another host.
_NAME_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def _tls_problem(exc: ssl.SSLError, url: str) -> str:
    """What went wrong in the TLS handshake, and which part of the URL fixes it."""
    detail = _detail(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        if getattr(exc, "verify_code", None) in _NAME_MISMATCH:
            host = urlsplit(url).hostname
            return (
                f"the server's certificate does not name the host {host!r} ({detail}). "
                "Connect with a host name the certificate lists."
            )
        return (
            f"the server's certificate is not trusted ({detail}). Give the CA that signed "
            "it in the URL: rediss://host:port/0?ssl_ca_certs=/path/to/ca.pem."
        )
    return (
        f"the TLS handshake failed ({detail}). Check that the server speaks TLS on that "
        "port and that its certificate is trusted (?ssl_ca_certs=/path/to/ca.pem in the "
        "URL), or use redis:// for a plain-text port."
    )


def _where(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"socket {parts.path}"
    if parts.scheme == "redis+sentinel":
        return "the primary the sentinels named"
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    return f"{parts.hostname or 'localhost'}:{port}"


def _db(url: str) -> str:
    path = urlsplit(url).path.strip("/")
    return path or "0"


def diagnose(  # noqa: C901, PLR0911, PLR0912 - one flat table of cases reads best
    exc: BaseException,
    *,
    url: str,
    masked: str,
    what: str,
    connect_timeout: float | None,
    command_timeout: float | None,
) -> Diagnosis:
    """Classify `exc` (raised while running `what` against `url`).

    Args:
        exc: The exception the last attempt raised.
        url: The real URL (for host, port and database; never printed).
        masked: The URL with its password masked (printed).
        what: The operation, e.g. ``"enqueue"``.
        connect_timeout: The connector's `socket_connect_timeout`, for the message.
        command_timeout: The connector's `command_timeout`, for the message.
    """
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain)
    tls = urlsplit(url).scheme == "rediss"
    for item in chain:
        if isinstance(item, MasterNotFoundError):
            # Its text holds redis-py's reprs of every sentinel connection: not shown.
            return _healable(
                "no_primary",
                f"Redis Sentinel at {masked}: no sentinel named a primary it considers up "
                "(none answered, or none monitors the service in the URL). Check the "
                "sentinel addresses (port 26379 by default) and the service name in the "
                "URL; during a failover this lasts until a replica is promoted.",
            )
        if isinstance(item, ssl.SSLError):
            return _fatal("tls", f"Redis at {masked}: {_tls_problem(item, url)}")
        if isinstance(item, socket.gaierror):
            return _healable(
                "dns",
                f"Redis at {masked}: the host name does not resolve ({_detail(item)}). "
                "Fix the host in the URL.",
            )
        if isinstance(item, ConnectionRefusedError):
            return _healable(
                "refused",
                f"Redis at {masked} refused the connection: nothing listens on "
                f"{_where(url)}. Start Redis there, or fix the host and port in the URL.",
            )
        if isinstance(item, FileNotFoundError):
            return _healable(
                "refused",
                f"Redis at {masked}: {_where(url)} does not exist. Start Redis with that "
                "unixsocket, or fix the path in the URL.",
            )
    if isinstance(exc, CommandDeadline):
        # A TLS client on a plain-text port waits for a handshake reply that never comes.
        plain_port = (
            " With rediss://, a port that speaks plain Redis (no TLS) also looks like this: "
            "use redis:// for it."
            if tls
            else ""
        )
        return _healable(
            "silent",
            f"Redis at {masked} did not answer {what} within {command_timeout:g} s "
            "(command_timeout): the connection is open but nothing comes back. Check that "
            "the URL points at a Redis server that is not paused or overloaded, or raise "
            f"command_timeout.{plain_port}",
        )
    if "unknown command" in text.lower() and "sentinel" in text.lower():
        return _fatal(
            "not_sentinel",
            f"The server at {masked} is not a Redis Sentinel (it does not know the SENTINEL "
            "command): a redis+sentinel:// URL names the sentinels (port 26379 by "
            "default), not the Redis server; use redis:// to connect to this one directly.",
        )
    if "DB index is out of range" in text or "invalid db index" in text.lower():
        return _fatal(
            "db",
            f"Redis at {masked} has no database {_db(url)} (DB index is out of range). "
            "Use a database number below the server's 'databases' setting (16 by "
            "default) in the URL path, e.g. redis://host:6379/0.",
        )
    if isinstance(exc, rexc.NoPermissionError) or "NOPERM" in text:
        return _fatal(
            "noperm",
            f"Redis at {masked} refused {what}: the ACL user lacks a permission "
            f"({_detail(exc)}). Grant that user the commands and keys it needs "
            "(ACL SETUSER), or use another user in the URL.",
        )
    lowered = text.lower()
    # "unauthenticated": Redis refuses a long command from a client that has not
    # authenticated yet, before it would answer NOAUTH.
    if "unauthenticated" in lowered or (
        isinstance(exc, rexc.AuthenticationError)
        and ("noauth" in lowered or "authentication required" in lowered)
    ):
        return _fatal(
            "noauth",
            f"Redis at {masked} requires a password (NOAUTH). Add it to the URL as "
            "':password@' after the scheme, or 'user:password@' for an ACL user.",
        )
    if isinstance(exc, rexc.AuthenticationError):
        return _fatal(
            "auth",
            f"Redis at {masked} rejected the credentials ({_detail(exc)}). Fix the user "
            "and password in the URL (its 'user:password@' part), or enable that ACL "
            "user.",
        )
    if isinstance(exc, rexc.InvalidResponse) or "Unreadable reply" in text:
        return _fatal(
            "not_redis",
            f"The server at {masked} does not speak the Redis protocol ({_detail(exc)}). "
            "Check the port in the URL"
            + (", and use rediss:// only for a TLS port." if tls else "."),
        )
    connecting = any(isinstance(item, ConnectFailed) for item in chain) or (
        "Timeout connecting" in text
    )
    if connecting and any(isinstance(item, TimeoutError | rexc.TimeoutError) for item in chain):
        hint = (
            " With rediss://, a server that does not speak TLS on that port also looks like this."
            if tls
            else ""
        )
        return _healable(
            "connect_timeout",
            f"Redis at {masked} did not accept a connection within {connect_timeout:g} s "
            "(socket_connect_timeout). Check the host, port and firewall, or raise "
            f"socket_connect_timeout.{hint}",
        )
    if isinstance(exc, rexc.TimeoutError | TimeoutError):
        return _healable(
            "silent",
            f"Redis at {masked} did not answer {what} in time ({_detail(exc)}). Check that "
            "the server is not paused or overloaded, or raise socket_timeout.",
        )
    if isinstance(exc, rexc.ConnectionError | ConnectionError | OSError):
        hint = " If the server requires TLS, use rediss://."
        if tls:
            # Under TLS 1.3 a server that wants a client certificate checks it after the
            # handshake and just closes the connection: this is all the client sees.
            hint = (
                ""
                if "ssl_certfile=" in url
                else " If the server requires a client certificate (tls-auth-clients yes), "
                "give it in the URL: ?ssl_certfile=/path/client.pem&ssl_keyfile=/path/client.key."
            )
        return _healable(
            "closed",
            f"Redis at {masked} dropped the connection during {what} ({_detail(exc)}). "
            f"Check that the server is running and reachable.{hint}",
        )
    return _healable(
        "other",
        f"Redis at {masked} failed {what} ({type(exc).__name__}: {_detail(exc)}).",
    )
