"""What the worker's observers cost per job, deterministically: the event path alone.

Per job the worker builds a "started" and a "completed" `JobEvent`, each only when an
observer of its kind listens (`EventStream.listening_to`), and delivers it to the
observers of its kind. This script does that N times in-process, with the observers the
CLI worker has: its `HookRegistry` (nothing registered), a `PrometheusObserver`
(``--metrics-port``; reading the running jobs on scrape as the CLI's does, so it takes no
"started" event) and, when OpenTelemetry is importable, a `TracingObserver`. Run it
under callgrind with N jobs and with none; the difference over N is the instructions per
job, which the machine's load does not change (a fixed hash seed keeps the two start-ups
alike):

    PYTHONHASHSEED=0 valgrind --tool=callgrind .venv/bin/python \
        benchmarks/event_path_cost.py job metrics 20000
    (and the same with 0 jobs)

Pieces: ``job`` (the whole path), ``event`` (building one JobEvent), ``rawspan`` (the
consumer span done by hand with the SDK: start with our attributes, make it current, one
attribute at the end, end it: the SDK's own floor), ``barespan`` (a span with no attributes
and no context). Modes: ``plain`` (no metrics, OpenTelemetry hidden: the hook registry
alone, what the worker checks without ``--metrics-port``; subtract it for what metrics
add), ``metrics`` (OpenTelemetry hidden), ``api`` (importable, no
provider), ``sdk`` (always-on sampler) and ``sdk10`` (``ParentBased(TraceIdRatioBased(0.1))``),
both exporting through a `BatchSpanProcessor` into an exporter that drops the spans.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Coroutine, Sequence
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


def _drive(delivery: Coroutine[Any, Any, None]) -> None:
    try:  # noqa: SIM105 - the cheaper form: this is in the measured loop
        delivery.send(None)
    except StopIteration:
        pass


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


def _pieces(mode: str) -> dict[str, Callable[[int], object]]:
    from lexigram.tasks import events  # noqa: PLC0415
    from lexigram.tasks.events import COMPLETED, STARTED, EventStream  # noqa: PLC0415

    # What the worker builds its events with (JobEvent itself in versions without it).
    build = getattr(events, "new_job_event", events.JobEvent)
    now = time.time()
    metadata: dict[str, Any] = {}
    stream = EventStream(_observers(mode))
    listeners = stream.observer_list
    listening_to: Callable[[str], bool] = getattr(
        stream, "listening_to", lambda kind: stream.listening
    )

    def event(kind: str, job_id: str) -> Any:
        return build(
            kind=kind,
            task="noop",
            job_id=job_id,
            queue="default",
            attempt=1,
            worker_id="w1",
            enqueued_at=now,
            started_at=now,
            finished_at=None if kind == STARTED else now,
            duration=None if kind == STARTED else 0.0001,
            metadata=metadata,
        )

    def job(index: int) -> None:
        job_id = f"job-{index}"
        if listeners and listening_to(STARTED):
            _drive(stream.observe(event(STARTED, job_id)))
        if listeners and listening_to(COMPLETED):
            _drive(stream.observe(event(COMPLETED, job_id)))

    pieces: dict[str, Callable[[int], object]] = {
        "job": job,
        "event": lambda index: event(COMPLETED, "job"),
    }
    if mode.startswith("sdk"):
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

        def rawspan(index: int) -> None:
            span = tracer.start_span("process noop", kind=SpanKind.CONSUMER, attributes=attributes)
            token = context.attach(trace.set_span_in_context(span))
            span.set_attribute("lexigram_tasks.outcome", "completed")
            context.detach(token)
            span.end()

        def barespan(index: int) -> None:
            tracer.start_span("process noop").end()

        pieces |= {"rawspan": rawspan, "barespan": barespan}
    return pieces


def main() -> None:
    """Run one piece N times."""
    piece, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode in ("plain", "metrics"):
        sys.modules["opentelemetry"] = None  # type: ignore[assignment] - not importable
    elif mode.startswith("sdk"):
        _provider(mode)
    run = _pieces(mode)[piece]
    for index in range(count):
        run(index)


if __name__ == "__main__":
    main()
