"""What a `TaskWorker` builds from what it was given: its task lookup, event stream, logger.

`lookup_of` turns a `HandlerRegistry` or a mapping of task name -> handler into the
`TaskLookup` the runner asks on every job; `event_stream_of` turns the worker's services
(hooks, dashboard, observers) into the one job event stream it reports to; and
`WorkerLogAdapter` puts the worker's id on every line it logs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from lexigram.tasks.events import COMPLETED, FAILED, EventObserver, EventStream, JobEvent
from lexigram.tasks.execution._options import TaskOptions, options_of
from lexigram.tasks.execution._registry import HandlerRegistry
from lexigram.tasks.execution._runner import TaskLookup
from lexigram.tasks.execution._stats import TaskWorkerServices
from lexigram.tasks.hooks import as_observer


class WorkerLogAdapter(logging.LoggerAdapter[logging.Logger]):
    """Adds the worker's id to each record and keeps the ``extra`` fields a call passes.

    (`logging.LoggerAdapter` replaces a call's ``extra`` with its own before Python 3.13;
    the per-job lines carry theirs: task, job id, attempt, duration.)
    """

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        given = kwargs.get("extra")
        kwargs["extra"] = {**(self.extra or {}), **given} if given else self.extra
        return msg, kwargs


def lookup_of(handlers: Any) -> TaskLookup:
    """How a worker finds its tasks in a `HandlerRegistry` or a mapping of name -> handler.

    The runner asks `current(name)` on every job (one dict lookup either way) and
    re-derives what it cached for the task only when the answer is a new object: a
    registry's (handler, options) pair changes on every registration, a mapping's
    handler when it is replaced.
    """
    if isinstance(handlers, HandlerRegistry):
        entry_of = handlers.lookup_function()
        return TaskLookup(current=entry_of, resolve=entry_of)
    lookup = getattr(handlers, "lookup", None)
    if callable(lookup):
        return TaskLookup(current=lookup, resolve=lookup)
    get = getattr(handlers, "get", None)
    if not callable(get):
        get = getattr(handlers, "get_handler", None)
    if not callable(get):
        msg = (
            f"handler_registry must be a dict of task name -> handler or a HandlerRegistry, "
            f"got {type(handlers).__name__}. Pass e.g. {{'send_email': send_email}}."
        )
        raise TypeError(msg)

    def resolve(name: str) -> tuple[Callable[..., Any], TaskOptions] | None:
        handler = get(name)
        return None if handler is None else (handler, options_of(handler))

    return TaskLookup(current=get, resolve=resolve)


class _RecordExecution:
    """Feeds a dashboard that only has ``record_execution(...)`` from the event stream."""

    __slots__ = ("dashboard",)

    def __init__(self, dashboard: Any) -> None:
        self.dashboard = dashboard

    def observe(self, event: JobEvent) -> None:
        if event.kind in (COMPLETED, FAILED):
            self.dashboard.record_execution(
                event.task,
                job_id=event.job_id,
                duration_ms=(event.duration or 0.0) * 1000.0,
                success=event.kind == COMPLETED,
                error=event.error,
                worker_id=event.worker_id,
            )


def event_stream_of(services: TaskWorkerServices) -> EventStream:
    """The job event stream a worker reports to: hooks, dashboard, then other observers."""
    observers: list[EventObserver] = []
    if services.hooks is not None:
        observers.append(as_observer(services.hooks))
    dashboard = services.dashboard
    if dashboard is not None:
        has_observe = callable(getattr(dashboard, "observe", None))
        observers.append(dashboard if has_observe else _RecordExecution(dashboard))
    observers.extend(services.observers)
    return EventStream(observers)
