"""What the worker's observers cost per job, deterministically: the event path alone.

Per job the worker builds a "started" and a "completed" `JobEvent` (with its own
`Settler.event`), each only when an observer of its kind listens
(`EventStream.listening_to`), and delivers it to the observers of its kind
(`EventStream.deliver`, awaiting what it returns; ``await stream.observe(event)`` in
versions without it); it hands a completed job's figures to the stream's completion
counters (`EventStream.completion_listeners`, in versions that have them). This script
does that N times in-process, inside one coroutine as the worker's job task does, with
the observers the CLI worker has: its `HookRegistry`
(nothing registered), a `PrometheusObserver` (``--metrics-port``; reading the running jobs
on scrape as the CLI's does, so it takes no "started" event) and, when OpenTelemetry is
importable, a `TracingObserver`. Run it under callgrind with N jobs and with none; the
difference over N is the instructions per job, which the machine's load does not change (a
fixed hash seed keeps the two start-ups alike):

    PYTHONHASHSEED=0 valgrind --tool=callgrind .venv/bin/python \
        benchmarks/event_path_cost.py job metrics 20000
    (and the same with 0 jobs)

Pieces: ``job`` (the whole path), ``event`` (building one "completed" JobEvent as the
worker does), ``rawspan`` (the consumer span done by hand with the SDK: start with our
attributes, make it current, one attribute at the end, end it: the SDK's own floor),
``barespan`` (a span with no attributes and no context). Modes: ``plain`` (no metrics,
OpenTelemetry hidden: the hook registry alone, what the worker checks without
``--metrics-port``; subtract it for what metrics add), ``metrics`` (OpenTelemetry hidden),
``api`` (importable, no provider), ``sdk`` (always-on sampler) and ``sdk10``
(``ParentBased(TraceIdRatioBased(0.1))``), both exporting through a `BatchSpanProcessor`
into an exporter that drops the spans.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any


def _provider(mode: str) -> None:
    from opentelemetry import trace  # noqa: PLC0415 - only for the SDK modes
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import (  # noqa: PLC0415
        ALWAYS_ON,
        ParentBased,
        TraceIdRatioBased,
    )

    class Discard(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    sampler = ALWAYS_ON if mode == "sdk" else ParentBased(TraceIdRatioBased(0.1))
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    trace.set_tracer_provider(provider)


def _observers(mode: str) -> list[Any]:
    """The CLI worker's observers: its hook registry, metrics, tracing when importable."""
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from lexigram.tasks.hooks import HookRegistry  # noqa: PLC0415
    from lexigram.tasks.observability._prometheus import PrometheusObserver  # noqa: PLC0415
    from lexigram.tasks.observability._tracing import (  # noqa: PLC0415
        TracingObserver,
        tracing_available,
    )

    observers: list[Any] = [HookRegistry()]
    if mode != "plain":
        metrics = PrometheusObserver(CollectorRegistry())
        if hasattr(metrics, "watch_running"):  # versions before it take every "started" event
            metrics.watch_running(lambda: ())
        observers.append(metrics)
    if tracing_available():
        observers.append(TracingObserver())
    return observers


def _settler(stream: Any) -> tuple[Any, Any]:
    """A `Settler` reporting to `stream` and a running entry, to build events as the worker."""
    import logging  # noqa: PLC0415

    from lexigram.contracts.tasks import Job  # noqa: PLC0415
    from lexigram.tasks.config import TaskWorkerConfig  # noqa: PLC0415
    from lexigram.tasks.dlq import DeadLetterQueue  # noqa: PLC0415
    from lexigram.tasks.execution._running import Running  # noqa: PLC0415
    from lexigram.tasks.execution._settle import Settler  # noqa: PLC0415
    from lexigram.tasks.execution._stats import WorkerJobStats  # noqa: PLC0415

    class Queue:
        queue_name = "default"

    settler = Settler(
        worker_id="w1",
        queue=Queue(),  # type: ignore[arg-type] - only its name is read
        config=TaskWorkerConfig(),
        stats=WorkerJobStats("w1"),
        dlq=DeadLetterQueue(),
        events=stream,
        logger=logging.getLogger("bench"),
    )
    entry = Running(Job(name="noop", queue_name="default"), time.time())
    entry.started_at = time.time()
    return settler, entry


