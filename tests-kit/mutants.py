"""The single-fault mutants of `reference_backend.py`: name -> the rule it breaks.

`run_mutants.py` runs the conformance kit once per name with ``KIT_MUTANT`` set to it;
the kit must fail every time. The names are the ones `reference_backend._mutant` checks.
"""

# ruff: noqa: INP001 - a directory of scripts and tests run by path, not a package

from __future__ import annotations

MUTANTS: dict[str, str] = {
    # waking and timing
    "enqueue_never_wakes": "a blocked dequeue_batch is not woken by an enqueue",
    "sleep_loop_polling": "dequeue_batch polls in a 0.25 s sleep loop instead of waiting",
    "nack_never_wakes": "nack(requeue=True) does not wake a blocked consumer",
    "retry_never_wakes": "retry_later(delay=0) does not wake a blocked consumer",
    "never_wakes_for_due": "a blocked consumer sleeps through due jobs and expiring leases",
    "late_redelivery": "an expired lease is handed back 2 s late",
    "early_redelivery": "the lease is half as long as declared",
    "no_redelivery": "an expired lease is never handed back",
    "lease_seconds_undeclared": "lease_seconds says 30 s whatever the real lease is",
    # fencing
    "stale_ack": "ack ignores the lease token",
    "stale_nack": "nack ignores the lease token",
    "stale_extend": "extend_lease ignores the lease token",
    "stale_retry": "retry_later ignores the lease token",
    "stale_retry_writes_state": "a refused retry_later still writes the job's retry state",
    "token_reused": "the lease token names the job, not the delivery",
    "extend_after_expiry": "extend_lease succeeds after the lease ran out, if nobody took it",
    "ack_after_expiry": "ack succeeds after the lease ran out, if nobody took it",
    "extend_ignores_seconds": "extend_lease(seconds=...) gives the default lease instead",
    # counting and delivery state
    "count_running_counts_expired": "count(RUNNING) counts leases that ran out",
    "delivery_count_not_raised": "a delivery does not raise delivery_count",
    "deleted_in_flight_redelivered": "a job deleted while in flight comes back after its lease",
    "batch_overfills": "dequeue_batch returns one job more than max_jobs",
    "discarding_nack_requeues": "nack(requeue=False) requeues the job instead of discarding it",
    # ordering
    "priority_ignored": "jobs come out FIFO whatever their priority",
    "fifo_broken": "jobs of one priority come out newest first",
    "delayed_blocks_ready": "a delayed job at the head of the queue blocks ready ones",
    # retries
    "retry_delay_ignored": "retry_later hands the job back at once, whatever the delay",
    "retry_state_lost": "retry_later does not store the job's retry_count and last_error",
    # idempotency
    "duplicate_id_enqueued": "enqueueing an id the queue holds replaces the held job",
    "key_released_on_ack": "a key is released when its job is acked, before its TTL ends",
    "idempotency_key_ignored": "a second job with a held idempotency key is enqueued",
    "resubmission_refused": "a finished job resubmitted under its own id and key is dropped",
    "clear_keeps_keys": "clear() keeps idempotency keys",
    # poison input
    "poison_raises": "dequeue raises TaskDecodeError on an undecodable payload",
    "poison_without_token": "the poison stand-in job is handed out without a lease token",
    "poison_skipped": "an undecodable payload is never handed out (nor dead-lettered)",
}
