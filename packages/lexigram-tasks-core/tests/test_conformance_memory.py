"""The shipped conformance kit, run in full against MemoryTaskQueue.

`QueuePoisonConformance` does not apply: a memory queue keeps `Job` objects, never
encoded bytes, so there is no undecodable payload to plant. The reference backend of
the kit's mutation check (tests-kit/) runs it.
"""

from __future__ import annotations

import uuid

import pytest

from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.testing import (
    KeyTTLQueueFactory,
    QueueCancellationConformance,
    QueueConformance,
    QueueFactory,
    QueueLeaseRenewerConformance,
)


@pytest.fixture
def make_queue(lease_seconds: float) -> QueueFactory:
    # One process, one memory: every "consumer handle" is the same queue object.
    queue = MemoryTaskQueue(
        queue_name=f"conformance-{uuid.uuid4().hex[:8]}", visibility_timeout=lease_seconds
    )

    async def factory() -> MemoryTaskQueue:
        return queue

    return factory


class TestMemoryQueueConformance(
    QueueConformance, QueueCancellationConformance, QueueLeaseRenewerConformance
):
    @pytest.fixture
    def lease_seconds(self) -> float:
        # Memory has no network jitter, so a short lease keeps the lease tests quick.
        return 0.5

    @pytest.fixture
    def make_queue_with_idempotency_ttl(self, lease_seconds: float) -> KeyTTLQueueFactory:
        # As make_queue: every call with the same TTL gives the same queue object.
        name = f"conformance-{uuid.uuid4().hex[:8]}"
        queues: dict[float, MemoryTaskQueue] = {}

        async def factory(ttl: float) -> MemoryTaskQueue:
            if ttl not in queues:
                queues[ttl] = MemoryTaskQueue(
                    queue_name=name, visibility_timeout=lease_seconds, idempotency_ttl=ttl
                )
            return queues[ttl]

        return factory
