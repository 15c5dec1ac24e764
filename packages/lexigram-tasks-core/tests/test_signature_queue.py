"""A job built by .s()/.si()/.signature() names its task's queue; .delay() is unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lexigram.tasks import MemoryTaskQueue, TaskConfig, TaskProvider
from lexigram.tasks.decorators import set_default_queue, set_task_queues, task

MULTI = {
    "backends": [
        {"name": "primary", "primary": True, "type": "memory", "queue_name": "main"},
        {"name": "notifications", "type": "memory", "queue_name": "notify"},
    ]
}


@task(queue="notifications")
async def notify(user_id: int) -> int:
    return user_id


@task
async def plain(user_id: int) -> int:
    return user_id


@pytest.fixture(autouse=True)
def no_queues() -> Iterator[None]:
    set_default_queue(None)
    set_task_queues({})
    yield
    set_default_queue(None)
    set_task_queues({})


def test_signature_jobs_name_the_tasks_queue() -> None:
    assert notify.s(1).queue_name == "notifications"
    assert notify.si(1).queue_name == "notifications"
    assert notify.signature(1).queue_name == "notifications"


def test_a_default_queue_task_leaves_the_queue_name_to_the_queue() -> None:
    assert plain.s(1).queue_name is None
    assert plain.si(1).queue_name is None
    assert plain.signature(1).queue_name is None


async def test_provider_routes_a_signature_to_the_queue_delay_would_use() -> None:
    provider = TaskProvider(
        worker_count=0, enable_scheduler=False, config=TaskConfig.from_dict(MULTI)
    )
    queues = provider.queues
    routed = await provider.enqueue_job(notify.s(1))
    default = await provider.enqueue_job(plain.s(2))
    assert await queues["notifications"].get_job(routed) is not None
    assert await queues["primary"].get_job(routed) is None
    assert await queues["primary"].get_job(default) is not None


async def test_delay_and_apply_async_still_leave_the_queue_name_to_the_queue() -> None:
    outbox = MemoryTaskQueue(queue_name="outbox")
    set_task_queues({"notifications": outbox})
    handle = await notify.delay(1)
    stored = await outbox.get_job(handle.id)
    assert stored is not None
    assert stored.queue_name == "outbox"
    other = MemoryTaskQueue(queue_name="other")
    handle = await notify.apply_async(other, 2)
    stored = await other.get_job(handle.id)
    assert stored is not None
    assert stored.queue_name == "other"
