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


# A node with ssl_options.verify = verify_peer and fail_if_no_peer_cert = true: the
# client certificate goes in the URL as well (?certfile=&keyfile=).


def _mtls_url(server, query: str = "") -> str:
    return _url(server, "localhost", f"?cafile={server.ca}{query}")


def test_a_client_certificate_in_the_url_passes_a_node_that_requires_one(
    rabbitmq_mtls, tls_certs, round_trip
) -> None:
    query = f"&certfile={tls_certs.client_cert}&keyfile={tls_certs.client_key}"
    assert round_trip(_mtls_url(rabbitmq_mtls, query), "rabbitmq") == {"ran": 5}


def test_without_a_client_certificate_the_error_names_certfile(
    rabbitmq_mtls, tls_certs, failure: Callable[[str], str], no_secret
) -> None:
    """The node's refusal arrives as an alert or as a bare connection reset, whichever
    comes first (TLS 1.3): the line is the same every time."""
    port = rabbitmq_mtls.port
    expected = (
        f"error: TLS with localhost:{port} failed (amqps://guest:***@localhost:{port}/"
        f"?cafile={rabbitmq_mtls.ca}): the broker closed the connection at the end of the TLS "
        "handshake, as one that requires a client certificate does when it gets none "
        "(ssl_options.fail_if_no_peer_cert = true). Give one with "
        "?certfile=/path/client.pem&keyfile=/path/client.key in the URL."
    )
    for _ in range(3):
        message = failure(_mtls_url(rabbitmq_mtls))
        assert message == expected
    no_secret(message, rabbitmq_mtls.password, tls_certs.client_key)


def test_a_client_certificate_of_an_unknown_ca_is_refused_in_one_line(
    rabbitmq_mtls, tls_certs, stranger_certs, failure: Callable[[str], str], no_secret
) -> None:
    query = f"&certfile={stranger_certs.client_cert}&keyfile={stranger_certs.client_key}"
    port = rabbitmq_mtls.port
    expected = (
        f"error: TLS with localhost:{port} failed ({_mtls_url(rabbitmq_mtls, query)}): the "
        "broker closed the connection at the end of the TLS handshake, as it does with a "
        "client certificate it does not accept: certfile is not signed by a CA in the "
        "broker's ssl_options.cacertfile, or it expired or was revoked. Give a certificate "
        "that CA signed (?certfile=&keyfile= in the URL), or see the broker's log."
    ).replace(f"guest:{rabbitmq_mtls.password}@", "guest:***@")
    for _ in range(3):
        message = failure(_mtls_url(rabbitmq_mtls, query))
        assert message == expected
    no_secret(message, rabbitmq_mtls.password, stranger_certs.client_key, tls_certs.client_key)


def test_a_key_that_is_not_the_certificates_is_named(
    rabbitmq_mtls, tls_certs, stranger_certs, failure: Callable[[str], str]
) -> None:
    query = f"&certfile={tls_certs.client_cert}&keyfile={stranger_certs.client_key}"
    message = failure(_mtls_url(rabbitmq_mtls, query))
    assert message.endswith(
        "the URL's keyfile is not the private key of its certfile. Give the key that belongs "
        "to the certificate."
    )


def test_a_client_certificate_file_that_does_not_exist_is_named(
    rabbitmq_mtls, tls_certs, failure: Callable[[str], str]
) -> None:
    missing = tls_certs.client_cert.with_name("no-such-client.pem")
    message = failure(
        _mtls_url(rabbitmq_mtls, f"&certfile={missing}&keyfile={tls_certs.client_key}")
    )
    assert "a file the URL names cannot be read ([Errno 2] No such file or directory)" in message
    assert message.endswith("Fix cafile, certfile or keyfile in the URL.")
