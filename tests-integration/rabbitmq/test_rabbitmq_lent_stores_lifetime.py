"""A provider on RabbitMQ that keeps its stores in Redis leaves Redis open for another.

Two providers of one application: one on Redis, one on RabbitMQ with ``stores:
redis://``, both using the installed Redis backend object and its shared connection
pools. Stopping the RabbitMQ one used to close that Redis backend (the RabbitMQ
backend's `close` released every backend it had borrowed from), cutting the connections
of the provider still running on Redis. Now the core holds and releases a backend's
lenders with it, and closes Redis when the last provider using it stops.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from lexigram.app import Application
from lexigram.contracts.tasks import Job, JobResult
from lexigram.tasks import TaskConfig, TaskProvider
from lexigram.tasks.backends import redis as redis_package

pytestmark = [pytest.mark.rabbitmq, pytest.mark.redis]


def _provider(backend: dict[str, object]) -> TaskProvider:
    config = TaskConfig.model_validate({"backend": backend})
    provider = TaskProvider(config=config, worker_count=1, enable_scheduler=False)

    async def add(a: int, b: int) -> int:
        return a + b

    provider.register_handler("add", add)
    return provider


async def _result(provider: TaskProvider, job_id: str) -> JobResult | None:
    (stack,) = provider.stacks.values()
    for _ in range(200):
        found = await stack.result_store.get(job_id)
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    return None


@pytest.mark.usefixtures("make_rabbitmq_queue")  # deletes the test's queues afterwards
async def test_stopping_the_borrower_leaves_the_lender_open_for_its_other_user(
    amqp_url: str, redis_url: str, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    closes: list[str] = []
    redis_backend = redis_package.backend
    close = redis_backend.close

    async def counted() -> None:
        closes.append("redis")
        await close()

    monkeypatch.setattr(redis_backend, "close", counted)
    on_redis = _provider(
        {"type": "redis", "url": redis_url, "queue_name": f"lent-{uuid.uuid4().hex[:8]}"}
    )
    on_rabbitmq = _provider(
        {
            "type": "rabbitmq",
            "url": amqp_url,
            "queue_name": queue_name,
            "options": {"stores": redis_url},
        }
    )
    async with Application.boot(providers=[on_redis]):
        async with Application.boot(providers=[on_rabbitmq]):
            assert on_rabbitmq.queue is not None
            borrowed = (await on_rabbitmq.queue.enqueue(Job(name="add", args=(1, 2)))).unwrap()
            found = await _result(on_rabbitmq, borrowed)
            assert found is not None
            assert found.data == 3
        assert closes == []  # the Redis provider still uses the backend's pools

        assert on_redis.queue is not None
        job_id = (await on_redis.queue.enqueue(Job(name="add", args=(2, 3)))).unwrap()
        found = await _result(on_redis, job_id)
        assert found is not None
        assert found.data == 5
        assert closes == []
    assert closes == ["redis"]  # released once, by the last provider using it
