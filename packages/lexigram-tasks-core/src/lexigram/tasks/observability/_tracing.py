"""OpenTelemetry traces of jobs: a producer span per enqueue, a consumer span per attempt.

Active when the optional ``opentelemetry-api`` package is installed (``pip install
'lexigram-tasks[otel]'``); without it every function here does nothing. Spans follow
OpenTelemetry's messaging conventions:

- ``send <task>`` (kind PRODUCER) around each enqueue of the core (`submit_job`, so
  ``.delay()``, ``.apply_async()``, the CLI's ``enqueue``, the scheduler and the
  provider). The W3C trace context of that span (``traceparent``, ``tracestate``) is
  written into the job's envelope, in ``Job.metadata["trace_context"]``.
- ``process <task>`` (kind CONSUMER) for each attempt, a child of the producer span, so
  a trace started in a web request shows the job that ran in another process. It is the
  current span while the handler runs (spans the handler starts nest under it), and
  ends with the attempt's outcome (an error status for a failed attempt).

Which tracer provider and exporter are used is the application's choice, as always with
OpenTelemetry: until the application sets one (with the API alone, say) no span is
started and the job path costs what it costs without the API. ``worker.tracing: false``
in the configuration keeps a worker from starting consumer spans.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import Token
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from lexigram.tasks._presence import worker_identity
from lexigram.tasks.events import (
    CANCELLED,
    COMPLETED,
    FAILED,
    LOST,
    RELEASED,
    RETRYING,
    STARTED,
    JobEvent,
    event_routes_changed,
)

if TYPE_CHECKING:
    from lexigram.contracts.tasks import Job


def _api_installed() -> bool:
    """Whether ``opentelemetry-api`` is installed, found without importing it."""
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):  # no ``opentelemetry`` package at all
        return False


_AVAILABLE = _api_installed()
# A provider named in the environment is loaded by the API on its first call. (The name
# of the API's `OTEL_PYTHON_TRACER_PROVIDER` variable, read without importing the API.)
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_TRACE_MODULE = "opentelemetry.trace"

# The API's modules and names, imported when the first span is to be made, not by every
# process that merely has the API installed (it cost a PostgreSQL worker's start 6 ms).
_api: Any = None


def _otel() -> Any:
    """The OpenTelemetry API's modules and names this module uses (imported once)."""
    global _api  # noqa: PLW0603 - the one lazily filled namespace of the module
    if _api is None:
        from opentelemetry import context, propagate, trace  # noqa: PLC0415 - see _api
        from opentelemetry.trace import (  # noqa: PLC0415
            NoOpTracerProvider,
            ProxyTracerProvider,
            SpanKind,
            StatusCode,
            TracerProvider,
        )

        _api = SimpleNamespace(
            context=context,
            propagate=propagate,
            trace=trace,
            NoOpTracerProvider=NoOpTracerProvider,
            ProxyTracerProvider=ProxyTracerProvider,
            SpanKind=SpanKind,
            StatusCode=StatusCode,
            TracerProvider=TracerProvider,
        )
    return _api


logger = logging.getLogger(__name__)

TRACE_CONTEXT_KEY = "trace_context"
"""`Job.metadata` key of the W3C trace context (``traceparent``, ``tracestate``)."""

SYSTEM = "lexigram_tasks"
"""The ``messaging.system`` attribute of every span."""

_ENDS = frozenset({COMPLETED, RETRYING, FAILED, LOST, RELEASED, CANCELLED})
_STARTS = frozenset({STARTED})
_STARTS_AND_ENDS = _STARTS | _ENDS


def tracing_available() -> bool:
    """True when ``opentelemetry-api`` is installed (spans are made)."""
    return _AVAILABLE


_UNKNOWN = object()
# The provider `_current_tracer` answered for last, and its answer: asked once or twice
# a job, it then costs a global read and an identity test while the provider stays.
_seen: tuple[object, Any] = (object(), None)


