"""The ``idem:<key>`` record of the job-state store, and the claims this process has open.

Claiming a key and publishing its job are two steps on two systems (the store, then the
broker), so a producer killed between them leaves a key held by a job that never
reached the queue. A claim is therefore written *pending* (``p@<held until>@<id>``,
living only `claim_window` seconds) and made *confirmed* (``@<held until>@<id>``, for
the key's whole TTL) once the broker confirms the job. Another producer that finds a
pending claim waits for it to be confirmed (then the key is the holder's, as ever) or
to disappear (its publish failed and released it, or its producer died and it
expired), and then takes the key for its own job. So a key never outlives, by more
than `claim_window`, a job that was never queued: a workflow step whose job is run
again after its worker died re-enqueues the next step instead of deferring to one that
does not exist.

A process does not wait for its own pending claims (`OPEN_CLAIMS`): it is alive, so
each of them ends soon, and two jobs of one bulk enqueue sharing a key would otherwise
wait for each other. A bulk enqueue does not wait for another's either until it has
published the jobs whose keys it took (`ClaimPending`): two processes bulk-enqueueing
overlapping keys at once would otherwise each wait for claims the other confirms only
after its own wait.
"""

from __future__ import annotations


class ClaimPending(Exception):  # noqa: N818 - a state, not an error to report
    """Another process's claim of the key is pending (raised when not waiting for it)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


PENDING_MARK = "p"
"""Prefix of a claim whose job the broker has not confirmed yet."""

OPEN_CLAIMS: dict[str, str] = {}
"""Pending claims this process made: the full ``idem:`` key -> the claiming job's id."""


def idem_value(held_until: float, job_id: str, *, pending: bool = False) -> str:
    """The record of a key held by `job_id` until `held_until` (epoch seconds)."""
    value = f"@{held_until!r}@{job_id}"
    return PENDING_MARK + value if pending else value


def idem_holder(value: str) -> tuple[str, float, bool]:
    """The holder of a key, the end of its TTL, and whether its job was confirmed.

    A bare id is a record written by an older version: held until the record expires,
    and confirmed (those versions wrote the record only for a job they published).
    """
    pending = value.startswith(PENDING_MARK + "@")
    body = value[1:] if pending else value
    if body.startswith("@"):
        until, _, job_id = body[1:].partition("@")
        try:
            return job_id, float(until), not pending
        except ValueError:  # an id that happens to look like a record: a bare one
            return value, float("inf"), True
    return value, float("inf"), True
