r"""SQLite queues side by side: lexigram-tasks (``sqlite`` backend) vs huey's SqliteHuey.

Workloads, one worker process each, every run on a fresh database file:

- W1  enqueue N no-op jobs one by one (each awaited), and in bulk (lexigram
      ``enqueue_many`` in chunks of 1,000; huey has no bulk API, so a plain loop)
- W2  drain N pre-enqueued no-op jobs with one worker process, first job start to last
      job end, measured inside the worker
- W3  enqueue-to-start latency p50/p99 at a steady rate (default 200 jobs/s for 5 s)
- W4  2,000 jobs of ``sleep(0.05)`` at concurrency 100 (ideal: 1.0 s)

Rows:

- ``lexigram-cli``: the documented path, ``lexigram-tasks worker sqlite_bench:HANDLERS
  --backend sqlite:///...`` with every default (concurrency 10, results stored in the
  SQLite result store, ``synchronous=NORMAL``); W4 adds ``--concurrency 100``.
- ``lexigram-cli-c100``: the same worker with ``--concurrency 100`` for every workload.
- ``lexigram-cli-full``: the same with the option ``synchronous=FULL`` (every commit
  fsynced), set through ``LEX_TASKS__BACKEND__OPTIONS__SYNCHRONOUS``.
- ``lexigram-pool``: a bare ``WorkerPool`` (one worker, concurrency 100, no result
  store) on ``SQLiteTaskQueue``: what the queue itself sustains.
- ``huey``: ``SqliteHuey`` with its defaults (WAL, SQLite's default ``synchronous``,
  FULL on this build) and its own consumer (``create_consumer``) with its default one
  worker thread (measured fastest for W2: 4 and 8 threads drained 30-50 % slower; 100
  threads for W4), periodic tasks off.
- ``huey-nofsync``: the same with ``fsync=False`` (``synchronous=OFF``), huey's fastest.

The parent orchestrates; producers and workers run in child processes. Results are the
median of ``--runs`` runs, frameworks interleaved run by run. Nothing is asserted.

Setup (huey never enters the project's dependencies)::

    .venv/bin/uv venv --python .venv/bin/python benchmarks/.venv-sqlite
    .venv/bin/uv pip install --python benchmarks/.venv-sqlite/bin/python huey \
        -e packages/lexigram-contracts-tasks -e packages/lexigram-kernel \
        -e packages/lexigram-tasks-core -e packages/lexigram-tasks-sqlite
    benchmarks/.venv-sqlite/bin/python benchmarks/sqlite_bench.py --runs 3
"""

# ruff: noqa: PLC0415, S603, D102, D103 - frameworks are imported lazily in the child that runs
# them; it starts its own children with fixed argument lists; helpers are described by name.

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FRAMEWORKS = (
    "lexigram-cli",
    "lexigram-cli-c100",
    "lexigram-cli-full",
    "lexigram-pool",
    "huey",
    "huey-nofsync",
)
HUEY_WORKERS = int(os.environ.get("BENCH_HUEY_WORKERS", "1"))


# --------------------------------------------------------------------------- the job


class Recorder:
    """Counts job starts and ends inside a worker; writes the figures after the N-th end.

    Environment: BENCH_N (jobs expected), BENCH_OUT (result file), BENCH_MODE (``noop``,
    ``sleep`` or ``latency``).
    """

    def __init__(self) -> None:
        self.n = int(os.environ.get("BENCH_N", "0"))
        self.out = os.environ.get("BENCH_OUT", "")
        self.mode = os.environ.get("BENCH_MODE", "noop")
        self.lock = threading.Lock()
        self.first: float | None = None
        self.done = 0
        self.latencies: list[float] = []

    def start(self, stamp: float) -> None:
        now = time.time()
        with self.lock:
            if self.first is None:
                self.first = now
            if self.mode == "latency":
                self.latencies.append(now - stamp)

    def end(self) -> None:
        with self.lock:
            self.done += 1
            if self.done == self.n and self.out:
                data = {"first": self.first, "last": time.time(), "lat": self.latencies}
                tmp = f"{self.out}.tmp"
                Path(tmp).write_text(json.dumps(data))
                Path(tmp).replace(self.out)


RECORDER = Recorder()


async def h(stamp: float) -> None:
    """The lexigram job: a no-op, or ``sleep(0.05)`` for W4."""
    RECORDER.start(stamp)
    if RECORDER.mode == "sleep":
        await asyncio.sleep(0.05)
    RECORDER.end()


HANDLERS = {"h": h}
"""The APP the CLI worker runs: ``lexigram-tasks worker sqlite_bench:HANDLERS``."""


def huey_app(path: str, fsync: bool | None) -> Any:
    """SqliteHuey on `path` with the same job registered as ``h``."""
    from huey import SqliteHuey

    options: dict[str, Any] = {} if fsync is None else {"fsync": fsync}
    app = SqliteHuey("bench", filename=path, **options)

    @app.task(name="h")
    def huey_h(stamp: float) -> None:
        RECORDER.start(stamp)
        if RECORDER.mode == "sleep":
            time.sleep(0.05)
        RECORDER.end()

    app.bench_task = huey_h
    return app


