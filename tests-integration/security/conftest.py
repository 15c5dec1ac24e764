"""Envelope security on every real backend: signed jobs run, forged ones never do.

`security_scenario` runs one story against a factory of queue handles (each call is
another handle on the same queue, as a second process would have): a producer enqueues
a job signed with key A, one signed with key B and one unsigned, and is refused an
oversized job at enqueue; then a real `TaskWorker` holding key A runs the first and
dead-letters the other two without running them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest

from lexigram.contracts.tasks import (
    EnvelopeSigner,
    Job,
    TaskQueueProtocol,
    TaskValidationError,
    configure_envelope,
    key_id,
)
from lexigram.tasks.config import RetryConfig, TaskWorkerConfig
from lexigram.tasks.dlq import DeadLetterQueue
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.testing import HookRecorder

KEY_A = "integration key A: 0123456789abcdef0123456789abcdef"
KEY_B = "integration key B: fedcba9876543210fedcba9876543210"

MakeQueue = Callable[[], TaskQueueProtocol]
Scenario = Callable[[MakeQueue], Awaitable[None]]


@pytest.fixture(autouse=True)
def _reset_envelope() -> Iterator[None]:
    """Every test starts and ends with the default envelope settings (no key, 1 MiB)."""
    configure_envelope()
    yield
    configure_envelope()


async def _scenario(make_queue: MakeQueue) -> None:
    ran: list[str] = []

    async def guarded(label: str) -> str:
        ran.append(label)
        return label

    producer = make_queue()
    configure_envelope(signer=EnvelopeSigner(KEY_A))
    good = Job(name="guarded", args=("signed with A",))
    (await producer.enqueue(good)).unwrap()
    configure_envelope(signer=EnvelopeSigner(KEY_B))
    forged = Job(name="guarded", args=("signed with B",))
    (await producer.enqueue(forged)).unwrap()
    configure_envelope()
    unsigned = Job(name="guarded", args=("unsigned",))
    (await producer.enqueue(unsigned)).unwrap()

    configure_envelope(signer=EnvelopeSigner(KEY_A), max_payload_bytes=4096)
    big = Job(name="guarded", args=("x" * 5000,))
    refused = await producer.enqueue(big)
    assert refused.is_err()
    error = refused.unwrap_err()
    assert isinstance(error, TaskValidationError)
    assert f"job {big.id} (guarded) encodes to" in str(error)
    assert "over the limit of 4 kB (4096 bytes, max_payload_bytes)" in str(error)

    # The worker: its own handle, key A, default size limit.
    configure_envelope(signer=EnvelopeSigner(KEY_A))
    hooks = HookRecorder()
    dlq = DeadLetterQueue()
    worker = TaskWorker(
        "security-worker",
        make_queue(),
        {"guarded": guarded},
        TaskWorkerConfig(retry=RetryConfig(initial_delay=0.01, jitter=0.0), poll_interval=0.05),
        TaskWorkerServices(hooks=hooks, dead_letter_queue=dlq),
    )
    await worker.start()
    try:
        await hooks.wait_until(
            lambda: good.id in hooks.ids("task.completed") and len(dlq) >= 2, timeout=20.0
        )
    finally:
        await worker.stop()

    assert ran == ["signed with A"]
    errors = {record.job.id: record.error for record in dlq.list_failed()}
    assert f"job {unsigned.id} (guarded) is not signed" in errors[unsigned.id]
    assert (
        f"job {forged.id} (guarded): its signature does not match any configured key"
        in errors[forged.id]
    )
    assert key_id(KEY_B) in errors[forged.id]
    assert big.id not in errors
    for record in dlq.list_failed():
        assert record.metadata["reason"] == "poison"
        assert "it was not run" in record.error


@pytest.fixture
def security_scenario() -> Scenario:
    """The signed / forged / unsigned / oversized story, run against a queue factory."""
    return _scenario
