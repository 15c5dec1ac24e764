"""Unit tests of `BrokerOutage`: one broker's outage as the connections of a process see it.

No broker: the connections are never connected; their failures are reported by hand, as
`FailoverConnection._on_connection_close` reports them.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import aiormq
import pytest

from lexigram.contracts.tasks import _server_outage
from lexigram.tasks.backends.rabbitmq import _failover
from lexigram.tasks.backends.rabbitmq._failover import (
    NEW_OUTAGE_AFTER,
    REMIND_AFTER,
    BrokerOutage,
    FailoverConnection,
    broker_outage,
)

URL = "amqp://app:s3cret@mq.example:5672/orders"
THEN = "reconnecting every 1 s"
LOGGER = "lexigram.tasks.backends.rabbitmq._connection"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The clock of the outage records (the event loop keeps the real one)."""
    clock = Clock()
    for module in (_failover, _server_outage):
        monkeypatch.setattr(module, "time", SimpleNamespace(monotonic=clock))
    return clock


def refused() -> BaseException:
    return aiormq.exceptions.ProbableAuthenticationError(
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN."
    )


def lost() -> BaseException:
    return aiormq.exceptions.AMQPConnectionError("[Errno 111] Connect call failed")


def outage_of() -> BrokerOutage:
    """The outage record of `URL` on the test's event loop (a new one for every test)."""
    return broker_outage(asyncio.get_running_loop(), [URL])


def lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def closed_with(exc: BaseException) -> asyncio.Future[None]:
    """The closing future aiormq hands a connection that failed with `exc`."""
    closing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    closing.set_exception(exc)
    return closing


async def test_the_connections_of_one_url_share_one_outage_per_event_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    connections = [FailoverConnection([URL], 0, reconnect_interval=0.3) for _ in range(3)]
    for connection in connections:
        await connection._on_connection_close(closed_with(lost()))
    assert len(lines(caplog)) == 1
    assert lines(caplog)[0].endswith("; reconnecting every 0.3 s.")
    assert outage_of().ongoing
    other = FailoverConnection(["amqp://app:other@mq.example:5672/orders"], 0)
    await other._on_connection_close(closed_with(lost()))
    assert len(lines(caplog)) == 2  # another login: an outage of its own
    for connection in [*connections, other]:
        await connection.close()
    assert outage_of().ongoing  # closed while down: the next success ends it


async def test_many_failures_of_many_connections_are_one_warning_and_one_end(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    connections = [FailoverConnection([URL], 0) for _ in range(3)]
    outage = outage_of()
    for _ in range(4):
        for connection in connections:
            outage.failed(connection, lost(), THEN)
        clock.now += 1
    outage.connected(connections[0])
    outage.connected(connections[1])
    assert len(lines(caplog)) == 1  # the third is still down
    outage.connected(connections[2])
    begun = (
        "RabbitMQ at amqp://app:***@mq.example:5672/orders unreachable (AMQPConnectionError: "
        "[Errno 111] Connect call failed); reconnecting every 1 s."
    )
    ended = "RabbitMQ at amqp://app:***@mq.example:5672/orders reachable again after 4.00 s."
    assert lines(caplog) == [begun, ended]
    assert len(lines(caplog, logging.DEBUG)) == 11


async def test_a_refused_login_is_said_in_the_words_of_the_connect_error(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    connection = FailoverConnection([URL], 0)
    for _ in range(5):
        outage_of().failed(connection, refused(), THEN)
    said = (
        "RabbitMQ at amqp://app:***@mq.example:5672/orders refused the login of user 'app' "
        "(ACCESS_REFUSED): fix the user name or password in the URL (the part before the @); "
        "reconnecting every 1 s."
    )
    assert lines(caplog) == [said]


async def test_a_refusal_during_an_outage_is_told_once(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    connection = FailoverConnection([URL], 0)
    outage = outage_of()
    outage.failed(connection, lost(), THEN)
    for _ in range(3):
        outage.failed(connection, refused(), THEN)
    warned = lines(caplog)
    assert len(warned) == 2
    assert " unreachable (" in warned[0]
    assert "refused the login of user 'app'" in warned[1]


async def test_a_long_outage_is_recalled_every_remind_after(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    connection = FailoverConnection([URL], 0)
    outage = outage_of()
    for _ in range(int(2.5 * REMIND_AFTER)):  # one attempt a second
        outage.failed(connection, lost(), THEN)
        clock.now += 1
    warned = lines(caplog)
    assert len(warned) == 3
    assert " still unreachable after 300 s (AMQPConnectionError: " in warned[1]
    assert " still unreachable after 600 s (" in warned[2]


async def test_an_outage_no_connection_waited_out_ends_after_a_quiet_spell(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    """A connection closed while down (a first connect that failed) leaves the outage on.

    The next success ends it; without one, a failure after a quiet spell is a new outage.
    """
    caplog.set_level(logging.WARNING, LOGGER)
    first = FailoverConnection([URL], 0)
    outage = outage_of()
    outage.failed(first, lost(), THEN)
    outage.closed(first)
    assert outage.ongoing
    clock.now += NEW_OUTAGE_AFTER / 2
    second = FailoverConnection([URL], 0)
    outage.failed(second, lost(), THEN)  # the same outage: nothing new
    outage.closed(second)
    assert len(lines(caplog)) == 1
    clock.now += NEW_OUTAGE_AFTER + 1
    third = FailoverConnection([URL], 0)
    outage.failed(third, lost(), THEN)
    assert len(lines(caplog)) == 2
    outage.connected(third)
    assert lines(caplog)[-1].endswith("reachable again after 0.00 s.")
