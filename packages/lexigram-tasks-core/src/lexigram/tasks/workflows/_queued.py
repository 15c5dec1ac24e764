"""Queue-driven workflows: `JobChain`, `JobGroup`, `JobChord` and their `WorkflowHandle`.

Each step is a job on the broker, run by whichever worker is free; the worker that
finishes a step advances the run (see `lexigram.tasks.workflows._advance`). A run is
a sequence of stages, a stage one step or a group of steps: a chain is one stage per
step, a group one stage, a chord a group stage then its callback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from lexigram.contracts.tasks import (
    Job,
    JobStatus,
    ListingWorkflowRunStoreProtocol,
    TaskQueueError,
    TaskQueueProtocol,
    WorkflowError,
    WorkflowRunStoreProtocol,
    WorkflowStatus,
)
from lexigram.tasks.workflows._advance import (
    STEP_SUCCEEDED,
    UNSUCCESSFUL_STEPS,
    Stage,
    enqueue_all,
    record_jobs,
    register_workflow_store,
    signature_of,
    stage_jobs,
    workflow_store_for,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowStepInfo:
    """One step of a queue-driven run, as its store records it.

    Attributes:
        stage: The stage's number (0-based).
        member: The step's place in its stage (0-based).
        name: The task name.
        status: ``"waiting"`` (its job is not enqueued: its stage has not started),
            ``"queued"`` (its job is on the queue and has not ended: waiting for a
            worker, or running), ``"succeeded"``, ``"failed"`` or ``"cancelled"``
            (its job was cancelled, while it ran or before; the run is FAILED, as
            after a failure). `with_job_states` tells a queued step's job apart:
            ``"running"`` or ``"retrying"``.
        result: What it returned.
        error: Why it failed, or that it was cancelled.
        job_id: The id of its job, from the moment the job is enqueued (with a store
            that records the jobs of each stage, as every store shipped does; with
            another, once the step has ended).
        attempts: Attempts it took.
        started_at: When its last attempt started (epoch seconds).
        finished_at: When it ended.
    """

    stage: int
    member: int
    name: str
    status: str
    result: Any = None
    error: str | None = None
    job_id: str | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowRunInfo:
    """A queue-driven run: its status, final result and every step.

    Attributes:
        workflow_id: The run's id.
        kind: ``"JobChain"``, ``"JobGroup"`` or ``"JobChord"``.
        status: RUNNING, COMPLETED or FAILED.
        result: The final result (COMPLETED only).
        error: The error of the step that failed the run (FAILED only).
        steps: Every step, in stage then member order.
        created_at: When the run was applied (epoch seconds).
        updated_at: When a step last ended.
        queue_name: The queue its steps' jobs are enqueued on (None: not recorded).
        failed_step: ``"<stage>:<member>"`` of the step that failed the run, the one
            whose error is `error` (FAILED only). In a group several steps may fail;
            this is the one the run's ``on_error`` was given. None while the run has
            not failed, or from a store that does not report it.
    """

    workflow_id: str
    kind: str
    status: WorkflowStatus
    result: Any = None
    error: str | None = None
    steps: list[WorkflowStepInfo] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    queue_name: str | None = None
    failed_step: str | None = None

    def failing_step(self) -> WorkflowStepInfo | None:
        """The step that failed the run (None unless FAILED).

        The one the store names (`failed_step`); from a store that names none, the
        first failed or cancelled step in stage order.
        """
        if self.status is not WorkflowStatus.FAILED:
            return None
        if self.failed_step is not None:
            named = next(
                (s for s in self.steps if f"{s.stage}:{s.member}" == self.failed_step), None
            )
            if named is not None:
                return named
        return next((s for s in self.steps if s.status in UNSUCCESSFUL_STEPS), None)


def run_info(run: dict[str, Any]) -> WorkflowRunInfo:
    """Build a `WorkflowRunInfo` from a run as `WorkflowRunStoreProtocol.load_run` returns it.

    A step that has not ended takes its job id from its stage's jobs record (``jobs``,
    see `JobRecordingWorkflowRunStoreProtocol`); without one (a store that keeps none,
    or the moment between the enqueue and its record) it is queued once every stage
    before it succeeded.
    """
    definition = run["definition"]
    records: dict[str, Any] = run.get("steps") or {}
    jobs: dict[str, Any] = run.get("jobs") or {}
    queue_name: str | None = None
    steps: list[WorkflowStepInfo] = []
    started = True  # the first stage is enqueued when the run is applied
    for stage_no, stage in enumerate(definition["stages"]):
        enqueued: dict[str, Any] = jobs.get(str(stage_no)) or {}
        ids: list[str | None] = list(enqueued.get("job_ids") or [])
        queue_name = queue_name or enqueued.get("queue")
        complete = True
        for member, sig in enumerate(stage["steps"]):
            record = records.get(f"{stage_no}:{member}")
            if record is None:
                complete = False
                job_id = ids[member] if member < len(ids) else None
                if enqueued:  # the member's id says whether its job went out
                    status = "queued" if job_id else "waiting"
                else:
                    status = "queued" if started else "waiting"
                steps.append(
                    WorkflowStepInfo(
                        stage=stage_no,
                        member=member,
                        name=sig["name"],
                        status=status,
                        job_id=job_id,
                    )
                )
                continue
            steps.append(
                WorkflowStepInfo(
                    stage=stage_no,
                    member=member,
                    name=str(record.get("name") or sig["name"]),
                    status=str(record["status"]),
                    result=record.get("result"),
                    error=record.get("error"),
                    job_id=record.get("job_id"),
                    attempts=int(record.get("attempts") or 0),
                    started_at=record.get("started_at"),
                    finished_at=record.get("finished_at"),
                )
            )
            complete = complete and record["status"] == STEP_SUCCEEDED
        started = started and complete
    return WorkflowRunInfo(
        workflow_id=str(run["workflow_id"]),
        kind=str(definition.get("kind", "")),
        status=WorkflowStatus(run["status"]),
        result=run.get("result"),
        error=run.get("error"),
        steps=steps,
        created_at=float(run.get("created_at") or 0.0),
        updated_at=float(run.get("updated_at") or 0.0),
        queue_name=None if queue_name is None else str(queue_name),
        failed_step=None if run.get("failed_step") is None else str(run["failed_step"]),
    )


async def list_run_infos(
    store: WorkflowRunStoreProtocol,
    *,
    status: WorkflowStatus | None = None,
    limit: int = 100,
) -> list[WorkflowRunInfo] | None:
    """Return a store's queue-driven runs, newest first, or None when it cannot list them.

    Args:
        store: The run store; one that is not a `ListingWorkflowRunStoreProtocol`
            (``list_runs``) gets None, not an empty list, so a caller can say why.
        status: Only the runs in this status (None: every run).
        limit: Most runs returned.
    """
    if not isinstance(store, ListingWorkflowRunStoreProtocol):
        return None
    return [run_info(run) for run in await store.list_runs(status=status, limit=limit)]


_LIVE_STATES = {JobStatus.RUNNING: "running", JobStatus.RETRYING: "retrying"}

JOB_LOOKUPS = 32
"""Most `get_job` calls `with_job_states` has under way at once."""


async def with_job_states(info: WorkflowRunInfo, queue: TaskQueueProtocol) -> WorkflowRunInfo:
    """Return `info` with each queued step's state as its queue tells it.

    A step is recorded in the run store only when it ends; until then its job is on the
    queue, which knows whether a worker holds it. Each queued step with a job id becomes
    ``"running"`` (a worker holds its job), ``"retrying"`` (an attempt failed, the next
    is due later) or stays ``"queued"`` (waiting for a worker, or no longer on the queue:
    it ended after `info` was read). One `get_job` per such step, `JOB_LOOKUPS` at a
    time: this is for reading a run (``workflow show``), not for polling it.

    Args:
        info: The run, as `WorkflowHandle.info` or `run_info` built it.
        queue: The queue its steps run on (`WorkflowRunInfo.queue_name` names it).
    """
    asked = [i for i, step in enumerate(info.steps) if step.status == "queued" and step.job_id]
    if not asked:
        return info
    gate = asyncio.Semaphore(JOB_LOOKUPS)

    async def state(job_id: str) -> str:
        async with gate:
            job = await queue.get_job(job_id)
        return "queued" if job is None else _LIVE_STATES.get(job.status, "queued")

    states = await asyncio.gather(*(state(str(info.steps[i].job_id)) for i in asked))
    steps = list(info.steps)
    for index, status in zip(asked, states, strict=True):
        steps[index] = dataclasses.replace(steps[index], status=status)
    return dataclasses.replace(info, steps=steps)


class WorkflowHandle:
    """An applied queue-driven workflow: its id, its state, and a way to await its end.

    Attributes:
        workflow_id: The run's id (``lexigram-tasks workflow show ID``).
        store: The run store it is kept in.
    """

    def __init__(self, workflow_id: str, store: WorkflowRunStoreProtocol) -> None:
        self.workflow_id = workflow_id
        self.store = store

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.workflow_id!r})"

    async def info(self) -> WorkflowRunInfo:
        """Return the run's current state.

        Raises:
            WorkflowError: The store holds no run of this id (deleted, or another store).
        """
        run = await self.store.load_run(self.workflow_id)
        if run is None:
            msg = (
                f"Workflow {self.workflow_id!r} is not in the workflow store. It was deleted, "
                "or applied with another store; pass the store its workers use."
            )
            raise WorkflowError(msg)
        return run_info(run)

    async def status(self) -> WorkflowStatus:
        """Return the run's status (RUNNING, COMPLETED or FAILED)."""
        return (await self.info()).status

    async def result(self, timeout: float | None = 60.0, *, poll_interval: float = 0.5) -> Any:
        """Wait for the run to end and return its final result.

        A chain's result is its last step's, a group's the list of its steps' results
        in order, a chord's its callback's.

        Args:
            timeout: Seconds to wait (None: forever).
            poll_interval: Longest pause between reads of the store (the first reads
                come quicker: 10 ms, then half as often again each time).

        Raises:
            WorkflowError: The run failed (the message names the step, failed or
                cancelled, and its error).
            TimeoutError: It did not end within `timeout`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.01
        while True:
            info = await self.info()
            if info.status is WorkflowStatus.COMPLETED:
                return info.result
            if info.status is WorkflowStatus.FAILED:
                # The step the store says failed the run: in a group another member
                # may have failed too, earlier in stage order but later in time. A
                # cancelled step ends its run as a failed one does: it is named alike.
                failed = info.failing_step()
                name = failed.name if failed is not None else None
                reason = str(info.error or "").rstrip(".")  # an error may end its sentence
                msg = (
                    f"Workflow {self.workflow_id!r} failed at step {name!r}: {reason}. "
                    "Its other steps were not run; see WorkflowHandle.info() for each step."
                )
                raise WorkflowError(msg, step_name=name, result=info)
            if deadline is not None and time.monotonic() >= deadline:
                msg = (
                    f"Workflow {self.workflow_id!r} did not finish within {timeout:g} s "
                    f"(status {info.status.value}). Are workers consuming its queue?"
                )
                raise TimeoutError(msg)
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, poll_interval)


class QueuedWorkflow(ABC):
    """Base of the queue-driven workflows: a run of stages, applied onto a queue.

    Args:
        on_error: A signature enqueued once when a step fails for good (after its
            retries); its first argument is a dict with the ``workflow_id``, the failed
            ``step`` (task name), its ``job_id``, ``stage``, ``member`` and ``error``
            (nothing is prepended with ``.si()``).
    """

    def __init__(self, *, on_error: Job | None = None) -> None:
        self.on_error = on_error

    @abstractmethod
    def stages(self) -> list[Stage]:
        """The run's stages, as stored in its definition."""

    async def apply_async(
        self,
        queue: TaskQueueProtocol,
        *,
        store: WorkflowRunStoreProtocol | None = None,
        workflow_id: str | None = None,
    ) -> WorkflowHandle:
        """Start a run: store its definition and enqueue its first stage on `queue`.

        Applying again with the same `workflow_id` enqueues nothing new (each step's
        job has an idempotency key), so a producer may retry after a crash. The retry
        must build the same workflow, except for its steps' ``scheduled_at``
        (`TIMING_FIELDS`), which may differ: the run keeps the first apply's.

        Args:
            queue: Where every step's job goes; its workers advance the run.
            store: The run store the workers share (default: the one registered for
                `queue`, as the composition root does for every backend it builds).
            workflow_id: The run's id (default: a new random one).

        Returns:
            The run's handle.

        Raises:
            TaskQueueError: No store is given or registered, or the queue refused a job.
            WorkflowError: `workflow_id` names a run of another workflow.
        """
        if store is None:
            store = workflow_store_for(queue)
            if store is None:
                msg = (
                    f"No workflow run store is registered for queue "
                    f"{getattr(queue, 'queue_name', '?')!r}. Pass apply_async(queue, store=...) "
                    "with the store its workers use, e.g. the backend's workflow state store."
                )
                raise TaskQueueError(msg)
        register_workflow_store(queue, store)
        run_id = workflow_id or uuid.uuid4().hex
        stages = self.stages()
        on_error = None if self.on_error is None else signature_of(self.on_error)
        definition = {"kind": type(self).__name__, "stages": stages, "on_error": on_error}
        if not await store.create_run(run_id, definition):
            await _check_same_run(store, run_id, definition)
        jobs = stage_jobs(run_id, stages[0], 0, last=len(stages) == 1, previous=())
        await enqueue_all(queue, jobs)
        # The enqueue gave each job the id the queue holds it under (a retried apply gets
        # the first apply's ids back), so the run shows them at once.
        await record_jobs(queue, store, run_id, 0, [job.id for job in jobs])
        return WorkflowHandle(run_id, store)


