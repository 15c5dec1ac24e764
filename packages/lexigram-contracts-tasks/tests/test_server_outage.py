"""`ServerOutage`: one WARNING when a server is lost, one when it is back, none in between."""

from __future__ import annotations

import logging

import pytest

from lexigram.contracts.tasks import ServerOutage

LOGGER = "lexigram.tests.server_outage"


def test_an_outage_is_two_lines_however_many_attempts_fail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = ServerOutage(logging.getLogger(LOGGER), "Redis at redis://h:6379/0")
    outage.back()  # nothing to end
    first = outage.lost("during dequeue (ConnectFailed: refused); retrying with backoff")
    later = [outage.lost("during ack (ConnectFailed: refused); retrying") for _ in range(3)]
    during = outage.ongoing
    outage.back()
    assert (first, later, during, outage.ongoing) == (True, [False] * 3, True, False)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines[0] == (
        "Redis at redis://h:6379/0 unreachable during dequeue (ConnectFailed: refused); "
        "retrying with backoff."
    )
    assert lines[1].startswith("Redis at redis://h:6379/0 reachable again after ")
    assert len(lines) == 2


def test_a_connection_that_moves_names_the_server_it_reached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = ServerOutage(logging.getLogger(LOGGER), "RabbitMQ at amqp://a/")
    outage.lost("(connection closed); reconnecting every 1 s")
    outage.server = "RabbitMQ at amqp://b/"
    outage.back()
    assert caplog.records[-1].getMessage().startswith("RabbitMQ at amqp://b/ reachable again")