def _current_tracer() -> Any:
    """This library's tracer from the configured provider; None while none is configured.

    The API's default provider records nothing: then no span is started at all, which
    keeps the job path as fast as without the API.

    An application sets a provider through ``opentelemetry.trace``, so until something
    imported that module no provider can be set (one named in the environment aside) and
    the API is not imported here either. The SDK builds a new tracer on every
    ``get_tracer`` call, which costs more than a span, and while no provider is set
    ``get_tracer_provider()`` asks the environment for one on every call (a KeyError
    raised and caught): the answer is kept per provider, read from the API module's
    global.
    """
    trace = sys.modules.get(_TRACE_MODULE)
    if trace is None:
        if not (_AVAILABLE and _PROVIDER_FROM_ENV):
            return None
        trace = _otel().trace
    # An API without the global is asked every time.
    provider = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
    seen, tracer = _seen
    if provider is seen:
        return tracer
    return _tracer_for(provider)


def _tracer_for(provider: object) -> Any:
    """Find the answer of `_current_tracer` for `provider` (the API's global), and keep it."""
    global _seen  # noqa: PLW0603 - the one cache of the module
    if provider is None and not _PROVIDER_FROM_ENV:
        _seen = (None, None)  # none set yet: the global changes when one is
        return None
    api = _otel()
    if provider is None or provider is _UNKNOWN:
        # The API loads a provider the environment names on its first call (the global
        # holds it from then on).
        provider = api.trace.get_tracer_provider()
        if provider is _seen[0]:
            return _seen[1]
    tracer = None
    if isinstance(provider, api.TracerProvider) and not isinstance(
        provider, (api.ProxyTracerProvider, api.NoOpTracerProvider)
    ):
        from lexigram.tasks import __version__  # noqa: PLC0415 - avoids an import cycle

        tracer = api.trace.get_tracer("lexigram.tasks", __version__, tracer_provider=provider)
    _seen = (provider, tracer)
    return tracer


@contextmanager
def producer_span(job: Job, queue_name: str) -> Iterator[None]:
    """Run an enqueue of `job` inside a ``send`` span whose context the job carries."""
    tracer = _current_tracer()
    if tracer is None:
        yield
        return
    with tracer.start_as_current_span(
        f"send {job.name}",
        kind=_otel().SpanKind.PRODUCER,
        attributes=_send_attributes(job, queue_name),
    ):
        _carry(job)
        yield


@contextmanager
def producer_spans(sends: Iterable[tuple[Job, str]]) -> Iterator[None]:
    """Run one bulk enqueue inside a ``send`` span per (job, queue name) of `sends`, siblings.

    Each span is a child of the caller's span, as `producer_span`'s is, and none is made
    current: made current one after the other, each would nest under the one before, and
    each job's ``process`` span under another job's ``send``.
    """
    tracer = _current_tracer()
    if tracer is None:
        yield
        return
    api = _otel()
    spans = []
    for job, queue_name in sends:
        span = tracer.start_span(
            f"send {job.name}",
            kind=api.SpanKind.PRODUCER,
            attributes=_send_attributes(job, queue_name),
        )
        spans.append(span)
        _carry(job, api.trace.set_span_in_context(span))
    try:
        yield
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(api.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        for span in spans:
            span.end()


def _carry(job: Job, context: Any = None) -> None:
    """Write the trace context of `context` (default: the current one) into `job`."""
    carrier: dict[str, str] = {}
    _otel().propagate.inject(carrier, context=context)
    if carrier:
        job.metadata[TRACE_CONTEXT_KEY] = carrier


def _send_attributes(job: Job, queue_name: str) -> dict[str, str]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.destination.name": queue_name,
        "messaging.message.id": job.id,
        "lexigram_tasks.task.name": job.name,
    }


