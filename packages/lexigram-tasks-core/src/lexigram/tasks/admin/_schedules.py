"""Stored cron schedules: list, find by id or prefix, pause, resume and run now.

They work on the backend's schedule store (its ``create_scheduler_store``), where
every scheduler saves its schedules with the namespace of the application that owns
them. A running scheduler re-reads its schedules before each check, so a paused
schedule does not fire again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lexigram.contracts.tasks import Job, TaskQueueError, TaskQueueProtocol
from lexigram.tasks.admin._errors import OperationError
from lexigram.tasks.constants import MIN_ID_PREFIX
from lexigram.tasks.decorators import enqueue_job
from lexigram.tasks.scheduling import (
    NoOccurrenceError,
    ScheduledJob,
    ScheduleOutcome,
    update_record_fields,
)

UNOWNED = "-"
"""How listings show the namespace of a record saved before schedules had owners."""

_AMBIGUOUS_SHOWN = 5


def schedule_row(key: str, record: dict[str, Any]) -> dict[str, Any]:
    """The fields a listing shows of one stored schedule record."""
    template = record.get("job_template") or {}
    return {
        "key": key,
        "id": record.get("job_id") or key,
        "namespace": record.get("namespace"),
        "task": template.get("name") if isinstance(template, dict) else None,
        "queue": record.get("queue_name"),
        "cron": record.get("cron_expression"),
        "timezone": record.get("timezone"),
        "enabled": record.get("enabled", True),
        "next_run": record.get("next_run"),
        "last_run": record.get("last_run"),
        "last_outcome": record.get("last_outcome"),
        "last_error": record.get("last_error"),
        "last_job_id": record.get("last_job_id"),
    }


def outcome_text(row: dict[str, Any]) -> str:
    """The last outcome as a listing shows it (with the error of a failed enqueue)."""
    outcome = row.get("last_outcome")
    if outcome is None:
        return "-"
    if outcome == ScheduleOutcome.FAILED and row.get("last_error"):
        return f"failed: {row['last_error']}"
    return str(outcome)


def schedule_name(row: dict[str, Any]) -> str:
    """``'id' (namespace ns)``: how messages name a schedule."""
    return f"{row['id']!r} (namespace {row['namespace'] or UNOWNED})"


async def list_schedules(
    store: Any, namespace: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Read the store once: the rows (sorted by namespace and id) and the raw records.

    Args:
        store: The backend's schedule store.
        namespace: Only schedules of this application (``"-"``: those without one).

    Returns:
        The rows (`schedule_row`), and the records by store key (for `resume_schedule`
        and `run_schedule_now`).
    """
    records: dict[str, dict[str, Any]] = await store.load_jobs()
    rows = [schedule_row(key, record) for key, record in records.items()]
    if namespace is not None:
        rows = [r for r in rows if (r["namespace"] or UNOWNED) == namespace]
    return sorted(rows, key=lambda r: (r["namespace"] or "", r["id"])), records


def _ids(rows: list[dict[str, Any]]) -> str:
    shown = sorted(f"{r['namespace'] or UNOWNED}/{r['id']}" for r in rows)
    more = ", ..." if len(shown) > _AMBIGUOUS_SHOWN else ""
    return ", ".join(shown[:_AMBIGUOUS_SHOWN]) + more


