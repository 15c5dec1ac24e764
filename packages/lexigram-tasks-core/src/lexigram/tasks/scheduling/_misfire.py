"""Which occurrences of a schedule fire, and under which id (exactly-once firing).

The job for occurrence *t* of schedule *s* has the idempotency key ``f"{s}@{int(t)}"``.
Queues keep the first job for a key (set-if-absent) and keep the key after that job
finished, so schedulers that share a schedule id and a queue enqueue each occurrence
once, however many of them run.
"""

from __future__ import annotations

import logging
import math
from enum import StrEnum

from lexigram.tasks.scheduling._cron import CronExpression, NoOccurrenceError

logger = logging.getLogger(__name__)


class MisfirePolicy(StrEnum):
    """What a scheduler does with occurrences it missed (it was down, or late).

    Attributes:
        LATEST: Fire the latest missed occurrence once (coalesce). The default.
        SKIP: Fire the latest due occurrence only if it is at most
            `misfire_grace_time` seconds late; otherwise fire nothing.
        ALL: Fire every missed occurrence, oldest first, at most `max_catch_up` of them
            (the most recent ones).
    """

    LATEST = "latest"
    SKIP = "skip"
    ALL = "all"


def fire_key(schedule_id: str, fire_time: float) -> str:
    """Return the idempotency key of one occurrence of a schedule.

    Args:
        schedule_id: The schedule's id.
        fire_time: The occurrence's fire time (Unix timestamp).

    Returns:
        ``f"{schedule_id}@{int(fire_time)}"``.
    """
    return f"{schedule_id}@{int(fire_time)}"


def occurrences_to_fire(
    cron: CronExpression,
    next_run: float,
    now: float,
    *,
    policy: MisfirePolicy,
    grace_time: float,
    max_catch_up: int,
    schedule_id: str = "",
) -> list[float]:
    """Return the fire times in ``[next_run, now]`` to enqueue, per the misfire policy.

    On time (one occurrence due, not late), every policy fires it.

    Args:
        cron: The schedule's expression.
        next_run: The first occurrence not handled yet.
        now: The current time.
        policy: The misfire policy.
        grace_time: Seconds an occurrence may be late under `MisfirePolicy.SKIP`.
        max_catch_up: Most occurrences fired under `MisfirePolicy.ALL`.
        schedule_id: Named in the warning when `max_catch_up` cuts occurrences off.

    Returns:
        Fire times, oldest first (empty when none is to fire).
    """
    latest = cron.latest_at_or_before(now)
    if latest < next_run:
        return []
    if policy is MisfirePolicy.LATEST:
        return [latest]
    if policy is MisfirePolicy.SKIP:
        return [latest] if now - latest <= grace_time else []
    # Walk backwards from the latest so a long outage costs max_catch_up steps at most.
    times = [latest]
    earlier = _previous(cron, latest)
    while earlier >= next_run and len(times) < max_catch_up:
        times.append(earlier)
        earlier = _previous(cron, earlier)
    if earlier >= next_run:
        logger.warning(
            "Schedule %r missed more than max_catch_up=%d occurrences; firing the latest %d.",
            schedule_id,
            max_catch_up,
            max_catch_up,
        )
    times.reverse()
    return times


def _previous(cron: CronExpression, moment: float) -> float:
    """The occurrence before `moment`, or -inf when there is none (a one-off's first)."""
    try:
        return cron.get_prev(moment)
    except NoOccurrenceError:
        return -math.inf
