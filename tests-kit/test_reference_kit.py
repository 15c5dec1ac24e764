"""The conformance kit, every theme and the poison hook, against the reference backend.

`run_mutants.py` runs this module once unmutated (it must pass) and once per mutant
(it must fail).
"""

# ruff: noqa: INP001, S101 - a test module run by path (importlib mode); tests assert

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import pytest_asyncio
from reference_backend import ReferenceQueue, drop_store, plant_raw

from lexigram.contracts.tasks import TaskQueueProtocol
from lexigram.tasks.testing import (
    KeyTTLQueueFactory,
    QueueConformance,
    QueueFactory,
    QueuePoisonConformance,
)


@asynccontextmanager
async def _fresh_queues(
    lease_seconds: float,
) -> AsyncIterator[Callable[..., Awaitable[ReferenceQueue]]]:
    """Handles on one fresh reference queue (a key TTL may be given); its store goes after."""
    name = f"kit-{uuid.uuid4().hex[:8]}"
    made: list[ReferenceQueue] = []

    async def factory(idempotency_ttl: float = 3600.0) -> ReferenceQueue:
        queue = ReferenceQueue(
            queue_name=name, lease_seconds=lease_seconds, idempotency_ttl=idempotency_ttl
        )
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.close()
    drop_store(name)


@pytest_asyncio.fixture
async def make_queue(lease_seconds: float) -> AsyncIterator[QueueFactory]:
    """Handles on one fresh reference queue; its store is dropped after the test."""
    async with _fresh_queues(lease_seconds) as factory:
        yield factory


@pytest_asyncio.fixture
async def queues_with_idempotency_ttl(lease_seconds: float) -> AsyncIterator[KeyTTLQueueFactory]:
    """A fresh reference queue holding idempotency keys for the given seconds."""
    async with _fresh_queues(lease_seconds) as factory:
        yield factory


class TestReferenceKit(QueueConformance, QueuePoisonConformance):
    """Every theme, with the default margins; a 0.5 s lease keeps the many runs quick."""

    @pytest.fixture
    def make_queue_with_idempotency_ttl(
        self, queues_with_idempotency_ttl: KeyTTLQueueFactory
    ) -> KeyTTLQueueFactory:
        """Queues holding idempotency keys for the given seconds (the kit's key-TTL test)."""
        return queues_with_idempotency_ttl

    @pytest.fixture
    def lease_seconds(self) -> float:
        """The lease of the reference queues (an in-process store has no network jitter)."""
        return 0.5

    async def plant_raw_payload(self, queue: TaskQueueProtocol, raw: bytes) -> str:
        """Store `raw` as the next record of the queue's store."""
        assert isinstance(queue, ReferenceQueue)
        return plant_raw(queue, raw)
