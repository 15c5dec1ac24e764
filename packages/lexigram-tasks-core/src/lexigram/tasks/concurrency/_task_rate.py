"""Per-task rate limits: ``@task(rate_limit="10/s")`` limits how often a task's jobs start.

`RateLimit` is the parsed value a task's `TaskOptions` carry. `TaskRateLimiters` holds
one token bucket per limited task for a process, built by the composition root from the
backend's shared rate limiter (every process then shares one bucket per task), or an
in-process bucket where the backend offers none. `TaskRateGate` is the worker's side:
a job of a limited task starts at once when a token is there; otherwise it waits for
one without holding a worker slot (a few jobs per task and worker), and any further
job is given back to the queue for later, with no retry counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lexigram.contracts.tasks import (
    RateLimiterProtocol,
    TaskQueueProtocol,
    TaskValidationError,
)
from lexigram.tasks._closing import close_each
from lexigram.tasks._give_back import give_back
from lexigram.tasks.concurrency._rate_limit import TokenBucket

if TYPE_CHECKING:
    from lexigram.tasks.execution._running import Running

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_FORMAT = re.compile(r"\s*([0-9]+)\s*/\s*([smh])\s*")
ACCEPTED_FORMS = "'<n>/s', '<n>/m' or '<n>/h' with a whole number n >= 1 (e.g. '10/s')"

# Seconds of a task's rate that one worker keeps waiting in line (at least one job):
# enough to take each token the moment it is there, few enough not to hoard the queue.
_PARK_SECONDS = 0.5
# A task's bucket holds 1 token plus this slack (see `RateLimit.capacity`).
_SLACK_TOKENS = 0.25
_SLACK_SECONDS = 0.02
# Longest pause after the shared limiter failed (backend down), doubling from 0.1 s.
_MAX_ERROR_BACKOFF = 5.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """How often jobs of one task may start: `rate` per `per` seconds, evenly spaced.

    Attributes:
        rate: Jobs per period.
        per: Period length in seconds (1, 60 or 3600).
        text: The value as written, e.g. ``"10/s"``.
    """

    rate: int
    per: float
    text: str

    def __post_init__(self) -> None:
        if self.rate < 1 or not self.per > 0:
            msg = (
                f"RateLimit(rate={self.rate!r}, per={self.per!r}): use a whole number of jobs "
                "of 1 or more per a positive number of seconds, or parse_rate_limit('10/s')."
            )
            raise ValueError(msg)

    @property
    def per_second(self) -> float:
        """Jobs per second."""
        return self.rate / self.per

    @property
    def capacity(self) -> float:
        """Tokens the task's bucket holds: one, and a little slack.

        One token spaces the jobs evenly. The slack keeps the refill that accrues while
        the next taker is on its way (a timer firing late, a round trip to the backend):
        with a bucket of exactly one token that time is lost on every job, a few percent
        at 20/s and most of the rate at 1000/s. It is a quarter of a token, or 20 ms of
        the rate where that is more.
        """
        return 1.0 + max(_SLACK_TOKENS, self.per_second * _SLACK_SECONDS)

    def __str__(self) -> str:
        return self.text


def parse_rate_limit(value: object, *, task: str) -> RateLimit:
    """Parse ``"10/s"``, ``"100/m"`` or ``"1000/h"`` for task `task`.

    Raises:
        TaskValidationError: `value` is not of one of the accepted forms.
    """
    match = _FORMAT.fullmatch(value) if isinstance(value, str) else None
    rate = int(match.group(1)) if match is not None else 0
    if match is None or rate < 1:
        msg = f"@task {task!r}: rate_limit={value!r} is not a rate limit. Use {ACCEPTED_FORMS}."
        raise TaskValidationError(msg)
    return RateLimit(rate=rate, per=_PERIODS[match.group(2)], text=f"{rate}/{match.group(2)}")


class RateDeferred(Exception):  # noqa: N818 - internal signal, never escapes the worker
    """The job was given back to the queue to start later; nothing else is to be done."""


LimiterFactory = Callable[[str, RateLimit], "tuple[RateLimiterProtocol, bool]"]
"""(task name, limit) -> (the task's token bucket, whether every process shares it)."""


def in_process_limiter(task: str, limit: RateLimit) -> tuple[RateLimiterProtocol, bool]:
    """A process-local bucket of `limit.capacity` tokens: jobs start one period apart."""
    del task  # one bucket per task name, kept by `TaskRateLimiters`
    return TokenBucket(capacity=limit.capacity, refill_rate=limit.per_second), False


class TaskRateLimiters:
    """One token bucket per limited task, for every worker of a process.

    Args:
        factory: Builds a task's bucket (default: an in-process one).
        backend: The backend's type, named in the warning given when a bucket is not
            shared between processes (None: no warning, e.g. for the memory backend,
            whose workers all run in one process).
    """

    def __init__(
        self, factory: LimiterFactory = in_process_limiter, *, backend: str | None = None
    ) -> None:
        self._factory = factory
        self._backend = backend
        self._limiters: dict[str, tuple[RateLimit, RateLimiterProtocol]] = {}

    def __repr__(self) -> str:
        return f"TaskRateLimiters(backend={self._backend!r}, tasks={sorted(self._limiters)!r})"

    def get(self, task: str, limit: RateLimit) -> RateLimiterProtocol:
        """The bucket of task `task` (built on first use, or again if its limit changed)."""
        held = self._limiters.get(task)
        if held is not None and held[0] == limit:
            return held[1]
        limiter, shared = self._factory(task, limit)
        if not shared and self._backend is not None:
            logger.warning(
                "Task %r has rate_limit=%r, but the %s backend offers no rate limiter shared "
                "between processes: the limit holds per worker process (N processes start up "
                "to N times as many jobs). To share it, use a backend that offers one, or "
                "point this backend's stores at one.",
                task,
                limit.text,
                self._backend,
            )
        self._limiters[task] = (limit, limiter)
        return limiter

    def prepare(self, options: Iterable[tuple[str, object]]) -> None:
        """Build the buckets of every limited task in `options` now (and warn now).

        Args:
            options: Pairs of (task name, its `TaskOptions` or None).
        """
        for task, opts in options:
            limit = getattr(opts, "rate_limit", None)
            if isinstance(limit, RateLimit):
                self.get(task, limit)

    async def close(self) -> None:
        """Close the buckets that hold connections."""
        limiters, self._limiters = self._limiters, {}
        await close_each(
            *(limiter for _, limiter in limiters.values()), owner="the task rate limits"
        )


class _Line:
    """The jobs of one task waiting for a token in one worker, served in arrival order."""

    __slots__ = ("horizon", "limit", "limiter", "park_limit", "pump", "waiters")

    def __init__(self, limit: RateLimit, limiter: RateLimiterProtocol, park_limit: int) -> None:
        self.limit = limit
        self.limiter = limiter
        self.park_limit = park_limit
        # Each resolves True (a token was taken for it) or False (the worker is stopping).
        self.waiters: deque[asyncio.Future[bool]] = deque()
        self.pump: asyncio.Task[None] | None = None
        # When (monotonic) the next job given back to the queue should come back: each
        # one reserves a period, so a backlog returns spread out, not all at once.
        self.horizon = 0.0


class TaskRateGate:
    """Admits the jobs of rate-limited tasks for one worker.

    A job of a limited task starts when it gets a token from its task's bucket. If
    none is there, it waits in its task's line without counting against the worker's
    concurrency (`parked` says how many wait), so other tasks' jobs keep starting;
    when the line is full, the job is given back to the queue with `retry_later` to
    come back about when its turn is due. That costs no retry and never fails or
    dead-letters it.

    Args:
        limiters: The process's buckets.
        queue: The worker's queue (jobs are given back to it).
        wake: Called when a job starts waiting (its worker slot is free again).
        max_parked: Most jobs of one task that wait in line in this worker.
    """

    def __init__(
        self,
        limiters: TaskRateLimiters,
        queue: TaskQueueProtocol,
        *,
        wake: Callable[[], None],
        max_parked: int,
    ) -> None:
        self._limiters = limiters
        self._queue = queue
        self._wake = wake
        self._max_parked = max(1, max_parked)
        self._lines: dict[str, _Line] = {}
        self._waiting: set[Running] = set()

    @property
    def parked(self) -> int:
        """Jobs waiting for a token now (they hold no worker slot)."""
        return len(self._waiting)

    def _line(self, task: str, limit: RateLimit) -> _Line:
        line = self._lines.get(task)
        if line is None or line.limit != limit:
            limiter = self._limiters.get(task, limit)
            park = min(self._max_parked, max(1, math.ceil(limit.per_second * _PARK_SECONDS)))
            line = self._lines[task] = _Line(limit, limiter, park)
        return line

    async def admit(self, entry: Running, limit: RateLimit) -> None:
        """Return when `entry`'s job may start.

        Raises:
            RateDeferred: The job was given back to the queue (or its lease was lost
                meanwhile); the worker must not settle it.
        """
        job = entry.job
        line = self._line(job.name, limit)
        if not line.waiters:
            try:
                if await line.limiter.try_acquire():
                    return
            except Exception:
                logger.exception("Rate limiter of task %r failed; the job waits.", job.name)
        if len(line.waiters) >= line.park_limit:
            await self._give_back(entry, line)
            raise RateDeferred
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        line.waiters.append(waiter)
        self._waiting.add(entry)
        self._wake()
        if line.pump is None or line.pump.done():
            line.pump = asyncio.create_task(self._pump(job.name, line))
        try:
            granted = await waiter
        finally:
            self._waiting.discard(entry)
            if not waiter.done():  # cancelled while waiting (lease lost, worker gone)
                waiter.cancel()
        if not granted:  # the worker is stopping: another one takes it from the queue
            await self._give_back(entry, line, now=True)
            raise RateDeferred
        # Its run starts now: durations and the lag monitor should not count the wait.
        job.started_at = entry.started_at = time.time()

    async def _pump(self, task: str, line: _Line) -> None:
        """Take a token for the first waiter, then the next, until the line is empty."""
        backoff = 0.1
        while line.waiters:
            try:
                await line.limiter.acquire()
            except Exception:
                logger.exception(
                    "Rate limiter of task %r failed; retrying in %.1f s.", task, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_ERROR_BACKOFF)
                continue
            backoff = 0.1
            while line.waiters:
                waiter = line.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(True)
                    break

    async def _give_back(self, entry: Running, line: _Line, *, now: bool = False) -> None:
        """Put the job back in the queue (`now`, or when its turn is about due).

        It counts as given back (`give_back`), not as an attempt.
        """
        job = entry.job
        period = 1.0 / line.limit.per_second
        at = time.monotonic()
        due = at if now else max(line.horizon, at + (len(line.waiters) + 1) * period)
        if not now:
            line.horizon = due + period
        try:
            kept = await give_back(self._queue, job, delay=due - at)
        except Exception:
            # The lease runs out and the job comes back anyway; nothing is lost.
            logger.exception("Giving back job %s (%s) for its rate limit failed.", job.id, job.name)
            return
        if kept:
            logger.debug(
                "Job %s (%s) is over its task's rate limit %s; it starts in %.2f s.",
                job.id,
                job.name,
                line.limit.text,
                due - at,
            )

    def release_waiting(self) -> None:
        """Give every job waiting for a token back to the queue now (the worker stops).

        They never started, so they are not drained; like any job given back, the
        delivery does not count towards the crash-loop check.
        """
        for line in self._lines.values():
            while line.waiters:
                waiter = line.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(False)

    def close(self) -> None:
        """Stop the lines' token takers (the worker is stopping)."""
        for line in self._lines.values():
            if line.pump is not None:
                line.pump.cancel()
        self._lines.clear()
