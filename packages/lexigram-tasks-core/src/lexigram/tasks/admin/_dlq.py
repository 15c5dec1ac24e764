"""Dead letters: one row per record, lookup by id prefix, retry and delete.

The functions work on the backend's shared dead-letter storage (its
``create_dlq_backend``) through `PersistentDeadLetterQueue`; `queue_for` hands them the
queue a job goes back onto (its own, unless the caller names another).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lexigram.contracts.tasks import (
    FailureRecord,
    Job,
    ResultStoreProtocol,
    TaskQueueProtocol,
)
from lexigram.tasks.admin._errors import OperationError
from lexigram.tasks.constants import MIN_ID_PREFIX, WORKFLOW_STEP_KEY
from lexigram.tasks.dlq import PersistentDeadLetterQueue
from lexigram.tasks.dlq._queue import reset_for_retry, undecodable, undecodable_message

QueueFor = Callable[[str | None], TaskQueueProtocol]
"""Returns the queue of that name (None: the backend's default queue)."""

_AMBIGUOUS_SHOWN = 5
"""How many matching ids an ambiguous prefix's error lists."""


def dead_letter_worker(metadata: Mapping[str, Any]) -> str | None:
    """Which worker dead-lettered a job: its process (``host:pid``) and its worker id."""
    named = [str(part) for part in (metadata.get("process"), metadata.get("worker_id")) if part]
    return " ".join(named) or None


def dead_letter_row(record: FailureRecord) -> dict[str, Any]:
    """The fields a listing shows of one dead-lettered job."""
    meta = record.metadata
    return {
        "id": record.job.id,
        "task": record.job.name,
        "queue": record.job.queue_name,
        "error": record.error,
        "attempts": record.attempt_count,
        "max_retries": meta.get("max_retries", record.job.max_retries),
        "reason": meta.get("reason"),
        "worker": dead_letter_worker(meta),
        "failed_at": record.failed_at,
    }


def _dlq(
    dlq_backend: Any, queue: TaskQueueProtocol, result_store: ResultStoreProtocol | None = None
) -> PersistentDeadLetterQueue:
    return PersistentDeadLetterQueue(backend=dlq_backend, queue=queue, result_store=result_store)


async def find_dead_letter(
    dlq_backend: Any, queue: TaskQueueProtocol, job_id: str
) -> FailureRecord:
    """The dead-lettered job whose id is `job_id` or starts with it (a unique prefix).

    Raises:
        OperationError: No dead-lettered job matches, or several do.
    """
    dlq = _dlq(dlq_backend, queue)
    record = await dlq.get(job_id)
    if record is not None:
        return record
    if len(job_id) < MIN_ID_PREFIX:
        # An empty id would match every record (`dlq retry "$ID"` with ID unset).
        msg = (
            f"No dead-lettered job has the id {job_id!r}, and a prefix of an id needs at "
            f"least {MIN_ID_PREFIX} characters. Give more characters of the id."
        )
        raise OperationError(msg)
    matches = [
        data
        for data in await dlq_backend.list_all()
        if str(data.get("job_id", "")).startswith(job_id)
    ]
    if len(matches) == 1:
        found = await dlq.get(str(matches[0]["job_id"]))
        if found is not None:
            return found
    if len(matches) > 1:
        shown = sorted(str(m["job_id"]) for m in matches)
        ids = ", ".join(shown[:_AMBIGUOUS_SHOWN]) + (
            ", ..." if len(shown) > _AMBIGUOUS_SHOWN else ""
        )
        msg = (
            f"{len(matches)} dead-lettered jobs have ids starting with {job_id!r} ({ids}). "
            "Give more characters of the id."
        )
        raise OperationError(msg)
    msg = (
        f"No dead-lettered job has an id starting with {job_id!r}. Run `lexigram-tasks dlq "
        "list` (with the same --backend) to see the ids."
    )
    raise OperationError(msg)


async def retry_dead_letter(
    dlq_backend: Any,
    queue_for: QueueFor,
    job_id: str,
    *,
    queue_name: str | None = None,
    result_store: ResultStoreProtocol | None = None,
) -> tuple[Job, str]:
    """Move one dead-lettered job back onto its queue (or `queue_name`), retries reset.

    Args:
        dlq_backend: The backend's dead-letter storage.
        queue_for: Opens (or reuses) a queue by name.
        job_id: The job's id or a unique prefix of it.
        queue_name: Put it on this queue instead of its own.
        result_store: The backend's result store: the failure stored for the job's
            last run is deleted from it, so its status answers for the new run.

    Returns:
        The requeued job and the name of the queue it is on.

    Raises:
        OperationError: No such job, it left the dead-letter queue meanwhile, or it is
            the stand-in of a payload that could not be decoded (reason ``poison``),
            which cannot be retried.
    """
    record = await find_dead_letter(dlq_backend, queue_for(None), job_id)
    if undecodable(record):  # refused before any queue is opened
        raise OperationError(undecodable_message(record))
    target = queue_name or record.job.queue_name
    queue = queue_for(target)
    if await _dlq(dlq_backend, queue, result_store).requeue(record.job.id, queue) is None:
        # Taken by another process between the lookup and the move.
        msg = f"Job {record.job.id!r} left the dead-letter queue meanwhile; nothing to do."
        raise OperationError(msg)
    return reset_for_retry(record.job), queue.queue_name


async def retry_dead_letters(
    dlq_backend: Any,
    queue_for: QueueFor,
    *,
    task_name: str | None = None,
    job_ids: Iterable[str] | None = None,
    result_store: ResultStoreProtocol | None = None,
    on_skipped: Callable[[FailureRecord], object] | None = None,
    on_requeued: Callable[[Job], object] | None = None,
) -> int:
    """Move dead-lettered jobs back onto their queues; return how many were moved.

    A job dead-lettered because its payload could not be decoded (reason ``poison``)
    is left in the dead-letter queue: it cannot be retried (see `retry_dead_letter`).

    Args:
        dlq_backend: The backend's dead-letter storage.
        queue_for: Opens (or reuses) a queue by name.
        task_name: Only jobs of this task.
        job_ids: Only these jobs (whole ids); None for every one.
        result_store: The backend's result store (see `retry_dead_letter`).
        on_skipped: Called with each selected record left in place because it cannot
            be retried.
        on_requeued: Called with each job moved back (as dead-lettered, before its
            retries were reset).
    """
    wanted = None if job_ids is None else set(job_ids)
    count = 0
    for data in await dlq_backend.list_all():
        record = FailureRecord.from_dict(data)
        if task_name is not None and record.job.name != task_name:
            continue
        if wanted is not None and record.job.id not in wanted:
            continue
        if undecodable(record):
            if on_skipped is not None:
                on_skipped(record)
            continue
        queue = queue_for(record.job.queue_name)
        if await _dlq(dlq_backend, queue, result_store).requeue(record.job.id, queue) is not None:
            count += 1
            if on_requeued is not None:
                on_requeued(record.job)
    return count


def _workflow_of(job: Job) -> str | None:
    """The id of the queue-driven workflow whose step `job` is (None: not a step)."""
    place = job.metadata.get(WORKFLOW_STEP_KEY)
    if isinstance(place, Mapping) and place.get("id"):
        return str(place["id"])
    return None


def requeued_line(job: Job, queue_name: str) -> str:
    """The one-line outcome of retrying one dead letter, with what it does not undo."""
    line = f"Requeued job {job.id} ({job.name}) on queue {queue_name!r}."
    workflow_id = _workflow_of(job)
    if workflow_id is not None:
        line += (
            f" It is a step of workflow {workflow_id}, which failed when the job was "
            "dead-lettered: the job runs again, but the workflow stays failed and its "
            "later steps do not run (apply the workflow again to run them)."
        )
    return line


def _steps_note(steps: list[str]) -> str:
    """What a bulk retry does not undo, once for all the workflow steps it requeued.

    Args:
        steps: The workflow id of each requeued job that is a workflow step.
    """
    if not steps:
        return ""
    runs = sorted(set(steps))
    named = ", ".join(runs[:_AMBIGUOUS_SHOWN]) + (", ..." if len(runs) > _AMBIGUOUS_SHOWN else "")
    one_job, one_run = len(steps) == 1, len(runs) == 1
    are = "is a step" if one_job else "are steps"
    jobs = "job was" if one_job else "jobs were"
    the_jobs = "the job runs" if one_job else "the jobs run"
    if one_run:
        runs_text = f"workflow {named}, which"
        stays = "the workflow stays failed and its later steps do not run (apply it again"
    else:
        runs_text = f"workflows {named}, which"
        stays = "the workflows stay failed and their later steps do not run (apply them again"
    return (
        f" {len(steps)} of them {are} of {runs_text} failed when the {jobs} dead-lettered: "
        f"{the_jobs} again, but {stays} to run them)."
    )


async def retry_dead_letters_reported(
    dlq_backend: Any,
    queue_for: QueueFor,
    *,
    task_name: str | None = None,
    job_ids: Iterable[str] | None = None,
    result_store: ResultStoreProtocol | None = None,
) -> str:
    """`retry_dead_letters`, returning its one-line outcome for a person to read.

    The line says how many jobs went back (and how many of them are workflow steps,
    whose workflows stay failed, as `requeued_line` says of one) and how many
    undecodable records stayed: what `dlq retry-all` prints and the dashboard's bulk
    retries show.
    """
    skipped: list[FailureRecord] = []
    steps: list[str] = []

    def requeued(job: Job) -> None:
        workflow_id = _workflow_of(job)
        if workflow_id is not None:
            steps.append(workflow_id)

    count = await retry_dead_letters(
        dlq_backend,
        queue_for,
        task_name=task_name,
        job_ids=job_ids,
        result_store=result_store,
        on_skipped=skipped.append,
        on_requeued=requeued,
    )
    # As `requeued_line` warns for one step: a retried step does not resume its workflow.
    line = f"Requeued {count} job(s).{_steps_note(steps)}"
    if skipped:
        line += (
            f" Left {len(skipped)} in the DLQ: their payloads could not be decoded (reason "
            "'poison'), so they cannot be retried; each one's record shows the error."
        )
    return line


async def delete_dead_letter(dlq_backend: Any, job_ids: Iterable[str]) -> int:
    """Delete dead-lettered jobs for good by whole id; return how many were there."""
    count = 0
    for job_id in job_ids:
        if await dlq_backend.remove(job_id):
            count += 1
    return count
