"""The worker's side of queue-driven workflows: advance a run when a step's job ends.

A step job carries ``metadata[WORKFLOW_STEP_KEY]``: the run's id, the step's stage and
member, the stage's size, whether the stage is a group and whether it is the last. The
rest of the definition stays in the run store, read only by the step that completes a
stage, so a job's size does not grow with the workflow's:

    success -> record_step (atomic join) -> the step that completed the stage enqueues
               the next stage (then record_jobs: the stage's job ids, in one call), or
               finishes the run after the last
    failure for good -> fail_step -> the step that failed the run enqueues on_error
    cancelled        -> fail_step, recorded as ``cancelled`` (the run is FAILED as for
                        a failure: WorkflowStatus has no cancelled state, see step_failed)

A success whose result cannot travel on (not JSON; or, from a step alone in its stage, a
next job the queue would refuse) is recorded as that step's failure instead, before any
success is: a store keeps the first record of a step, so the order of these writes is
what makes the failed step's record, the run's error and `WorkflowError` agree.

The settler calls these before it acks the step's job. A worker that dies in between
leaves the job unacked: it runs again, the store answers the same, and the enqueue is
deduplicated by the step's idempotency key, so an advance is never lost nor doubled.
"""

from __future__ import annotations

import copy
import logging
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from lexigram.contracts.tasks import (
    Job,
    JobRecordingWorkflowRunStoreProtocol,
    TaskQueueError,
    TaskQueueProtocol,
    TaskValidationError,
    WorkflowRunStoreProtocol,
    WorkflowStatus,
    encode_job,
    json_encoder,
)
from lexigram.tasks.constants import IMMUTABLE_STEP_KEY, WORKFLOW_STEP_KEY
from lexigram.tasks.workflows._runs import step_key as record_key

logger = logging.getLogger(__name__)

Stage = dict[str, Any]
"""A stage of a run's definition: ``{"group": bool, "steps": [signature dicts]}``."""

ENQUEUE_BATCH = 200
"""Most step jobs enqueued in one bulk call."""

# The job envelope's strictness (no default, no NaN): what a job argument may hold.
_strict_json = json_encoder()

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
    _, refusal = await _enqueue_batches(queue, jobs)
    if refusal is not None:
        raise refusal[1]


async def _enqueue_batches(
    queue: TaskQueueProtocol, jobs: Sequence[Job]
) -> tuple[list[str | None], tuple[int, TaskValidationError] | None]:
    """Enqueue `jobs` in batches until one is refused (its index and why, not raised).

    Other errors (the broker is unreachable) are raised: retrying can cure those.

    Returns:
        Per job, the id the queue accepted it under (the first job's for a duplicate
        key, so a repeated enqueue gets the same ids), None for a job not enqueued; and
        the first refusal, if any.
    """
    # Imported here: the worker's settle path imports this module lazily, and the
    # producer helpers import the execution package.
    from lexigram.tasks.decorators import enqueue_jobs  # noqa: PLC0415

    ids: list[str | None] = [None] * len(jobs)
    for start in range(0, len(jobs), ENQUEUE_BATCH):
        outcomes = await enqueue_jobs(queue, jobs[start : start + ENQUEUE_BATCH])
        refusal: tuple[int, TaskValidationError] | None = None
        for offset, outcome in enumerate(outcomes):
            if isinstance(outcome, Job):
                ids[start + offset] = outcome.id
            elif refusal is None and isinstance(outcome, TaskValidationError):
                refusal = start + offset, outcome
            elif refusal is None:
                raise outcome
        if refusal is not None:
            return ids, refusal
    return ids, None


async def record_jobs(
    queue: TaskQueueProtocol,
    store: WorkflowRunStoreProtocol,
    workflow_id: str,
    stage: int,
    job_ids: Sequence[str | None],
) -> None:
    """Record the ids of a stage's jobs in the run, in one call, once they are enqueued.

    A store without `JobRecordingWorkflowRunStoreProtocol` is skipped. A failure is
    logged, not raised: the ids only let a step be found before it ends, and raising
    would leave the step that enqueued the stage unacked, to run its handler again, or
    tell a producer that a run whose jobs are on the queue was not applied.
    """
    if not isinstance(store, JobRecordingWorkflowRunStoreProtocol):
        return
    record = {
        "job_ids": list(job_ids),
        "queue": str(getattr(queue, "queue_name", "") or "") or None,
        "enqueued_at": time.time(),
    }
    try:
        await store.record_jobs(workflow_id, stage, record)
    except Exception:
        logger.warning(
            "Recording the job ids of stage %d of workflow %s failed; its steps run all the "
            "same, but show no job id until they end.",
            stage,
            workflow_id,
            exc_info=True,
        )


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


