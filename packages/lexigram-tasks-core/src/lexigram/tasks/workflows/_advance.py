"""The worker's side of queue-driven workflows: advance a run when a step's job ends.

A step job carries ``metadata[WORKFLOW_STEP_KEY]``: the run's id, the step's stage and
member, the stage's size, whether the stage is a group and whether it is the last. The
rest of the definition stays in the run store, read only by the step that completes a
stage, so a job's size does not grow with the workflow's:

    success -> record_step (atomic join) -> the step that completed the stage enqueues
               the next stage, or finishes the run after the last
    failure for good -> fail_step -> the step that failed the run enqueues on_error

The settler calls these before it acks the step's job. A worker that dies in between
leaves the job unacked: it runs again, the store answers the same, and the enqueue is
deduplicated by the step's idempotency key, so an advance is never lost nor doubled.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from lexigram.contracts.tasks import (
    Job,
    TaskQueueError,
    TaskQueueProtocol,
    TaskValidationError,
    WorkflowRunStoreProtocol,
)
from lexigram.tasks.constants import IMMUTABLE_STEP_KEY, WORKFLOW_STEP_KEY

logger = logging.getLogger(__name__)

Stage = dict[str, Any]
"""A stage of a run's definition: ``{"group": bool, "steps": [signature dicts]}``."""

ENQUEUE_BATCH = 200
"""Most step jobs enqueued in one bulk call."""

_weak: weakref.WeakKeyDictionary[Any, WorkflowRunStoreProtocol] = weakref.WeakKeyDictionary()
_strong: dict[int, tuple[TaskQueueProtocol, WorkflowRunStoreProtocol]] = {}


def register_workflow_store(queue: TaskQueueProtocol, store: WorkflowRunStoreProtocol) -> None:
    """Record the run store of the queue-driven workflows whose steps run on `queue`.

    The composition root registers the backend's store for every queue it builds, and
    ``apply_async(queue, store=...)`` registers the store it is given, so workers in
    this process that consume `queue` advance the runs in it.

    Args:
        queue: The queue the steps are enqueued on.
        store: The run store (every worker of the queue must share it).
    """
    try:
        _weak[queue] = store
    except TypeError:  # not weakly referenceable
        _strong[id(queue)] = (queue, store)


def workflow_store_for(queue: TaskQueueProtocol) -> WorkflowRunStoreProtocol | None:
    """Return the run store registered for `queue`, or None."""
    try:
        found = _weak.get(queue)
    except TypeError:
        found = None
    if found is not None:
        return found
    entry = _strong.get(id(queue))
    return entry[1] if entry is not None and entry[0] is queue else None


def signature_of(job: Job) -> dict[str, Any]:
    """The JSON form of a step's signature (a `Job` built by ``.s()`` or ``.si()``).

    It keeps what the step's job is enqueued with: the call, the priority, the retry and
    timeout overrides and `scheduled_at` (the earliest time the step may run). The
    idempotency key, the queue and the metadata are the run's (see `stage_jobs`).
    """
    sig = {
        "name": job.name,
        "args": list(job.args),
        "kwargs": dict(job.kwargs),
        "priority": job.priority,
        "max_retries": job.max_retries,
        "timeout": job.timeout,
        "immutable": bool(job.metadata.get(IMMUTABLE_STEP_KEY)),
    }
    # Only when set, so the definition of a run without delays reads as it always did
    # (re-applying a run id compares the stored definition with the new one).
    if job.scheduled_at is not None:
        sig["scheduled_at"] = job.scheduled_at
    return sig


def step_key(workflow_id: str, stage: int, member: int) -> str:
    """The idempotency key of a step's job: one job per step however often it is sent."""
    return f"lexigram.workflow:{workflow_id}:{stage}:{member}"


def stage_jobs(
    workflow_id: str,
    stage: Stage,
    index: int,
    *,
    last: bool,
    previous: tuple[Any, ...],
) -> list[Job]:
    """Build the jobs of `stage`, stage number `index` of the run.

    Each job is its signature's call with the step's own idempotency key (`step_key`),
    the run's id as correlation id and the step's place in its metadata. A signature's
    `scheduled_at` is kept as is: the job runs no earlier than that time, and at once
    when its stage is enqueued after it.

    Args:
        workflow_id: The run's id.
        stage: The stage's definition.
        index: The stage's number in the run.
        last: Whether no stage follows it.
        previous: ``(output,)`` of the stage before, ``()`` for the first stage.
    """
    steps = stage["steps"]
    jobs: list[Job] = []
    for member, sig in enumerate(steps):
        args = tuple(sig["args"])
        if previous and not sig.get("immutable"):
            args = (previous[0], *args)
        place = {
            "id": workflow_id,
            "stage": index,
            "member": member,
            "size": len(steps),
            "group": bool(stage["group"]),
            "last": last,
        }
        jobs.append(
            Job(
                name=sig["name"],
                args=args,
                kwargs=dict(sig["kwargs"]),
                priority=int(sig.get("priority") or 0),
                max_retries=sig.get("max_retries"),
                timeout=sig.get("timeout"),
                scheduled_at=sig.get("scheduled_at"),
                idempotency_key=step_key(workflow_id, index, member),
                correlation_id=workflow_id,
                metadata={WORKFLOW_STEP_KEY: place},
            )
        )
    return jobs


