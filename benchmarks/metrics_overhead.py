"""What metrics and traces cost the documented worker: W2 on Redis with and without them.

One run = N no-op jobs bulk-enqueued on Redis, then ``lexigram-tasks worker APP --burst
--concurrency 100`` (the documented CLI worker, its defaults otherwise: results stored)
drains them and exits. Each run is timed twice:

- ``wall``: from starting the worker process to its exit (start-up included);
- ``drain``: from the first job's start to the last job's end, read from the stored
  results (``completed_at - duration`` of the first, ``completed_at`` of the last).

The variants alternate run by run: ``plain``; ``metrics`` (``--metrics-port``, a
`PrometheusObserver` on the worker's event stream, the endpoint served but not scraped);
``metrics+tracing`` (the same, and the APP configures the OpenTelemetry SDK: a
`TracerProvider` whose `BatchSpanProcessor` hands every span to an exporter that drops
it, so each attempt's consumer span is made, recorded and exported; needs
opentelemetry-sdk, else that variant is left out). Nothing is asserted; the script prints
the medians and the overheads.

It uses Redis database 15 of --url under its own key prefix and deletes those keys.

Usage:
    .venv/bin/python benchmarks/metrics_overhead.py [--jobs 20000] [--runs 5]
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
from lexigram.tasks import task


@task
async def noop() -> None:
    return None
"""


TRACED_APP = """
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from lexigram.tasks import task


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(Discard()))
trace.set_tracer_provider(provider)


@task
async def noop() -> None:
    return None
"""

VARIANTS = {"plain": ("bench_app", False), "metrics": ("bench_app", True)}
VARIANTS["metrics+tracing"] = ("bench_traced_app", True)


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


def _one_run(url: str, jobs: int, app_dir: Path, variant: str) -> tuple[float, float]:
    app, metrics = VARIANTS[variant]
    prefix = f"bench-metrics-{uuid.uuid4().hex[:8]}"
    asyncio.run(_fill(url, prefix, jobs))
    config = app_dir / "tasks.yaml"
    config.write_text(CONFIG.format(url=url, prefix=prefix), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(app_dir)}
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
    return jobs / wall, jobs / window


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    variants = list(VARIANTS)
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        variants.remove("metrics+tracing")
        print("opentelemetry-sdk is not installed: the metrics+tracing variant is left out.")
    figures: dict[str, list[tuple[float, float]]] = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory() as scratch:
        app_dir = Path(scratch)
        (app_dir / "bench_app.py").write_text(APP, encoding="utf-8")
        (app_dir / "bench_traced_app.py").write_text(TRACED_APP, encoding="utf-8")
        for run in range(1, args.runs + 1):
            for variant in variants:
                wall, drain = _one_run(args.url, args.jobs, app_dir, variant)
                figures[variant].append((wall, drain))
                print(
                    f"run {run} {variant:15} wall {wall:9,.0f} jobs/s  drain {drain:9,.0f} jobs/s"
                )
    print(f"\nW2 on Redis, {args.jobs:,} no-op jobs, CLI worker --concurrency 100, results stored;")
    print(f"median of {args.runs} runs, variants interleaved")
    print("| variant | wall (start-up included), jobs/s | drain, jobs/s |")
    print("|---|---:|---:|")
    medians = {}
    for variant, rows in figures.items():
        wall = statistics.median(row[0] for row in rows)
        drain = statistics.median(row[1] for row in rows)
        medians[variant] = (wall, drain)
        print(f"| {variant} | {wall:,.0f} | {drain:,.0f} |")
    print()
    for variant in variants[1:]:
        cost_wall = 1 - medians[variant][0] / medians["plain"][0]
        cost_drain = 1 - medians[variant][1] / medians["plain"][1]
        print(f"{variant} cost: {cost_wall:+.1%} (wall), {cost_drain:+.1%} (drain)")


if __name__ == "__main__":
    main()