def _job_loop(stream: Any, settler: Any, entry: Any) -> Callable[[int], None]:  # noqa: C901 - the worker's path, written out
    """Run the observers' share of N jobs, written as the worker's job task has it."""
    from lexigram.tasks.events import COMPLETED, STARTED  # noqa: PLC0415

    job = entry.job
    listeners = stream.observer_list
    listening_to: Callable[[str], bool] = getattr(
        stream, "listening_to", lambda kind: stream.listening
    )
    # Versions without `deliver` awaited `observe` (a coroutine each time).
    deliver: Callable[[Any], Awaitable[None] | None] = getattr(stream, "deliver", stream.observe)
    now = time.time()
    # As `Settler.succeeded` calls it: positionally where the signature allows.
    parameter = inspect.signature(settler.event).parameters["duration"]
    positional = parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    # Versions without counters deliver every completed job as an event.
    completion: Callable[[], tuple[tuple[Any, ...], bool]] | None = getattr(
        stream, "completion_listeners", None
    )

    async def jobs(count: int) -> None:
        # `JobRunner.run` and `Settler.succeeded`, with a fresh job id each time.
        for index in range(count):
            job.id = f"job-{index}"
            if listeners and listening_to(STARTED):
                pending = deliver(settler.event(entry, STARTED))
                if pending is not None:
                    await pending
            if not listeners:
                continue
            if completion is not None:
                counters, read = completion()
                for counter in counters:
                    counter(job.name, "default", 1, job.created_at, entry.started_at, 0.0001)
            else:
                read = listening_to(COMPLETED)
            if read:
                done = (
                    settler.event(entry, COMPLETED, 0.0001, now)
                    if positional
                    else settler.event(entry, COMPLETED, duration=0.0001, end=now)
                )
                pending = deliver(done)
                if pending is not None:
                    await pending

    def run_jobs(count: int) -> None:
        # Nothing awaited suspends: one send runs the coroutine to its end.
        with contextlib.suppress(StopIteration):
            jobs(count).send(None)

    return run_jobs


def _pieces(mode: str) -> dict[str, Callable[[int], object]]:
    from lexigram.tasks.events import COMPLETED, EventStream  # noqa: PLC0415

    stream = EventStream(_observers(mode))
    settler, entry = _settler(stream)
    now = time.time()
    pieces: dict[str, Callable[[int], object]] = {
        "job": _job_loop(stream, settler, entry),
        "event": lambda count: [
            settler.event(entry, COMPLETED, duration=0.0001, end=now) for _ in range(count)
        ],
    }
    if mode.startswith("sdk"):
        pieces |= _span_pieces()
    return pieces


def _span_pieces() -> dict[str, Callable[[int], object]]:
    """The SDK's own span, done by hand: its floor under the tracing observer."""
    from opentelemetry import context, trace  # noqa: PLC0415
    from opentelemetry.trace import SpanKind  # noqa: PLC0415

    tracer = trace.get_tracer("bench")
    attributes = {
        "messaging.system": "lexigram_tasks",
        "messaging.operation.type": "process",
        "messaging.destination.name": "default",
        "messaging.message.id": "job",
        "messaging.consumer.group.name": "w1",
        "lexigram_tasks.task.name": "noop",
        "lexigram_tasks.attempt": 1,
    }

    def rawspan(count: int) -> None:
        for _ in range(count):
            span = tracer.start_span("process noop", kind=SpanKind.CONSUMER, attributes=attributes)
            token = context.attach(trace.set_span_in_context(span))
            span.set_attribute("lexigram_tasks.outcome", "completed")
            context.detach(token)
            span.end()

    def barespan(count: int) -> None:
        for _ in range(count):
            tracer.start_span("process noop").end()

    return {"rawspan": rawspan, "barespan": barespan}


def main() -> None:
    """Run one piece N times."""
    piece, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode in ("plain", "metrics"):
        sys.modules["opentelemetry"] = None  # type: ignore[assignment] - not importable
    elif mode.startswith("sdk"):
        _provider(mode)
    _pieces(mode)[piece](count)


if __name__ == "__main__":
    main()
