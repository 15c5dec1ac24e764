"""A bulk enqueue retried after its connection was lost inserts nothing twice.

`enqueue_many` of several jobs with idempotency keys sends one claim per job. Committed
one by one, a connection lost midway left the first jobs committed; a worker could run
and ack them before the internal retry sent the whole batch again, and the retry, under
the same ids and keys, inserted those jobs again (a finished job resubmitted under its
own id and key runs again: that is how a dead-lettered job is retried), so they ran
twice. The claims now share one transaction: the lost connection takes them all back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.postgres import PostgresTaskQueue
from lexigram.tasks.backends.postgres._enqueue import Enqueuer

pytestmark = pytest.mark.postgres

QueueFactory = Callable[..., PostgresTaskQueue]


async def _drain(queue: PostgresTaskQueue, runs: Counter[str]) -> None:
    while jobs := await queue.dequeue_batch(100):
        for job in jobs:
            runs[job.id] += 1
            assert await queue.ack(job.id, lease_token=job.lease_token)


@pytest.mark.parametrize("with_plain", [False, True], ids=["keyed", "keyed-and-plain"])
async def test_a_keyed_batch_whose_connection_is_lost_midway_runs_each_job_once(
    make_pg_queue: QueueFactory,
    pg_conn: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    with_plain: bool,
) -> None:
    producer = make_pg_queue()
    worker = make_pg_queue()
    await worker.connect()
    runs: Counter[str] = Counter()
    claims = 0
    original = Enqueuer._insert_keyed

    async def claim_then_lose_the_connection(
        self: Enqueuer, conn: Any, job: Job, payload: bytes
    ) -> str:
        nonlocal claims
        holder = await original(self, conn, job, payload)
        claims += 1
        if claims == 5:
            # A fast worker takes whatever it can see, then the connection drops.
            await _drain(worker, runs)
            await pg_conn.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        return holder

    monkeypatch.setattr(Enqueuer, "_insert_keyed", claim_then_lose_the_connection)
    keyed = [Job(name="step", idempotency_key=f"wf:step-{i}") for i in range(10)]
    plain = [Job(name="plain")] if with_plain else []
    results = await producer.enqueue_many([*plain, *keyed])
    assert all(result.is_ok() for result in results)
    assert claims > 10  # the batch was sent again after the connection was lost
    await _drain(worker, runs)
    assert set(runs) == {job.id for job in [*plain, *keyed]}
    assert [job_id for job_id, count in runs.items() if count > 1] == []
