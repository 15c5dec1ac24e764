"""``amqps://`` against a second, TLS-only RabbitMQ node of this module's own.

The node has no plain-text listener (``listeners.tcp = none``), so a job that
round-trips went over TLS. The CA file goes in the URL (``?cafile=``), so the one URL
works everywhere a backend is named: ``--backend``, a YAML config, ``TaskBackendSpec``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytestmark = [pytest.mark.rabbitmq, pytest.mark.tls]


def _url(server, host: str, query: str = "") -> str:
    return f"amqps://guest:{server.password}@{host}:{server.port}/{query}"


def test_round_trip_over_tls_with_the_ca_in_the_url(rabbitmq_tls, round_trip) -> None:
    url = _url(rabbitmq_tls, "localhost", f"?cafile={rabbitmq_tls.ca}")
    assert round_trip(url, "rabbitmq") == {"ran": 5}


def test_without_the_ca_the_error_names_cafile(rabbitmq_tls, failure: Callable[[str], str]) -> None:
    message = failure(_url(rabbitmq_tls, "localhost"))
    assert message == (
        f"error: TLS with localhost:{rabbitmq_tls.port} failed (amqps://guest:***@localhost:"
        f"{rabbitmq_tls.port}/): the broker's certificate is not trusted (self-signed "
        "certificate in certificate chain). Give the CA that signed it with "
        "?cafile=/path/ca.pem in the URL."
    )


def test_a_host_name_outside_the_certificate_is_named(
    rabbitmq_tls, failure: Callable[[str], str]
) -> None:
    message = failure(_url(rabbitmq_tls, "127.0.0.1", f"?cafile={rabbitmq_tls.ca}"))
    assert "the broker's certificate does not name the host '127.0.0.1'" in message
    assert message.endswith("Connect with a host name the certificate lists.")
