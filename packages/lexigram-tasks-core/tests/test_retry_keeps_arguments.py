"""A retry and a dead letter carry the arguments that were enqueued, not the ones a
failed attempt changed in place.

A handler gets the job's own argument objects. One that appended to a list it was given
and then failed had its retry run with the longer list, and its dead letter (what
`dlq retry` puts back) show it too.
"""

from __future__ import annotations

from typing import Any

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.config import RetryConfig, TaskWorkerConfig
from lexigram.tasks.dlq import DeadLetterQueue
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.execution._running import pristine_copy
from lexigram.tasks.testing import HookRecorder


async def test_each_attempt_and_the_dead_letter_see_the_enqueued_arguments() -> None:
    seen: list[tuple[list[str], dict[str, Any]]] = []

    async def mutator(items: list[str], opts: dict[str, Any]) -> None:
        seen.append((list(items), dict(opts)))
        items.append("added-by-attempt")
        opts["touched"] = opts.get("touched", 0) + 1
        msg = "not yet"
        raise RuntimeError(msg)

    queue = MemoryTaskQueue()
    hooks = HookRecorder()
    dlq = DeadLetterQueue()
    worker = TaskWorker(
        "w1",
        queue,
        {"mutator": mutator},
        TaskWorkerConfig(retry=RetryConfig(initial_delay=0.001, max_delay=0.001)),
        services=TaskWorkerServices(hooks=hooks, dead_letter_queue=dlq),
    )
    job = Job(name="mutator", args=(["orig"],), kwargs={"opts": {"k": 1}}, max_retries=2)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    try:
        await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    finally:
        await worker.stop()
    assert seen == [(["orig"], {"k": 1})] * 3
    record = dlq.get(job.id)
    assert record is not None
    assert record.job.args == (["orig"],)
    assert record.job.kwargs == {"opts": {"k": 1}}


def test_scalar_arguments_are_not_copied() -> None:
    assert pristine_copy((1, "a", 2.5, None, True), {"n": 3}) is None
    nested: tuple[Any, ...] = ([1, {"a": [2]}], ("t", [3]))
    copied = pristine_copy(nested, {"d": {"x": [4]}})
    assert copied == (nested, {"d": {"x": [4]}})
    assert copied is not None
    assert copied[0][0] is not nested[0]
    assert copied[0][0][1]["a"] is not nested[0][1]["a"]
