"""What metrics and traces cost the documented worker: W2 on Redis with and without them.

One run = N no-op jobs bulk-enqueued on Redis, then ``lexigram-tasks worker APP --burst
--concurrency 100`` (the documented CLI worker, its defaults otherwise: results stored)
drains them and exits. Each run is measured three ways:

- ``wall``: from starting the worker process to its exit (start-up included);
- ``drain``: from the first job's start to the last job's end, read from the stored
  results (``completed_at - duration`` of the first, ``completed_at`` of the last);
- ``cpu``: the worker process's CPU seconds (user + system, every thread) from the first
  handler call to the last, per job (the no-op task reads ``time.process_time()`` there
  and counts its calls: nothing else per job). It moves far less with the machine's load
  than the rates do.

The variants alternate run by run:

- ``plain``: no metrics, OpenTelemetry not importable (a stub package on PYTHONPATH
  hides it), as for a user without the ``otel`` extra;
- ``metrics``: ``--metrics-port`` (a `PrometheusObserver` on the worker's event stream,
  the endpoint served but not scraped), OpenTelemetry hidden the same way;
- ``metrics+otel-api``: the same with OpenTelemetry importable and no tracer provider
  configured (what the ``otel`` extra gives before the application sets one up);
- ``metrics+tracing``: the APP configures the OpenTelemetry SDK: a `TracerProvider`
  (always-on sampler) whose `BatchSpanProcessor` hands every span to an exporter that
  drops it, so each attempt's consumer span is made, recorded and exported;
- ``metrics+tracing-10%``: the same provider with a
  ``ParentBased(TraceIdRatioBased(0.1))`` sampler (the jobs carry no trace context, so
  each consumer span is a root and one in ten is recorded).

The SDK variants need opentelemetry-sdk and are left out without it. Nothing is
asserted; the script prints the medians and the overheads.

It uses Redis database 15 of --url under its own key prefix and deletes those keys.

Usage:
    .venv/bin/python benchmarks/metrics_overhead.py [--jobs 20000] [--runs 5] [--only V1,V2]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

APP = """
import os
import time

from lexigram.tasks import task

# The worker's CPU seconds (every thread) between the first and the last handler call:
# the drain alone, without start-up and shutdown. A counter is all it adds per job.
_LAST = int(os.environ["BENCH_JOBS"])
_calls = [0, 0.0]


@task
async def noop() -> None:
    _calls[0] += 1
    if _calls[0] == 1:
        _calls[1] = time.process_time()
    elif _calls[0] == _LAST:
        spent = time.process_time() - _calls[1]
        with open(os.environ["BENCH_CPU_FILE"], "w") as out:
            out.write(f"{_LAST - 1} {spent}")
"""


TRACED_APP = (
    """
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


provider = TracerProvider(sampler=SAMPLER)
provider.add_span_processor(BatchSpanProcessor(Discard()))
trace.set_tracer_provider(provider)
"""
    + APP
)

SAMPLERS = {
    "bench_traced_app": "ALWAYS_ON",
    "bench_sampled_app": "ParentBased(TraceIdRatioBased(0.1))",
}

# OpenTelemetry is a namespace package: a regular package of that name earlier on the
# path wins, and this one says it is not installed.
HIDE_OTEL = 'raise ImportError("opentelemetry is hidden by metrics_overhead.py")\n'

# variant -> (APP module, --metrics-port, OpenTelemetry importable)
VARIANTS = {
    "plain": ("bench_app", False, False),
    "metrics": ("bench_app", True, False),
    "metrics+otel-api": ("bench_app", True, True),
    "metrics+tracing": ("bench_traced_app", True, True),
    "metrics+tracing-10%": ("bench_sampled_app", True, True),
}
SDK_VARIANTS = ("metrics+tracing", "metrics+tracing-10%")


CONFIG = """
tasks:
  backend:
    type: redis
    url: "{url}"
    options:
      key_prefix: {prefix}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _fill(url: str, prefix: str, jobs: int) -> None:
    from lexigram.contracts.tasks import Job  # noqa: PLC0415 - after argument parsing
    from lexigram.tasks.backends.redis import RedisTaskQueue  # noqa: PLC0415

    queue = RedisTaskQueue(url, key_prefix=prefix)
    try:
        for first in range(0, jobs, 1000):
            batch = [Job(name="noop") for _ in range(first, min(jobs, first + 1000))]
            for result in await queue.enqueue_many(batch):
                result.unwrap()
    finally:
        await queue.close()


