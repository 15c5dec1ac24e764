"""One backend's queue and stores, built from a `TaskBackendSpec` through discovery.

`build_stack` asks the backend named by ``spec.type`` for its queue and for each of
its optional stores (result, progress, progress tracker, DLQ, scheduler store); where
the backend offers none, the in-memory version is used (and `create_store` logs it).
Every error names the config field that selected the backend, so a typo in a type
reads ``tasks.backends[1].type = 'rediss': No task backend named 'rediss' ...``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from lexigram.contracts.tasks import (
    BackendError,
    ProgressTrackerProtocol,
    RateLimiterProtocol,
    TaskBackendSpec,
    TaskConfigurationError,
    TaskQueueError,
    TaskQueueProtocol,
)
from lexigram.tasks._backends import TaskBackendRegistry, create_store, spec_from_config
from lexigram.tasks.config import TaskConfig
from lexigram.tasks.dlq import PersistentDeadLetterQueue
from lexigram.tasks.progress import InMemoryProgressStore, InMemoryProgressTracker, ProgressStore
from lexigram.tasks.results import InMemoryResultStore, ResultStore

logger = logging.getLogger(__name__)

_E = TypeVar("_E", bound=TaskQueueError)


@dataclass(slots=True, kw_only=True)
class BackendStack:
    """The objects one configured backend contributes to an application.

    Attributes:
        name: The backend's name (its ``Named()`` key in multi-backend mode).
        path: Config path of the backend, e.g. ``tasks.backends[1]`` (for messages).
        spec: The spec the stores were built from.
        queue: The queue: the object that is injected AND the one the workers consume.
        result_store: Where workers store job results.
        progress_store: Where handlers' progress is saved.
        progress_tracker: Live progress broadcast (subscribe to a job's updates).
        dead_letter_queue: Where permanently failed jobs go; `retry` re-enqueues on `queue`.
        scheduler_store: The backend's schedule store, or None (in-memory schedules).
        closeables: Stores this stack built, closed at shutdown (the queue is closed too).
    """

    name: str
    path: str
    spec: TaskBackendSpec
    queue: TaskQueueProtocol
    result_store: ResultStore
    progress_store: ProgressStore
    progress_tracker: ProgressTrackerProtocol
    dead_letter_queue: PersistentDeadLetterQueue
    scheduler_store: Any | None = None
    closeables: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        """Close the stores, then the queue; a failing close is logged, not raised."""
        for obj in (*self.closeables, self.queue):
            close = getattr(obj, "close", None) or getattr(obj, "aclose", None)
            if close is None:
                continue
            try:
                result = close()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("Closing %r of task backend %r failed.", obj, self.name)


def _prefixed(exc: _E, field: str) -> _E:
    """Return a copy of a backend error whose message starts with the config field."""
    value = f"{field}.type = {exc.details.get('type')!r}: " if "type" in exc.details else ""
    prefix = value or f"{field}: "
    return type(exc)(prefix + exc.message, details=dict(exc.details), hint=exc.hint)


def build_queue(
    spec: TaskBackendSpec, *, field: str, registry: TaskBackendRegistry
) -> TaskQueueProtocol:
    """Build the queue for `spec`, naming `field` in any error.

    Raises:
        BackendNotFoundError: No installed backend has that type (names the installed
            ones and the pip command).
        BackendError: The backend cannot be loaded or conflicts with another.
        TaskConfigurationError: The backend rejects the spec's options.
    """
    try:
        return registry.create_queue(spec)
    except (BackendError, TaskConfigurationError) as exc:
        raise _prefixed(exc, field) from None


def _store(spec: TaskBackendSpec, factory: str, field: str, **kwargs: Any) -> Any | None:
    try:
        return create_store(spec, factory, **kwargs)
    except (BackendError, TaskConfigurationError) as exc:
        raise _prefixed(exc, field) from None


def _or_memory(
    spec: TaskBackendSpec,
    factory: str,
    field: str,
    closeables: list[Any],
    fallback: Callable[[], Any],
) -> Any:
    built = _store(spec, factory, field)
    if built is None:
        return fallback()
    closeables.append(built)
    return built


def build_stack(
    name: str,
    spec: TaskBackendSpec,
    *,
    field: str,
    registry: TaskBackendRegistry,
    queue: TaskQueueProtocol | None = None,
    with_scheduler_store: bool = False,
) -> BackendStack:
    """Build the queue (unless given) and the stores of one backend.

    No I/O happens here: backends connect lazily, on first use.

    Args:
        name: The backend's name.
        spec: What to build.
        field: Config path of the backend, for messages.
        registry: Where queue factories are looked up (falls back to entry points).
        queue: An explicit queue to use instead of building one (its stores are still
            built from `spec`).
        with_scheduler_store: Also build the backend's scheduler store (primary only).

    Returns:
        The stack.
    """
    closeables: list[Any] = []
    built_queue = queue if queue is not None else build_queue(spec, field=field, registry=registry)
    result_store = _or_memory(spec, "create_result_store", field, closeables, InMemoryResultStore)
    progress_store = _or_memory(
        spec, "create_progress_store", field, closeables, InMemoryProgressStore
    )
    tracker = _or_memory(
        spec, "create_progress_tracker", field, closeables, InMemoryProgressTracker
    )
    dlq_backend = _store(spec, "create_dlq_backend", field)
    if dlq_backend is not None:
        closeables.append(dlq_backend)
    scheduler_store = None
    if with_scheduler_store:
        scheduler_store = _store(spec, "create_scheduler_store", field)
        if scheduler_store is not None:
            closeables.append(scheduler_store)
    return BackendStack(
        name=name,
        path=field,
        spec=spec,
        queue=built_queue,
        # Backend stores implement the contracts structurally (they do not subclass core's
        # ABCs, which backends cannot import); the worker only calls the contract methods.
        result_store=cast("ResultStore", result_store),
        progress_store=cast("ProgressStore", progress_store),
        progress_tracker=cast("ProgressTrackerProtocol", tracker),
        dead_letter_queue=PersistentDeadLetterQueue(backend=dlq_backend, queue=built_queue),
        scheduler_store=scheduler_store,
        closeables=closeables,
    )


def build_stacks(
    config: TaskConfig,
    *,
    registry: TaskBackendRegistry,
    queue: TaskQueueProtocol | None,
    with_scheduler_store: bool,
) -> tuple[dict[str, BackendStack], str]:
    """Build every backend `config` describes; return them by name, and the primary's name.

    Single mode: one stack named ``config.name`` from the ``backend`` section. Multi mode:
    one stack per ``backends`` entry; the primary is the entry marked primary, else the
    first. An explicit `queue` replaces the primary's queue only.
    """
    if not config.backends:
        spec = spec_from_config(config.backend, name=config.name)
        stack = build_stack(
            config.name,
            spec,
            field="tasks.backend",
            registry=registry,
            queue=queue,
            with_scheduler_store=with_scheduler_store,
        )
        return {config.name: stack}, config.name
    primary_entry = config.primary_backend
    assert primary_entry is not None  # noqa: S101 - backends is not empty
    stacks: dict[str, BackendStack] = {}
    for index, entry in enumerate(config.backends):
        is_primary = entry.name == primary_entry.name
        stacks[entry.name] = build_stack(
            entry.name,
            spec_from_config(entry),
            field=f"tasks.backends[{index}]",
            registry=registry,
            queue=queue if is_primary else None,
            with_scheduler_store=with_scheduler_store and is_primary,
        )
    return stacks, primary_entry.name


def build_rate_limiter(
    spec: TaskBackendSpec, *, field: str, name: str, rate: int, per: float, burst: int | None
) -> RateLimiterProtocol:
    """Build the job-start rate limiter: the backend's shared one, else a process-local one."""
    limiter = _store(spec, "create_rate_limiter", field, name=name, rate=rate, per=per, burst=burst)
    if limiter is not None:
        return cast("RateLimiterProtocol", limiter)
    # Imported here: only applications that enable rate limiting need it.
    from lexigram.tasks.concurrency import GlobalRateLimiter  # noqa: PLC0415

    return GlobalRateLimiter(rate=rate, per=per, burst=burst)
