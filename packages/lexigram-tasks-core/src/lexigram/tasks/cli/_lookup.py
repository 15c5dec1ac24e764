"""Resolve the job id given to ``lexigram-tasks job ...``: the exact id or a unique prefix.

The queue holds the jobs waiting or running and the result store the finished ones, so
a prefix is looked up in both (through `JobLookupProtocol`, an optional capability) and
the ids merged. A backend with neither capability accepts exact ids only.
"""

from __future__ import annotations

from lexigram.contracts.tasks import JobLookupProtocol, ResultStoreProtocol, TaskQueueProtocol
from lexigram.tasks.cli._errors import CLIError
from lexigram.tasks.constants import MIN_ID_PREFIX

_SHOWN = 5
"""Candidates listed when a prefix is ambiguous."""


async def resolve_job_id(
    queue: TaskQueueProtocol, result_store: ResultStoreProtocol | None, job_id: str, backend: str
) -> tuple[str, str]:
    """Return the id of the one job whose id is `job_id` or starts with it, and a note.

    The note is a sentence to add to the command's errors about the job. It is empty,
    except when no job has the id and the backend cannot search by prefix (then the id
    is returned as given: the queue may not show every job it holds, e.g. a broker's),
    and on a backend without a result store, whose finished jobs are not known.

    Args:
        queue: The backend's queue (jobs waiting or running).
        result_store: The backend's result store (finished jobs); None when it has none,
            and then the queue alone is searched.
        job_id: What the user typed: a whole id or its first characters.
        backend: The backend type, for the messages.

    Returns:
        The job id, and the note.

    Raises:
        CLIError: The prefix is too short, matches several jobs or none.
    """
    # A copied id often brings a space or a line end along; no id has one at its ends.
    job_id = job_id.strip()
    unstored = (
        ""
        if result_store is not None
        else (
            f" The {backend} backend has no shared result store, so only the jobs its queue "
            "holds (waiting or running) are known, not finished ones."
        )
    )
    if await queue.get_job(job_id) is not None or (
        result_store is not None and await result_store.get(job_id) is not None
    ):
        return job_id, unstored
    searched: tuple[object, ...] = (queue, result_store)
    lookups = [o for o in searched if isinstance(o, JobLookupProtocol)]
    if not lookups:
        # Without the capability the id may still name a job the queue cannot show
        # (e.g. one a broker holds): pass it on and let the command report on it.
        note = f" The {backend} backend cannot search job ids by prefix, so give the whole id."
        return job_id, note + unstored
    if len(job_id) < MIN_ID_PREFIX:
        msg = (
            f"No job has the id {job_id!r}, and a prefix of a job id needs at least "
            f"{MIN_ID_PREFIX} characters. Give more characters of the id."
        )
        raise CLIError(msg + unstored)
    found: dict[str, None] = {}
    for lookup in lookups:
        found.update(dict.fromkeys(await lookup.find_job_ids(job_id, _SHOWN + 1)))
    if len(found) == 1:
        return next(iter(found)), unstored
    if found:
        shown = sorted(found)
        ids = ", ".join(shown[:_SHOWN]) + (", ..." if len(shown) > _SHOWN else "")
        msg = (
            f"Several jobs have ids starting with {job_id!r} ({ids}). "
            "Give more characters of the id."
        )
        raise CLIError(msg + unstored)
    held = "waiting, running or finished" if result_store is not None else "waiting or running"
    msg = (
        f"No job of the {backend} backend has the id {job_id!r} or an id starting with "
        f"it, {held} (a finished job's result may have expired). Check the id "
        "and the --backend, and give --queue NAME for a job of another queue than the "
        "configured one."
    )
    if not isinstance(queue, JobLookupProtocol):
        # E.g. RabbitMQ with a Redis result store: only finished jobs were searched.
        msg += " Its queue cannot search by prefix: give the whole id of a waiting job."
    elif result_store is not None and not isinstance(result_store, JobLookupProtocol):
        msg += " Its result store cannot search by prefix: give the whole id of a finished job."
    raise CLIError(msg + unstored)
