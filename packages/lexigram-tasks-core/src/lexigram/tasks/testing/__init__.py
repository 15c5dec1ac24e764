"""The backend conformance kit: pytest test classes every queue backend must pass.

Each class encodes one theme of the delivery contract (`docs/writing-a-backend.md`
describes it). A backend's test module subclasses them (named ``Test...`` so that
pytest collects the subclass) and supplies one fixture, ``make_queue`` (see
`QueueFactory`)::

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

The timing promises are class attributes a backend may widen explicitly
(`wake_margin`, `due_margin`, `redelivery_margin`; see `QueueConformanceBase`). A
backend that can store raw bytes where an encoded job would be also subclasses
`QueuePoisonConformance` and implements its ``plant_raw_payload`` hook; one that
implements `CancellableQueueProtocol` subclasses `QueueCancellationConformance`, and one that
implements `LeaseRenewingQueueProtocol` subclasses `QueueLeaseRenewerConformance`, and one that
implements `ResultAckingQueueProtocol` subclasses `QueueResultAckerConformance` (with a
``make_paired_result_store`` fixture). The kit needs
pytest and pytest-asyncio (its classes carry the ``asyncio`` mark, so strict mode works
too).

`WorkflowRunStoreConformance` checks a workflow run store (the atomic stage join of
queue-driven workflows) through a ``make_run_store`` fixture the same way, and
`WorkflowRunJobsConformance` one that implements `JobRecordingWorkflowRunStoreProtocol`,
`WorkflowRunListingConformance` one that implements `ListingWorkflowRunStoreProtocol`.
"""

from __future__ import annotations

import pytest

# Rewrite the kit's asserts so that a failing backend sees the compared values; this
# must run before the test modules below are imported.
pytest.register_assert_rewrite(
    "lexigram.tasks.testing._base",
    "lexigram.tasks.testing._bounds",
    "lexigram.tasks.testing._cancel",
    "lexigram.tasks.testing._delivery",
    "lexigram.tasks.testing._fencing",
    "lexigram.tasks.testing._leases",
    "lexigram.tasks.testing._management",
    "lexigram.tasks.testing._renewer",
    "lexigram.tasks.testing._result_acker",
    "lexigram.tasks.testing._worker",
    "lexigram.tasks.testing._workflow_runs",
)

from lexigram.tasks.testing._base import (  # noqa: E402 - after register_assert_rewrite
    DUE_MARGIN,
    PROMPT_SECONDS,
    REDELIVERY_MARGIN,
    WAKE_MARGIN,
    QueueConformanceBase,
    QueueFactory,
)
from lexigram.tasks.testing._bounds import QueueBoundsConformance  # noqa: E402
from lexigram.tasks.testing._cancel import QueueCancellationConformance  # noqa: E402
from lexigram.tasks.testing._delivery import (  # noqa: E402 - after register_assert_rewrite
    KeyTTLQueueFactory,
    QueueIdempotencyConformance,
    QueueOrderingConformance,
    QueueRoundTripConformance,
    QueueWaitConformance,
)
from lexigram.tasks.testing._fencing import QueueFencingConformance  # noqa: E402
from lexigram.tasks.testing._leases import (  # noqa: E402 - after register_assert_rewrite
    QueueAcknowledgementConformance,
    QueueLeaseConformance,
)
from lexigram.tasks.testing._management import (  # noqa: E402 - after register_assert_rewrite
    QueueConcurrencyConformance,
    QueueJobManagementConformance,
)
from lexigram.tasks.testing._recorder import HookRecorder  # noqa: E402 - after register_assert_rewrite
from lexigram.tasks.testing._renewer import QueueLeaseRenewerConformance  # noqa: E402
from lexigram.tasks.testing._result_acker import (  # noqa: E402 - after register_assert_rewrite
    PairedStoreFactory,
    QueueResultAckerConformance,
)
from lexigram.tasks.testing._worker import (  # noqa: E402 - after register_assert_rewrite
    POISON_PAYLOADS,
    QueuePoisonConformance,
    QueueWorkerConformance,
)
from lexigram.tasks.testing._workflow_runs import (  # noqa: E402 - after register_assert_rewrite
    RunStoreFactory,
    WorkflowRunJobsConformance,
    WorkflowRunListingConformance,
    WorkflowRunStoreConformance,
)


class QueueConformance(
    QueueRoundTripConformance,
    QueueIdempotencyConformance,
    QueueOrderingConformance,
    QueueWaitConformance,
    QueueLeaseConformance,
    QueueAcknowledgementConformance,
    QueueFencingConformance,
    QueueBoundsConformance,
    QueueJobManagementConformance,
    QueueConcurrencyConformance,
    QueueWorkerConformance,
):
    """Every theme of the queue contract; what a full backend subclasses.

    `QueuePoisonConformance` is not included: it needs the backend's
    ``plant_raw_payload`` hook, so a backend adds it to its subclass's bases. Nor is
    `QueueCancellationConformance`: cancellation is an optional capability
    (`CancellableQueueProtocol`), so a backend that offers it adds that class too, as
    one that offers `LeaseRenewingQueueProtocol` adds `QueueLeaseRenewerConformance`.
    """


__all__ = [
    "DUE_MARGIN",
    "POISON_PAYLOADS",
    "PROMPT_SECONDS",
    "REDELIVERY_MARGIN",
    "WAKE_MARGIN",
    "HookRecorder",
    "KeyTTLQueueFactory",
    "PairedStoreFactory",
    "QueueAcknowledgementConformance",
    "QueueBoundsConformance",
    "QueueCancellationConformance",
    "QueueConcurrencyConformance",
    "QueueConformance",
    "QueueConformanceBase",
    "QueueFactory",
    "QueueFencingConformance",
    "QueueIdempotencyConformance",
    "QueueJobManagementConformance",
    "QueueLeaseConformance",
    "QueueLeaseRenewerConformance",
    "QueueOrderingConformance",
    "QueuePoisonConformance",
    "QueueResultAckerConformance",
    "QueueRoundTripConformance",
    "QueueWaitConformance",
    "QueueWorkerConformance",
    "RunStoreFactory",
    "WorkflowRunJobsConformance",
    "WorkflowRunListingConformance",
    "WorkflowRunStoreConformance",
]
