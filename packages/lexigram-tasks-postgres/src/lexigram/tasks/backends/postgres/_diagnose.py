"""One line per connection failure: what is wrong, with the masked DSN, and the fix.

`connect_error` tells a refused port, a rejected login, an unknown database, a TLS
failure, a server that does not answer within the connect timeout and a host that
cannot be reached apart; `connection_error` names an operation that failed after the
connection was made. Both return a `BackendConnectionError` (exit code 2 in the CLI).
"""

from __future__ import annotations

import errno
import socket
import ssl
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from lexigram.contracts.tasks import (
    CLIENT_CERTIFICATE_REFUSED,
    BackendConnectionError,
    error_chain,
    mask_url,
)


def _where(dsn: str | None) -> str:
    return "the libpq environment (PGHOST...)" if dsn is None else mask_url(dsn)


def one_line(text: object) -> str:
    """`text` on one line (whitespace runs collapsed)."""
    return " ".join(str(text).split())


class SchemaMissingError(BackendConnectionError):
    """The backend's schema holds none of its tables and the option ``must_exist`` is set.

    The server answered, so `Database.run` raises it at once: a retry would only get the
    same answer after the backoff (a `BackendConnectionError` is an `OSError`, which it
    otherwise retries as a lost connection).
    """


def connection_error(dsn: str | None, what: str, exc: BaseException) -> BackendConnectionError:
    """Build the `BackendConnectionError` for a failed `what` (the DSN masked)."""
    if isinstance(exc, TimeoutError):
        # asyncpg's command deadline says nothing (its message is empty).
        msg = (
            f"PostgreSQL at {_where(dsn)} could not {what}: no answer within the "
            "command_timeout option. The server is overloaded, or a statement waits for a "
            "lock another session holds (pg_stat_activity, pg_locks), or it is unreachable; "
            "raise command_timeout if statements are just slow."
        )
        return BackendConnectionError(msg)
    msg = (
        f"PostgreSQL at {_where(dsn)} could not {what}: {type(exc).__name__}: "
        f"{one_line(exc)}. Check that the server is running and reachable, and that the "
        "DSN is right."
    )
    return BackendConnectionError(msg)


def refusal_error(dsn: str | None, what: str, exc: BaseException) -> BackendConnectionError:
    """The error for a statement the server refused to this role or session.

    A role without the rights the backend needs, or a read-only session (a standby, or
    ``default_transaction_read_only``): the server answers, so retrying cannot help.
    """
    user = _dsn_part(dsn, "user")
    role = f"the role {user!r}" if user else "the DSN's role"
    if isinstance(exc, asyncpg.exceptions.ReadOnlySQLTransactionError):
        fix = (
            "The session is read-only: point the DSN at the primary server, not a standby, "
            f"and check that {role} has no default_transaction_read_only."
        )
    else:
        fix = (
            f"Grant {role} what the backend needs: CONNECT on the database, USAGE and "
            "CREATE on the schema (CREATE on the database for a schema not created yet), "
            "and the rights on its tables; or create the tables once as their owner with "
            "lexigram.tasks.backends.postgres.migrate()."
        )
    msg = (
        f"PostgreSQL at {_where(dsn)} refused to {what}: {one_line(exc)} "
        f"(SQLSTATE {getattr(exc, 'sqlstate', '?')}). {fix}"
    )
    return BackendConnectionError(msg, details={"sqlstate": getattr(exc, "sqlstate", None)})


def _requires_tls(dsn: str | None) -> bool:
    """Whether the DSN's sslmode makes TLS required (require, verify-ca, verify-full)."""
    if dsn is None or "://" not in dsn:
        return False
    modes = parse_qs(urlsplit(dsn).query).get("sslmode", [])
    return any(mode in ("require", "verify-ca", "verify-full") for mode in modes)


def _dsn_part(dsn: str | None, part: str) -> str | None:
    """The user, database, or host:port of a URL-style DSN (None if not one)."""
    if dsn is None or "://" not in dsn:
        return None
    try:
        url = urlsplit(dsn)
        if part == "user":
            return unquote(url.username) if url.username else None
        if part == "database":
            return unquote(url.path.lstrip("/")) or None
        host = url.hostname or "localhost"
        port = url.port or 5432
    except ValueError:
        return None
    return f"{host}:{port}"


