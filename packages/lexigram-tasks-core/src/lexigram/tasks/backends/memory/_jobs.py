"""How a `MemoryTaskQueue` keeps a `Job` and lends it out: envelope, copy, restored job.

`envelope_of` is the JSON envelope a job is kept as from its enqueue (it refuses what a
networked backend would refuse), and `restored` the new object a job that comes back from
a lapsed lease or a nack is rebuilt as from it. `copy_job` is a shallow copy of a job,
compiled from `Job`'s fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from lexigram.contracts.tasks import (
    Job,
    JobStatus,
    TaskValidationError,
    decode_or_poison,
    encode_job,
)


def _build_copier() -> Callable[[Job, str | None], Job]:
    """Compile the per-delivery copy of a `Job`: one plain assignment per field.

    Generated from the dataclass fields so that it follows `Job` when a field is added;
    straight-line assignments cost a fraction of a loop over getattr/setattr, and this
    runs once per delivery. Containers a handler might change are copied one level deep.
    """
    lines = ["def copy_job(job, lease_token):", "    copy = new(Job)"]
    lines += [f"    copy.{f.name} = job.{f.name}" for f in dataclasses.fields(Job)]
    lines += [
        "    copy.kwargs = dict(job.kwargs)",
        "    copy.metadata = dict(job.metadata)",
        "    copy.depends_on = list(job.depends_on)",
        "    copy.lease_token = lease_token",
        "    return copy",
    ]
    namespace: dict[str, object] = {"new": object.__new__, "Job": Job}
    exec("\n".join(lines), namespace)  # noqa: S102 - fixed source built from Job's own fields
    copier: Callable[[Job, str | None], Job] = namespace["copy_job"]  # type: ignore[assignment]
    return copier


copy_job = _build_copier()
"""Return a shallow copy of a job carrying a lease token (what one delivery sees)."""


def envelope_of(task: object) -> bytes | TaskValidationError:
    """Return `task`'s envelope, or why it cannot be enqueued (not a job, not JSON)."""
    if not isinstance(task, Job):
        msg = (
            f"MemoryTaskQueue.enqueue got {type(task).__name__}, not a Job. "
            "Build a lexigram.tasks.Job (or JobProtocol) and enqueue that."
        )
        return TaskValidationError(msg)
    try:
        # Refuses what a networked backend would refuse; the envelope is what a
        # redelivery is rebuilt from.
        return encode_job(task)
    except TaskValidationError as exc:
        return exc


def restored(lent: Job, envelope: bytes) -> Job:
    """The job `lent` was, decoded anew from the `envelope` the queue kept of it.

    It has what the job had when it was enqueued or last retried, the deliveries counted
    so far and the queue name of `lent`, and status PENDING (RETRYING after a retry). An
    envelope that no longer decodes (signing turned on by `configure_envelope` after it
    was enqueued unsigned) comes back as the poison stand-in, which the worker
    dead-letters: a lapsed lease or a nack never raises.
    """
    job = decode_or_poison(lent.id, envelope, queue_name=lent.queue_name)
    job.delivery_count = lent.delivery_count
    job.queue_name = lent.queue_name
    if job.status is not JobStatus.RETRYING:
        job.status = JobStatus.PENDING
    return job
