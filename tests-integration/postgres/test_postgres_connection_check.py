"""`check_connection`: the CLI's start-up check reads no job, however long the queue is.

`count` reads every row of the queue (2 s at a million jobs); the check runs ``SELECT 1``.
Shown with a lock: while another session holds the jobs table in ACCESS EXCLUSIVE mode,
any statement that reads it waits, and the check does not.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import asyncpg
import pytest

from lexigram.contracts.tasks import (
    BackendConnectionError,
    ConnectionCheckingQueueProtocol,
)
from lexigram.tasks.backends.postgres import PostgresTaskConfig, PostgresTaskQueue

pytestmark = pytest.mark.postgres


async def test_the_connection_check_reads_no_job(
    make_pg_queue: Callable[..., PostgresTaskQueue], pg_conn: asyncpg.Connection, pg_schema: str
) -> None:
    queue = make_pg_queue()
    assert isinstance(queue, ConnectionCheckingQueueProtocol)
    await queue.check_connection()  # connects and checks the schema first, as every call
    async with pg_conn.transaction():
        await pg_conn.execute(f'LOCK TABLE "{pg_schema}".tasks IN ACCESS EXCLUSIVE MODE')
        await asyncio.wait_for(queue.check_connection(), timeout=5)
        counting = asyncio.create_task(queue.count(queue.queue_name))
        done, _ = await asyncio.wait({counting}, timeout=0.5)
        assert not done  # `count` waits for the lock: it reads the table
    assert await asyncio.wait_for(counting, timeout=5) == 0


async def test_the_connection_check_raises_what_count_raises(unused_port: int) -> None:
    dsn = f"postgresql://127.0.0.1:{unused_port}/test"
    messages = []
    for call in ("check_connection", "count"):
        queue = PostgresTaskQueue(PostgresTaskConfig(dsn, connect_timeout=1.0))
        check = queue.count(queue.queue_name) if call == "count" else queue.check_connection()
        try:
            with pytest.raises(BackendConnectionError) as caught:
                await check
        finally:
            await queue.close()
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert str(unused_port) in messages[0]


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