async def enqueue_all(queue: TaskQueueProtocol, jobs: Sequence[Job]) -> None:
    """Enqueue `jobs` in bulk calls of at most `ENQUEUE_BATCH`; raise the first refusal.

    Batches keep each call within the backend's enqueue timeout however large a group
    is; a batch sent twice after a failure adds nothing (each step has its own key).
    """
    # Imported here: the worker's settle path imports this module lazily, and the
    # producer helpers import the execution package.
    from lexigram.tasks.decorators import enqueue_jobs  # noqa: PLC0415

    for start in range(0, len(jobs), ENQUEUE_BATCH):
        for outcome in await enqueue_jobs(queue, jobs[start : start + ENQUEUE_BATCH]):
            if isinstance(outcome, Exception):
                raise outcome


def _store(queue: TaskQueueProtocol, workflow_id: str) -> WorkflowRunStoreProtocol:
    store = workflow_store_for(queue)
    if store is None:
        msg = (
            f"A step of workflow {workflow_id!r} ran on queue "
            f"{getattr(queue, 'queue_name', '?')!r}, but no workflow run store is registered "
            "for it in this worker. Configure a backend with a workflow state store, or call "
            "lexigram.tasks.workflows.register_workflow_store(queue, store) before the "
            "worker starts."
        )
        raise TaskQueueError(msg)
    return store


async def _stages(store: WorkflowRunStoreProtocol, workflow_id: str) -> list[Stage] | None:
    run = await store.load_run(workflow_id)
    if run is None:
        logger.warning(
            "Workflow %s is no longer in the run store (deleted); its next steps are not run.",
            workflow_id,
        )
        return None
    stages: list[Stage] = run["definition"]["stages"]
    return stages


def _record(job: Job, *, result: Any, error: str | None) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "name": job.name,
        "status": "succeeded" if error is None else "failed",
        "result": result,
        "error": error,
        "attempts": job.retry_count + 1,
        "started_at": job.started_at,
        "finished_at": job.completed_at,
    }


async def step_succeeded(
    queue: TaskQueueProtocol,
    job: Job,
    place: Mapping[str, Any],
    data: Any,
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> bool:
    """Record a step's success and advance its run; False when that failed (logged).

    The caller must then leave the job unacked, so the step runs again and the
    advance is retried.
    """
    workflow_id = str(place["id"])
    try:
        store = _store(queue, workflow_id)
        stage, member = int(place["stage"]), int(place["member"])
        records = await store.record_step(
            workflow_id,
            stage,
            member,
            size=int(place["size"]),
            record=_record(job, result=data, error=None),
        )
        if records is None:  # another step completes the stage, or the run is over
            return True
        results = [record.get("result") for record in records]
        output = results if place["group"] else results[0]
        if place["last"]:
            await store.finish_run(workflow_id, output)
            return True
        stages = await _stages(store, workflow_id)
        if stages is None:  # deleted while it ran: nothing left to advance
            return True
        index = stage + 1
        last = index + 1 >= len(stages)
        jobs = stage_jobs(workflow_id, stages[index], index, last=last, previous=(output,))
        try:
            await enqueue_all(queue, jobs)
        except TaskValidationError as exc:
            # The next step can never be enqueued (e.g. a result that is not JSON): running
            # this step again cannot help, so the run fails here with the reason.
            error = (
                f"{type(exc).__name__}: the next step of workflow {workflow_id!r} was refused: "
                f"{exc.message}"
            )
            return await step_failed(queue, job, place, error, log)
    except Exception:
        log.exception(
            "Advancing workflow %s after job %s (%s) failed; the job is not acked, so the "
            "step runs again and the advance is retried.",
            workflow_id,
            job.id,
            job.name,
        )
        return False
    return True


async def step_failed(
    queue: TaskQueueProtocol,
    job: Job,
    place: Mapping[str, Any],
    error: str,
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> bool:
    """Mark a step's run FAILED and enqueue its error callback once; False on failure."""
    workflow_id = str(place["id"])
    if workflow_store_for(queue) is None:
        # Retrying cannot register a store; the job's DLQ record keeps the failure, and
        # leaving it unacked would dead-letter it again and again.
        log.error(
            "Job %s (%s), a step of workflow %s, failed for good on a worker with no "
            "workflow run store for its queue, so the workflow cannot be marked failed. "
            "Configure the backend's workflow state store on every worker of the queue.",
            job.id,
            job.name,
            workflow_id,
        )
        return True
    try:
        store = _store(queue, workflow_id)
        first = await store.fail_step(
            workflow_id,
            int(place["stage"]),
            int(place["member"]),
            record=_record(job, result=None, error=error),
        )
        on_error = None
        if first:
            run = await store.load_run(workflow_id)
            on_error = None if run is None else run["definition"].get("on_error")
        if on_error is not None:
            failure = {
                "workflow_id": workflow_id,
                "step": job.name,
                "job_id": job.id,
                "stage": int(place["stage"]),
                "member": int(place["member"]),
                "error": error,
            }
            (callback,) = stage_jobs(
                workflow_id,
                {"group": False, "steps": [on_error]},
                -1,
                last=True,
                previous=(failure,),
            )
            # The callback is no step of the run: it must not advance or fail it.
            callback.metadata.clear()
            callback.idempotency_key = f"lexigram.workflow:{workflow_id}:on_error"
            await enqueue_all(queue, [callback])
    except Exception:
        log.exception(
            "Marking workflow %s failed after job %s (%s) failed; the job is not acked, so "
            "it is settled again when its lease runs out.",
            workflow_id,
            job.id,
            job.name,
        )
        return False
    return True