TIMING_FIELDS = frozenset({"scheduled_at"})
"""Signature fields a retried apply may change: left out when comparing definitions."""


def _comparable(definition: Any) -> str:
    """A definition as JSON without its signatures' `TIMING_FIELDS`.

    A step's ``scheduled_at`` is usually computed when the workflow is built
    (``time.time() + 5``), so a producer retrying the same apply sends another value;
    the run it stored keeps the first one.
    """

    def strip(sig: dict[str, Any]) -> dict[str, Any]:
        # The signature's own fields only: an argument that happens to be called
        # "scheduled_at" is the call's data and must still match.
        return {key: value for key, value in sig.items() if key not in TIMING_FIELDS}

    plain = dict(definition)
    stages = [
        {**stage, "steps": [strip(sig) for sig in stage.get("steps") or []]}
        for stage in plain.get("stages") or []
    ]
    on_error = plain.get("on_error")
    plain.update(stages=stages, on_error=strip(on_error) if on_error is not None else None)
    # As JSON, the form the store keeps (tuples come back as lists).
    return json.dumps(plain, sort_keys=True, default=str)


async def _check_same_run(
    store: WorkflowRunStoreProtocol, run_id: str, definition: dict[str, Any]
) -> None:
    """Refuse to re-apply a run id that names another workflow (a retry must match)."""
    run = await store.load_run(run_id)
    same = run is not None and _comparable(run["definition"]) == _comparable(definition)
    if not same:
        msg = (
            f"Workflow id {run_id!r} is already used by another workflow in this store. "
            "Apply with a new workflow_id (or none, for a random one), or delete the old "
            "run with store.delete_run(...)."
        )
        raise WorkflowError(msg)


