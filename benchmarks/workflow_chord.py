"""A chord of N no-op members across 3 worker processes on Redis: lexigram-tasks vs Celery.

One run = one chord applied by a producer while three worker processes are already
running: N members that return their argument, then a callback that gets all N results.
Timed from the producer's apply call to the callback's result in the producer's hands;
the figure is N / that time (members per second), the median of --runs runs, the two
frameworks interleaved run by run so that machine noise hits them alike.

Both frameworks get the same settings:

- Redis as broker and result store (lexigram: database 15 under a key prefix of its own;
  Celery: database 14, flushed before and after), no hiredis for either;
- 3 worker processes of concurrency 100 each: ``lexigram-tasks worker APP --concurrency
  100`` (the documented CLI worker, defaults otherwise: results stored, the workflow run
  store of the Redis backend) and ``celery worker -P threads -c 100`` (Celery's prefork
  pool would run 2 processes per worker on this 2-core machine);
- acknowledgement after the task ran (lexigram always; Celery ``task_acks_late=True``),
  results kept for both (Celery's chord needs its result backend anyway);
- the producer waits the way each framework offers: lexigram's ``WorkflowHandle.result``
  reads the run store every 20 ms at most (``poll_interval=0.02``), Celery's
  ``AsyncResult.get`` is woken by the Redis result backend's pub/sub.

Celery lives in its own environment, never in the project's: ``benchmarks/.venv-celery``
(created on first use with uv). Never point --url at a Redis whose databases 14 and 15
hold data you keep.

Usage:
    .venv/bin/python benchmarks/workflow_chord.py [--members 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
CELERY_VENV = HERE / ".venv-celery"
CELERY_REQUIREMENT = "celery[redis]==5.5.3"
WORKERS = 3
CONCURRENCY = 100

LEXIGRAM_APP = """
from lexigram.tasks import task


@task
async def member(i: int) -> int:
    return i


@task
async def gather(results: list[int]) -> int:
    return len(results)
"""

CELERY_APP = """
from celery import Celery

app = Celery("bench_celery", broker={url!r}, backend={url!r})
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=4, result_expires=3600)


@app.task
def member(i):
    return i


@app.task
def gather(results):
    return len(results)
"""

CELERY_PRODUCER = """
import json, sys, time
from celery import chord
from bench_celery import app, gather, member

command, n = sys.argv[1], int(sys.argv[2])
if command == "wait-workers":
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=1.0) or []) >= n:
            sys.exit(0)
    sys.exit("the Celery workers did not answer a ping within 60 s")
started = time.perf_counter()
result = chord(member.s(i) for i in range(n))(gather.s())
count = result.get(timeout=600)
elapsed = time.perf_counter() - started
assert count == n, count
print(json.dumps({"seconds": elapsed}))
"""

LEXIGRAM_CONFIG = """
tasks:
  backend:
    type: redis
    url: "{url}"
    queue_name: chord-bench
    options:
      key_prefix: {prefix}