def _unescaped_at(dsn: str | None) -> bool:
    """Whether a URL-style DSN's login holds an ``@`` not written as ``%40``.

    asyncpg ends the login at the first ``@`` of the authority (where other URL readers
    take the last), so the rest of the password becomes the host it looks up.
    """
    if dsn is None or "://" not in dsn:
        return False
    authority = dsn.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    return authority.count("@") > 1


# OpenSSL's verify results for a certificate that is valid but names another host.
_NAME_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def _names_tls_files(dsn: str | None) -> bool:
    return dsn is not None and any(f"{key}=" in dsn for key in ("sslrootcert", "sslcert", "sslkey"))


def _client_cert_problem(dsn: str | None, exc: BaseException, where: str) -> str | None:
    """The message for a client certificate the server wants and did not get or accept."""
    detail = one_line(exc)
    if "requires a valid client certificate" in detail:
        return (
            f"PostgreSQL at {where} requires a client certificate for this login (pg_hba.conf "
            f"method cert) and none was sent: {detail}. Add sslcert=/path/client.pem&"
            "sslkey=/path/client.key to the DSN."
        )
    if "certificate authentication failed" in detail:
        return (
            f"PostgreSQL at {where} accepted the client certificate but not for this user: "
            f"{detail}. Use the certificate's common name (CN) as the DSN's user, or map it "
            "to the user in the server's pg_ident.conf."
        )
    if dsn is None or "sslcert=" not in dsn:
        return None
    chain = error_chain(exc)
    alerted = any(getattr(e, "reason", None) in CLIENT_CERTIFICATE_REFUSED for e in chain)
    if alerted or any(isinstance(e, ConnectionResetError) for e in chain):
        return (
            f"PostgreSQL at {where} dropped the connection at the end of the TLS handshake, "
            "as a server does with a client certificate it does not accept: sslcert is not "
            "signed by a CA in the server's ssl_ca_file, or it expired or was revoked. Give "
            "a certificate that CA signed (sslcert= and sslkey= in the DSN), or see the "
            "server's log."
        )
    if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
        return (
            f"PostgreSQL at {where}: the DSN's sslkey is not the private key of its sslcert "
            f"({detail}). Give the key that belongs to the certificate."
        )
    return None


def _tls_fix(exc: ssl.SSLError, dsn: str | None) -> str:
    """Which part of the DSN fixes a failed TLS handshake."""
    if getattr(exc, "verify_code", None) in _NAME_MISMATCH:
        host = _dsn_part(dsn, "address")
        named = f" ({host.rsplit(':', 1)[0]!r})" if host else ""
        return (
            f"The server's certificate does not name the host of the DSN{named}: connect "
            "with a host name the certificate lists (sslmode=verify-full checks it)."
        )
    return (
        "Check sslrootcert (the CA that signed the server's certificate: "
        "sslrootcert=/path/to/ca.pem), the host name the certificate names, and sslmode "
        "in the DSN."
    )


