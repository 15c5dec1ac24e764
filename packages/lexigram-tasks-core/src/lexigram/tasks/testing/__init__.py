"""The backend conformance kit: pytest test classes every queue backend must pass.

Each class encodes one theme of the delivery contract (design §3). A backend's test
module subclasses them (named ``Test...`` so that pytest collects the subclass) and
supplies one fixture, ``make_queue`` (see `QueueFactory`)::

    import uuid
    import pytest
    from lexigram.tasks.testing import QueueConformance

    @pytest.fixture
    def make_queue(lease_seconds):
        name = f"conformance-{uuid.uuid4().hex[:8]}"
        async def factory():
            return MyTaskQueue(queue_name=name, visibility_timeout=lease_seconds)
        return factory  # a real backend also closes and deletes what it made

    class TestMyQueueConformance(QueueConformance):
        pass

A backend that cannot honour one theme subclasses the others instead of
`QueueConformance`, and says why in its documentation. The kit needs pytest and
pytest-asyncio (its classes carry the ``asyncio`` mark, so strict mode works too).
"""

from __future__ import annotations

import pytest

# Rewrite the kit's asserts so that a failing backend sees the compared values; this
# must run before the test modules below are imported.
pytest.register_assert_rewrite(
    "lexigram.tasks.testing._base",
    "lexigram.tasks.testing._delivery",
    "lexigram.tasks.testing._leases",
    "lexigram.tasks.testing._management",
)

from lexigram.tasks.testing._base import (  # noqa: E402 - after register_assert_rewrite
    PROMPT_SECONDS,
    QueueConformanceBase,
    QueueFactory,
)
from lexigram.tasks.testing._delivery import (  # noqa: E402 - after register_assert_rewrite
    QueueIdempotencyConformance,
    QueueOrderingConformance,
    QueueRoundTripConformance,
    QueueWaitConformance,
)
from lexigram.tasks.testing._leases import (  # noqa: E402 - after register_assert_rewrite
    QueueAcknowledgementConformance,
    QueueLeaseConformance,
)
from lexigram.tasks.testing._management import (  # noqa: E402 - after register_assert_rewrite
    QueueConcurrencyConformance,
    QueueJobManagementConformance,
)
from lexigram.tasks.testing._recorder import HookRecorder  # noqa: E402 - after register_assert_rewrite


class QueueConformance(
    QueueRoundTripConformance,
    QueueIdempotencyConformance,
    QueueOrderingConformance,
    QueueWaitConformance,
    QueueLeaseConformance,
    QueueAcknowledgementConformance,
    QueueJobManagementConformance,
    QueueConcurrencyConformance,
):
    """Every theme of the queue contract; what a full backend subclasses."""


__all__ = [
    "PROMPT_SECONDS",
    "HookRecorder",
    "QueueAcknowledgementConformance",
    "QueueConcurrencyConformance",
    "QueueConformance",
    "QueueConformanceBase",
    "QueueFactory",
    "QueueIdempotencyConformance",
    "QueueJobManagementConformance",
    "QueueLeaseConformance",
    "QueueOrderingConformance",
    "QueueRoundTripConformance",
    "QueueWaitConformance",
]
