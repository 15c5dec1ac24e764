"""Which stored schedules a scheduler owns, and how a restored record meets the code's.

A stored schedule belongs to the namespace of the application that saved it; a scheduler
restores and fires only its own namespace's schedules. A record saved before schedules
had owners (no ``namespace``) is unowned: a scheduler takes it over when it declares a
schedule with the same id, or when it was built with ``adopt_unowned=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lexigram.tasks.scheduling._job import ScheduledJob

DEFAULT_NAMESPACE = "default"
"""The namespace of a `TaskScheduler` built without one."""


def check_namespace(namespace: str) -> str:
    """Return `namespace` stripped, or raise `ValueError` if it is empty.

    Args:
        namespace: An application's schedule namespace.

    Returns:
        The namespace without surrounding blanks.

    Raises:
        ValueError: The namespace is empty.
    """
    text = namespace.strip()
    if not text:
        msg = (
            f"Schedule namespace {namespace!r} is empty. Name the application that owns the "
            "schedules, e.g. 'myapp.tasks' (tasks.scheduler.namespace or --namespace)."
        )
        raise ValueError(msg)
    return text


@dataclass(slots=True)
class Sorted:
    """Stored schedules split by owner.

    Attributes:
        own: This namespace's schedules, by schedule id.
        unowned: Records without a namespace, by store key.
        foreign: How many records other namespaces own.
    """

    own: dict[str, ScheduledJob] = field(default_factory=dict)
    unowned: dict[str, ScheduledJob] = field(default_factory=dict)
    foreign: int = 0


def sort_records(loaded: dict[str, ScheduledJob], namespace: str) -> Sorted:
    """Split the records of a store by owner (see `Sorted`).

    Args:
        loaded: Every stored schedule by store key.
        namespace: The scheduler's namespace.

    Returns:
        The split.
    """
    result = Sorted()
    for key, job in loaded.items():
        if job.namespace == namespace:
            result.own[job.job_id] = job
        elif job.namespace is None:
            result.unowned[key] = job
        else:
            result.foreign += 1
    return result


def merge_declared(declared: ScheduledJob, stored: ScheduledJob) -> None:
    """Give a schedule declared in code the state its stored record holds.

    The code's definition (template, cron, timezone, queue) wins, so a deploy that
    changes a cron takes effect; the stored state (paused, last run and outcome) is
    kept, so a restart does not resume a paused schedule or forget its last run. The
    stored next run is kept while the cron is unchanged, so an occurrence missed while
    no scheduler ran still goes through the misfire policy.

    Args:
        declared: The schedule as the code declares it (changed in place).
        stored: The stored record of the same id.
    """
    same_cron = (
        stored.cron_expression == declared.cron_expression and stored.timezone == declared.timezone
    )
    state = stored.state()
    if not same_cron:
        state.pop("next_run")
    declared.apply_state(state)
