"""A PostgreSQL outage is logged as one warning when it begins and one when it ends.

The queue talks to the real server through a TCP proxy on this machine that the test
cuts (every connection closed, new ones refused) and restores on the same port: the
server stays up for the other tests while this queue sees it go away and come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.postgres import PostgresTaskQueue

pytestmark = [pytest.mark.postgres]

BACKEND_LOGGER = "lexigram.tasks.backends.postgres._connection"


class CuttableProxy:
    """A TCP proxy to the server that can be cut (as a server that went away) and restored."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.listen_port = 0
        self.server: asyncio.Server | None = None
        self.pumps: set[asyncio.Task[None]] = set()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
        for pump in (self._pump(reader, upstream_writer), self._pump(upstream_reader, writer)):
            task = asyncio.ensure_future(pump)
            self.pumps.add(task)
            task.add_done_callback(self.pumps.discard)

    async def restore(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.listen_port)
        self.listen_port = int(self.server.sockets[0].getsockname()[1])
        return self.listen_port

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for task in list(self.pumps):
            task.cancel()
        await asyncio.gather(*self.pumps, return_exceptions=True)


@pytest_asyncio.fixture
async def behind_proxy(
    postgres_dsn: str, pg_schema: str, unique_name: str
) -> AsyncIterator[tuple[Callable[[], PostgresTaskQueue], CuttableProxy]]:
    """A factory of queues that reach the server through a `CuttableProxy`, and the proxy."""
    parts = urlsplit(postgres_dsn)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = await proxy.restore()
    user = f"{parts.username}@" if parts.username else ""
    dsn = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))
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
    behind_proxy: tuple[Callable[[], PostgresTaskQueue], CuttableProxy],
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