def _group_stage(steps: Sequence[object], what: str) -> Stage:
    for step in steps:
        if not isinstance(step, Job):
            msg = (
                f"A {what} takes signatures such as task.s(...), got {type(step).__name__}. "
                "Nest a group in a JobChain instead (a group followed by a step is a chord)."
            )
            raise TypeError(msg)
    if not steps:
        msg = f"A {what} needs at least one step, e.g. {what}(task.s(1), task.s(2))."
        raise ValueError(msg)
    return {"group": True, "steps": [signature_of(cast("Job", step)) for step in steps]}


class JobGroup(QueuedWorkflow):
    """Steps run in parallel, each a job; the result is the list of their results.

    Example:
        handle = await JobGroup(resize.s("a.png"), resize.s("b.png")).apply_async(queue)
        sizes = await handle.result()

    Args:
        *steps: Signatures (``task.s(...)``).
        on_error: See `QueuedWorkflow`.
    """

    def __init__(self, *steps: Job, on_error: Job | None = None) -> None:
        super().__init__(on_error=on_error)
        self.steps = list(steps)
        self._stage = _group_stage(self.steps, "JobGroup")

    def __repr__(self) -> str:
        return f"JobGroup({[step.name for step in self.steps]!r})"

    def stages(self) -> list[Stage]:
        """One stage with every step."""
        return [self._stage]


