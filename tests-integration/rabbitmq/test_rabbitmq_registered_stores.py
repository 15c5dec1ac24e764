"""`stores:` can name a backend registered in code on the provider's registry.

The RabbitMQ backend finds the backend its ``stores`` option names through the lookup in
the spec the core hands it (the provider's `backend_registry`), as the configuration's
``type`` is resolved; before, it read the entry points alone, so a backend registered
in code could not lend its stores. A worker of the provider runs a job from the broker,
and its result and the job's state record land in the registered backend's stores.
"""

from __future__ import annotations

import asyncio

import pytest

from lexigram.app import Application
from lexigram.contracts.tasks import Job, JobResult, TaskBackendSpec
from lexigram.tasks import TaskConfig, TaskProvider
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cache import InMemoryCacheBackend
from lexigram.tasks.results import InMemoryResultStore

pytestmark = [pytest.mark.rabbitmq]


class VaultBackend:
    """A backend an application registers in code (in memory here), lending its stores."""

    url_schemes = ("vault",)

    def __init__(self) -> None:
        self.results = InMemoryResultStore()
        self.records = InMemoryCacheBackend()
        self.asked: list[str] = []

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        return MemoryTaskQueue(queue_name=spec.queue_name)

    def create_result_store(self, spec: TaskBackendSpec, /) -> InMemoryResultStore:
        self.asked.append("results")
        return self.results

    def create_cache_backend(self, spec: TaskBackendSpec, /) -> InMemoryCacheBackend:
        self.asked.append("records")
        return self.records


@pytest.mark.parametrize("stores", ["vault://results", {"type": "vault"}])
@pytest.mark.usefixtures("make_rabbitmq_queue")  # deletes the test's queues afterwards
async def test_a_worker_keeps_results_in_a_backend_registered_in_code(
    amqp_url: str, queue_name: str, stores: object
) -> None:
    config = TaskConfig.model_validate(
        {
            "backend": {
                "type": "rabbitmq",
                "url": amqp_url,
                "queue_name": queue_name,
                "options": {"stores": stores},
            }
        }
    )
    provider = TaskProvider(config=config, worker_count=1, enable_scheduler=False)
    vault = VaultBackend()
    provider.backend_registry.register("vault", vault)

    async def add(a: int, b: int) -> int:
        return a + b

    provider.register_handler("add", add)
    async with Application.boot(providers=[provider]):
        assert provider.queue is not None
        job_id = (await provider.queue.enqueue(Job(name="add", args=(2, 3)))).unwrap()
        result: JobResult | None = None
        for _ in range(200):
            result = await vault.results.get(job_id)
            if result is not None:
                break
            await asyncio.sleep(0.05)
    assert result is not None
    assert (result.success, result.data) == (True, 5)
    assert "records" in vault.asked  # the queue's job-state records: the vault's cache
