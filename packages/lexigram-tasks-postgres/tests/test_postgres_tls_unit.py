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
    ],
    ids=["untrusted", "wrong-host", "no-root-cert", "missing-ca-file", "hostssl-only"],
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