class JobChain(QueuedWorkflow):
    """Steps run one after another, each a job that gets the previous step's result.

    Each step's job receives the previous result as its first argument, before the
    signature's own (not with ``.si()``). A `JobGroup` in a chain runs its steps in
    parallel on the previous result, and the step after it gets their results as a
    list (that is a chord); a nested chain or chord is spliced in.

    Example:
        handle = await JobChain(fetch.s(url), parse.s(), store.s()).apply_async(queue)
        await handle.result()

    Args:
        *steps: Signatures, groups, chains or chords.
        on_error: See `QueuedWorkflow`.
    """

    def __init__(self, *steps: Job | QueuedWorkflow, on_error: Job | None = None) -> None:
        super().__init__(on_error=on_error)
        if not steps:
            msg = "A JobChain needs at least one step, e.g. JobChain(task.s(1), other.s())."
            raise ValueError(msg)
        self.steps = list(steps)
        self._stages: list[Stage] = []
        # Typed as object: the checks below are for callers without a type checker.
        given: list[object] = list(steps)
        for step in given:
            if isinstance(step, Job):
                self._stages.append({"group": False, "steps": [signature_of(step)]})
            elif isinstance(step, QueuedWorkflow):
                if step.on_error is not None:
                    msg = (
                        f"A {type(step).__name__} nested in a JobChain has its own on_error, "
                        "which would never run: set on_error on the outer JobChain."
                    )
                    raise ValueError(msg)
                self._stages.extend(step.stages())
            else:
                msg = (
                    f"A JobChain takes signatures (task.s(...)), JobGroups, JobChains or "
                    f"JobChords, got {type(step).__name__}."
                )
                raise TypeError(msg)

    def __repr__(self) -> str:
        return f"JobChain({self.steps!r})"

    def stages(self) -> list[Stage]:
        """One stage per step (a group's steps share one)."""
        return list(self._stages)


