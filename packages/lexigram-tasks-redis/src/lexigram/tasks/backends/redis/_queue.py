"""`RedisTaskQueue`: the whole `TaskQueueProtocol` on Redis, one Lua script per change.

See `_scripts.py` for the data model and docs/backends/redis.md for the operator view.
Hot paths cost one round trip: `enqueue` (idempotency, dedupe and placement in one
script), `dequeue_batch` (promote due delayed jobs, reclaim expired leases and lease up
to N jobs, returning their payloads), `ack` (concurrent acks share one script call).
An idle consumer blocks on BLPOP of the queue's notify list, never in a sleep loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from lexigram.contracts.tasks import (
    CancelOutcome,
    Err,
    Job,
    JobStatus,
    Result,
    ResultAcker,
    ResultStoreProtocol,
    TaskConfigurationError,
    TaskQueueError,
    TaskValidationError,
    decode_or_poison,
    encode_job,
)
from lexigram.tasks.backends.redis import _scripts as lua
from lexigram.tasks.backends.redis._batch import GroupCommit
from lexigram.tasks.backends.redis._cancel import follow_cancellations
from lexigram.tasks.backends.redis._connection import DEFAULT_URL, LuaScript, RedisConnector
from lexigram.tasks.backends.redis._entries import Entry, entry_for, not_a_job, outcome
from lexigram.tasks.backends.redis._keys import QueueKeys
from lexigram.tasks.backends.redis._lease_keeper import RedisLeaseRenewer
from lexigram.tasks.backends.redis._leasing import JobLeaser
from lexigram.tasks.backends.redis._lookup import queued_ids
from lexigram.tasks.backends.redis._options import check_queue_limits, positive_seconds
from lexigram.tasks.backends.redis._replication import ReplicaWait
from lexigram.tasks.backends.redis._settling import AckAndStore
from lexigram.tasks.backends.redis._stores import RedisResultStore
from lexigram.tasks.backends.redis._waiting import CLOSED, Waiter

_ENQUEUE_BATCH = 500  # jobs per enqueue script call: a few ms of server time at most
_ACK_BATCH = 1000
_MIN_BLOCK = 0.001  # Redis blocks with millisecond resolution
_MAX_BLOCK = 30.0  # safety net: re-check the queue at least this often while idle
_STATUS_MODES = {
    JobStatus.PENDING: "waiting",
    JobStatus.RUNNING: "running",
    JobStatus.RETRYING: "retrying",
}


class RedisTaskQueue:
    """Task queue on Redis implementing the whole `TaskQueueProtocol`.

    At-least-once delivery with leases, priority then FIFO, delayed jobs that never
    block ready ones, idempotency keys, and automatic reclaim of expired leases. Every
    delivery carries a lease token (`Job.lease_token`) that `ack`, `nack`,
    `extend_lease` and `retry_later` check in the same script that settles the job, so
    a consumer whose lease ran out can never settle or extend the next delivery. Every
    state change is one Lua script, so a job is always in exactly one of the ready,
    delayed and in-flight structures. All keys of a queue share the hash tag
    ``{<key_prefix>:<queue_name>}``, so it runs unchanged on Redis Cluster.

    Creating the object does not connect: the connection pool is built on first use,
    so the queue can be created at import time (e.g. in a module declaration).

    Args:
        redis_url: ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL; ACL user and
            password go in the URL (``redis://user:secret@host:6379/0``).
        queue_name: Name of the queue.
        url: Alias of `redis_url` (``RedisTaskQueue(url=...)``).
        key_prefix: First part of every key's hash tag.
        visibility_timeout: Lease length in seconds; a job not acked, nacked or
            extended within it is delivered again.
        idempotency_ttl: Seconds an idempotency key stays held after its job was
            enqueued (it is also held for as long as that job is in the queue).
        max_size: Most jobs that may wait at once (None: no limit); `enqueue` beyond
            it returns ``Err(QueueFullError)``.
        client: An existing ``redis.asyncio.Redis`` (or ``RedisCluster``) client to use
            instead of building one from the URL; it is not closed by `close`.
        max_connections: Connection pool limit (None: unbounded). Each idle consumer
            holds one connection while it blocks.
        socket_timeout: Read timeout of one socket read in seconds (None: none).
        socket_connect_timeout: Seconds to open a connection (TCP and TLS).
        command_timeout: Seconds a command may go unanswered before the attempt fails
            (a server that accepts and never answers cannot hang a call).
        retry_timeout: How long transient connection errors are retried (with
            exponential backoff), once the server has answered, before
            `BackendConnectionError` is raised; a first contact that fails (refused,
            timed out) is reported at once.
        connector: A shared `RedisConnector` (used by the backend object to share one
            pool between a queue and its stores); overrides the URL and pool options.
        connection_kwargs: Extra keyword arguments for ``redis.asyncio.Redis.from_url``
            (TLS certificate files, ``health_check_interval``, ...).
        wait_for_replicas: Answer an enqueue only once this many replicas hold the job
            (``WAIT`` after the script, see `_replication.py`); 0: do not wait.
        replication_timeout: Seconds that wait may take before enqueue raises
            `BackendConnectionError` (reason ``replication``).

    Example:
        queue = RedisTaskQueue(url="redis://localhost:6379/0", queue_name="emails")
        job_id = (await queue.enqueue(Job(name="send_email", args=("a@b.c",)))).unwrap()
        job = await queue.dequeue()
        await queue.ack(job.id, lease_token=job.lease_token)
    """

    def __init__(
        self,
        redis_url: str = DEFAULT_URL,
        queue_name: str = "tasks",
        *,
        url: str | None = None,
        key_prefix: str = "lexigram",
        visibility_timeout: float = 30.0,
        idempotency_ttl: float = 86400.0,
        max_size: int | None = None,
        client: Any | None = None,
        max_connections: int | None = None,
        socket_timeout: float | None = None,
        socket_connect_timeout: float = 5.0,
        command_timeout: float | None = 10.0,
        retry_timeout: float = 15.0,
        connector: RedisConnector | None = None,
        connection_kwargs: dict[str, Any] | None = None,
        wait_for_replicas: int = 0,
        replication_timeout: float = 1.0,
    ) -> None:
        if url is not None and redis_url not in (DEFAULT_URL, url):
            msg = (
                "RedisTaskQueue got both redis_url and url with different values. "
                "Pass only one of them (url is an alias of redis_url)."
            )
            raise TaskConfigurationError(msg)
        check_queue_limits(idempotency_ttl, max_size)
        self._visibility_timeout = positive_seconds("visibility_timeout", visibility_timeout)
        # A shared connector (the backend object hands one to the queue and the stores of
        # a spec) closes when its last user releases it; one built here is closed here.
        # Shared only once every argument is checked: a queue that fails to build has
        # nothing to release.
        self._owns_connector = connector is None
        built = (
            connector
            if connector is not None
            else RedisConnector(
                url or redis_url,
                client=client,
                max_connections=max_connections,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_connect_timeout,
                command_timeout=command_timeout,
                retry_timeout=retry_timeout,
                connection_kwargs=connection_kwargs,
            )
        )
        self._replicas = (
            ReplicaWait(wait_for_replicas, replication_timeout, built.masked_url)
            if wait_for_replicas
            else None
        )
        self._connector = built if connector is None else connector.share()
        self._queue_name = queue_name
        self._key_prefix = key_prefix
        self.keys = QueueKeys.build(key_prefix, queue_name)
        self._fixed = self.keys.fixed
        self._lease_ms = math.ceil(self._visibility_timeout * 1000)
        self._idem_ttl_ms = math.ceil(idempotency_ttl * 1000)
        self._max_size = max_size or 0
        self._enqueue_commit: GroupCommit[Entry, tuple[int, str]] = GroupCommit(
            self._enqueue_entries, _ENQUEUE_BATCH
        )
        self._ack_commit: GroupCommit[tuple[str, str], bool] = GroupCommit(
            self._ack_entries, _ACK_BATCH
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._result_acks: AckAndStore | None = None
        self._leaser = JobLeaser(self._run, queue_name, self._lease_ms)
        self._waiter = Waiter(
            self._connector, self.keys.notify, self._fixed, self._leaser.read, self._give_back
        )

    def __repr__(self) -> str:
        return (
            f"RedisTaskQueue(url={self._connector.masked_url!r}, "
            f"queue_name={self._queue_name!r}, key_prefix={self._key_prefix!r})"
        )

    @property
    def queue_name(self) -> str:
        """Name of the queue this object serves."""
        return self._queue_name

    @property
    def lease_seconds(self) -> float:
        """Lease length in seconds given to every dequeued job (the protocol's name)."""
        return self.visibility_timeout

    @property
    def visibility_timeout(self) -> float:
        """Lease length in seconds given to every dequeued job."""
        return self._visibility_timeout

    @property
    def key_prefix(self) -> str:
        """First part of the hash tag of every key of this queue."""
        return self._key_prefix

    @property
    def connector(self) -> RedisConnector:
        """The connection owner (shared with the stores of the same backend object)."""
        return self._connector

    # -- connection -----------------------------------------------------------------

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Batches pending on a finished loop can never complete; start clean.
            self._enqueue_commit.reset()
            self._ack_commit.reset()
            self._loop = loop

    async def _run(
        self,
        script: LuaScript,
        args: Sequence[Any],
        *,
        keys: Sequence[str] | None = None,
        retry_timeout: float | None = None,
        fail_fast: bool = True,
    ) -> Any:
        used = self._fixed if keys is None else keys
        return await self._connector.call(
            script.name,
            lambda client: script(client, used, args),
            retry_timeout=retry_timeout,
            fast=True,
            fail_fast=fail_fast,
        )

    async def ping(self) -> bool:
        """Return True if Redis answers (no retries); never raises."""
        try:
            return bool(await self._connector.client().ping())
        except Exception:
            return False

    async def connect(self) -> None:
        """Connect now and load the scripts (otherwise both happen on first use).

        Raises:
            BackendConnectionError: Redis stayed unreachable for `retry_timeout`.
        """

        async def load(client: Any) -> None:
            for script in lua.QUEUE_SCRIPTS:
                await client.script_load(script.text)

        await self._connector.call("connect", load)

    # -- producing ------------------------------------------------------------------

    def _entry(self, job: Job) -> Entry:
        return entry_for(job, self._queue_name, self._idem_ttl_ms)

    async def _enqueue_entries(self, entries: list[Entry]) -> list[tuple[int, str]]:
        args: list[Any] = [self._max_size]
        for entry in entries:
            args.extend(entry)
        if self._replicas is None:
            raw = await self._run(lua.ENQUEUE, args)
        else:
            raw = await self._replicas.call(self._connector, lua.ENQUEUE, self._fixed, args)
        return [(int(raw[i]), raw[i + 1].decode()) for i in range(0, len(raw), 2)]

    def _outcome(self, job: Job, status: int, job_id: str) -> Result[str, TaskQueueError]:
        return outcome(job, status, job_id, self._queue_name, self._max_size)

    async def enqueue(self, task: Job) -> Result[str, TaskQueueError]:
        """Add a job to the queue (one round trip; concurrent calls share one).

        A job id already in the queue, or an idempotency key already held, returns Ok
        with the existing job's id and adds nothing.

        Args:
            task: The `Job` to enqueue.

        Returns:
            Ok(job_id); Err(TaskValidationError) for an invalid or non-JSON job;
            Err(QueueFullError) when `max_size` jobs are already waiting.

        Raises:
            BackendConnectionError: Redis stayed unreachable for `retry_timeout`.
        """
        if not isinstance(cast(object, task), Job):  # untyped callers
            return not_a_job(task)
        try:
            entry = self._entry(task)
        except TaskValidationError as exc:
            return Err(exc)
        self._check_loop()
        status, job_id = await self._enqueue_commit.submit(entry)
        return self._outcome(task, status, job_id)

    async def enqueue_many(self, tasks: Sequence[Job]) -> list[Result[str, TaskQueueError]]:
        """Add several jobs with one script call per 500; one result per job, in order."""
        results: list[Result[str, TaskQueueError] | None] = [None] * len(tasks)
        valid: list[tuple[int, Job, Entry]] = []
        for index, task in enumerate(tasks):
            if not isinstance(cast(object, task), Job):  # untyped callers
                results[index] = not_a_job(task)
                continue
            try:
                valid.append((index, task, self._entry(task)))
            except TaskValidationError as exc:
                results[index] = Err(exc)
        for start in range(0, len(valid), _ENQUEUE_BATCH):
            chunk = valid[start : start + _ENQUEUE_BATCH]
            outcomes = await self._enqueue_entries([entry for _, _, entry in chunk])
            for (index, job, _), (status, job_id) in zip(chunk, outcomes, strict=True):
                results[index] = self._outcome(job, status, job_id)
        return [result for result in results if result is not None]

    # -- consuming ------------------------------------------------------------------

    async def _give_back(self, job: Job) -> None:
        await self.nack(job.id, requeue=True, lease_token=job.lease_token)

    async def dequeue(self) -> Job | None:
        """Lease and return the next ready job, or None when none is ready (no waiting).

        Raises:
            BackendConnectionError: Redis stayed unreachable for `retry_timeout`.
        """
        _, jobs = await self._leaser.lease(1, None)
        return jobs[0] if jobs else None

    async def dequeue_batch(self, max_jobs: int, *, timeout: float = 0.0) -> list[Job]:
        """Lease up to `max_jobs` ready jobs, waiting up to `timeout` seconds for the first.

        One script call promotes due delayed jobs, returns expired leases to the queue
        and leases up to `max_jobs` jobs. When none is ready the call blocks on the
        queue's notify list (BLPOP, pipelined with the lease script: see `_waiting.py`)
        until a job is enqueued or requeued, the next delayed job falls due or lease
        expires, `close` is called, or `timeout` ends.

        A lost connection does not escape to the worker: the call retries with backoff
        for about a second and then returns an empty list, so a worker loop keeps
        polling until Redis is back (leases cover every job that was in flight).

        Returns:
            Between 0 and `max_jobs` leased jobs.
        """
        if max_jobs < 1:
            return []
        deadline = time.monotonic() + max(timeout, 0.0)
        state = await self._leaser.lease_unless_down(max_jobs)
        while state is not None:
            next_due, jobs = state
            if jobs:
                return jobs
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            block = remaining if next_due < 0 else min(remaining, next_due / 1000)
            if block < _MIN_BLOCK:
                state = await self._leaser.lease_unless_down(max_jobs)
                continue
            outcome = await self._waiter.wait(min(block, _MAX_BLOCK), self._leaser.args(max_jobs))
            if outcome is CLOSED:
                return []
            if isinstance(outcome, tuple):
                state = outcome
            else:
                state = await self._leaser.lease_unless_down(max_jobs)
        return []

    async def extend_lease(
        self, task_id: str, seconds: float | None = None, *, lease_token: str | None = None
    ) -> bool:
        """Extend the lease of an in-flight job (the worker's heartbeat).

        Args:
            task_id: The leased job's id.
            seconds: New lease length from now; None means `visibility_timeout`.
            lease_token: The delivery's `Job.lease_token`; None extends the current
                delivery, whoever holds it.

        Returns:
            False (and nothing changed) when the job is not held under that token:
            acked, deleted, redelivered, or its lease already ran out.
        """
        ms = self._lease_ms if seconds is None else max(1, math.ceil(seconds * 1000))
        return bool(await self._run(lua.EXTEND, (task_id, lease_token or "", ms)))

    def open_lease_renewer(self) -> RedisLeaseRenewer | None:
        """A renewer with a connection of its own (`LeaseRenewingQueueProtocol`).

        Returns:
            None when the queue was given a client (there is no URL to connect with).
        """
        connector = self._connector.detached(retry_timeout=min(self._visibility_timeout / 3, 5.0))
        return None if connector is None else RedisLeaseRenewer(connector, self._fixed)

    async def _ack_entries(self, entries: list[tuple[str, str]]) -> list[bool]:
        args: list[str] = []
        for job_id, token in entries:
            args.append(job_id)
            args.append(token)
        return [bool(done) for done in await self._run(lua.ACK, args)]

    async def ack(self, task_id: str, *, lease_token: str | None = None) -> bool:
        """Acknowledge successful processing; the queue forgets the job.

        Concurrent acks are sent together in one script call, each with its own answer.

        Args:
            task_id: The leased job's id.
            lease_token: The delivery's `Job.lease_token`; None acks the current
                delivery, whoever holds it.

        Returns:
            True if the job was in flight under that token and is now gone; False (and
            nothing changed) for a stale token or a job not in flight.
        """
        self._check_loop()
        return await self._ack_commit.submit((task_id, lease_token or ""))

    def result_acker(self, store: ResultStoreProtocol) -> ResultAcker | None:
        """Ack and store in one script when `store` is a result store on this connection.

        None for any other store, or when the queue was given its client (it may be a
        Redis Cluster's, whose slots keep the queue's keys and the store's apart); see
        `_settling`.
        """
        connector = self._connector
        if not isinstance(store, RedisResultStore) or store.connector is not connector:
            return None
        if not connector.owns_client:
            return None
        acks = self._result_acks
        if acks is None or acks.keys != store.result_keys:
            acks = self._result_acks = AckAndStore(self._run, self._fixed, store.result_keys)
        return acks

    async def nack(
        self, task_id: str, requeue: bool = True, *, lease_token: str | None = None
    ) -> bool:
        """Negative-acknowledge a leased job: requeue it now (behind its priority) or drop it.

        Returns:
            True if the job was in flight under `lease_token` (or any delivery, without
            one) and is now requeued or dropped; False (and nothing changed) otherwise.
        """
        args = (task_id, lease_token or "", "1" if requeue else "0")
        return bool(await self._run(lua.NACK, args))

    async def retry_later(self, task: Job, *, delay: float = 0.0) -> bool:
        """End the lease on `task` and make it available again after `delay` seconds.

        The `task` object's fields (`retry_count`, `last_error`, ...) are stored, so the
        next delivery sees them, and its status becomes RETRYING. `task.lease_token`
        fences the call as the token of `ack` does.

        Returns:
            True if the job was held and is scheduled again; False (and nothing
            changed, in Redis or on `task`) when it was not held under that token.
        """
        saved = (task.status, task.scheduled_at)
        task.status = JobStatus.RETRYING
        task.scheduled_at = time.time() + delay if delay > 0 else None
        payload = encode_job(task)
        done = await self._run(
            lua.RETRY_LATER,
            (
                task.id,
                task.lease_token or "",
                payload,
                task.priority,
                max(0, math.ceil(delay * 1000)),
                "1" if task.retry_count > 0 else "0",
            ),
        )
        if not done:
            task.status, task.scheduled_at = saved
        return bool(done)

    # -- inspecting -----------------------------------------------------------------

    async def get_task_count(self) -> int:
        """Return the number of jobs waiting (ready, delayed or with an expired lease)."""
        return int(await self._run(lua.COUNT, ("waiting",)))

    async def find_job_ids(self, prefix: str, limit: int) -> list[str]:
        """Return up to `limit` ids of held jobs starting with `prefix` (`JobLookupProtocol`)."""
        jobs = self.keys.jobs
        return await self._connector.call(
            "find_job_ids", lambda client: queued_ids(client, jobs, prefix, limit)
        )

    async def get_job(self, job_id: str) -> Job | None:
        """Return a job the queue holds (waiting or in flight), or None.

        A job in flight has status RUNNING; `delivery_count` is the current count.
        """
        raw = await self._run(lua.GET, (job_id,))
        if not raw:
            return None
        payload, deliveries, leased = raw
        job = decode_or_poison(job_id, payload, queue_name=self._queue_name)
        job.delivery_count = int(deliveries)
        if int(leased):
            job.status = JobStatus.RUNNING
        return job

    async def delete_job(self, job_id: str) -> bool:
        """Delete a waiting or in-flight job; an in-flight one is never re-delivered.

        Its consumer's next `extend_lease` returns False, and its ack does nothing.

        Returns:
            True if the job existed and was deleted.
        """
        return bool(await self._run(lua.DELETE, (job_id,)))

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Remove a waiting job (REMOVED), or remove a running one and announce it (STOPPING).

        One script deletes the job and, when a live lease held it, publishes its id on
        the queue's cancel channel; NOT_FOUND for a job the queue does not hold.
        """
        found = int(await self._run(lua.CANCEL, (job_id, self.keys.cancel_channel)))
        return _CANCEL_OUTCOMES[found]

    def cancellations(self) -> AsyncIterator[str]:
        """Yield the id of every job of this queue cancelled in flight (any process)."""
        return follow_cancellations(self._connector, self.keys.cancel_channel)

    async def count(self, queue_name: str, status: JobStatus | None = None) -> int:
        """Count jobs of `queue_name` (any queue under this key prefix).

        `status` None counts waiting and in-flight jobs; PENDING the waiting ones
        (ready, delayed, awaiting a retry, or with an expired lease); RETRYING those
        waiting with retry_count > 0; RUNNING the in-flight ones whose lease has not
        run out (an expired lease counts as waiting). Terminal statuses
        count 0: the queue forgets finished jobs.
        """
        if status is None:
            mode = "all"
        else:
            found = _STATUS_MODES.get(status)
            if found is None:
                return 0
            mode = found
        keys = (
            self._fixed
            if queue_name == self._queue_name
            else QueueKeys.build(self._key_prefix, queue_name).fixed
        )
        return int(await self._run(lua.COUNT, (mode,), keys=keys))

    async def clear(self) -> None:
        """Remove every job, waiting or in flight, and every idempotency key.

        The sequence counter stays: lease tokens are drawn from it, so a holder from
        before the clear can never match a token handed out after it.
        """
        keys = self.keys
        doomed = [key for key in keys.fixed if key != keys.seq]

        async def wipe(client: Any) -> None:
            await client.delete(*doomed)
            batch: list[Any] = []
            async for key in client.scan_iter(match=keys.idempotency_pattern, count=1000):
                batch.append(key)
                if len(batch) >= _ENQUEUE_BATCH:
                    await client.delete(*batch)
                    batch.clear()
            if batch:
                await client.delete(*batch)

        await self._connector.call("clear", wipe)

    async def close(self) -> None:
        """Wake every blocked `dequeue_batch` and close the connection pool.

        A connector shared with stores (a backend object's) is released instead, and
        closes with its last user. Safe to call twice; a later call reconnects lazily
        (a provider may stop and start the same queue object).
        """
        if self._waiter.wake_all():
            await asyncio.sleep(0)  # let the interrupted waits unwind first
        # Interrupted waits hand back what they leased before the connections go away,
        # so close() leaves no task behind.
        await self._waiter.settle_all()
        self._enqueue_commit.reset()
        self._ack_commit.reset()
        if self._result_acks is not None:
            self._result_acks.reset()
        self._loop = None
        if self._owns_connector:
            await self._connector.close()
        else:
            await self._connector.release()

    async def __aenter__(self) -> RedisTaskQueue:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


_CANCEL_OUTCOMES = (CancelOutcome.NOT_FOUND, CancelOutcome.REMOVED, CancelOutcome.STOPPING)
