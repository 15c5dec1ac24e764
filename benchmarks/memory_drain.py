"""W2 on the in-memory backends: lexigram-tasks against Taskiq's InMemoryBroker.

Drain N pre-enqueued no-op jobs in one process and report jobs/s (median of --runs,
each run in a fresh process). What is timed, per framework:

- ``lexigram``: N jobs already in a `MemoryTaskQueue`; one `TaskWorker` takes them
  through the full worker path (batch lease, run, result stored in an
  `InMemoryResultStore`, ack). Timed from `worker.start()` to the N-th stored result.
- ``taskiq-receiver``: Taskiq's worker loop (`Receiver.listen`: prefetch, concurrency
  semaphore, decode, run, result stored in `InmemoryResultBackend`) fed by an
  `InMemoryBroker` whose `listen()` yields the N messages, pre-built. Taskiq's
  InMemoryBroker cannot hold jobs (it runs each one when it is kicked), so this is the
  closest Taskiq gets to W2: its real consumer over an in-memory queue.
- ``taskiq-kick``: the InMemoryBroker as shipped: N ``task.kiq()`` calls, then
  ``broker.wait_all()`` (the timed window also covers building and sending messages).
- ``taskiq-inplace``: the same with ``await_inplace=True`` (each kick runs the job
  before returning: no task per job, no concurrency; Taskiq's fastest mode for no-ops).

Every child runs a full garbage collection just before its timed window. Building a
backlog of N jobs leaves the collector owing a full pass whose moment depends on how much
garbage the build made; without the collection, a build that makes less garbage (the
lexigram enqueue since it stopped decoding every job back) moves that pass, about 35 ms
for 50,000 jobs, into the drain it does not belong to.

Each framework runs at its best settings: concurrency swept over --concurrency (the
best median is reported), Taskiq with ``cast_types``/``validate_params`` off and room
for every result. The ratio column compares lexigram's best to the fastest Taskiq
variant. Nothing is asserted; the script prints a table.

Taskiq runs in its own environment, never the project's: ``benchmarks/.venv-taskiq``
(created on first use with uv, or see benchmarks/README.md).

Usage:
    .venv/bin/python benchmarks/memory_drain.py [--jobs 20000] [--runs 5]
        [--concurrency 100,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TASKIQ_VENV = HERE / ".venv-taskiq"
TASKIQ_REQUIREMENT = "taskiq==0.13.0"
FRAMEWORKS = ("lexigram", "taskiq-receiver", "taskiq-kick", "taskiq-inplace")


# ------------------------------------------------------------------------------------
# children: one process, one framework, one run
# ------------------------------------------------------------------------------------


async def lexigram_drain(jobs: int, concurrency: int) -> tuple[Any, Any, asyncio.Event]:
    """N no-op jobs waiting on a `MemoryTaskQueue` and the `TaskWorker` that drains them.

    Returns the queue, the worker (not started) and an event set when the N-th result is
    stored. `memory_drain_cost.py` builds its drain here too.
    """
    from lexigram.contracts.tasks import Job, JobResult  # noqa: PLC0415 - child-only import
    from lexigram.tasks.backends.memory import MemoryTaskQueue  # noqa: PLC0415
    from lexigram.tasks.config import TaskWorkerConfig  # noqa: PLC0415
    from lexigram.tasks.execution import TaskWorker, TaskWorkerServices  # noqa: PLC0415
    from lexigram.tasks.results import InMemoryResultStore  # noqa: PLC0415

    done = asyncio.Event()

    class CountingStore(InMemoryResultStore):
        """Signals when the last result is stored (the end of the drain)."""

        stored = 0

        async def store(self, job_id: str, result: JobResult) -> None:
            await super().store(job_id, result)
            self.stored += 1
            if self.stored == jobs:
                done.set()

    async def noop() -> None:
        return None

    queue = MemoryTaskQueue()
    await queue.enqueue_many([Job(name="noop") for _ in range(jobs)])
    worker = TaskWorker(
        "bench",
        queue,
        {"noop": noop},
        TaskWorkerConfig(max_concurrent_tasks=concurrency),
        TaskWorkerServices(result_store=CountingStore(max_size=jobs)),
    )
    return queue, worker, done


async def _run_lexigram(jobs: int, concurrency: int) -> float:
    queue, worker, done = await lexigram_drain(jobs, concurrency)
    gc.collect()  # the build's garbage is the build's: see the module docstring
    started = time.perf_counter()
    await worker.start()
    await done.wait()
    elapsed = time.perf_counter() - started
    await worker.stop(drain=True)
    if await queue.count("tasks") != 0 or worker.stats.jobs_succeeded != jobs:
        msg = "lexigram did not drain the queue: the run is invalid."
        raise RuntimeError(msg)
    return jobs / elapsed


async def _run_taskiq_receiver(jobs: int, concurrency: int) -> float:
    from collections.abc import AsyncGenerator  # noqa: PLC0415 - child-only import

    from taskiq import InMemoryBroker  # noqa: PLC0415
    from taskiq.brokers.inmemory_broker import InmemoryResultBackend  # noqa: PLC0415
    from taskiq.receiver import Receiver  # noqa: PLC0415

    done = asyncio.Event()

    class DrainBroker(InMemoryBroker):
        """The InMemoryBroker, plus a queue of pre-built messages for the receiver."""

        messages: list[bytes] = []  # noqa: RUF012 - filled once per run

        async def listen(self) -> AsyncGenerator[bytes, None]:  # type: ignore[override]
            for message in self.messages:
                yield message
            await asyncio.Event().wait()  # an idle queue: wait until cancelled

    class CountingBackend(InmemoryResultBackend[Any]):
        """Signals when the last result is stored (the end of the drain)."""

        async def set_result(self, task_id: str, result: Any) -> None:
            await super().set_result(task_id, result)
            if len(self.results) == jobs:
                done.set()

    broker = DrainBroker(max_stored_results=jobs, cast_types=False)
    broker.result_backend = CountingBackend(max_stored_results=jobs)

    @broker.task(task_name="noop")
    async def noop() -> None:
        return None

    await broker.startup()
    kicker = noop.kicker()
    messages: list[bytes] = []
    for _ in range(jobs):
        task_message = kicker._prepare_message()  # noqa: SLF001 - exactly what kiq() sends
        messages.append(broker.formatter.dumps(task_message).message)
    DrainBroker.messages = messages
    receiver = Receiver(
        broker,
        validate_params=False,
        max_async_tasks=concurrency,
        max_prefetch=concurrency,
        run_startup=False,
    )
    finish = asyncio.Event()
    gc.collect()  # the build's garbage is the build's: see the module docstring
    started = time.perf_counter()
    listening = asyncio.create_task(receiver.listen(finish))
    await done.wait()
    elapsed = time.perf_counter() - started
    finish.set()
    listening.cancel()
    await asyncio.gather(listening, return_exceptions=True)
    return jobs / elapsed


async def _run_taskiq_kick(jobs: int, concurrency: int, *, inplace: bool = False) -> float:
    from taskiq import InMemoryBroker  # noqa: PLC0415 - child-only import

    broker = InMemoryBroker(
        max_stored_results=jobs,
        cast_types=False,
        max_async_tasks=concurrency,
        await_inplace=inplace,
    )

    @broker.task(task_name="noop")
    async def noop() -> None:
        return None

    await broker.startup()
    gc.collect()  # the build's garbage is the build's: see the module docstring
    started = time.perf_counter()
    for _ in range(jobs):
        await noop.kiq()
    await broker.wait_all()
    elapsed = time.perf_counter() - started
    if len(broker.result_backend.results) != jobs:
        msg = "taskiq did not store every result: the run is invalid."
        raise RuntimeError(msg)
    await broker.shutdown()
    return jobs / elapsed


async def _run_taskiq_inplace(jobs: int, concurrency: int) -> float:
    return await _run_taskiq_kick(jobs, concurrency, inplace=True)


_CHILDREN = {
    "lexigram": _run_lexigram,
    "taskiq-receiver": _run_taskiq_receiver,
    "taskiq-kick": _run_taskiq_kick,
    "taskiq-inplace": _run_taskiq_inplace,
}


def _child(framework: str, jobs: int, concurrency: int) -> None:
    rate = asyncio.run(_CHILDREN[framework](jobs, concurrency))
    print(json.dumps({"framework": framework, "concurrency": concurrency, "rate": rate}))


# ------------------------------------------------------------------------------------
# parent: environments, runs, table
# ------------------------------------------------------------------------------------


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_taskiq_venv() -> Path:
    """Create benchmarks/.venv-taskiq with Taskiq on first use; return its python."""
    python = _venv_python(TASKIQ_VENV)
    if python.exists():
        return python
    print(f"Creating {TASKIQ_VENV} with {TASKIQ_REQUIREMENT} (first run only)...")
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if Path(uv).exists():
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(TASKIQ_VENV)], check=True)  # noqa: S603
        subprocess.run(  # noqa: S603
            [uv, "pip", "install", "-q", "--python", str(python), TASKIQ_REQUIREMENT], check=True
        )
    else:
        subprocess.run([sys.executable, "-m", "venv", str(TASKIQ_VENV)], check=True)  # noqa: S603
        subprocess.run(  # noqa: S603
            [str(python), "-m", "pip", "install", "-q", TASKIQ_REQUIREMENT], check=True
        )
    return python


def _run_child(python: Path, framework: str, jobs: int, concurrency: int) -> float:
    command = [str(python), str(Path(__file__).resolve()), "--child", framework]
    command += ["--jobs", str(jobs), "--concurrency", str(concurrency)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)  # noqa: S603
    return float(json.loads(done.stdout.strip().splitlines()[-1])["rate"])


def _version(python: Path, module: str, dist: str) -> str:
    code = f"import importlib.metadata as m, {module}; print(m.version({dist!r}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)  # noqa: S603
    return done.stdout.strip() or "?"


def main() -> None:
    """Run the benchmark (or, with --child, one measurement) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", default="100,1000")
    parser.add_argument("--only", default=",".join(FRAMEWORKS))
    parser.add_argument("--child", choices=FRAMEWORKS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.jobs, int(args.concurrency))
        return

    frameworks = [f for f in args.only.split(",") if f in FRAMEWORKS]
    levels = [int(c) for c in args.concurrency.split(",")]
    pythons = {"lexigram": Path(sys.executable)}
    if any(f.startswith("taskiq") for f in frameworks):
        taskiq_python = ensure_taskiq_venv()
        for name in FRAMEWORKS[1:]:
            pythons[name] = taskiq_python
    rates: dict[tuple[str, int], list[float]] = {(f, c): [] for f in frameworks for c in levels}
    for run in range(args.runs):
        # Interleave frameworks so that machine noise hits them alike.
        order = frameworks if run % 2 == 0 else list(reversed(frameworks))
        for framework in order:
            for concurrency in levels:
                rate = _run_child(pythons[framework], framework, args.jobs, concurrency)
                rates[framework, concurrency].append(rate)
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    _print_table(frameworks, levels, rates, args, pythons)


