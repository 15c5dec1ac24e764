"""`JobEvent`: the record of one thing that happened to a job, and its kinds.

What every observer of the job event stream (`lexigram.tasks.events`) receives, and
`new_job_event`, the cheap way emitters of many events build one. Import them from
`lexigram.tasks.events`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

QUEUED = "queued"
STARTED = "started"
COMPLETED = "completed"
RETRYING = "retrying"
FAILED = "failed"
RELEASED = "released"
LOST = "lost"
CANCELLED = "cancelled"
JOB_EVENT_KINDS = (QUEUED, STARTED, COMPLETED, RETRYING, FAILED, RELEASED, LOST, CANCELLED)
"""Every `JobEvent.kind`, in the order a job's life can produce them."""

OUTCOME_LABELS: dict[str, str] = {
    COMPLETED: "succeeded",
    RETRYING: "retried",
    FAILED: "dead_lettered",
    CANCELLED: "cancelled",
    RELEASED: "released",
    LOST: "lost",
}
"""The kind of each event that ends an attempt -> the name its outcome is counted under.

The one vocabulary of attempt outcomes: the ``outcome`` label of
``lexigram_tasks_jobs_total``, the worker's counts (``jobs_<outcome>``), its registration
and exit line, in this order.
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent:
    """One thing that happened to a job, as every observer sees it.

    Attributes:
        kind: "queued" (accepted by a queue), "started" (an attempt began),
            "completed" (an attempt succeeded and the job was acked), "retrying" (an
            attempt failed and a retry is scheduled), "failed" (the job failed for good
            and was dead-lettered), "released" (the worker stopped and requeued it),
            "lost" (the worker lost the job's lease; another delivery will settle it),
            "cancelled" (the job was cancelled while it ran; it is not retried).
        task: Task name.
        job_id: Id of the job.
        queue: Queue name ("" when unknown).
        attempt: Attempt number, 1 for the first run (0 for "queued").
        worker_id: Worker that ran the attempt ("" for "queued").
        enqueued_at: When the job was created (epoch seconds).
        started_at: When the attempt started (epoch seconds), None before it did.
        finished_at: When the attempt ended (epoch seconds), None until it did.
        duration: Seconds the attempt ran, None until it ended.
        error: The error of a failed attempt ("TypeName: message").
        reason: Why a job failed for good ("max_retries", "rejected", "bad_arguments",
            "unknown_task", ...) or was retried ("retry_requested").
        retry_in: Seconds until the retry, for "retrying".
        metadata: The job's metadata (read it, never change it): e.g. the trace
            context the producer attached.
    """

    kind: str
    task: str
    job_id: str
    queue: str = ""
    attempt: int = 0
    worker_id: str = ""
    enqueued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    error: str | None = None
    reason: str | None = None
    retry_in: float | None = None
    metadata: Mapping[str, Any] | None = None


class _JobEventDraft:
    """A mutable twin of `JobEvent` that `new_job_event` fills and turns into one.

    Same slots in the same order give both classes one memory layout, so assigning
    ``__class__`` is allowed and makes it the frozen `JobEvent` every observer sees.
    """

    __slots__ = JobEvent.__slots__


_blank_draft = object.__new__


def new_job_event(  # noqa: PLR0917 - the fields in order, passed positionally on hot paths
    kind: str,
    task: str,
    job_id: str,
    queue: str = "",
    attempt: int = 0,
    worker_id: str = "",
    enqueued_at: float | None = None,
    started_at: float | None = None,
    finished_at: float | None = None,
    duration: float | None = None,
    error: str | None = None,
    reason: str | None = None,
    retry_in: float | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> JobEvent:
    """``JobEvent(...)`` for emitters of many events: the same arguments, the same event.

    Calling a class with keyword arguments passes them through a dictionary, and a
    frozen dataclass's ``__init__`` then sets each of the 14 fields through
    ``object.__setattr__``; a function that makes plain slot stores on a mutable twin
    costs under half of that (the worker builds one or two events a job). The arguments
    are the fields in their order: an emitter on a hot path passes them positionally,
    which spares matching 14 keywords to parameters on every call.
    """
    event: Any = _blank_draft(_JobEventDraft)
    event.kind = kind
    event.task = task
    event.job_id = job_id
    event.queue = queue
    event.attempt = attempt
    event.worker_id = worker_id
    event.enqueued_at = enqueued_at
    event.started_at = started_at
    event.finished_at = finished_at
    event.duration = duration
    event.error = error
    event.reason = reason
    event.retry_in = retry_in
    event.metadata = metadata
    event.__class__ = JobEvent
    return event  # type: ignore[no-any-return]
