"""The published API reference's TasksModule examples that use Redis, as written (imports added)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lexigram.app import Application
from lexigram.contracts.tasks import Job, TaskQueueProtocol
from lexigram.di import Module, compile_modules, module
from lexigram.tasks import TaskProvider, TasksModule, task

pytestmark = pytest.mark.redis

SENT: asyncio.Queue[tuple[str, Any]] | None = None


class SendEmailTask:
    task_name = "send_email"

    async def handle(self, to: str) -> None:
        assert SENT is not None
        await SENT.put(("send_email", to))


class GenerateReportTask:
    @task(name="generate_report")
    async def generate(self, report_id: int) -> None:
        assert SENT is not None
        await SENT.put(("generate_report", report_id))


def _other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


def test_reference_tasks_module_redis_example_declares_as_written():
    from lexigram.tasks.backends.redis import RedisTaskQueue

    @module(
        imports=[
            TasksModule.configure(
                queue=RedisTaskQueue(url="redis://localhost"),
                worker_count=4,
            )
        ]
    )
    class AppModule(Module):
        pass

    (provider,) = compile_modules([AppModule]).providers
    assert isinstance(provider, TaskProvider)
    assert isinstance(provider.queue, RedisTaskQueue)
    assert provider.worker_count == 4


async def test_reference_tasks_module_scope_example_on_redis(redis_url, key_prefix):
    global SENT  # noqa: PLW0603 - the handler classes report here
    SENT = asyncio.Queue()
    from lexigram.tasks.backends.redis import RedisTaskQueue

    # The reference writes RedisTaskQueue(url=...); the test's server and key prefix fill the dots.
    @module(
        imports=[
            TasksModule.configure(queue=RedisTaskQueue(url=redis_url, key_prefix=key_prefix)),
            TasksModule.scope(SendEmailTask, GenerateReportTask),
        ]
    )
    class NotificationFeatureModule(Module):
        pass

    try:
        async with Application.boot(modules=[NotificationFeatureModule]) as app:
            queue = await app.container.resolve(TaskQueueProtocol)
            assert isinstance(queue, RedisTaskQueue)
            provider = await app.container.resolve(TaskProvider)
            assert provider.worker_pool is not None
            assert provider.worker_pool.queue is queue
            await provider.enqueue_job(Job(name="send_email", args=("a@example.com",)))
            await provider.enqueue_job(Job(name="generate_report", args=(42,)))
            got = {await asyncio.wait_for(SENT.get(), 10) for _ in range(2)}
            assert got == {("send_email", "a@example.com"), ("generate_report", 42)}
    finally:
        SENT = None
    assert _other_tasks() == set()