STEP_SUCCEEDED = "succeeded"
"""The ``status`` of the record of a step that returned."""
STEP_FAILED = "failed"
"""The ``status`` of the record of a step that failed for good (or whose result could not
be handed on)."""
STEP_CANCELLED = "cancelled"
"""The ``status`` of the record of a step whose job was cancelled (`JobHandle.cancel`,
``lexigram-tasks job cancel``), while it ran or before."""
UNSUCCESSFUL_STEPS = frozenset({STEP_FAILED, STEP_CANCELLED})
"""The statuses of a step that ended its run without a result: the run is FAILED."""


def _record(job: Job, *, result: Any, error: str | None, cancelled: bool = False) -> dict[str, Any]:
    status = STEP_SUCCEEDED if error is None else STEP_FAILED
    return {
        "job_id": job.id,
        "name": job.name,
        "status": STEP_CANCELLED if cancelled else status,
        "result": result,
        "error": error,
        "attempts": job.retry_count + 1,
        "started_at": job.started_at,
        "finished_at": job.completed_at,
    }


def _not_json(job: Job, place: Mapping[str, Any], data: Any) -> str | None:
    """Why a step's result cannot be stored and handed on, or None when it can.

    Checked with the job envelope's own strict encoder: the stores would keep a value
    JSON cannot carry as its repr (so the next step would get a string), while the
    memory backend keeps the object itself, and a run must end alike on every backend.
    """
    try:
        _strict_json(data)
    except (TypeError, ValueError) as exc:
        return (
            f"TaskValidationError: step {job.name!r} (stage {place['stage']}, member "
            f"{place['member']}) returned a value of type {type(data).__name__!r} that is "
            f"not JSON ({exc}); a step's result is stored and handed on as JSON, so return "
            "plain JSON values (str, int, float, bool, None, list, dict)"
        )
    return None


def _refusal(queue: TaskQueueProtocol, jobs: Sequence[Job]) -> tuple[Job, str] | None:
    """The first of `jobs` the job envelope refuses (e.g. over max_payload_bytes), and why.

    Encoded as the queue will encode them (its name filled in as the queue does), so a
    refusal is found before the step that produced their arguments is recorded.
    """
    queue_name = str(getattr(queue, "queue_name", "") or "") or None
    for job in jobs:
        probe = copy.copy(job)
        probe.queue_name = probe.queue_name or queue_name
        try:
            encode_job(probe)
        except TaskValidationError as exc:
            return job, exc.message
    return None


async def _check_result(
    queue: TaskQueueProtocol,
    store: WorkflowRunStoreProtocol,
    job: Job,
    place: Mapping[str, Any],
    data: Any,
) -> tuple[str | None, list[Stage] | None]:
    """Why a step's result fails the step instead of being recorded, if it does.

    Returns:
        The error (None when the result can be recorded), and the run's stages when
        they were read for the check (to spare the advance a second read).
    """
    problem = _not_json(job, place, data)
    if problem is not None or place["last"] or place["group"]:
        # A group member's result travels only in the list of the whole group, known
        # once the group is complete: a refusal of that list is the next step's failure.
        return problem, None
    # This step alone feeds the next stage: its jobs are built and checked now, while a
    # refusal can still be recorded as this step's failure (a store keeps a step's first
    # record, so a success once recorded stays recorded). The advance reuses this read.
    workflow_id = str(place["id"])
    run = await store.load_run(workflow_id)
    if run is None:
        return None, None  # deleted while it ran: the record finds no run either
    stages: list[Stage] = run["definition"]["stages"]
    stage, member = int(place["stage"]), int(place["member"])
    # A redelivery of a step already recorded is answered from that record, and a run
    # that is over takes no more steps: neither hands this result on.
    over = run["status"] != WorkflowStatus.RUNNING.value
    if over or record_key(stage, member) in (run.get("steps") or {}):
        return None, stages
    index = stage + 1
    last = index + 1 >= len(stages)
    probe = stage_jobs(workflow_id, stages[index], index, last=last, previous=(data,))
    refused = _refusal(queue, probe)
    if refused is None:
        return None, stages
    error = (
        f"TaskValidationError: the result of step {job.name!r} cannot be passed on: the "
        f"job of the next step {refused[0].name!r} was refused: {refused[1]}"
    )
    return error, stages


