"""Retrying a dead-lettered workflow step says what it does not undo.

The step's failure failed its workflow, and a workflow does not resume: the retried job
runs again (its side effects happen again) while the run stays failed and its later
steps never run. `dlq retry` and the dashboard used to say only "Requeued job ...".
"""

from __future__ import annotations

from lexigram.contracts.tasks import Job, TaskQueueProtocol
from lexigram.tasks.admin import requeued_line, retry_dead_letter
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.constants import WORKFLOW_STEP_KEY
from lexigram.tasks.dlq import InMemoryDLQBackend, PersistentDeadLetterQueue


async def test_a_retried_step_names_its_workflow_and_what_stays_failed() -> None:
    queue = MemoryTaskQueue(queue_name="jobs")
    storage = InMemoryDLQBackend()
    place = {"id": "wf-42", "stage": 1, "member": 0, "size": 1, "group": False, "last": False}
    step = Job(name="flaky", queue_name="jobs", metadata={WORKFLOW_STEP_KEY: place})
    await PersistentDeadLetterQueue(backend=storage).add(step, "ValueError: boom")

    def queue_for(_name: str | None) -> TaskQueueProtocol:
        return queue

    job, target = await retry_dead_letter(storage, queue_for, step.id)
    line = requeued_line(job, target)
    assert line.startswith(f"Requeued job {step.id} (flaky) on queue 'jobs'. ")
    assert "It is a step of workflow wf-42" in line
    assert "the workflow stays failed and its later steps do not run" in line
    assert "\n" not in line
    assert await queue.get_task_count() == 1


def test_a_plain_job_gets_the_plain_line() -> None:
    job = Job(name="send", queue_name="emails")
    assert requeued_line(job, "emails") == f"Requeued job {job.id} (send) on queue 'emails'."