class TracingObserver:
    """An `EventObserver` that makes a consumer span of each attempt of each job.

    The span starts on the attempt's "started" event (inside the job's own asyncio
    task, just before the handler is called, so it is the handler's current span) and
    ends on the attempt's outcome. The worker composed by the CLI and `TaskProvider`
    adds one when ``opentelemetry-api`` is installed and ``worker.tracing`` is on; give
    one to a hand-built worker through ``TaskWorkerServices(observers=[...])``.
    """

    event_kinds: frozenset[str]
    """The job-event kinds it handles: "started", and the outcomes once it made a span.

    Until the first span, an outcome has nothing to end: with the API and no tracer
    provider the stream then hands it no outcome event at all.
    """

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], tuple[Any, object, object]] = {}
        self.event_kinds = _STARTS
        # The worker id ("worker-1") repeats in every process; `host:pid` is how
        # `inspect` and the dashboard name the process that ran the attempt.
        self._process = worker_identity()

    @property
    def listening(self) -> bool:
        """True while the application has a tracer provider configured or a span is open."""
        return bool(self._open) or _current_tracer() is not None

    def __repr__(self) -> str:
        return f"TracingObserver(open_spans={len(self._open)})"

    def observe(self, event: JobEvent) -> None:
        """Start or end the attempt's span."""
        kind = event.kind
        if kind == STARTED:
            tracer = _current_tracer()
            if tracer is not None:
                self._start(event, tracer)
        elif self._open and kind in _ENDS:  # no span open: nothing to end (the API alone)
            self._end(event)

    def _start(self, event: JobEvent, tracer: Any) -> None:
        api = _otel()
        carrier = (event.metadata or {}).get(TRACE_CONTEXT_KEY)
        parent = api.propagate.extract(carrier) if isinstance(carrier, dict) else None
        # Built before the sampler decides, as a sampler may read them.
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.destination.name": event.queue,
            "messaging.message.id": event.job_id,
            "messaging.consumer.group.name": event.worker_id,
            "lexigram_tasks.worker.process": self._process,
            "lexigram_tasks.task.name": event.task,
            "lexigram_tasks.attempt": event.attempt,
        }
        span = tracer.start_span(
            f"process {event.task}",
            context=parent,
            kind=api.SpanKind.CONSUMER,
            attributes=attributes,
        )
        # Made current even when sampled out: the handler's spans follow its decision.
        context = api.trace.set_span_in_context(span)
        token = api.context.attach(context)
        self._open[event.job_id, event.worker_id] = (span, token, context)
        if self.event_kinds is _STARTS:  # kept from now on: the streams route its ends here
            self.event_kinds = _STARTS_AND_ENDS
            event_routes_changed()

    def _end(self, event: JobEvent) -> None:
        opened = self._open.pop((event.job_id, event.worker_id), None)
        if opened is None:
            return
        span, token, context = opened
        api = _otel()
        if span.is_recording():  # a sampled-out span ignores attributes: build none
            error = event.error
            if event.kind in (RETRYING, FAILED) and error:
                span.set_status(api.StatusCode.ERROR, error)
                span.set_attributes(
                    {"lexigram_tasks.outcome": event.kind, "error.type": error.split(":", 1)[0]}
                )
            else:
                span.set_attribute("lexigram_tasks.outcome", event.kind)
            if event.reason:
                span.set_attribute("lexigram_tasks.reason", event.reason)
        # Detached only where it was attached (the job's own task, its context still the
        # one made current); an attempt ended from another task (a lost lease, a stop)
        # left with its task's context. The API's get_current_span() is three calls deep.
        if type(token) is Token:  # the API's runtime context: read its variable directly
            current = token.var.get(None) is context
        else:
            current = api.context.get_current() is context
        if current:
            api.context.detach(token)
        span.end()


__all__ = [
    "SYSTEM",
    "TRACE_CONTEXT_KEY",
    "TracingObserver",
    "producer_span",
    "tracing_available",
]
