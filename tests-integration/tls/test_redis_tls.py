"""``rediss://`` against a TLS-only Redis of this module's own, with the tests' CA.

The server has no plain-text port (``--port 0``), so a job that round-trips went over
TLS. The CA file goes in the URL (``?ssl_ca_certs=``), so the one URL works everywhere a
backend is named: ``--backend``, a YAML config, ``TaskBackendSpec``. A missing CA and a
host name the certificate does not list each fail with one line naming the fix.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lexigram.tasks.backends.redis._mux import MuxClient

pytestmark = [pytest.mark.redis, pytest.mark.tls]


def _url(server, host: str, query: str = "") -> str:
    return f"rediss://:{server.password}@{host}:{server.port}/0{query}"


def test_round_trip_over_tls_with_the_ca_in_the_url(redis_tls, round_trip) -> None:
    url = _url(redis_tls, "localhost", f"?ssl_ca_certs={redis_tls.ca}")
    assert round_trip(url, "redis") == {"ran": 5, "result": 5}


def test_without_the_ca_the_error_names_the_url_option(
    redis_tls, failure: Callable[[str], str]
) -> None:
    message = failure(_url(redis_tls, "localhost"))
    assert message == (
        f"error: Redis at rediss://:***@localhost:{redis_tls.port}/0: the server's certificate "
        "is not trusted ([SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
        "self-signed certificate in certificate chain (_ssl.c:1006)). Give the CA that "
        "signed it in the URL: rediss://host:port/0?ssl_ca_certs=/path/to/ca.pem."
    )


def test_a_host_name_outside_the_certificate_is_named(
    redis_tls, failure: Callable[[str], str]
) -> None:
    message = failure(_url(redis_tls, "127.0.0.1", f"?ssl_ca_certs={redis_tls.ca}"))
    assert "the server's certificate does not name the host '127.0.0.1'" in message
    assert "IP address mismatch" in message
    assert message.endswith("Connect with a host name the certificate lists.")
    assert redis_tls.password not in message


def test_a_client_certificate_in_the_url_passes_a_server_that_requires_one(
    redis_mtls, tls_certs, round_trip
) -> None:
    query = (
        f"?ssl_ca_certs={redis_mtls.ca}"
        f"&ssl_certfile={tls_certs.client_cert}&ssl_keyfile={tls_certs.client_key}"
    )
    assert round_trip(_url(redis_mtls, "localhost", query), "redis") == {"ran": 5, "result": 5}


def test_without_a_client_certificate_the_error_says_so(
    redis_mtls, failure: Callable[[str], str]
) -> None:
    message = failure(_url(redis_mtls, "localhost", f"?ssl_ca_certs={redis_mtls.ca}"))
    assert "dropped the connection" in message
    assert message.endswith(
        "If the server requires a client certificate (tls-auth-clients yes), give it in the "
        "URL: ?ssl_certfile=/path/client.pem&ssl_keyfile=/path/client.key."
    )


async def test_closing_the_multiplexed_tls_connection_closes_its_socket(redis_tls) -> None:
    """`aclose` waits for the TLS goodbye: a loop ending right after leaks no socket."""
    client = MuxClient(_url(redis_tls, "localhost", f"?ssl_ca_certs={redis_tls.ca}"), {})
    assert await client.execute_command("PING") == b"PONG"
    protocol = client._protocol
    assert protocol is not None
    assert protocol.transport is not None
    raw = protocol.transport.get_extra_info("socket")
    await client.aclose()
    assert raw.fileno() == -1  # closed, not waiting for the garbage collector


def test_hostname_verification_can_be_turned_off_in_the_url(redis_tls, round_trip) -> None:
    query = f"?ssl_ca_certs={redis_tls.ca}&ssl_check_hostname=false"
    assert round_trip(_url(redis_tls, "127.0.0.1", query), "redis") == {"ran": 5, "result": 5}
