"""OpenTelemetry spans of jobs: a producer span at enqueue, a consumer span per attempt."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from lexigram.contracts.tasks import Job, TaskBackendSpec
from lexigram.tasks import task
from lexigram.tasks._backends import TaskBackendRegistry
from lexigram.tasks._presence import worker_identity
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.config import RetryConfig, TaskConfig, TaskWorkerConfig
from lexigram.tasks.decorators import enqueue_job, enqueue_jobs
from lexigram.tasks.di._stack import build_pool, build_stack
from lexigram.tasks.events import COMPLETED, STARTED, JobEvent
from lexigram.tasks.execution import HandlerRegistry, TaskWorker, TaskWorkerServices
from lexigram.tasks.observability import TracingObserver
from lexigram.tasks.observability._tracing import TRACE_CONTEXT_KEY


class WaitableExporter(InMemorySpanExporter):
    """Keeps finished spans in memory and wakes whoever waits for one by name."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        self.arrived.set()  # span.end() runs on the event loop's thread
        return result

    async def wait_for(self, name: str) -> None:
        async with asyncio.timeout(5):
            while not any(span.name == name for span in self.get_finished_spans()):
                self.arrived.clear()
                await self.arrived.wait()


EXPORTER = WaitableExporter()
# The global provider can be set once per process: the first test module that needs one
# sets it, the others add their exporter to it.
if not isinstance(trace.get_tracer_provider(), TracerProvider):
    trace.set_tracer_provider(TracerProvider())
_provider = trace.get_tracer_provider()
assert isinstance(_provider, TracerProvider)
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
tracer = trace.get_tracer("tests")


@pytest.fixture(autouse=True)
def spans() -> Iterator[WaitableExporter]:
    EXPORTER.clear()
    EXPORTER.arrived = asyncio.Event()  # an event binds to the loop of its first wait
    yield EXPORTER
    EXPORTER.clear()


@task(name="traced.work")
async def work(n: int) -> int:
    with tracer.start_as_current_span("inside the handler"):
        return n * 2


@task(name="traced.broken", max_retries=0)
async def broken() -> None:
    msg = "no luck"
    raise RuntimeError(msg)


def named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [span for span in exporter.get_finished_spans() if span.name == name]
    assert len(found) == 1, [span.name for span in exporter.get_finished_spans()]
    return found[0]


def parent_of(span: ReadableSpan) -> int:
    assert span.parent is not None, span.name
    return span.parent.span_id


async def run_until(worker: TaskWorker, exporter: WaitableExporter, name: str) -> None:
    await worker.start()
    await exporter.wait_for(name)
    await worker.stop()


async def test_one_trace_from_the_request_through_the_job_to_the_handler(
    spans: WaitableExporter,
) -> None:
    queue = MemoryTaskQueue(queue_name="traced")
    with tracer.start_as_current_span("request"):
        job = await enqueue_job(queue, Job(name="traced.work", args=(21,)))
    assert set(job.metadata[TRACE_CONTEXT_KEY]) >= {"traceparent"}
    worker = TaskWorker(
        "w1",
        queue,
        {"traced.work": work},
        services=TaskWorkerServices(observers=[TracingObserver()]),
    )
    await run_until(worker, spans, "process traced.work")

    request = named(spans, "request")
    send = named(spans, "send traced.work")
    process = named(spans, "process traced.work")
    inner = named(spans, "inside the handler")
    assert send.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    trace_id = request.context.trace_id
    assert {span.context.trace_id for span in (send, process, inner)} == {trace_id}
    assert parent_of(send) == request.context.span_id
    assert parent_of(process) == send.context.span_id
    assert parent_of(inner) == process.context.span_id
    assert send.attributes is not None
    assert process.attributes is not None
    assert send.attributes["messaging.destination.name"] == "traced"
    assert send.attributes["messaging.message.id"] == job.id
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["lexigram_tasks.attempt"] == 1
    assert process.attributes["lexigram_tasks.outcome"] == "completed"
    # The worker id repeats in every process; the process is named as `inspect` names it.
    assert process.attributes["lexigram_tasks.worker.process"] == worker_identity()
    assert process.status.status_code is StatusCode.UNSET


async def test_a_failed_attempt_ends_its_span_with_an_error(spans: WaitableExporter) -> None:
    queue = MemoryTaskQueue(queue_name="traced")
    results = await enqueue_jobs(queue, [Job(name="traced.broken")])
    assert isinstance(results[0], Job)
    worker = TaskWorker(
        "w1",
        queue,
        {"traced.broken": broken},
        TaskWorkerConfig(retry=RetryConfig(initial_delay=0.01, max_delay=0.01)),
        TaskWorkerServices(observers=[TracingObserver()]),
    )
    await run_until(worker, spans, "process traced.broken")
    process = named(spans, "process traced.broken")
    assert process.status.status_code is StatusCode.ERROR
    assert process.status.description is not None
    assert "no luck" in process.status.description
    assert process.attributes is not None
    assert process.attributes["error.type"] == "RuntimeError"
    assert process.attributes["lexigram_tasks.outcome"] == "failed"
    send = named(spans, "send traced.broken")
    assert parent_of(process) == send.context.span_id