def huey_fsync(framework: str) -> bool | None:
    return False if framework == "huey-nofsync" else None


# --------------------------------------------------------------------------- children


async def produce_lexigram(path: str, synchronous: str, stamps: int, bulk: bool) -> float:
    from lexigram.contracts.tasks import Job
    from lexigram.tasks.backends.sqlite import SQLiteOptions, SQLiteTaskQueue

    queue = SQLiteTaskQueue(
        path,
        queue_name="bench",
        options=SQLiteOptions(synchronous=synchronous),  # type: ignore[arg-type]
    )
    await queue.count("bench")
    started = time.perf_counter()
    if bulk:
        for first in range(0, stamps, 1000):
            jobs = [Job(name="h", args=(0.0,)) for _ in range(first, min(stamps, first + 1000))]
            await queue.enqueue_many(jobs)
    else:
        for _ in range(stamps):
            (await queue.enqueue(Job(name="h", args=(0.0,)))).unwrap()
    elapsed = time.perf_counter() - started
    await queue.close()
    return elapsed


def produce_huey(path: str, framework: str, stamps: int) -> float:
    app = huey_app(path, huey_fsync(framework))
    started = time.perf_counter()
    for _ in range(stamps):
        app.bench_task(0.0)
    return time.perf_counter() - started


async def pool_worker(path: str, concurrency: int) -> None:
    from lexigram.tasks.backends.sqlite import SQLiteTaskQueue
    from lexigram.tasks.config import TaskWorkerConfig
    from lexigram.tasks.execution import WorkerPool

    queue = SQLiteTaskQueue(path, queue_name="bench")
    config = TaskWorkerConfig(max_concurrent_tasks=concurrency)
    pool = WorkerPool(queue, {"h": h}, size=1, config=config)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await pool.start()
    await stop.wait()
    await pool.stop()
    await queue.close()


def huey_worker(path: str, framework: str, workers: int) -> None:
    app = huey_app(path, huey_fsync(framework))
    consumer = app.create_consumer(workers=workers, worker_type="thread", periodic=False)
    consumer.run()


def child(argv: list[str]) -> None:
    role, framework, path = argv[:3]
    if role == "produce":
        stamps, bulk = int(argv[3]), argv[4] == "bulk"
        if framework.startswith("huey"):
            elapsed = produce_huey(path, framework, stamps)
        else:
            sync = "FULL" if framework == "lexigram-cli-full" else "NORMAL"
            elapsed = asyncio.run(produce_lexigram(path, sync, stamps, bulk))
        print(json.dumps({"elapsed": elapsed}))
    elif role == "pool":
        asyncio.run(pool_worker(path, int(argv[3])))
    elif role == "huey":
        huey_worker(path, framework, int(argv[3]))


# --------------------------------------------------------------------------- parent


def run_child(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def start_worker(
    framework: str, path: str, env: dict[str, str], concurrency: int | None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, **env, "PYTHONPATH": str(HERE)}
    if framework.startswith("lexigram-cli"):
        exe = Path(sys.executable).with_name("lexigram-tasks")
        args = [str(exe), "worker", "sqlite_bench:HANDLERS", "-q", "bench", "--log-level", "error"]
        if framework == "lexigram-cli-full":
            env["LEX_TASKS__BACKEND__TYPE"] = "sqlite"
            env["LEX_TASKS__BACKEND__URL"] = f"sqlite:///{path}"
            env["LEX_TASKS__BACKEND__OPTIONS__SYNCHRONOUS"] = "FULL"
        else:
            args += ["--backend", f"sqlite:///{path}"]
        if framework == "lexigram-cli-c100":
            concurrency = 100
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
    elif framework == "lexigram-pool":
        args = [
            sys.executable,
            __file__,
            "--child",
            "pool",
            framework,
            path,
            str(concurrency or 100),
        ]
    else:
        workers = concurrency or HUEY_WORKERS
        args = [sys.executable, __file__, "--child", "huey", framework, path, str(workers)]
    return subprocess.Popen(args, env=env, cwd=HERE, stderr=subprocess.DEVNULL)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(out: Path, timeout: float, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists():
            return dict(json.loads(out.read_text()))
        if proc.poll() is not None:
            msg = f"worker {proc.args} exited with {proc.returncode}"
            raise RuntimeError(msg)
        time.sleep(0.05)  # waiting on another process's file, not synchronising
    msg = f"no result from {proc.args} within {timeout} s"
    raise RuntimeError(msg)


def fresh(workdir: Path, name: str) -> tuple[str, Path]:
    run = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir))
    return str(run / "bench.db"), run / "out.json"


def w1(framework: str, workdir: Path, n: int, bulk: bool) -> float:
    # huey has no bulk API: its "bulk" is the loop again (the README says so).
    path, _ = fresh(workdir, "w1")
    if framework == "lexigram-pool":
        framework = "lexigram-cli"
    result = run_child("produce", framework, path, str(n), "bulk" if bulk else "single")
    return n / float(result["elapsed"])