def find_schedule(rows: list[dict[str, Any]], ident: str) -> dict[str, Any]:
    """The one schedule `ident` names: its store key, its id, or a unique prefix of either.

    Raises:
        OperationError: No schedule, or several, match (the message names them and the fix).
    """
    exact_key = [r for r in rows if r["key"] == ident]
    exact_id = [r for r in rows if r["id"] == ident]
    if len(ident) < MIN_ID_PREFIX and not exact_key and not exact_id:
        # An empty name would match every schedule (`schedule remove ""` in a script
        # whose variable was unset).
        msg = (
            f"No stored schedule has the id {ident!r}, and a prefix of an id needs at least "
            f"{MIN_ID_PREFIX} characters. Give more characters of the id."
        )
        raise OperationError(msg)
    prefix = [r for r in rows if str(r["id"]).startswith(ident) or r["key"].startswith(ident)]
    for found in (exact_key, exact_id, prefix):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            msg = (
                f"{len(found)} schedules match {ident!r} ({_ids(found)}). Name one as "
                "NAMESPACE/ID, pass --namespace, or give more characters of the id."
            )
            raise OperationError(msg)
    msg = (
        f"No stored schedule has an id starting with {ident!r}. Run `lexigram-tasks "
        "schedule list` (with the same --backend) to see the ids."
    )
    raise OperationError(msg)


async def pause_schedule(store: Any, row: dict[str, Any]) -> bool:
    """Stop a schedule from firing until resumed (kept across restarts).

    Returns:
        False when it was paused already (nothing changed).
    """
    if not row["enabled"]:
        return False
    await update_record_fields(store, row["key"], {"enabled": False})
    return True


async def resume_schedule(store: Any, row: dict[str, Any], record: dict[str, Any]) -> float | None:
    """Let a paused schedule fire again from its next occurrence after now.

    Occurrences that passed while it was paused are not caught up.

    Returns:
        When it next fires, or None when it was not paused (nothing changed).

    Raises:
        OperationError: It has no occurrence left (a one-off whose moment has passed).
    """
    if row["enabled"]:
        return None
    try:
        next_run = ScheduledJob.from_dict(record).calculate_next_run()
    except NoOccurrenceError as exc:  # a one-off whose moment has passed
        msg = f"Schedule {row['id']!r} cannot be resumed: {exc} Remove it, or schedule anew."
        raise OperationError(msg) from None
    await update_record_fields(store, row["key"], {"enabled": True, "next_run": next_run})
    return next_run


async def run_schedule_now(
    store: Any,
    row: dict[str, Any],
    record: dict[str, Any],
    queue_for: Callable[[str | None], TaskQueueProtocol],
) -> tuple[Job, str]:
    """Enqueue one job of a schedule now, on its queue (paused or not).

    The job is the one the schedule's next occurrence would enqueue, marked
    ``trigger: run-now`` in its metadata; the schedule's own occurrences are unchanged.
    The outcome is recorded on the schedule as a fire's would be.

    Args:
        store: The backend's schedule store.
        row: The schedule (`find_schedule`).
        record: Its stored record.
        queue_for: Opens (or reuses) a queue by name (None: the backend's default).

    Returns:
        The enqueued job and the queue's name.

    Raises:
        OperationError: The queue refused the job (recorded as the schedule's outcome).
    """
    scheduled = ScheduledJob.from_dict(record)
    now = time.time()
    job = scheduled.job_template.create_job()
    job.cron_expression = scheduled.cron_expression
    job.metadata.update(schedule_id=row["id"], fire_time=now, trigger="run-now")
    # Where a fire of it goes: its task's queue, else the schedule's; a backend's name
    # becomes that backend's own queue name, as `route_job` does.
    queue = queue_for(job.queue_name or scheduled.queue_name)
    if job.queue_name:
        job.queue_name = queue.queue_name
    state: dict[str, Any] = {"last_run": now, "last_error": None}
    try:
        job = await enqueue_job(queue, job)
    except TaskQueueError as exc:
        state.update(last_outcome=ScheduleOutcome.FAILED.value, last_error=str(exc))
        await update_record_fields(store, row["key"], state)
        msg = (
            f"Could not enqueue schedule {schedule_name(row)} on queue {queue.queue_name!r}: {exc}"
        )
        raise OperationError(msg) from None
    state.update(last_outcome=ScheduleOutcome.ENQUEUED.value, last_job_id=job.id)
    await update_record_fields(store, row["key"], state)
    return job, queue.queue_name
