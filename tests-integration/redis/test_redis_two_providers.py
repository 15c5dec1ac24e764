"""Two providers on one Redis in one process: one shutting down leaves the other's pools alone.

The Redis backend object shares its connection pools between every queue and store built
from it, in every provider of the process. A provider's shutdown used to close them all,
so a second provider still running logged "Redis ... unreachable during dequeue" and lost
its cancellation subscription until it reconnected. Now the last provider on the loop
closes them; the one still running sees nothing.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from lexigram.app import Application
from lexigram.contracts.tasks import Job
from lexigram.tasks import TaskConfig, TaskProvider

pytestmark = [pytest.mark.redis]


def _provider(redis_url: str, key_prefix: str, queue_name: str, done: list[int]) -> TaskProvider:
    config = TaskConfig.model_validate(
        {
            "backend": {
                "type": "redis",
                "url": redis_url,
                "queue_name": queue_name,
                "options": {"key_prefix": key_prefix},
            }
        }
    )
    provider = TaskProvider(config=config, worker_count=1, enable_scheduler=False)

    async def work(number: int) -> int:
        await asyncio.sleep(0.05)
        done.append(number)
        return number

    provider.register_handler("work", work)
    return provider


@pytest.mark.usefixtures("clean_prefix")
async def test_a_provider_keeps_its_connections_when_another_shuts_down(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    done: list[int] = []
    running = _provider(redis_url, key_prefix, "running", done)
    stopping = _provider(redis_url, key_prefix, "stopping", [])
    caplog.set_level(logging.WARNING, logger="lexigram.tasks")
    async with Application.boot(providers=[running]):
        queue = running.queue
        assert queue is not None
        for number in range(3):
            await queue.enqueue(Job(name="work", args=(number,)))
        async with Application.boot(providers=[stopping]):
            await asyncio.sleep(0.1)  # both workers waiting on Redis
        for number in range(3, 6):
            await queue.enqueue(Job(name="work", args=(number,)))
        for _ in range(200):
            if len(done) == 6:
                break
            await asyncio.sleep(0.05)
    assert sorted(done) == list(range(6))
    complaints = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert complaints == []