async def _advance(
    queue: TaskQueueProtocol,
    store: WorkflowRunStoreProtocol,
    place: Mapping[str, Any],
    records: list[dict[str, Any]],
    stages: list[Stage] | None,
) -> None:
    """Finish the run, or enqueue its next stage, after the step that completed a stage."""
    workflow_id, stage = str(place["id"]), int(place["stage"])
    results = [record.get("result") for record in records]
    output = results if place["group"] else results[0]
    if place["last"]:
        await store.finish_run(workflow_id, output)
        return
    if stages is None:
        stages = await _stages(store, workflow_id)
        if stages is None:  # deleted while it ran: nothing left to advance
            return
    index = stage + 1
    last = index + 1 >= len(stages)
    jobs = stage_jobs(workflow_id, stages[index], index, last=last, previous=(output,))
    ids, refusal = await _enqueue_batches(queue, jobs)
    # Also after a refusal: the jobs accepted before it run, and may need cancelling.
    await record_jobs(queue, store, workflow_id, index, ids)
    if refusal is None:
        return
    # The stage that fed it is recorded as succeeded (after a group, the list of every
    # member's result is what was refused), so the run fails at the step whose job
    # could never be enqueued: running this one again cannot help.
    position, exc = refusal
    refused = jobs[position]
    error = (
        f"{type(exc).__name__}: the job of step {refused.name!r} was refused, so it never "
        f"ran: {exc.message}"
    )
    record = {
        "job_id": None,
        "name": refused.name,
        "status": STEP_FAILED,
        "result": None,
        "error": error,
        "attempts": 0,
        "started_at": None,
        "finished_at": time.time(),
    }
    await _fail_run(queue, workflow_id, index, position, record)


async def step_succeeded(
    queue: TaskQueueProtocol,
    job: Job,
    place: Mapping[str, Any],
    data: Any,
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> bool:
    """Record a step's success and advance its run; False when that failed (logged).

    A result that cannot be stored and handed on fails the step instead, before
    anything is recorded, so its record, the run's error and `WorkflowError.step_name`
    all name it: a result that is not JSON, or (for a step alone in its stage) one
    that gets the next stage's job refused, e.g. over ``max_payload_bytes``. After a
    group, whose results travel only together, a refused job fails the step it was for.

    The caller must then leave the job unacked, so the step runs again and the
    advance is retried.
    """
    workflow_id = str(place["id"])
    try:
        store = _store(queue, workflow_id)
        stage, member = int(place["stage"]), int(place["member"])
        error, stages = await _check_result(queue, store, job, place, data)
        if error is not None:
            await _fail_run(
                queue, workflow_id, stage, member, _record(job, result=None, error=error)
            )
            return True
        records = await store.record_step(
            workflow_id,
            stage,
            member,
            size=int(place["size"]),
            record=_record(job, result=data, error=None),
        )
        if records is not None:  # else another step completes the stage, or the run is over
            await _advance(queue, store, place, records, stages)
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
    *,
    cancelled: bool = False,
) -> bool:
    """Mark a step's run FAILED and enqueue its error callback once; False on failure.

    Args:
        queue: The queue the step ran on (its run store is the one registered for it).
        job: The step's job.
        place: The job's ``metadata[WORKFLOW_STEP_KEY]``.
        error: Why it ended.
        log: Where a failure to record it is logged.
        cancelled: The job was cancelled rather than failed: the step's record says
            ``"cancelled"``. The run is FAILED all the same: a run's status is a
            `WorkflowStatus`, which readers of every version parse, and the run did not
            complete; its error names the cancellation.
    """
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
        record = _record(job, result=None, error=error, cancelled=cancelled)
        await _fail_run(queue, workflow_id, int(place["stage"]), int(place["member"]), record)
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


async def _fail_run(
    queue: TaskQueueProtocol,
    workflow_id: str,
    stage: int,
    member: int,
    record: Mapping[str, Any],
) -> None:
    """Record a failed step and mark its run FAILED.

    The step that failed the run enqueues the error callback (once: the callback's job
    has an idempotency key of its own).
    """
    store = _store(queue, workflow_id)
    if not await store.fail_step(workflow_id, stage, member, record=record):
        return
    run = await store.load_run(workflow_id)
    on_error = None if run is None else run["definition"].get("on_error")
    if on_error is None:
        return
    failure = {
        "workflow_id": workflow_id,
        "step": record["name"],
        "job_id": record["job_id"],
        "stage": stage,
        "member": member,
        "error": record["error"],
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