def drain(framework: str, workdir: Path, n: int, mode: str, concurrency: int | None) -> float:
    path, out = fresh(workdir, "w2")
    run_child(
        "produce",
        framework if framework != "lexigram-pool" else "lexigram-cli",
        path,
        str(n),
        "bulk",
    )
    env = {"BENCH_N": str(n), "BENCH_OUT": str(out), "BENCH_MODE": mode}
    proc = start_worker(framework, path, env, concurrency)
    try:
        data = wait_for(out, 600, proc)
    finally:
        stop_worker(proc)
    return float(data["last"]) - float(data["first"])


def latency(framework: str, workdir: Path, rate: float, seconds: float) -> tuple[float, float]:
    n = int(rate * seconds)
    path, out = fresh(workdir, "w3")
    env = {"BENCH_N": str(n + 1), "BENCH_OUT": str(out), "BENCH_MODE": "latency"}
    proc = start_worker(framework, path, env, None)
    try:
        asyncio.run(_steady_producer(framework, path, rate, n))
        data = wait_for(out, 120, proc)
    finally:
        stop_worker(proc)
    lat = sorted(data["lat"][1:])  # the first is the warm-up job
    return lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99) - 1] * 1000


async def _steady_producer(framework: str, path: str, rate: float, n: int) -> None:
    if framework.startswith("huey"):
        app = huey_app(path, huey_fsync(framework))

        def send(stamp: float) -> None:
            app.bench_task(stamp)

        send(time.time())  # warm-up
        await asyncio.sleep(2.0)
        start = time.perf_counter()
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            send(time.time())
        return
    from lexigram.contracts.tasks import Job
    from lexigram.tasks.backends.sqlite import SQLiteTaskQueue

    queue = SQLiteTaskQueue(path, queue_name="bench")
    await queue.enqueue(Job(name="h", args=(time.time(),)))  # warm-up
    await asyncio.sleep(2.0)
    start = time.perf_counter()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        (await queue.enqueue(Job(name="h", args=(time.time(),)))).unwrap()
    await queue.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--child", nargs=argparse.REMAINDER)
    parser.add_argument("--jobs", type=int, default=10_000, help="N for W1 bulk and W2")
    parser.add_argument("--single", type=int, default=2_000, help="N for W1 one by one")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="W3 jobs per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="W3 duration")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--workloads", default="w1,w2,w3,w4")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    frameworks = args.frameworks.split(",")
    workloads = args.workloads.split(",")
    rows: dict[tuple[str, str], list[Any]] = {}
    with tempfile.TemporaryDirectory(prefix="sqlite-bench-") as tmp:
        workdir = Path(tmp)
        for run in range(args.runs):
            for framework in frameworks:

                def add(key: str, value: Any, fw: str = framework, n: int = run + 1) -> None:
                    rows.setdefault((fw, key), []).append(value)
                    print(f"run {n} {fw:18} {key:10} {value}", file=sys.stderr)

                if "w1" in workloads and framework != "lexigram-pool":
                    add("w1-single", w1(framework, workdir, args.single, bulk=False))
                    add("w1-bulk", w1(framework, workdir, args.jobs, bulk=True))
                if "w2" in workloads:
                    add("w2", args.jobs / drain(framework, workdir, args.jobs, "noop", None))
                if "w3" in workloads and framework != "lexigram-pool":
                    add("w3", latency(framework, workdir, args.rate, args.seconds))
                if "w4" in workloads:
                    add("w4", drain(framework, workdir, 2000, "sleep", 100))
    print_table(rows, frameworks, args)


def print_table(rows: dict[tuple[str, str], list[Any]], frameworks: list[str], args: Any) -> None:
    def med(fw: str, key: str) -> Any:
        values = rows.get((fw, key))
        if not values:
            return None
        if isinstance(values[0], (list, tuple)):
            return tuple(statistics.median(v[i] for v in values) for i in range(2))
        return statistics.median(values)

    print(
        f"\nmedian of {args.runs} runs; W1 single {args.single}, W1 bulk / W2 {args.jobs} jobs, "
        f"W3 {args.rate:g} jobs/s for {args.seconds:g} s, W4 2,000 x sleep(0.05) at 100"
    )
    print(
        "| framework | W1 single (jobs/s) | W1 bulk (jobs/s) | W2 (jobs/s) "
        "| W3 p50 / p99 (ms) | W4 (s) |"
    )
    print("|---|---|---|---|---|---|")
    for fw in frameworks:
        single, bulk, w2v, w3v, w4v = (
            med(fw, k) for k in ("w1-single", "w1-bulk", "w2", "w3", "w4")
        )
        cells = [
            f"{single:,.0f}" if single else "-",
            f"{bulk:,.0f}" if bulk else "-",
            f"{w2v:,.0f}" if w2v else "-",
            f"{w3v[0]:.1f} / {w3v[1]:.1f}" if w3v else "-",
            f"{w4v:.2f}" if w4v else "-",
        ]
        print(f"| {fw} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
