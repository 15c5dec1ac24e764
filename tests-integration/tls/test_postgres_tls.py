"""PostgreSQL over TLS (``sslmode=verify-full``) against a TLS-only cluster of its own.

pg_hba.conf has only ``hostssl`` lines, so a job that round-trips went over TLS.
``sslmode`` and ``sslrootcert`` go in the DSN, the one place every config path reads
(``--backend``, a YAML config, ``TaskBackendSpec``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.tls]


def _dsn(server, host: str, query: str) -> str:
    return f"postgresql://postgres:{server.password}@{host}:{server.port}/postgres?{query}"


def test_round_trip_over_verified_tls(postgres_tls, round_trip) -> None:
    dsn = _dsn(postgres_tls, "localhost", f"sslmode=verify-full&sslrootcert={postgres_tls.ca}")
    assert round_trip(dsn, "postgres") == {"ran": 5, "result": 5}


def test_without_the_ca_the_error_names_sslrootcert(
    postgres_tls, failure: Callable[[str], str]
) -> None:
    message = failure(_dsn(postgres_tls, "localhost", "sslmode=verify-full"))
    assert message.startswith(
        f"error: PostgreSQL at postgresql://postgres:***@localhost:{postgres_tls.port}/"
        "postgres?sslmode=verify-full: sslmode=verify-ca and verify-full need the CA that "
        "signed the server's certificate, and none was found ("
    )
    assert message.endswith("Add sslrootcert=/path/to/ca.pem to the DSN.")


def test_a_ca_file_that_does_not_exist_is_named(
    postgres_tls, failure: Callable[[str], str]
) -> None:
    missing = postgres_tls.ca.with_name("no-such-ca.pem")
    message = failure(_dsn(postgres_tls, "localhost", f"sslmode=verify-full&sslrootcert={missing}"))
    assert "a file the DSN names cannot be read" in message
    assert message.endswith("Fix sslrootcert, sslcert or sslkey in the DSN.")


def test_a_host_name_outside_the_certificate_is_named(
    postgres_tls, failure: Callable[[str], str]
) -> None:
    message = failure(
        _dsn(postgres_tls, "127.0.0.1", f"sslmode=verify-full&sslrootcert={postgres_tls.ca}")
    )
    assert "failed the TLS handshake" in message
    assert "IP address mismatch" in message
    assert "does not name the host of the DSN ('127.0.0.1')" in message
    assert postgres_tls.password not in message


def test_plain_text_to_a_tls_only_server_names_sslmode(
    postgres_tls, failure: Callable[[str], str]
) -> None:
    message = failure(_dsn(postgres_tls, "localhost", "sslmode=disable"))
    assert "accepts this login only over TLS" in message
    assert message.endswith("Set sslmode=verify-full and sslrootcert=/path/to/ca.pem in the DSN.")


# A cluster whose pg_hba.conf says `hostssl ... cert`: the client certificate, checked
# against the test CA, is the login; its common name is the user.


def _cert_dsn(server, query: str = "") -> str:
    return (
        f"postgresql://lexigram-worker:{server.password}@localhost:{server.port}/tasks"
        f"?sslmode=verify-full&sslrootcert={server.ca}{query}"
    )


def test_a_client_certificate_in_the_dsn_is_the_login(postgres_mtls, tls_certs, round_trip) -> None:
    query = f"&sslcert={tls_certs.client_cert}&sslkey={tls_certs.client_key}"
    assert round_trip(_cert_dsn(postgres_mtls, query), "postgres") == {"ran": 5, "result": 5}


def test_without_a_client_certificate_the_error_names_sslcert(
    postgres_mtls, tls_certs, failure: Callable[[str], str], no_secret
) -> None:
    message = failure(_cert_dsn(postgres_mtls))
    assert message == (
        f"error: PostgreSQL at postgresql://lexigram-worker:***@localhost:{postgres_mtls.port}/"
        f"tasks?sslmode=verify-full&sslrootcert={postgres_mtls.ca} requires a client "
        "certificate for this login (pg_hba.conf method cert) and none was sent: connection "
        "requires a valid client certificate. Add sslcert=/path/client.pem&"
        "sslkey=/path/client.key to the DSN."
    )
    no_secret(message, postgres_mtls.password, tls_certs.client_key)


def test_a_client_certificate_of_an_unknown_ca_is_refused_in_one_line(
    postgres_mtls, tls_certs, stranger_certs, failure: Callable[[str], str], no_secret
) -> None:
    """The server's refusal reaches the client as an alert or as a bare connection reset,
    whichever comes first (TLS 1.3 ends the client's handshake before the server checks
    the certificate): the line is the same every time."""
    query = f"&sslcert={stranger_certs.client_cert}&sslkey={stranger_certs.client_key}"
    expected = (
        f"error: PostgreSQL at {_cert_dsn(postgres_mtls, query)} dropped the connection at "
        "the end of the TLS handshake, as a server does with a client certificate it does "
        "not accept: sslcert is not signed by a CA in the server's ssl_ca_file, or it "
        "expired or was revoked. Give a certificate that CA signed (sslcert= and sslkey= in "
        "the DSN), or see the server's log."
    ).replace(postgres_mtls.password, "***")
    for _ in range(3):
        message = failure(_cert_dsn(postgres_mtls, query))
        assert message == expected
    no_secret(message, postgres_mtls.password, stranger_certs.client_key, tls_certs.client_key)


def test_a_certificate_for_another_user_names_the_common_name(
    postgres_mtls, tls_certs, failure: Callable[[str], str]
) -> None:
    query = f"&sslcert={tls_certs.client_cert}&sslkey={tls_certs.client_key}"
    message = failure(_cert_dsn(postgres_mtls, query).replace("lexigram-worker:", "postgres:"))
    assert 'certificate authentication failed for user "postgres"' in message
    assert message.endswith(
        "Use the certificate's common name (CN) as the DSN's user, or map it to the user in "
        "the server's pg_ident.conf."
    )


def test_a_key_that_is_not_the_certificates_is_named(
    postgres_mtls, tls_certs, stranger_certs, failure: Callable[[str], str], no_secret
) -> None:
    query = f"&sslcert={tls_certs.client_cert}&sslkey={stranger_certs.client_key}"
    message = failure(_cert_dsn(postgres_mtls, query))
    assert "the DSN's sslkey is not the private key of its sslcert" in message
    assert message.endswith("Give the key that belongs to the certificate.")
    no_secret(message, postgres_mtls.password, stranger_certs.client_key, tls_certs.client_key)
