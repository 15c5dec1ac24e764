"""A PostgreSQL outage is logged as one warning when it begins and one when it ends.

The queue talks to the real server through a TCP proxy on this machine that the test
cuts (every connection closed, new ones refused) and restores on the same port: the
server stays up for the other tests while this queue sees it go away and come back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.postgres import PostgresTaskQueue

pytestmark = [pytest.mark.postgres]

BACKEND_LOGGER = "lexigram.tasks.backends.postgres._connection"

TcpProxy = Any  # the `tcp_proxy` fixture's type lives in the top conftest.py


@pytest_asyncio.fixture
async def behind_proxy(
    postgres_dsn: str,
    pg_schema: str,
    unique_name: str,
    tcp_proxy: Callable[[str, int], Awaitable[TcpProxy]],
) -> AsyncIterator[tuple[Callable[[], PostgresTaskQueue], TcpProxy]]:
    """A factory of queues that reach the server through a `TcpProxy`, and the proxy."""
    parts = urlsplit(postgres_dsn)
    proxy = await tcp_proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    dsn = proxy.url(postgres_dsn)
    made: list[PostgresTaskQueue] = []

    def queue() -> PostgresTaskQueue:
        made.append(PostgresTaskQueue(dsn=dsn, schema=pg_schema, queue_name=f"q-{unique_name}"))
        return made[-1]

    yield queue, proxy
    await proxy.cut()
    await proxy.restore()
    for made_queue in made:
        await made_queue.clear()
        await made_queue.close()
    await proxy.cut()


async def test_an_outage_is_one_warning_when_it_begins_and_one_when_it_ends(
    behind_proxy: tuple[Callable[[], PostgresTaskQueue], TcpProxy],
    caplog: pytest.LogCaptureFixture,
    outage_lines: Callable[[str], tuple[str, str]],
) -> None:
    caplog.set_level(logging.DEBUG, BACKEND_LOGGER)
    make_queue, proxy = behind_proxy
    queue = make_queue()
    assert (await queue.enqueue(Job(name="before"))).is_ok()
    await proxy.cut()
    # Several operations retry through the outage (the queue's pool, shared by them all).
    during = [asyncio.ensure_future(queue.enqueue(Job(name=f"during-{n}"))) for n in range(3)]
    await asyncio.sleep(1.5)  # a few retries each
    await proxy.restore()
    for outcome in await asyncio.gather(*during):
        assert outcome.is_ok()
    assert await queue.count(queue.queue_name) == 4

    begun, _ = outage_lines(BACKEND_LOGGER)
    assert begun.startswith("PostgreSQL at postgresql://")
    assert "unreachable (could not enqueue" in begun
    assert begun.endswith("retrying with backoff.")
    retries = [
        r
        for r in caplog.records
        if r.name == BACKEND_LOGGER
        and r.levelno == logging.DEBUG
        and "could not enqueue" in r.getMessage()
    ]
    assert retries  # the other attempts, quietly