class JobChord(QueuedWorkflow):
    """A group of steps in parallel, then a callback given all their results in order.

    The callback's job is enqueued exactly once, by the worker that finishes the last
    member, whatever the duplicates or redeliveries of the members; it is never
    enqueued while a member has not finished, nor after a member failed for good.

    Example:
        thumbs = JobGroup(*(thumbnail.s(path) for path in paths))
        handle = await JobChord(thumbs, report.s()).apply_async(queue)

    Args:
        group: The parallel steps (a `JobGroup` or a sequence of signatures).
        callback: The signature that receives the list of results.
        on_error: See `QueuedWorkflow`.
    """

    def __init__(
        self, group: JobGroup | Sequence[Job], callback: Job, *, on_error: Job | None = None
    ) -> None:
        super().__init__(on_error=on_error)
        self.group = group if isinstance(group, JobGroup) else JobGroup(*group)
        self.callback = callback
        given: object = callback
        if not isinstance(given, Job):
            msg = f"A JobChord's callback is a signature (task.s()), got {type(given).__name__}."
            raise TypeError(msg)

    def __repr__(self) -> str:
        return f"JobChord({self.group!r}, callback={self.callback.name!r})"

    def stages(self) -> list[Stage]:
        """The group's stage, then the callback's."""
        return [*self.group.stages(), {"group": False, "steps": [signature_of(self.callback)]}]
