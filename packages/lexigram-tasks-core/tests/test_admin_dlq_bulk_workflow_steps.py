"""A bulk retry of dead letters says what it does not undo for the workflow steps among them.

`dlq retry ID` of a workflow step warns that its workflow stays failed and its later
steps do not run; `dlq retry-all` and the dashboard's bulk retries (both
`retry_dead_letters_reported`) said only "Requeued N job(s).". Their line now counts the
requeued steps, names their workflows and gives the same warning, once.
"""

from __future__ import annotations

from lexigram.contracts.tasks import Job, TaskQueueProtocol
from lexigram.tasks.admin import retry_dead_letters_reported
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.constants import WORKFLOW_STEP_KEY
from lexigram.tasks.dlq import InMemoryDLQBackend, PersistentDeadLetterQueue


def _step(workflow_id: str, stage: int) -> Job:
    place = {"id": workflow_id, "stage": stage, "member": 0, "size": 1, "group": False}
    return Job(name="flaky", queue_name="jobs", metadata={WORKFLOW_STEP_KEY: {**place}})


async def _dead(*jobs: Job) -> tuple[InMemoryDLQBackend, MemoryTaskQueue]:
    storage = InMemoryDLQBackend()
    for job in jobs:
        await PersistentDeadLetterQueue(backend=storage).add(job, "ValueError: boom")
    return storage, MemoryTaskQueue(queue_name="jobs")


async def test_retry_all_counts_the_workflow_steps_and_warns_once() -> None:
    plain = Job(name="send", queue_name="jobs")
    storage, queue = await _dead(_step("wf-b", 1), plain, _step("wf-a", 0), _step("wf-b", 2))

    def queue_for(_name: str | None) -> TaskQueueProtocol:
        return queue

    line = await retry_dead_letters_reported(storage, queue_for)
    assert line == (
        "Requeued 4 job(s). 3 of them are steps of workflows wf-a, wf-b, which failed when "
        "the jobs were dead-lettered: the jobs run again, but the workflows stay failed and "
        "their later steps do not run (apply them again to run them)."
    )
    assert await queue.get_task_count() == 4


async def test_a_bulk_retry_of_chosen_jobs_warns_only_for_steps_among_them() -> None:
    step, plain = _step("wf-c", 1), Job(name="send", queue_name="jobs")
    storage, queue = await _dead(step, plain)

    def queue_for(_name: str | None) -> TaskQueueProtocol:
        return queue

    # The dashboard's "Retry selected": whole ids.
    assert await retry_dead_letters_reported(storage, queue_for, job_ids=[plain.id]) == (
        "Requeued 1 job(s)."
    )
    line = await retry_dead_letters_reported(storage, queue_for, job_ids=[step.id])
    assert line == (
        "Requeued 1 job(s). 1 of them is a step of workflow wf-c, which failed when the job "
        "was dead-lettered: the job runs again, but the workflow stays failed and its later "
        "steps do not run (apply it again to run them)."
    )
