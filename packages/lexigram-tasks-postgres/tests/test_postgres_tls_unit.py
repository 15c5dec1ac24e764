"""The one-line messages of TLS problems name the DSN setting that fixes them."""

from __future__ import annotations

import ssl

import asyncpg
import pytest

from lexigram.tasks.backends.postgres._diagnose import connect_error

DSN = "postgresql://app:hunter2@db.example:5433/shop?sslmode=verify-full"


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    error.verify_code = code  # set by the ssl module on a real handshake failure
    error.verify_message = message
    return error


CLIENT_CERT = "&sslcert=/etc/ssl/client.pem&sslkey=/etc/ssl/client.key"


def _alert(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] alert")
    error.reason = reason  # set by the ssl module from what the peer sent
    return error


def _closed_after(cause: BaseException) -> BaseException:
    """What asyncpg raises when the server drops the connection during the login."""
    error = asyncpg.exceptions.ConnectionDoesNotExistError(
        "connection was closed in the middle of operation"
    )
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("dsn", "exc", "expected"),
    [
        (
            DSN,
            _verify_error(19, "self-signed certificate in certificate chain"),
            (
                "Check sslrootcert (the CA that signed the server's certificate: "
                "sslrootcert=/path/to/ca.pem)"
            ),
        ),
        (
            DSN,
            _verify_error(62, "Hostname mismatch, certificate is not valid for 'db.example'"),
            "does not name the host of the DSN ('db.example'): connect with a host name",
        ),
        (
            DSN,
            asyncpg.exceptions.ClientConfigurationError(
                'root certificate file "/home/app/.postgresql/root.crt" does not exist'
            ),
            "need the CA that signed the server's certificate, and none was found",
        ),
        (
            DSN + "&sslrootcert=/etc/missing/ca.pem",
            FileNotFoundError(2, "No such file or directory"),
            (
                "a file the DSN names cannot be read: [Errno 2] No such file or directory. "
                "Fix sslrootcert, sslcert or sslkey"
            ),
        ),
        (
            DSN.replace("verify-full", "disable"),
            asyncpg.exceptions.InvalidAuthorizationSpecificationError(
                'no pg_hba.conf entry for host "10.0.0.5", user "app", database "shop", '
                "no encryption"
            ),
            "accepts this login only over TLS",
        ),
        (
            DSN,
            asyncpg.exceptions.InvalidAuthorizationSpecificationError(
                "connection requires a valid client certificate"
            ),
            "and none was sent: connection requires a valid client certificate. Add sslcert=",
        ),
        (
            DSN + CLIENT_CERT,
            _closed_after(_alert("TLSV1_ALERT_UNKNOWN_CA")),
            "as a server does with a client certificate it does not accept: sslcert is not",
        ),
        (
            DSN + CLIENT_CERT,
            _closed_after(ConnectionResetError(104, "Connection reset by peer")),
            "as a server does with a client certificate it does not accept: sslcert is not",
        ),
        (
            DSN + CLIENT_CERT,
            _alert("KEY_VALUES_MISMATCH"),
            "the DSN's sslkey is not the private key of its sslcert",
        ),
        (
            DSN + CLIENT_CERT,
            asyncpg.exceptions.InvalidAuthorizationSpecificationError(
                'certificate authentication failed for user "app"'
            ),
            "Use the certificate's common name (CN) as the DSN's user",
        ),
    ],
    ids=[
        "untrusted",
        "wrong-host",
        "no-root-cert",
        "missing-ca-file",
        "hostssl-only",
        "no-client-cert",
        "unknown-ca-alert",
        "unknown-ca-reset",
        "key-mismatch",
        "cert-for-another-user",
    ],
)
def test_tls_problems_name_the_dsn_setting(dsn: str, exc: BaseException, expected: str) -> None:
    message = str(connect_error(dsn, exc, timeout=5.0))
    assert expected in message
    assert "hunter2" not in message
    assert "\n" not in message


def test_a_missing_socket_directory_is_not_blamed_on_tls_files() -> None:
    message = str(
        connect_error(
            "postgresql://app@/shop?host=/run/nowhere",
            FileNotFoundError(2, "No such file or directory"),
            timeout=5.0,
        )
    )
    assert "sslrootcert" not in message


def test_a_dropped_connection_without_a_client_certificate_is_not_blamed_on_one() -> None:
    exc = _closed_after(ConnectionResetError(104, "Connection reset by peer"))
    assert "client certificate" not in str(connect_error(DSN, exc, timeout=5.0))


def test_a_key_value_dsn_is_named_with_the_url_form_and_its_password_masked() -> None:
    dsn = "host=db user=app password=hunter2 dbname=orders"
    exc = asyncpg.exceptions.ClientConfigurationError(
        'invalid DSN: scheme is expected to be either "postgresql" or "postgres", got \'\''
    )
    message = str(connect_error(dsn, exc, timeout=5.0))
    assert "the DSN is in libpq's key=value form, which asyncpg does not read" in message
    assert "postgresql://user@host:5432/dbname" in message
    assert "password=***" in message
    assert "hunter2" not in message
    # A URL DSN whose settings asyncpg refuses keeps the general line.
    other = str(connect_error("postgresql://db/x?sslmode=bogus", exc, timeout=5.0))
    assert "the DSN's settings are not usable" in other