def connect_error(  # noqa: C901, PLR0912 - one flat table of causes reads best
    dsn: str | None, exc: BaseException, *, timeout: float
) -> BackendConnectionError:
    """Say in one line why the first connection to `dsn` failed, and what to do.

    Each cause gets its own message: refused, login rejected, unknown database, TLS,
    no answer within `timeout`, host not found; anything else is named with its error.
    """
    where = _where(dsn)
    address = _dsn_part(dsn, "address") or "the server's host and port"
    detail = one_line(exc)
    client_cert = _client_cert_problem(dsn, exc, where)
    if _unescaped_at(dsn):
        msg = (
            f"PostgreSQL at {where}: the DSN's password holds an '@' that is not written as "
            "%40, so what follows its first '@' was taken as the host. Write each '@' of "
            "the user or password as %40."
        )
    elif client_cert is not None:
        msg = client_cert
    elif isinstance(exc, TimeoutError):
        msg = (
            f"PostgreSQL at {where} did not answer within {timeout:g} s (connect_timeout). "
            f"Check that {address} is a PostgreSQL server and that no firewall drops the "
            "traffic, or raise the connect_timeout option."
        )
    elif isinstance(exc, asyncpg.exceptions.InvalidPasswordError):
        user = _dsn_part(dsn, "user")
        who = f" of user {user!r}" if user else ""
        msg = (
            f"PostgreSQL at {where} rejected the login{who} (wrong password): {detail}. "
            "Fix the user name or password in the DSN."
        )
    elif isinstance(exc, asyncpg.exceptions.InvalidAuthorizationSpecificationError) and (
        "no encryption" in detail
    ):
        msg = (
            f"PostgreSQL at {where} accepts this login only over TLS (its pg_hba.conf has "
            f"hostssl, not host, for it): {detail}. Set sslmode=verify-full and "
            "sslrootcert=/path/to/ca.pem in the DSN."
        )
    elif isinstance(exc, asyncpg.exceptions.InvalidAuthorizationSpecificationError):
        msg = (
            f"PostgreSQL at {where} refused the login: {detail}. Fix the user name in the "
            "DSN, create that role on the server, or allow it in the server's pg_hba.conf."
        )
    elif isinstance(exc, asyncpg.exceptions.InvalidCatalogNameError):
        database = _dsn_part(dsn, "database")
        create = f"Create it (createdb {database})" if database else "Create it"
        msg = (
            f"PostgreSQL at {where} has no such database: {detail}. {create}, or fix the "
            "database name in the DSN."
        )
    elif "rejected SSL upgrade" in detail and _requires_tls(dsn):
        msg = (
            f"PostgreSQL at {where} does not offer TLS but the DSN requires it (sslmode): "
            f"{detail}. Enable ssl on the server, or use sslmode=prefer or disable."
        )
    elif "rejected SSL upgrade" in detail:
        # Without sslmode=require the client only asked whether TLS is offered: a server
        # that answers neither yes nor no is not PostgreSQL.
        msg = (
            f"The server at {where} did not answer as PostgreSQL does ({detail}): it is "
            "probably another service. Check the DSN's host and port (PostgreSQL listens "
            "on 5432 by default)."
        )
    elif isinstance(exc, ssl.SSLError):
        msg = f"PostgreSQL at {where} failed the TLS handshake: {detail}. {_tls_fix(exc, dsn)}"
    elif isinstance(exc, asyncpg.exceptions.ClientConfigurationError) and (
        "root certificate" in detail
    ):
        msg = (
            f"PostgreSQL at {where}: sslmode=verify-ca and verify-full need the CA that "
            f"signed the server's certificate, and none was found ({detail}). Add "
            "sslrootcert=/path/to/ca.pem to the DSN."
        )
    elif (
        isinstance(exc, asyncpg.exceptions.ClientConfigurationError)
        and dsn is not None
        and "=" in dsn
        and "://" not in dsn
    ):
        # libpq's key/value form ("host=db dbname=app"), which asyncpg does not read.
        msg = (
            f"PostgreSQL at {where}: the DSN is in libpq's key=value form, which asyncpg "
            "does not read. Write it as a URL: postgresql://user@host:5432/dbname, with "
            "the password as user:password@ and other settings as ?key=value."
        )
    elif isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        msg = f"PostgreSQL at {where}: the DSN's settings are not usable: {detail}. Fix the DSN."
    elif isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError) and (
        _names_tls_files(dsn)
    ):
        # The ssl module names no file when it cannot load one; with TLS files in the DSN
        # they are the likely culprit (a missing socket directory is the other cause).
        msg = (
            f"PostgreSQL at {where}: a file the DSN names cannot be read: {detail}. Fix "
            "sslrootcert, sslcert or sslkey in the DSN."
        )
    elif isinstance(exc, ConnectionRefusedError) or f"[Errno {errno.ECONNREFUSED}]" in detail:
        msg = (
            f"PostgreSQL at {where} refused the connection: nothing accepts connections at "
            f"{address}. Start the server, or fix the host and port in the DSN."
        )
    elif isinstance(exc, socket.gaierror):
        msg = (
            f"PostgreSQL at {where}: the host name of {address} does not resolve ({detail}). "
            "Fix the host in the DSN."
        )
    elif isinstance(exc, OSError):
        msg = (
            f"PostgreSQL at {where} could not be reached: {type(exc).__name__}: {detail}. "
            "Check the host name and port in the DSN and the network."
        )
    elif isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or "?"
        msg = (
            f"PostgreSQL at {where} refused the connection (SQLSTATE {state}): {detail}. "
            "Check the DSN and the server's log."
        )
    else:
        msg = (
            f"PostgreSQL at {where} could not be connected to: {type(exc).__name__}: "
            f"{detail}. Check the DSN and that the server is a PostgreSQL server."
        )
    return BackendConnectionError(msg)
