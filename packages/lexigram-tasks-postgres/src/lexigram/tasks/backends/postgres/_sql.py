"""The SQL text of the queue's statements, built once per (schema, table).

Every statement is a single round trip; those that make a job available also call
``pg_notify`` in the same statement, so the wake-up is part of the same transaction
(sent on commit, dropped on rollback). Server time (``clock_timestamp()``) is the only
clock the queue trusts for leases and delays; a caller's ``scheduled_at`` (epoch
seconds) is converted once, on the way in.
"""

from __future__ import annotations

from typing import NamedTuple

from lexigram.tasks.backends.postgres._options import quote_ident

# NOTIFY payload: '' when something is ready now, else seconds until the earliest due job.
_NOTIFY_PAYLOAD = (
    "CASE WHEN bool_or(available_at <= clock_timestamp()) THEN '' "
    "ELSE extract(epoch FROM min(available_at) - clock_timestamp())::text END"
)


class QueueSQL(NamedTuple):
    """Statements of one jobs table. Parameters are documented per statement."""

    insert_one: str
    insert_many: str
    insert_alike: str
    insert_keyed: str
    held_key: str
    purge_keys: str
    dequeue: str
    next_due: str
    ack_many: str
    requeue: str
    discard: str
    retry_later: str
    extend: str
    get_job: str
    delete_job: str
    cancel: str
    count_all: str
    count_waiting: str
    count_retrying: str
    count_running: str
    clear_jobs: str
    clear_keys: str
    requeue_stalled: str
    explain_dequeue: str

    @classmethod
    def build(cls, schema: str, table: str) -> QueueSQL:
        """Render every statement for `schema`.`table` (both already validated)."""
        jobs = f"{quote_ident(schema)}.{quote_ident(table)}"
        keys = f"{quote_ident(schema)}.{quote_ident(table + '_keys')}"
        # Jobs without an idempotency key: $1 queue, $2 ids, $3 priorities, $4
        # scheduled_at epochs (NULL = now), $5 retry counts, $6 payloads, $7 channel.
        # An id already present is skipped. One row back (the NOTIFY), not one per job:
        # a bulk enqueue learns nothing from the inserted ids.
        insert_many = f"""
WITH ins AS (
    INSERT INTO {jobs} (id, queue, priority, status, available_at, retry_count, payload)
    SELECT r.id, $1, r.priority,
           CASE WHEN to_timestamp(r.sched) > clock_timestamp() THEN 'scheduled'
                ELSE 'pending' END,
           GREATEST(clock_timestamp(), to_timestamp(r.sched)), r.retry_count, r.payload
    FROM unnest($2::text[], $3::smallint[], $4::float8[], $5::int[], $6::bytea[])
         AS r(id, priority, sched, retry_count, payload)
    ON CONFLICT (id) DO NOTHING
    RETURNING available_at
)
SELECT pg_notify($7, {_NOTIFY_PAYLOAD}) FROM ins HAVING count(*) > 0"""  # noqa: S608 - identifiers validated
        # Jobs that share their priority, schedule and retry count (a typical bulk
        # enqueue): insert_many with $3, $4 and $5 sent once instead of as arrays. asyncpg
        # checks every element of an array argument (is it itself an array?), which costs
        # more client CPU per job than encoding the values.
        insert_alike = f"""
WITH ins AS (
    INSERT INTO {jobs} (id, queue, priority, status, available_at, retry_count, payload)
    SELECT r.id, $1, $3,
           CASE WHEN to_timestamp($4::float8) > clock_timestamp() THEN 'scheduled'
                ELSE 'pending' END,
           GREATEST(clock_timestamp(), to_timestamp($4::float8)), $5, r.payload
    FROM unnest($2::text[], $6::bytea[]) AS r(id, payload)
    ON CONFLICT (id) DO NOTHING
    RETURNING available_at
)
SELECT pg_notify($7, {_NOTIFY_PAYLOAD}) FROM ins HAVING count(*) > 0"""  # noqa: S608 - identifiers validated
        # One job: $1 queue, $2 id, $3 priority, $4 scheduled_at epoch (NULL = now),
        # $5 retry count, $6 payload, $7 channel (the common case, without unnest).
        insert_one = f"""
WITH ins AS (
    INSERT INTO {jobs} (id, queue, priority, status, available_at, retry_count, payload)
    VALUES ($2, $1, $3,
            CASE WHEN to_timestamp($4::float8) > clock_timestamp() THEN 'scheduled'
                 ELSE 'pending' END,
            GREATEST(clock_timestamp(), to_timestamp($4::float8)), $5, $6)
    ON CONFLICT (id) DO NOTHING
    RETURNING available_at
)
SELECT pg_notify($7, {_NOTIFY_PAYLOAD}) FROM ins HAVING count(*) > 0"""  # noqa: S608 - identifiers validated
        # $1 queue, $2 key, $3 job id, $4 key TTL seconds, then $5.. as insert_many's
        # scalars: $5 priority, $6 scheduled_at, $7 retry_count, $8 payload, $9 channel.
        # The key is claimed when absent, when it maps to this very job id (the same job
        # resubmitted, e.g. retried from the DLQ), or when it expired and its job is gone.
        # Returns one row: claimed (the id if the key was claimed here, else NULL).
        insert_keyed = f"""
WITH claim AS (
    INSERT INTO {keys} AS k (queue, key, job_id, expires_at)
    VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4::float8))
    ON CONFLICT (queue, key) DO UPDATE
        SET job_id = EXCLUDED.job_id, expires_at = EXCLUDED.expires_at
        WHERE k.job_id = EXCLUDED.job_id
           OR (k.expires_at <= clock_timestamp()
               AND NOT EXISTS (SELECT 1 FROM {jobs} j WHERE j.id = k.job_id))
    RETURNING k.job_id
), ins AS (
    INSERT INTO {jobs} (id, queue, priority, status, available_at, retry_count,
                        idempotency_key, payload)
    SELECT $3, $1, $5,
           CASE WHEN to_timestamp($6::float8) > clock_timestamp() THEN 'scheduled'
                ELSE 'pending' END,
           GREATEST(clock_timestamp(), to_timestamp($6)), $7, $2, $8
    FROM claim
    ON CONFLICT (id) DO NOTHING
    RETURNING id, available_at
), woke AS (
    SELECT pg_notify($9, {_NOTIFY_PAYLOAD}) FROM ins HAVING count(*) > 0
)
SELECT (SELECT job_id FROM claim) AS claimed, (SELECT count(*) FROM woke) AS notified"""  # noqa: S608 - identifiers validated
        # $1 queue, $2 key -> the job id holding it.
        held_key = f"SELECT job_id FROM {keys} WHERE queue = $1 AND key = $2"  # noqa: S608 - identifiers validated
        # $1 queue: drop expired keys whose jobs are gone.
        purge_keys = f"""
DELETE FROM {keys} k WHERE k.queue = $1 AND k.expires_at <= clock_timestamp()
  AND NOT EXISTS (SELECT 1 FROM {jobs} j WHERE j.id = k.job_id)"""  # noqa: S608 - identifiers validated
        # $1 queue, $2 max jobs, $3 lease seconds. Ready and expired-lease rows are both
        # `available_at <= now()`; the index (queue, priority DESC, available_at, seq)
        # yields them in delivery order and SKIP LOCKED lets concurrent consumers pass
        # each other's picks. Returns the leased rows with their pre-lease order keys
        # (the priority negated, so that the keys sort ascending).
        pick = f"""
    SELECT id, priority, available_at, seq FROM {jobs}
    WHERE queue = $1 AND available_at <= now()
    ORDER BY priority DESC, available_at, seq
    LIMIT $2
    FOR UPDATE SKIP LOCKED"""  # noqa: S608 - identifiers validated
        dequeue = f"""
WITH picked AS ({pick}
)
UPDATE {jobs} AS j
SET status = 'running',
    delivery_count = j.delivery_count + 1,
    available_at = clock_timestamp() + make_interval(secs => $3),
    heartbeat_at = clock_timestamp()
FROM picked
WHERE j.id = picked.id
RETURNING j.id, j.payload, j.delivery_count, -picked.priority AS rank,
          picked.available_at AS due, picked.seq"""  # noqa: S608 - identifiers validated
        # The rows of queue $1 that fall due later (delayed, backing off, or leased), read
        # through the dequeue index one priority level at a time: `levels` finds the
        # queue's levels one index descent each (a loose index scan), and each level's
        # future rows are a range of that index (`available_at > now()`; now() is
        # stable, unlike clock_timestamp(), so the bound is an index condition). No index
        # of their own: every dequeue would write an entry into it (see `_schema`).
        levels = f"""
WITH RECURSIVE levels(priority) AS (
    (SELECT priority FROM {jobs} WHERE queue = $1 ORDER BY priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT j.priority FROM {jobs} AS j WHERE j.queue = $1 AND j.priority < l.priority
            ORDER BY j.priority DESC LIMIT 1)
    FROM levels AS l WHERE l.priority IS NOT NULL
)"""  # noqa: S608 - identifiers validated

        def later(columns: str, condition: str = "") -> str:
            return f"""
FROM levels CROSS JOIN LATERAL (
    SELECT {columns} FROM {jobs}
    WHERE queue = $1 AND priority = levels.priority AND available_at > now(){condition}
) AS later"""  # noqa: S608 - identifiers validated

        # $1 queue -> seconds until the next delayed job or lease falls due (NULL: none).
        # Each level's earliest is the first entry of its range: one descent per level.
        earliest = later("available_at", " AND status <> 'pending' ORDER BY available_at LIMIT 1")
        next_due = f"""{levels}
SELECT extract(epoch FROM min(later.available_at) - clock_timestamp())::float8 {earliest}"""  # noqa: S608 - identifiers validated

        # A lease token is "<seq>:<delivery_count>": `seq` is unique per inserted row
        # (an identity), `delivery_count` rises with every delivery, so the pair names
        # one delivery of one row, also across an ack and a re-enqueue under the same
        # id. Token parameters: seq (NULL = no token) and delivery count. With a token
        # the lease must still be that delivery's and unexpired; without one, any
        # current delivery (status 'running') is acted on.
        def held(seq: str, count: str, alias: str = "") -> str:
            return (
                f"{alias}status = 'running' AND ({seq} IS NULL OR ({alias}seq = {seq} "
                f"AND {alias}delivery_count = {count} "
                f"AND {alias}available_at > clock_timestamp()))"
            )

        # $1 ids, $2 seqs, $3 delivery counts (NULL seq: no token) -> the 1-based
        # positions of the acks that deleted their job. Only leased jobs: an ack never
        # removes a waiting job. A job acked twice in one batch is deleted (and
        # reported) once.
        # Each entry finds its row by primary key (`j.id = a.id`, a nested loop over the
        # entries). No `j.id = ANY($1)` beside it: on a large table the cached generic plan
        # then scanned the primary key first and joined every row it found against every
        # entry (100 x 100 per batch of 100), 2.6 ms instead of 0.3 at 1M rows.
        ack_many = f"""
DELETE FROM {jobs} AS j
USING unnest($1::text[], $2::bigint[], $3::int[]) WITH ORDINALITY AS a(id, seq, dc, n)
WHERE j.id = a.id AND {held("a.seq", "a.dc", "j.")}
RETURNING a.n"""  # noqa: S608 - identifiers validated
        lease_held = held("$2::bigint", "$3::int")
        # $1 id, $2 seq, $3 delivery count, $4 channel -> one row when requeued.
        requeue = f"""
WITH u AS (
    UPDATE {jobs} SET status = 'pending', available_at = clock_timestamp(), heartbeat_at = NULL
    WHERE id = $1 AND {lease_held}
    RETURNING available_at
)
SELECT pg_notify($4, '') FROM u"""  # noqa: S608 - identifiers validated
        # $1 id, $2 seq, $3 delivery count -> the id when discarded.
        discard = f"DELETE FROM {jobs} WHERE id = $1 AND {lease_held} RETURNING id"  # noqa: S608 - identifiers validated
        # $1 id, $2 seq, $3 delivery count, $4 delay seconds, $5 retry_count, $6 payload,
        # $7 channel -> one row when rescheduled.
        retry_later = f"""
WITH u AS (
    UPDATE {jobs}
    SET status = CASE WHEN $4::float8 > 0 THEN 'scheduled' ELSE 'pending' END,
        available_at = clock_timestamp() + make_interval(secs => $4),
        heartbeat_at = NULL, retry_count = $5, payload = $6
    WHERE id = $1 AND {lease_held}
    RETURNING available_at
)
SELECT pg_notify($7, {_NOTIFY_PAYLOAD}) FROM u HAVING count(*) > 0"""  # noqa: S608 - identifiers validated
        # $1 id, $2 seq, $3 delivery count, $4 lease seconds -> 1 when the lease was held
        # (and unexpired, with or without a token).
        extend = f"""
UPDATE {jobs}
SET available_at = clock_timestamp() + make_interval(secs => $4),
    heartbeat_at = clock_timestamp()
WHERE id = $1 AND {lease_held} AND available_at > clock_timestamp()
RETURNING 1"""  # noqa: S608 - identifiers validated
        # $1 id, $2 queue.
        get_job = f"""
SELECT payload, delivery_count,
       status = 'running' AND available_at > clock_timestamp() AS leased
FROM {jobs} WHERE id = $1 AND queue = $2"""  # noqa: S608 - identifiers validated
        delete_job = f"DELETE FROM {jobs} WHERE id = $1 AND queue = $2 RETURNING id"  # noqa: S608 - identifiers validated
        # $1 id, $2 queue, $3 cancel channel -> no row when absent, else whether a live
        # lease held it; only then is the id announced on the channel (at commit).
        cancel = f"""
WITH d AS (
    DELETE FROM {jobs} WHERE id = $1 AND queue = $2
    RETURNING status = 'running' AND available_at > clock_timestamp() AS leased
), announced AS (
    SELECT pg_notify($3, $1) FROM d WHERE d.leased
)
SELECT d.leased, (SELECT count(*) FROM announced) FROM d"""  # noqa: S608 - identifiers validated
        # Counts take $1 queue. "Waiting" = not leased, or leased with an expired lease.
        leased = "status = 'running' AND available_at > clock_timestamp()"
        count_all = f"SELECT count(*) FROM {jobs} WHERE queue = $1"  # noqa: S608 - identifiers validated
        count_waiting = f"SELECT count(*) FROM {jobs} WHERE queue = $1 AND NOT ({leased})"  # noqa: S608 - identifiers validated
        count_retrying = (
            f"SELECT count(*) FROM {jobs} WHERE queue = $1 AND retry_count > 0 AND NOT ({leased})"  # noqa: S608 - identifiers validated
        )
        count_running = f"""{levels}
SELECT count(*) {later("1", f" AND {leased}")}"""
        clear_jobs = f"DELETE FROM {jobs} WHERE queue = $1"  # noqa: S608 - identifiers validated
        clear_keys = f"DELETE FROM {keys} WHERE queue = $1"  # noqa: S608 - identifiers validated
        # $1 queue, $2 seconds without heartbeat, $3 channel -> number requeued.
        # Only unexpired leases: an expired one is the dequeue's to reclaim already.
        stalled = later(
            "id",
            " AND status = 'running'"
            " AND heartbeat_at < clock_timestamp() - make_interval(secs => $2)",
        )
        requeue_stalled = f"""{levels}, u AS (
    UPDATE {jobs} SET status = 'pending', available_at = clock_timestamp(), heartbeat_at = NULL
    WHERE id IN (SELECT later.id {stalled})
    RETURNING available_at
), woke AS (
    SELECT pg_notify($3, '') FROM u HAVING count(*) > 0
)
SELECT (SELECT count(*) FROM u)::int, (SELECT count(*) FROM woke)"""  # noqa: S608 - identifiers validated
        return cls(
            insert_one=insert_one,
            insert_many=insert_many,
            insert_alike=insert_alike,
            insert_keyed=insert_keyed,
            held_key=held_key,
            purge_keys=purge_keys,
            dequeue=dequeue,
            next_due=next_due,
            ack_many=ack_many,
            requeue=requeue,
            discard=discard,
            retry_later=retry_later,
            extend=extend,
            get_job=get_job,
            delete_job=delete_job,
            cancel=cancel,
            count_all=count_all,
            count_waiting=count_waiting,
            count_retrying=count_retrying,
            count_running=count_running,
            clear_jobs=clear_jobs,
            clear_keys=clear_keys,
            requeue_stalled=requeue_stalled,
            explain_dequeue=f"EXPLAIN {pick}",
        )
