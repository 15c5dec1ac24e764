"""Unit tests of the connect-failure messages (no broker: the client's errors are built here)."""

from __future__ import annotations

import asyncio
import socket
import ssl

import aiormq
import pytest

from lexigram.contracts.tasks import BackendConnectionError
from lexigram.tasks.backends.rabbitmq._errors import ConnectAttempt, connect_failure

URL = "amqp://app:s3cret@mq.example:5672/orders"


def attempt() -> ConnectAttempt:
    return ConnectAttempt.of(URL, "mq.example", 5672, "orders", 4.0)


def wrapped(cause: BaseException) -> BaseException:
    """An aiormq transport error carrying the OS error as its cause, as aiormq raises it."""
    error = aiormq.exceptions.AMQPConnectionError(*cause.args)
    error.__cause__ = cause
    return error


def closed_early() -> BaseException:
    """What aiormq raises when the peer (PostgreSQL on 5432, say) hangs up on the header."""
    error = aiormq.exceptions.AMQPConnectionError(
        "Server connection unexpectedly closed. Read 0 bytes but 1 bytes expected"
    )
    error.__context__ = asyncio.IncompleteReadError(b"", 1)
    return error


def unverified(
    code: int = 19, message: str = "self-signed certificate"
) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_code = code  # set by the ssl module on a real handshake failure
    error.verify_message = message
    return error


@pytest.mark.parametrize(
    ("exc", "tcp_open", "expected", "reason"),
    [
        (
            aiormq.exceptions.ProbableAuthenticationError("ACCESS_REFUSED - Login was refused"),
            None,
            "refused the login of user 'app' (ACCESS_REFUSED)",
            "access_refused",
        ),
        (
            aiormq.exceptions.InvalidFrameError(
                "Expected one of ['Connection.OpenOk'], got <Connection.Close>"
            ),
            None,
            "refused virtual host 'orders' to user 'app'",
            "vhost_refused",
        ),
        (
            wrapped(ConnectionRefusedError(111, "Connect call failed")),
            None,
            "Nothing accepts connections at mq.example:5672",
            "connection_refused",
        ),
        (
            wrapped(socket.gaierror(-2, "Name or service not known")),
            None,
            "The host name 'mq.example' of",
            "unknown_host",
        ),
        (wrapped(unverified()), None, "certificate is not trusted", "tls_untrusted"),
        (
            wrapped(unverified(64, "IP address mismatch")),
            None,
            "does not name the host 'mq.example' (IP address mismatch)",
            "tls_wrong_host",
        ),
        (
            wrapped(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")),
            None,
            "If the port serves plain AMQP use amqp://",
            "tls_failed",
        ),
        (TimeoutError(), True, "accepted the TCP connection", "no_amqp_answer"),
        (
            TimeoutError(),
            False,
            "No TCP connection to mq.example:5672 within 4 s",
            "connect_timeout",
        ),
        (
            aiormq.exceptions.IncompatibleProtocolError("EOF"),
            None,
            "closed the connection during the AMQP handshake",
            "not_amqp",
        ),
        (
            closed_early(),
            None,
            "it is not an AMQP 0-9-1 server (check the port: 5672 for amqp://",
            "not_amqp",
        ),
        (RuntimeError("something else"), None, "Could not connect to RabbitMQ", "connect_failed"),
    ],
)
def test_each_cause_has_its_own_line(
    exc: BaseException, tcp_open: bool | None, expected: str, reason: str
) -> None:
    error = connect_failure(exc, attempt(), tcp_open=tcp_open)
    assert isinstance(error, BackendConnectionError)
    message = str(error)
    assert expected in message
    assert error.details["reason"] == reason
    assert "s3cret" not in message
    assert "amqp://app:***@mq.example:5672/orders" in message
    assert "\n" not in message
    assert message.endswith(".")


def test_attempt_reads_the_user_and_tls_from_the_url() -> None:
    tls = ConnectAttempt.of("amqps://mq:5671/", "mq", 5671, "/", 1.0)
    assert tls.tls is True
    assert tls.user == "guest"
    assert attempt().user == "app"


TLS_URL = "amqps://app:s3cret@mq.example:5671/orders?cafile=/etc/ssl/ca.pem"
CLIENT_CERT = "&certfile=/etc/ssl/client.pem&keyfile=/etc/ssl/client.key"


def alert(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] alert")
    error.reason = reason  # set by the ssl module from the alert the peer sent
    return error


@pytest.mark.parametrize(
    ("exc", "client_cert", "reason"),
    [
        (wrapped(alert("TLSV13_ALERT_CERTIFICATE_REQUIRED")), False, "tls_client_cert_required"),
        (wrapped(ConnectionResetError(104, "reset")), False, "tls_client_cert_required"),
        (wrapped(alert("TLSV1_ALERT_UNKNOWN_CA")), True, "tls_client_cert_refused"),
        (wrapped(alert("SSLV3_ALERT_CERTIFICATE_EXPIRED")), True, "tls_client_cert_refused"),
        (wrapped(ConnectionResetError(104, "reset")), True, "tls_client_cert_refused"),
        (alert("KEY_VALUES_MISMATCH"), True, "tls_client_key_mismatch"),
        (FileNotFoundError(2, "No such file or directory"), True, "tls_file_unreadable"),
    ],
    ids=["required", "required-reset", "unknown-ca", "expired", "refused-reset", "key", "file"],
)
def test_client_certificate_problems_have_their_own_line(
    exc: BaseException, client_cert: bool, reason: str
) -> None:
    """The alert and the bare reset that may arrive instead of it give the same line."""
    url = TLS_URL + (CLIENT_CERT if client_cert else "")
    error = connect_failure(
        exc, ConnectAttempt.of(url, "mq.example", 5671, "orders", 4.0), tcp_open=None
    )
    assert error.details["reason"] == reason
    message = str(error)
    assert "s3cret" not in message
    assert "\n" not in message
    assert message.startswith("TLS with mq.example:5671 failed (amqps://app:***@mq.example")


def test_a_reset_over_plain_amqp_is_not_blamed_on_certificates() -> None:
    error = connect_failure(wrapped(ConnectionResetError(104, "reset")), attempt(), tcp_open=None)
    assert error.details["reason"] == "connect_failed"