"""


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_celery_venv() -> Path:
    """Create benchmarks/.venv-celery with Celery on first use; return its python."""
    python = _venv_python(CELERY_VENV)
    if python.exists():
        return python
    print(f"Creating {CELERY_VENV} with {CELERY_REQUIREMENT} (first run only)...")
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(CELERY_VENV)], check=True)  # noqa: S603
    subprocess.run(  # noqa: S603
        [uv, "pip", "install", "-q", "--python", str(python), CELERY_REQUIREMENT], check=True
    )
    return python


def _wait_for_line(process: subprocess.Popen[str], needle: str, timeout: float = 60.0) -> None:
    if process.stderr is None:
        msg = "the worker's stderr is not piped"
        raise RuntimeError(msg)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            msg = f"worker exited before saying {needle!r}"
            raise RuntimeError(msg)
        if needle in line:
            return
    msg = f"no {needle!r} from a worker within {timeout} s"
    raise RuntimeError(msg)


def start_lexigram_workers(scratch: Path) -> list[subprocess.Popen[str]]:
    """Start the documented CLI workers and wait until each consumes."""
    env = {**os.environ, "PYTHONPATH": str(scratch)}
    command = [sys.executable, "-m", "lexigram.tasks.cli", "worker", "bench_app"]
    command += ["--config", str(scratch / "tasks.yaml"), "--concurrency", str(CONCURRENCY)]
    command += ["--log-level", "info"]
    workers = [
        subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)  # noqa: S603
        for _ in range(WORKERS)
    ]
    for worker in workers:
        _wait_for_line(worker, "consuming")
    # Nothing reads their logs from here on: keep the pipes from filling up.
    for worker in workers:
        if worker.stderr is not None:
            worker.stderr.close()
    return workers


def start_celery_workers(python: Path, scratch: Path) -> list[subprocess.Popen[str]]:
    """Start Celery's workers (threads pool) and wait until all answer a ping."""
    env = {**os.environ, "PYTHONPATH": str(scratch)}
    workers = []
    for index in range(WORKERS):
        command = [str(python), "-m", "celery", "-A", "bench_celery", "worker"]
        command += ["-P", "threads", "-c", str(CONCURRENCY), "-n", f"bench{index}@%h"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        command += ["-l", "warning"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        workers.append(subprocess.Popen(command, env=env, cwd=scratch, text=True, **quiet))  # noqa: S603
    subprocess.run(  # noqa: S603
        [str(python), str(scratch / "produce.py"), "wait-workers", str(WORKERS)],
        env=env,
        cwd=scratch,
        check=True,
    )
    return workers


def stop(workers: list[subprocess.Popen[str]]) -> None:
    """Stop worker processes (SIGTERM, then SIGKILL after 30 s)."""
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


async def lexigram_run(config: Path, members: int) -> float:
    """Apply one chord through a TaskProvider with no workers; return the seconds taken."""
    from lexigram.app import Application  # noqa: PLC0415 - after argument parsing
    from lexigram.tasks import JobChord, JobGroup, TaskConfig, TaskProvider  # noqa: PLC0415

    sys.path.insert(0, str(config.parent))
    import bench_app  # noqa: PLC0415

    provider = TaskProvider(
        config=TaskConfig.from_yaml(config), worker_count=0, enable_scheduler=False
    )
    async with Application.boot(providers=[provider]):
        if provider.queue is None:
            msg = "the provider built no queue"
            raise RuntimeError(msg)
        chord = JobChord(
            JobGroup(*(bench_app.member.s(i) for i in range(members))), bench_app.gather.s()
        )
        started = time.perf_counter()
        handle = await chord.apply_async(provider.queue)
        count = await handle.result(timeout=600, poll_interval=0.02)
        elapsed = time.perf_counter() - started
    if count != members:
        msg = f"lexigram's callback got {count} results of {members}: the run is invalid."
        raise RuntimeError(msg)
    return elapsed


def celery_run(python: Path, scratch: Path, members: int) -> float:
    """Apply one Celery chord from a producer process; return the seconds taken."""
    env = {**os.environ, "PYTHONPATH": str(scratch)}
    done = subprocess.run(  # noqa: S603
        [str(python), str(scratch / "produce.py"), "chord", str(members)],
        env=env,
        cwd=scratch,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


async def _wipe(url: str, prefix: str | None) -> None:
    import redis.asyncio as aioredis  # noqa: PLC0415

    client = aioredis.Redis.from_url(url)
    try:
        if prefix is None:
            await client.flushdb()
            return
        for pattern in (f"{{{prefix}:*", f"{prefix}:*"):
            keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
            for first in range(0, len(keys), 1000):
                await client.delete(*keys[first : first + 1000])
    finally:
        await client.aclose()


def _version(python: Path, dist: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)  # noqa: S603
    return done.stdout.strip() or "?"


def _report(run: int, name: str, seconds: float, members: int) -> None:
    print(f"run {run} {name:8} {seconds:7.3f} s ({members / seconds:8,.0f} members/s)")


def main() -> None:
    """Run both frameworks' chords, interleaved, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--url", default="redis://127.0.0.1:6379", help="Redis, no database")
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    lexigram_url, celery_url = f"{args.url}/15", f"{args.url}/14"
    celery_python = ensure_celery_venv()
    prefix = f"bench-chord-{uuid.uuid4().hex[:8]}"
    figures: dict[str, list[float]] = {"lexigram": [], "celery": []}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        (scratch / "bench_app.py").write_text(LEXIGRAM_APP, encoding="utf-8")
        (scratch / "bench_celery.py").write_text(
            CELERY_APP.format(url=celery_url), encoding="utf-8"
        )
        (scratch / "produce.py").write_text(CELERY_PRODUCER, encoding="utf-8")
        config = scratch / "tasks.yaml"
        config.write_text(LEXIGRAM_CONFIG.format(url=lexigram_url, prefix=prefix), encoding="utf-8")
        asyncio.run(_wipe(celery_url, None))
        lexigram_workers = start_lexigram_workers(scratch)
        celery_workers = start_celery_workers(celery_python, scratch)
        try:
            for run in range(1, args.runs + 1):
                seconds = asyncio.run(lexigram_run(config, args.members))
                figures["lexigram"].append(seconds)
                _report(run, "lexigram", seconds, args.members)
                seconds = celery_run(celery_python, scratch, args.members)
                figures["celery"].append(seconds)
                _report(run, "celery", seconds, args.members)
        finally:
            stop(lexigram_workers)
            stop(celery_workers)
            asyncio.run(_wipe(lexigram_url, prefix))
            asyncio.run(_wipe(celery_url, None))
    celery_version = _version(celery_python, "celery")
    print(
        f"\nChord of {args.members:,} no-op members + callback, {WORKERS} worker processes x "
        f"concurrency {CONCURRENCY}, Redis broker and results, median of {args.runs} runs "
        f"(Python {sys.version.split()[0]}; celery {celery_version})\n"
    )
    print("| framework | seconds (median) | members/s |")
    print("|---|---:|---:|")
    rates = {}
    for name, seconds in figures.items():
        median = statistics.median(seconds)
        rates[name] = args.members / median
        print(f"| {name} | {median:.3f} | {rates[name]:,.0f} |")
    print(f"\nlexigram / celery: {rates['lexigram'] / rates['celery']:.2f}x")


if __name__ == "__main__":
    main()
