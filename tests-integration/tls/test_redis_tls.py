"""``rediss://`` against a TLS-only Redis of this module's own, with the tests' CA.

The server has no plain-text port (``--port 0``), so a job that round-trips went over
TLS. The CA file goes in the URL (``?ssl_ca_certs=``), so the one URL works everywhere a
backend is named: ``--backend``, a YAML config, ``TaskBackendSpec``. A missing CA and a
host name the certificate does not list each fail with one line naming the fix.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

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
