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
