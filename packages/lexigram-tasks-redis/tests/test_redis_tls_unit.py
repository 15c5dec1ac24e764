"""The one-line messages of TLS failures name the part of the URL that fixes them."""

from __future__ import annotations

import ssl

from lexigram.tasks.backends.redis._connection import RedisConnector
from lexigram.tasks.backends.redis._diagnose import diagnose

URL = "rediss://app:secret@cache.example:6390/0"
MASKED = "rediss://app:***@cache.example:6390/0"


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    error.verify_code = code  # set by the ssl module on a real handshake failure
    error.verify_message = message
    return error


def _message(exc: BaseException) -> str:
    found = diagnose(
        exc, url=URL, masked=MASKED, what="enqueue", connect_timeout=5.0, command_timeout=10.0
    )
    assert found.kind == "tls"
    assert not found.transient
    assert "\n" not in found.message
    assert "secret" not in found.message
    assert found.message.startswith(f"Redis at {MASKED}: ")
    return found.message


def test_an_untrusted_certificate_names_ssl_ca_certs_in_the_url() -> None:
    message = _message(_verify_error(19, "self-signed certificate in certificate chain"))
    assert "certificate is not trusted" in message
    assert "self-signed certificate in certificate chain" in message
    assert "?ssl_ca_certs=/path/to/ca.pem" in message


def test_a_certificate_for_another_host_names_the_host() -> None:
    message = _message(
        _verify_error(62, "Hostname mismatch, certificate is not valid for 'cache.example'")
    )
    assert "does not name the host 'cache.example'" in message
    assert "ssl_ca_certs" not in message  # the CA is fine: the host name is the fix


def test_another_handshake_failure_suggests_a_tls_port_or_redis() -> None:
    message = _message(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"))
    assert "TLS handshake failed" in message
    assert "use redis:// for a plain-text port" in message


def test_tls_settings_in_the_url_keep_the_multiplexed_path_only_when_it_honours_them() -> None:
    honoured = "rediss://h:6380/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
    assert RedisConnector(honoured).multiplexed
    # The multiplexed connection builds its own SSL context and knows no CA directory.
    assert not RedisConnector("rediss://h:6380/0?ssl_ca_path=/etc/ssl/mine").multiplexed


def test_a_dropped_tls_connection_without_a_client_certificate_suggests_one() -> None:
    reset = ConnectionResetError(104, "Connection reset by peer")
    found = diagnose(
        reset, url=URL, masked=MASKED, what="count", connect_timeout=5.0, command_timeout=10.0
    )
    assert found.kind == "closed"
    assert "?ssl_certfile=/path/client.pem&ssl_keyfile=/path/client.key" in found.message
    with_cert = diagnose(
        reset,
        url=URL + "?ssl_certfile=/c.pem&ssl_keyfile=/k.pem",
        masked=MASKED,
        what="count",
        connect_timeout=5.0,
        command_timeout=10.0,
    )
    assert "ssl_certfile" not in with_cert.message
