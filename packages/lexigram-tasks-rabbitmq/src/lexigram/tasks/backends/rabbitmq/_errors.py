"""What went wrong when connecting to RabbitMQ, said in one line with its fix.

A failed connect is turned into one `BackendConnectionError` per cause: a refused
login, a virtual host the user may not open, nothing listening on the port, a host
name that does not resolve, a TLS failure, no TCP connection in time, and a server
that accepts TCP but never speaks AMQP. Each message names the masked URL and what
to do. Only `TCPProbe` touches the network (to tell a silent server from an unreachable
one after a timeout); the messages are unit-tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import time
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import aiormq

from lexigram.contracts.tasks import (
    CLIENT_CERTIFICATE_REFUSED,
    BackendConnectionError,
    error_chain,
    mask_url,
)


class ConnectAttempt(NamedTuple):
    """What a connect tried, for the message (never holds the password).

    Attributes:
        masked_url: The URL with its password masked.
        host: Broker host.
        port: Broker port.
        vhost: Virtual host.
        user: User name of the URL (``guest`` when it has none).
        tls: True for ``amqps://``.
        timeout: The connect timeout, in seconds.
        client_cert: True when the URL gives a client certificate (``certfile=``).
    """

    masked_url: str
    host: str
    port: int
    vhost: str
    user: str
    tls: bool
    timeout: float
    client_cert: bool = False

    @classmethod
    def of(cls, url: str, host: str, port: int, vhost: str, timeout: float) -> ConnectAttempt:
        """Describe a connect to `url` (already parsed into host, port and vhost)."""
        parts = urlsplit(url)
        user = unquote(parts.username) if parts.username else "guest"
        return cls(
            masked_url=mask_url(url),
            host=host,
            port=port,
            vhost=vhost,
            user=user,
            tls=parts.scheme.lower() == "amqps",
            timeout=timeout,
            client_cert=bool(parse_qs(parts.query).get("certfile")),
        )


class TCPProbe:
    """Tells, after a connect timed out, whether the TCP connection itself would open.

    Started only when the connect is slow (a healthy broker answers in milliseconds,
    so it never runs then): one plain TCP connect to the same port, closed at once.
    """

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self._host = host
        self._port = port
        self._deadline = time.monotonic() + timeout
        self._task: asyncio.Task[bool] | None = None
        self._timer = asyncio.get_running_loop().call_later(min(0.5, timeout / 4), self._start)

    def _start(self) -> None:
        self._task = asyncio.ensure_future(self._try())

    async def _try(self) -> bool:
        try:
            async with asyncio.timeout(max(self._deadline - time.monotonic(), 0.05)):
                _, writer = await asyncio.open_connection(self._host, self._port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def result(self) -> bool | None:
        """True if TCP opened, False if not, None if the probe never started."""
        self._timer.cancel()
        if self._task is None:
            return None
        try:
            async with asyncio.timeout(0.5):
                return await asyncio.shield(self._task)
        except TimeoutError:
            return False

    def cancel(self) -> None:
        """Stop the probe (the connect succeeded or its outcome is known)."""
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()


# OpenSSL's verify results for a certificate that is valid but names another host.
_NAME_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def _in_chain(
    exc: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]
) -> BaseException | None:
    """The first of `exc` and the errors it wraps (cause, else context) that is a `kinds`."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kinds):
            return current
        current = current.__cause__ or current.__context__
    return None


def _root(exc: BaseException) -> BaseException:
    """The OS-level error aiormq wrapped (its transport errors carry it as the cause)."""
    return _in_chain(exc, (ssl.SSLError, socket.gaierror, ConnectionRefusedError)) or exc


def _closed_early(exc: BaseException) -> bool:
    """The peer hung up before answering the AMQP header, or answered another protocol.

    Another service on the port (PostgreSQL, an HTTP server) reads the header, finds it
    foreign and closes; aiormq raises that as an incompatible protocol, or wraps the end
    of the stream it met ("connection unexpectedly closed").
    """
    return _in_chain(exc, (aiormq.exceptions.IncompatibleProtocolError, EOFError)) is not None


