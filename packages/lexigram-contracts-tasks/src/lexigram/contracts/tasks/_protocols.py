"""The protocols a backend implements: its queue, and the entry-point object that builds it.

`TaskQueueProtocol` is the one every backend must satisfy; the shipped conformance kit
(`lexigram.tasks.testing`) checks its semantics. The store protocols
(`_store_protocols`) are optional: a backend that offers none gets the in-memory versions
from the core.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from lexigram.contracts.tasks._enums import CancelOutcome, JobStatus
from lexigram.contracts.tasks._errors import TaskQueueError
from lexigram.contracts.tasks._models import (
    Job,
    TaskBackendSpec,
)
from lexigram.contracts.tasks._result import Result


@runtime_checkable
class TaskQueueProtocol(Protocol):
    """Protocol for task queue implementations (memory, Redis, PostgreSQL, RabbitMQ...).

    Delivery is at-least-once with leases. `dequeue`/`dequeue_batch` hand a job to one
    consumer under a lease of `lease_seconds` and set `Job.lease_token` to a token that
    names this one delivery. `extend_lease` keeps the lease while the handler runs (the
    worker heartbeats every third of `lease_seconds`); `ack` ends it; `nack(requeue=True)`
    returns the job now; `retry_later` returns it after a delay with its updated retry
    state. A lease that expires (the consumer died) makes the job available again with
    `delivery_count` raised and a new token.

    Fencing: `ack`, `nack`, `extend_lease` and `retry_later` made with a token that no
    longer holds the lease (it expired, the job was redelivered, acked, deleted) change
    nothing and return False: a stale holder can never settle or keep another
    consumer's delivery. Called without a token (`ack(job.id)`, the short form for a
    single consumer), they act on the job's current delivery, whoever holds it.

    Higher `priority` first, FIFO within a priority, and a job whose `scheduled_at` is in
    the future never blocks ready jobs. A job with an `idempotency_key` already seen
    returns the first job's id. An undecodable stored payload never makes `dequeue`
    raise: the backend leases `make_poison_job(...)` in its place, which the worker
    dead-letters with the decode error.

    What returns `Err`/False and what raises: `docs/writing-a-backend.md` has the table.
    In short, a refusal that concerns one job (invalid job, full queue, stale token)
    is a value; a broken connection raises `BackendConnectionError`.

    Example:
        queue = MemoryTaskQueue()
        job_id = (await queue.enqueue(Job(name="send_email", args=("a@b.c",)))).unwrap()
        job = await queue.dequeue()
        await queue.ack(job.id, lease_token=job.lease_token)
    """

    @property
    def queue_name(self) -> str:
        """Name of the queue this object serves: exactly the `TaskBackendSpec.queue_name`.

        A backend's ``create_queue(spec)`` must return a queue whose `queue_name` equals
        ``spec.queue_name``: core finds queues by that name (the dashboard's and
        ``inspect``'s counts, a dead letter's retry, routing), and refuses a queue
        reporting another one with a `BackendError`. Namespacing on the service's side
        (a key prefix, a broker queue name) stays inside the backend.
        """
        ...

    @property
    def lease_seconds(self) -> float:
        """Length of a delivery's lease (the visibility timeout), in seconds.

        The worker renews the lease of every running job every `lease_seconds / 3`: from
        a thread of its own when the queue implements `LeaseRenewingQueueProtocol` (so a
        handler that blocks the event loop cannot lose it), else with `extend_lease` on
        its event loop. A backend whose broker has no lease of its own (AMQP) still
        declares the interval its deliveries are held for between heartbeats.
        """
        ...

    async def enqueue(self, task: Job) -> Result[str, TaskQueueError]:
        """Add a job to the queue.

        Args:
            task: The `Job` to enqueue.

        Returns:
            Ok(job_id) on success (the first job's id for a duplicate idempotency key);
            Err(TaskQueueError) for a recoverable failure (full queue, invalid payload).
            Infrastructure failures (lost connection) raise `BackendConnectionError`.
        """
        ...

    async def enqueue_many(self, tasks: Sequence[Job]) -> list[Result[str, TaskQueueError]]:
        """Add several jobs in as few round trips as the backend allows.

        Returns:
            One result per job, in order.
        """
        ...

    async def dequeue(self) -> Job | None:
        """Lease and return the next ready job, or None when none is ready (no waiting).

        The returned job carries its delivery's `lease_token`.
        """
        ...

    async def dequeue_batch(self, max_jobs: int, *, timeout: float = 0.0) -> list[Job]:
        """Lease up to `max_jobs` ready jobs, waiting up to `timeout` seconds for the first.

        Idle consumers wait on the backend's wake-up mechanism, not a sleep loop, so a
        newly enqueued job (through any queue object or process) is returned within
        milliseconds. Each returned job carries its delivery's `lease_token`.

        Returns:
            Between 0 (timeout) and `max_jobs` leased jobs.
        """
        ...

    async def extend_lease(
        self, task_id: str, seconds: float | None = None, *, lease_token: str | None = None
    ) -> bool:
        """Extend the lease of an in-flight job (the worker's heartbeat).

        Args:
            task_id: The leased job's id.
            seconds: New lease length from now; None means `lease_seconds`.
            lease_token: The delivery's token; with it, a lease that ran out (even if no
                one took the job yet) or passed to another consumer is not extended.

        Returns:
            False when the job is no longer leased under that token (acked,
            deleted/cancelled, or its lease expired): the worker stops the handler.
        """
        ...

    async def ack(self, task_id: str, *, lease_token: str | None = None) -> bool:
        """Acknowledge successful processing; the queue forgets the job.

        Returns:
            True if the delivery was held and is now settled; False (and no change) for
            a stale token or a job the queue no longer holds in flight.
        """
        ...

    async def nack(
        self, task_id: str, requeue: bool = True, *, lease_token: str | None = None
    ) -> bool:
        """Negative-acknowledge a leased job: requeue it now, or discard it.

        Returns:
            True if the delivery was held and is now settled; False (and no change)
            otherwise, as for `ack`.
        """
        ...

    async def retry_later(self, task: Job, *, delay: float = 0.0) -> bool:
        """End the lease on `task` and make it available again after `delay` seconds.

        The job's current fields (`retry_count`, `last_error`, status) are persisted,
        so the next delivery sees them. `task.lease_token` fences the call like the
        token of `ack`.

        Returns:
            True if the delivery was held and the job is scheduled again; False (and no
            change) otherwise.
        """
        ...

    async def get_task_count(self) -> int:
        """Return the number of jobs waiting (ready or delayed, not in flight)."""
        ...

    async def get_job(self, job_id: str) -> Job | None:
        """Return a job the queue holds (waiting or in flight), or None.

        Its status says where it is: RUNNING while a lease on it has not run out,
        otherwise the status it was stored with (PENDING, or RETRYING when it waits for
        a retry); `job status` and `JobHandle.status` show what this returns.
        """
        ...

    async def delete_job(self, job_id: str) -> bool:
        """Delete a waiting or in-flight job; an in-flight one is never re-delivered.

        Returns:
            True if the job existed and was deleted.
        """
        ...

    async def count(self, queue_name: str, status: JobStatus | None = None) -> int:
        """Count jobs of `queue_name` held by the backend.

        `status` None counts waiting and in-flight jobs; PENDING counts waiting jobs
        (ready, delayed or awaiting a retry); RETRYING those waiting with retry_count > 0;
        RUNNING the in-flight ones whose lease has not expired (an expired lease counts
        as waiting). Terminal statuses count 0: the queue forgets finished jobs (results
        live in the result store).
        """
        ...

    async def clear(self) -> None:
        """Remove every job, waiting or in flight, from this queue."""
        ...

    async def close(self) -> None:
        """Close connections and release resources; safe to call twice."""
        ...


@runtime_checkable
class CancellableQueueProtocol(TaskQueueProtocol, Protocol):
    """A queue with the optional capability to cancel jobs, including running ones.

    A queue that implements it (the memory, Redis, PostgreSQL, RabbitMQ and SQLite
    queues do) lets `JobHandle.cancel` and ``lexigram-tasks job cancel`` stop a job
    that is already running: the worker running it hears of it through `cancellations`
    and cancels the handler. For a queue without it, a waiting job is cancelled with
    `TaskQueueProtocol.delete_job` and a running one is reported as
    `CancelOutcome.UNSUPPORTED` and left alone.

    Example:
        outcome = await queue.cancel(job_id)  # REMOVED, STOPPING or NOT_FOUND
    """

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Cancel a job: remove it if it waits, stop it if it runs.

        In one atomic step: a waiting job (ready, delayed, awaiting a retry) is deleted
        and REMOVED is returned; an in-flight job is deleted as `delete_job` deletes it
        (never delivered again, and its holder's `extend_lease` returns False), its id
        is announced to every `cancellations` iterator of the queue in any process, and
        STOPPING is returned; a job the queue does not hold
        gives NOT_FOUND. Never FINISHED or UNSUPPORTED: the queue forgets finished jobs.

        Raises:
            BackendConnectionError: The service cannot be reached.
        """
        ...

    def cancellations(self) -> AsyncIterator[str]:
        """Yield the id of every job of this queue cancelled while in flight.

        Announcements made through any queue object or process reach every iterator
        that is open at the time, within about a second (the worker stops the handler
        then). An iterator may also yield ids of jobs it does not run; the worker
        ignores those. It ends only when the task iterating it is cancelled, or when
        the queue is closed; it raises `BackendConnectionError` when the service cannot
        be reached (the worker logs it and subscribes again).
        """
        ...


@runtime_checkable
class LeaseRenewerProtocol(Protocol):
    """Renews leases over a connection of its own, from an event loop that is not the queue's.

    A worker runs it on a thread of its own (the lease keeper), so the leases of the jobs
    it holds do not depend on its event loop: an ``async`` handler that blocks the loop
    (``time.sleep``, a CPU-bound loop) no longer lets them run out while the process lives.
    Every coroutine of one renewer runs on that one loop, one at a time; the renewer opens
    its connection there on first use, and never touches the queue's own connections.

    Fencing holds as for `TaskQueueProtocol.extend_lease`: a token that no longer holds
    its lease (settled, deleted or cancelled, expired, delivered again) is refused, and a
    refused renewal changes nothing, so it can never revive a delivery.
    """

    async def renew(self, leases: Sequence[tuple[str, str]], seconds: float) -> Sequence[str]:
        """Extend each ``(job id, lease token)`` lease to `seconds` from now.

        In as few round trips as the backend allows (one for the whole batch where it
        can): the keeper calls it every third of `TaskQueueProtocol.lease_seconds` with
        every job its worker holds.

        Returns:
            The ids whose token no longer holds the lease (nothing was changed for them);
            the worker stops their handlers, which is how it hears of a cancellation it
            missed.

        Raises:
            BackendConnectionError: The service cannot be reached (the keeper logs it
                and tries again at its next tick).
        """
        ...

    async def close(self) -> None:
        """Close the renewer's connection; safe to call twice."""
        ...


@runtime_checkable
class LeaseRenewingQueueProtocol(TaskQueueProtocol, Protocol):
    """A queue that can renew leases independently of the event loop that uses it.

    Optional: a worker whose queue implements it (the memory, Redis, PostgreSQL and
    SQLite queues do) renews the leases of its running jobs from a thread of its own
    through `open_lease_renewer`, and the heartbeat on its event loop stops renewing
    them. A queue without it keeps the heartbeat on the event loop, whose leases a
    handler that blocks the loop past `lease_seconds` can lose.

    Example:
        renewer = queue.open_lease_renewer()  # None: renew on the loop as before
    """

    def open_lease_renewer(self) -> LeaseRenewerProtocol | None:
        """Return a new renewer with a connection of its own, or None when it cannot.

        Safe to call from any thread; it opens nothing (the renewer connects on its
        first `LeaseRenewerProtocol.renew`, on the loop that runs it). None means this
        queue object cannot open a connection of its own (e.g. it was given an
        existing client or pool and no URL), and the worker renews on its loop.
        """
        ...


@runtime_checkable
class ConnectionCheckingQueueProtocol(TaskQueueProtocol, Protocol):
    """A queue that can show its backend answers without reading any job (optional).

    Tools that check the connection before they start (the CLI's commands do) call
    `check_connection` when a queue offers it, else `count`, which some backends answer
    by reading every job (a second or more on a table of a million). A backend whose
    `count` is cheap need not implement it.

    Example:
        if isinstance(queue, ConnectionCheckingQueueProtocol):
            await queue.check_connection()
    """

    async def check_connection(self) -> None:
        """Make one trivial call to the backend (connecting first if needed).

        Raises:
            TaskQueueError: What any call of this queue raises when the backend cannot
                be reached or refuses it (e.g. `BackendConnectionError`), with the same
                message.
        """
        ...


@runtime_checkable
class TaskBackendProtocol(Protocol):
    """What an entry point in group ``lexigram.tasks.backends`` names.

    `create_queue` is required. A backend may also offer any of the factories in
    `OPTIONAL_BACKEND_FACTORIES`, each taking the same `TaskBackendSpec` (the rate
    limiter also ``*, name, rate, per, burst``) and returning an object that shares its
    state between processes. What the core does when one is missing (and it logs that):

    - `create_result_store`, `create_progress_store`, `create_progress_tracker`,
      `create_dlq_backend`, `create_scheduler_store`, `create_idempotency_store`,
      `create_rate_limiter`, `create_lock_manager`: the core uses its in-memory version,
      seen by one process only (`create_lock_manager` feeds the `LockManager` the
      application container offers; without it, its locks hold within one process).
    - `create_workflow_state_store`: no in-memory version, except for a process-local
      backend (``process_local = True``). Queue-driven workflows need it to return a
      store that also implements `WorkflowRunStoreProtocol`; without one they refuse to
      start and say so (a store with `WorkflowStateStoreProtocol` alone only serves
      `JobChain`'s resume).
    - `create_cache_backend`: none; the command line then does not list running
      workers.

    A backend also describes itself, so the core never names a backend: the optional
    attributes in `OPTIONAL_BACKEND_ATTRIBUTES` are

    - ``url_schemes`` (``tuple[str, ...]``): the URL schemes it serves, e.g.
      ``("redis", "rediss")``; ``--backend redis://...`` and ``url:`` in config select
      the backend by them.
    - ``url_field`` (``str | None``): the older per-backend config field that holds its
      URL (``redis_url``), read when ``url`` is not set.
    - ``options_type`` (a dataclass type): the options ``TaskBackendSpec.options`` may
      carry, with their defaults; read them with `parse_options`.
    - ``first_answer_options`` (``tuple[str, ...]``): the options of ``options_type``
      that bound the wait for the server's first answer (connecting, and a deadline that
      catches a server that accepts connections and never replies); the command line's
      ``--connect-timeout`` sets those the configuration leaves unset. Without it, the
      options named ``connect_timeout`` and ``socket_connect_timeout`` are taken, plus
      ``command_timeout`` when there is no ``connect_timeout``. An ``options_type`` with
      a ``bool`` field named `MUST_EXIST_OPTION` (``must_exist``, default False) lets the
      read-only commands (``inspect``, ``dlq``, ``job``, ``schedule``, ``dashboard``) set
      it: the backend then creates nothing (no file, schema or broker queue) and fails
      with one line naming what does not exist.

    and the flags in `OPTIONAL_BACKEND_FLAGS`, declared only where the default is wrong:

    - ``url_required`` (``bool``, default True): for a backend with ``url_schemes``, the
      configuration check reports a missing URL as an error. False for a backend with
      a usable default location (SQLite's default file).
    - ``process_local`` (``bool``, default False): the backend keeps everything inside
      one process (the memory backend), so other processes and commands can see none of
      it, and the core's in-memory stores lose nothing.

    Finally a backend that holds resources of its own beyond any queue or store it
    built (shared connection pools) offers ``async def close(self) -> None``
    (`ClosableBackendProtocol`): called once the program is done with the backend (a
    command ends, a provider shuts down), after the queues and stores were closed. It
    must leave the object usable: a later call of a factory opens anew.
    """

    def create_queue(self, spec: TaskBackendSpec, /) -> TaskQueueProtocol:
        """Build the backend's queue for `spec`."""
        ...


@runtime_checkable
class ClosableBackendProtocol(TaskBackendProtocol, Protocol):
    """A backend object that holds resources of its own and releases them in `close`.

    Optional (`OPTIONAL_BACKEND_METHODS`): the Redis backend closes the connection pools
    its queues and stores share, the RabbitMQ backend those of the backend it borrows
    stores from. A backend whose queues and stores own everything they use needs none.
    """

    async def close(self) -> None:
        """Release what the backend object holds; the next factory call opens anew.

        Called after the queues and stores built from it were closed, from the event
        loop they ran on. A plain method returning None is accepted too.
        """
        ...


@runtime_checkable
class BackendLookupProtocol(Protocol):
    """How a backend finds the other backends of the program that built it.

    The core puts the lookup it resolves types with (its `TaskBackendRegistry`: backends
    registered in code first, then the installed ones) into the `TaskBackendSpec` of
    every queue and store it asks a backend for, as `TaskBackendSpec.backends`. A backend
    that hands part of its work to another (RabbitMQ's ``stores`` option names the
    backend that keeps its results) asks this lookup, so it finds what the
    configuration's ``type`` would find, and never keeps a lookup of its own.

    Example:
        if spec.backends is not None:
            lender = spec.backends.backend("redis")
            results = lender.create_result_store(spec)
    """

    def backend(self, backend_type: str, /) -> TaskBackendProtocol:
        """Return the backend object of `backend_type`.

        Raises:
            BackendError: No backend has that type (`BackendNotFoundError`), or loading
                it failed; the message says what to install or fix.
        """
        ...

    def backend_for_scheme(self, scheme: str, /) -> str | None:
        """Return the type of the backend serving URLs of `scheme`, or None if none does.

        Raises:
            BackendConflictError: Several backends claim the scheme.
        """
        ...


OPTIONAL_BACKEND_FACTORIES: tuple[str, ...] = (
    "create_result_store",
    "create_progress_store",
    "create_progress_tracker",
    "create_dlq_backend",
    "create_scheduler_store",
    "create_workflow_state_store",
    "create_lock_manager",
    "create_cache_backend",
    "create_idempotency_store",
    "create_rate_limiter",
)
"""Names of the optional store factories a `TaskBackendProtocol` object may expose."""

OPTIONAL_BACKEND_ATTRIBUTES: tuple[str, ...] = (
    "url_schemes",
    "url_field",
    "options_type",
    "first_answer_options",
)
"""Names of the optional self-description attributes of a `TaskBackendProtocol` object."""

OPTIONAL_BACKEND_FLAGS: Mapping[str, bool] = MappingProxyType(
    {"url_required": True, "process_local": False}
)
"""The optional boolean attributes of a `TaskBackendProtocol` object, with their defaults."""

MUST_EXIST_OPTION = "must_exist"
"""The option the read-only commands set to True where a backend's ``options_type`` has it:
create nothing, and fail naming what does not exist (see `TaskBackendProtocol`)."""

OPTIONAL_BACKEND_METHODS: tuple[str, ...] = ("close",)
"""Names of the optional methods of a `TaskBackendProtocol` object besides its factories."""
