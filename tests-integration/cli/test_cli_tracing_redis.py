"""One OpenTelemetry trace from a span in this process, through Redis, into a worker process.

This process is the producer: a `TaskProvider` with no workers, ``.delay()`` called
inside a "request" span, with the OpenTelemetry SDK keeping the spans in memory. The
worker is ``lexigram-tasks worker APP`` in its own process; the APP module configures
the SDK there with an exporter that writes each finished span as a JSON line to a file,
which the test reads.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lexigram.app import Application
from lexigram.tasks import TaskConfig, TaskProvider

pytestmark = pytest.mark.redis

APP = """
import json
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from lexigram.tasks import task


class JsonLinesExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(SPANS_FILE, "a", encoding="utf-8") as out:
            for span in spans:
                record = {
                    "name": span.name,
                    "kind": span.kind.name,
                    "trace_id": span.context.trace_id,
                    "span_id": span.context.span_id,
                    "parent_id": span.parent.span_id if span.parent else None,
                    "status": span.status.status_code.name,
                }
                out.write(json.dumps(record) + "\\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter()))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("app")


@task
async def resize(width: int) -> int:
    with tracer.start_as_current_span("resize the image"):
        return width // 2
"""

EXPORTER = InMemorySpanExporter()
# The global provider can be set once per process: the first test module that needs one
# sets it, the others add their exporter to it.
if not isinstance(trace.get_tracer_provider(), TracerProvider):
    trace.set_tracer_provider(TracerProvider())
_provider = trace.get_tracer_provider()
assert isinstance(_provider, TracerProvider)
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))


def worker_spans(path: Path, count: int) -> list[dict]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            if len(lines) >= count:
                return [json.loads(line) for line in lines]
        time.sleep(0.1)
    msg = f"the worker wrote no {count} spans to {path}"
    raise AssertionError(msg)


async def test_a_request_span_and_the_job_it_sent_are_one_trace(
    redis_config: Path, write_app, cli_process, tmp_path: Path
) -> None:
    spans_file = tmp_path / "worker-spans.jsonl"
    name = write_app(f"SPANS_FILE = {str(spans_file)!r}\n" + APP)
    worker = cli_process("worker", name, "--config", str(redis_config))
    worker.wait_for(r"consuming")
    module = importlib.import_module(name)
    provider = TaskProvider(
        config=TaskConfig.from_yaml(redis_config), worker_count=0, enable_scheduler=False
    )
    async with Application.boot(providers=[provider]):
        with trace.get_tracer("test").start_as_current_span("request") as request:
            handle = await module.resize.delay(640)
        assert await handle.result(timeout=30) == 320

    ours = {span.name: span for span in EXPORTER.get_finished_spans()}
    send = ours["send resize"]
    assert send.parent is not None
    assert send.parent.span_id == request.get_span_context().span_id
    theirs = {span["name"]: span for span in worker_spans(spans_file, 2)}
    process, inner = theirs["process resize"], theirs["resize the image"]
    trace_id = request.get_span_context().trace_id
    assert process["trace_id"] == inner["trace_id"] == trace_id
    assert process["kind"] == "CONSUMER"
    assert process["parent_id"] == send.context.span_id
    assert inner["parent_id"] == process["span_id"]