def _refused(exc: BaseException) -> bool:
    root = _root(exc)
    if isinstance(root, ConnectionRefusedError):
        return True
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    return len(args) > 0 and args[0] == errno.ECONNREFUSED


# What a broker sends back when the client gave no certificate. Under TLS 1.3 it comes after
# the client has finished its side of the handshake, so the client sees either the alert or
# only the connection reset that follows it; both are read as the same answer (and the same
# for a refused certificate: `CLIENT_CERTIFICATE_REFUSED`).
_NO_CLIENT_CERT = frozenset({"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_HANDSHAKE_FAILURE"})


def _tls_client_failure(exc: BaseException, attempt: ConnectAttempt) -> tuple[str, str] | None:
    """The message and reason of a TLS failure on the client's side, else None.

    That is a file the URL names that cannot be read, a key that is not the certificate's,
    or a client certificate the broker wanted and did not get or did not accept.
    """
    if not attempt.tls:
        return None
    where, url = f"{attempt.host}:{attempt.port}", attempt.masked_url
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        # The ssl module names no file when it cannot load one.
        return (
            f"TLS with {where} failed ({url}): a file the URL names cannot be read ({exc}). "
            "Fix cafile, certfile or keyfile in the URL."
        ), "tls_file_unreadable"
    chain = error_chain(exc)
    reasons = {getattr(error, "reason", None) for error in chain}
    if "KEY_VALUES_MISMATCH" in reasons:
        return (
            f"TLS with {where} failed ({url}): the URL's keyfile is not the private key of "
            "its certfile. Give the key that belongs to the certificate."
        ), "tls_client_key_mismatch"
    reset = any(isinstance(error, ConnectionResetError) for error in chain)
    if reasons & _NO_CLIENT_CERT or (reset and not attempt.client_cert):
        return (
            f"TLS with {where} failed ({url}): the broker closed the connection at the end "
            "of the TLS handshake, as one that requires a client certificate does when it "
            "gets none (ssl_options.fail_if_no_peer_cert = true). Give one with "
            "?certfile=/path/client.pem&keyfile=/path/client.key in the URL."
        ), "tls_client_cert_required"
    if reasons & CLIENT_CERTIFICATE_REFUSED or reset:
        return (
            f"TLS with {where} failed ({url}): the broker closed the connection at the end "
            "of the TLS handshake, as it does with a client certificate it does not accept: "
            "certfile is not signed by a CA in the broker's ssl_options.cacertfile, or it "
            "expired or was revoked. Give a certificate that CA signed (?certfile=&keyfile= "
            "in the URL), or see the broker's log."
        ), "tls_client_cert_refused"
    return None


def _tls_failure(root: ssl.SSLError, attempt: ConnectAttempt) -> tuple[str, str]:
    """The message and reason of a failed TLS handshake: what to change in the URL."""
    where, url = f"{attempt.host}:{attempt.port}", attempt.masked_url
    if isinstance(root, ssl.SSLCertVerificationError):
        why = getattr(root, "verify_message", None) or root
        if getattr(root, "verify_code", None) in _NAME_MISMATCH:
            return (
                f"TLS with {where} failed ({url}): the broker's certificate does not name the "
                f"host {attempt.host!r} ({why}). Connect with a host name the certificate "
                "lists."
            ), "tls_wrong_host"
        return (
            f"TLS with {where} failed ({url}): the broker's certificate is not trusted "
            f"({why}). Give the CA that signed it with ?cafile=/path/ca.pem in the URL."
        ), "tls_untrusted"
    why = getattr(root, "reason", None) or root
    return (
        f"TLS with {where} failed ({url}: {why}). If the port serves plain AMQP use "
        "amqp:// (5672); otherwise check the broker's TLS listener and the client "
        "certificate options in the URL."
    ), "tls_failed"