async def test_a_job_cancelled_while_running_ends_its_span(spans: WaitableExporter) -> None:
    from lexigram.tasks.handles import JobHandle

    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(60)

    queue = MemoryTaskQueue(queue_name="traced")
    job = Job(name="traced.slow")
    await enqueue_job(queue, job)
    observer = TracingObserver()
    worker = TaskWorker(
        "w1", queue, {"traced.slow": slow}, services=TaskWorkerServices(observers=[observer])
    )
    await worker.start()
    try:
        await asyncio.wait_for(started.wait(), 5)
        await JobHandle(queue, job.id).cancel()
        await spans.wait_for("process traced.slow")
    finally:
        await worker.stop()
    process = named(spans, "process traced.slow")
    assert process.attributes is not None
    assert process.attributes["lexigram_tasks.outcome"] == "cancelled"
    assert "open_spans=0" in repr(observer)


async def test_a_job_enqueued_outside_any_span_starts_its_own_trace(
    spans: WaitableExporter,
) -> None:
    queue = MemoryTaskQueue(queue_name="traced")
    await enqueue_job(queue, Job(name="traced.work", args=(1,)))
    worker = TaskWorker(
        "w1",
        queue,
        {"traced.work": work},
        services=TaskWorkerServices(observers=[TracingObserver()]),
    )
    await run_until(worker, spans, "process traced.work")
    send = named(spans, "send traced.work")
    process = named(spans, "process traced.work")
    assert send.parent is None
    assert process.context.trace_id == send.context.trace_id


async def test_a_bulk_enqueue_makes_sibling_send_spans_under_the_callers(
    spans: WaitableExporter,
) -> None:
    queue = MemoryTaskQueue(queue_name="traced")
    jobs = [Job(name="traced.work", args=(n,)) for n in range(3)]
    with tracer.start_as_current_span("request") as request:
        await enqueue_jobs(queue, jobs)
    sends = [span for span in spans.get_finished_spans() if span.name == "send traced.work"]
    assert len(sends) == 3
    for send in sends:
        # Each under the request, none under another job's send.
        assert send.parent is not None
        assert send.parent.span_id == request.get_span_context().span_id
    carried = {job.metadata[TRACE_CONTEXT_KEY]["traceparent"].split("-")[2] for job in jobs}
    assert carried == {format(send.context.span_id, "016x") for send in sends}


@pytest.mark.parametrize("tracing", [True, False])
def test_the_composed_worker_traces_unless_the_config_says_not_to(tracing: bool) -> None:
    config = TaskConfig.from_dict({"backend": {"type": "memory"}, "worker": {"tracing": tracing}})
    stack = build_stack(
        "default",
        TaskBackendSpec(type="memory", queue_name="traced"),
        field="tasks.backend",
        registry=TaskBackendRegistry(),
    )
    pool = build_pool(stack, HandlerRegistry(), config=config, size=1)
    tracers = [o for o in pool.services.observers if isinstance(o, TracingObserver)]
    assert len(tracers) == int(tracing)


async def test_outcomes_reach_the_observer_once_it_made_a_span(spans: WaitableExporter) -> None:
    tracing = TracingObserver()
    assert tracing.event_kinds == {STARTED}  # nothing to end yet: no outcome event is asked for
    queue = MemoryTaskQueue(queue_name="traced")
    (await queue.enqueue(Job(name="traced.work", args=(2,)))).unwrap()
    services = TaskWorkerServices(observers=[tracing])
    worker = TaskWorker("w1", queue, {"traced.work": work}, TaskWorkerConfig(), services)
    assert not worker.events.listening_to(COMPLETED)
    await run_until(worker, spans, "process traced.work")
    assert COMPLETED in tracing.event_kinds
    assert worker.events.listening_to(COMPLETED)
    assert repr(tracing) == "TracingObserver(open_spans=0)"  # the span was ended


def test_the_tracer_is_kept_per_provider_and_none_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lexigram.tasks.observability import _tracing

    first = _tracing._current_tracer()
    assert first is not None
    assert _tracing._current_tracer() is first  # no new tracer per job
    other = TracerProvider()
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", other)
    assert _tracing._current_tracer() is not first  # a new provider: its own tracer
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)  # none configured
    assert _tracing._current_tracer() is None
    assert not TracingObserver().listening


def test_a_sampled_out_attempt_is_current_while_it_runs_and_detached_at_its_end(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", TracerProvider(sampler=ALWAYS_OFF))
    tracing = TracingObserver()
    common = {"task": "t", "job_id": "j", "queue": "q", "worker_id": "w", "attempt": 1}
    tracing.observe(JobEvent(kind=STARTED, **common))  # type: ignore[arg-type]
    span = trace.get_current_span()
    assert span.get_span_context().is_valid  # the handler's spans follow its decision
    assert not span.is_recording()
    tracing.observe(JobEvent(kind=COMPLETED, duration=0.1, **common))  # type: ignore[arg-type]
    assert trace.get_current_span() is not span
    assert repr(tracing) == "TracingObserver(open_spans=0)"
    # Started in another task's context and ended here: nothing to detach here.
    contextvars.copy_context().run(tracing.observe, JobEvent(kind=STARTED, **common))  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR):
        tracing.observe(JobEvent(kind=COMPLETED, duration=0.1, **common))  # type: ignore[arg-type]
    assert not caplog.records
    assert not trace.get_current_span().get_span_context().is_valid
    assert repr(tracing) == "TracingObserver(open_spans=0)"