async def _drain_window(url: str, prefix: str) -> tuple[float, int]:
    from lexigram.tasks.backends.redis import RedisResultStore  # noqa: PLC0415

    store = RedisResultStore(url, key_prefix=prefix)
    try:
        results = await store.get_completed()
    finally:
        await store.close()
    starts = [r.completed_at - r.duration for r in results if r.completed_at is not None]
    ends = [r.completed_at for r in results if r.completed_at is not None]
    return max(ends) - min(starts), len(results)


async def _wipe(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis  # noqa: PLC0415

    client = aioredis.Redis.from_url(url)
    try:
        for pattern in (f"{{{prefix}:*", f"{prefix}:*"):
            keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
            for first in range(0, len(keys), 1000):
                await client.delete(*keys[first : first + 1000])
    finally:
        await client.aclose()


def _one_run(url: str, jobs: int, app_dir: Path, variant: str) -> tuple[float, float, float]:
    """One variant once: (wall jobs/s, drain jobs/s, worker CPU µs per job while draining)."""
    app, metrics, otel = VARIANTS[variant]
    prefix = f"bench-metrics-{uuid.uuid4().hex[:8]}"
    asyncio.run(_fill(url, prefix, jobs))
    config = app_dir / "tasks.yaml"
    config.write_text(CONFIG.format(url=url, prefix=prefix), encoding="utf-8")
    path = str(app_dir) if otel else os.pathsep.join((str(app_dir / "hide-otel"), str(app_dir)))
    cpu_file = app_dir / "cpu.txt"
    cpu_file.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "BENCH_JOBS": str(jobs),
        "BENCH_CPU_FILE": str(cpu_file),
    }
    command = [sys.executable, "-m", "lexigram.tasks.cli", "worker", app, "--burst"]
    command += ["--config", str(config), "--concurrency", "100", "--log-level", "warning"]
    if metrics:
        command += ["--metrics-port", str(_free_port())]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True)  # noqa: S603 - fixed argument list
    wall = time.perf_counter() - started
    window, done = asyncio.run(_drain_window(url, prefix))
    asyncio.run(_wipe(url, prefix))
    if done != jobs:
        msg = f"the worker stored {done} results of {jobs}: the run is invalid."
        raise RuntimeError(msg)
    counted, spent = cpu_file.read_text(encoding="utf-8").split()
    return jobs / wall, jobs / window, float(spent) / int(counted) * 1e6


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", help="comma-separated variants (default: all)")
    args = parser.parse_args()
    variants = args.only.split(",") if args.only else list(VARIANTS)
    if "plain" not in variants:
        variants.insert(0, "plain")
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        variants = [variant for variant in variants if variant not in SDK_VARIANTS]
        print("opentelemetry-sdk is not installed: the SDK variants are left out.")
    figures: dict[str, list[tuple[float, float, float]]] = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory() as scratch:
        app_dir = Path(scratch)
        (app_dir / "bench_app.py").write_text(APP, encoding="utf-8")
        for module, sampler in SAMPLERS.items():
            traced = TRACED_APP.replace("SAMPLER", sampler)
            (app_dir / f"{module}.py").write_text(traced, encoding="utf-8")
        (app_dir / "hide-otel" / "opentelemetry").mkdir(parents=True)
        (app_dir / "hide-otel" / "opentelemetry" / "__init__.py").write_text(HIDE_OTEL)
        for run in range(1, args.runs + 1):
            for variant in variants:
                wall, drain, cpu = _one_run(args.url, args.jobs, app_dir, variant)
                figures[variant].append((wall, drain, cpu))
                print(
                    f"run {run} {variant:19} wall {wall:7,.0f} jobs/s  drain {drain:7,.0f} "
                    f"jobs/s  worker CPU {cpu:6.1f} µs/job",
                    flush=True,
                )
    print(f"\nW2 on Redis, {args.jobs:,} no-op jobs, CLI worker --concurrency 100, results stored;")
    print(f"median of {args.runs} runs, variants interleaved; load {os.getloadavg()[0]:.2f}")
    print("| variant | wall (start-up included), jobs/s | drain, jobs/s | worker CPU, µs/job |")
    print("|---|---:|---:|---:|")
    medians = {}
    for variant, rows in figures.items():
        medians[variant] = tuple(statistics.median(row[i] for row in rows) for i in range(3))
        wall, drain, cpu = medians[variant]
        print(f"| {variant} | {wall:,.0f} | {drain:,.0f} | {cpu:.1f} |")
    print()
    base_wall, base_drain, base_cpu = medians["plain"]
    for variant in variants[1:]:
        wall, drain, cpu = medians[variant]
        print(
            f"{variant} cost: {1 - wall / base_wall:+.1%} (wall), {1 - drain / base_drain:+.1%} "
            f"(drain), {cpu - base_cpu:+.1f} µs CPU/job ({cpu / base_cpu - 1:+.1%})"
        )


if __name__ == "__main__":
    main()