def _print_table(
    frameworks: list[str],
    levels: list[int],
    rates: dict[tuple[str, int], list[float]],
    args: Any,
    pythons: dict[str, Path],
) -> None:
    medians = {key: statistics.median(values) for key, values in rates.items()}
    best = {f: max(medians[f, c] for c in levels) for f in frameworks}
    taskiq_best = max((best[f] for f in frameworks if f.startswith("taskiq")), default=0.0)
    versions = {"lexigram": _version(pythons["lexigram"], "lexigram.tasks", "lexigram-tasks-core")}
    if taskiq_best:
        versions["taskiq"] = _version(pythons["taskiq-kick"], "taskiq", "taskiq")
    print(
        f"\nW2 drain, in-memory backends: {args.jobs:,} no-op jobs, one process, "
        f"median of {args.runs} runs (Python {sys.version.split()[0]}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ")\n"
    )
    widths = (16, 11, 15, 9, 9)
    titles = ("framework", "concurrency", "jobs/s (median)", "min", "max")
    print("| " + " | ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for framework in frameworks:
        for concurrency in levels:
            values = rates[framework, concurrency]
            print(
                f"| {framework:<16} | {concurrency:>11} | {statistics.median(values):>15,.0f} "
                f"| {min(values):>9,.0f} | {max(values):>9,.0f} |"
            )
    print()
    for framework in frameworks:
        line = f"best {framework:<16} {best[framework]:>10,.0f} jobs/s"
        if taskiq_best and framework == "lexigram":
            line += f"   ratio to the fastest Taskiq variant: {best[framework] / taskiq_best:.2f}x"
        print(line)


if __name__ == "__main__":
    main()