def connect_failure(
    exc: BaseException, attempt: ConnectAttempt, *, tcp_open: bool | None
) -> BackendConnectionError:
    """The error to raise for a connect to `attempt` that failed with `exc`.

    Args:
        exc: What the client library raised (a timeout included).
        attempt: What was tried.
        tcp_open: For a timeout: True if a TCP connection to the port did open (so
            the server accepted it and then said nothing), False if it did not, None
            when unknown.

    Returns:
        A `BackendConnectionError` whose message names the cause, the URL and the fix.
    """
    where = f"{attempt.host}:{attempt.port}"
    url = attempt.masked_url
    root = _root(exc)
    text = str(exc)
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError) or "ACCESS_REFUSED" in text:
        msg = (
            f"RabbitMQ at {url} refused the login of user {attempt.user!r} (ACCESS_REFUSED): "
            "fix the user name or password in the URL (the part before the @)."
        )
        reason = "access_refused"
    elif "Connection.OpenOk" in text or isinstance(exc, aiormq.exceptions.ConnectionNotAllowed):
        vhost = attempt.vhost
        msg = (
            f"RabbitMQ at {url} refused virtual host {vhost!r} to user {attempt.user!r} "
            "(NOT_ALLOWED: it does not exist or the user has no permission on it): fix the "
            f"URL's path, or create it and grant access (rabbitmqctl add_vhost {vhost}; "
            f"rabbitmqctl set_permissions -p {vhost} {attempt.user} '.*' '.*' '.*')."
        )
        reason = "vhost_refused"
    elif _refused(exc):
        msg = (
            f"Nothing accepts connections at {where} ({url}: connection refused): start "
            "RabbitMQ there, or fix the host and port in the URL (5672 for amqp://, 5671 "
            "for amqps://)."
        )
        reason = "connection_refused"
    elif isinstance(root, socket.gaierror):
        msg = (
            f"The host name {attempt.host!r} of {url} does not resolve ({root.strerror}): "
            "fix the host in the URL."
        )
        reason = "unknown_host"
    elif (client_side := _tls_client_failure(exc, attempt)) is not None:
        msg, reason = client_side
    elif isinstance(root, ssl.SSLError):
        msg, reason = _tls_failure(root, attempt)
    elif isinstance(exc, TimeoutError) and tcp_open:
        msg = (
            f"{where} accepted the TCP connection but did not complete the AMQP handshake "
            f"within {attempt.timeout:g} s ({url}): check that it is RabbitMQ's AMQP port "
            "(5672, or 5671 for amqps://) and that the broker is not paused or overloaded."
        )
        reason = "no_amqp_answer"
    elif isinstance(exc, TimeoutError):
        msg = (
            f"No TCP connection to {where} within {attempt.timeout:g} s ({url}): the host "
            "is unreachable or a firewall drops the packets. Check the host, port and "
            "network, or raise connect_timeout."
        )
        reason = "connect_timeout"
    elif _closed_early(exc):
        msg = (
            f"{where} closed the connection during the AMQP handshake ({url}): it is not "
            "an AMQP 0-9-1 server (check the port: 5672 for amqp://, 5671 for amqps://), "
            "or it expects TLS (use amqps://)."
        )
        reason = "not_amqp"
    else:
        detail = mask_url(f"{type(exc).__name__}: {exc}")
        msg = (
            f"Could not connect to RabbitMQ at {url} ({detail}): check that the broker is "
            "running and the URL, credentials and virtual host are right."
        )
        reason = "connect_failed"
    return BackendConnectionError(msg, details={"backend": "rabbitmq", "reason": reason})


# The causes a retry cannot fix: the broker answers, and turns the URL's login or virtual
# host away. Said as `connect_failure` says them, never as "unreachable".
_REFUSALS = frozenset({"access_refused", "vhost_refused"})


def broker_refusal(exc: BaseException, attempt: ConnectAttempt) -> str | None:
    """`connect_failure`'s message when `exc` is the broker refusing the login or virtual host.

    A robust connection that keeps failing that way reports it in these words (what to fix
    in the URL) instead of calling the broker unreachable.

    Returns:
        The message, or None for any other failure (a lost or refused TCP connection, a
        timeout, TLS): an outage, worth waiting out.
    """
    error = connect_failure(exc, attempt, tcp_open=None)
    return str(error) if error.details.get("reason") in _REFUSALS else None
