"""Redis task-queue benchmark: lexigram-tasks against arq, SAQ, Taskiq, streaq and Dramatiq.

Workloads W1-W4 (benchmarks/README.md), each run side by side for every framework, median of --runs:

- W1 single: enqueue N1 no-op jobs one by one (awaiting each), jobs/s.
- W1 bulk:   enqueue N no-op jobs with the framework's bulk API (gather when it has
             none, a plain loop for Dramatiq), jobs/s.
- W2 drain:  one worker process drains those N pre-enqueued no-op jobs, jobs/s
             (first job start to last job end, measured in the worker).
- W3:        enqueue-to-start latency p50/p99 (ms) at a steady 500 jobs/s for 4 s, one
             worker process, measured after a warm-up job has gone through.
- W4:        2,000 jobs of sleep(0.05) at concurrency 100, seconds (ideal 1.0).

Every framework runs in the same environment (``benchmarks/.venv-redis``, see
benchmarks/README.md), at its documented defaults except the concurrency knobs the
workload sets (100 for the async frameworks; Dramatiq 8 threads, 100 for W4) and arq's
poll_delay (10 ms instead of 500 ms, its best latency). Workers are separate processes.

It uses Redis database 15 of --url and FLUSHDB's it between steps: do not point it at
data you keep. Nothing here is asserted; it prints a table.

Usage:
    benchmarks/.venv-redis/bin/python benchmarks/redis_bench.py [--runs 3] [--only arq,saq]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

if os.environ.get("BENCH_NO_HIREDIS"):
    # Measure the pure-Python reply parsers: make hiredis unimportable before redis-py
    # (and lexigram's multiplexed connection) look for it. Workers inherit the variable.
    sys.modules["hiredis"] = None  # type: ignore[assignment]

import redis

FRAMEWORKS = ("lexigram", "arq", "saq", "taskiq", "streaq", "dramatiq")
QUEUE = "bench"
RESULT_KEY = "bench:result"
W3_RATE = 500
W3_SECONDS = 4.0
W4_JOBS = 2000
W4_SLEEP = 0.05


# ------------------------------------------------------------------------------------
# worker side: one process, one framework, one workload
# ------------------------------------------------------------------------------------


class Recorder:
    """Counts jobs in the worker process and reports once the last one has run."""

    def __init__(self, url: str, workload: str, expected: int) -> None:
        self.client = redis.Redis.from_url(url)
        self.workload = workload
        self.expected = expected
        self.count = 0
        self.first = 0.0
        self.latencies: list[float] = []
        self.lock = threading.Lock()  # Dramatiq runs handlers in threads

    def start(self, ts: float) -> bool:
        """Record a job start; False for the warm-up job (ts < 0), which is not counted."""
        now = time.time()
        if ts < 0:
            self.client.rpush(RESULT_KEY, json.dumps({"warm": True}))
            return False
        with self.lock:
            if not self.first:
                self.first = now
            if self.workload == "w3":
                self.latencies.append(now - ts)
        return True

    def finish(self) -> None:
        """Record a job end; the last one reports the result to the parent."""
        with self.lock:
            self.count += 1
            if self.count != self.expected:
                return
            elapsed = time.time() - self.first
        result: dict[str, Any] = {"elapsed": elapsed, "count": self.count}
        if self.latencies:
            ordered = sorted(self.latencies)
            result["p50"] = ordered[len(ordered) // 2] * 1000
            result["p99"] = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        self.client.rpush(RESULT_KEY, json.dumps(result))


def _sleep_for(workload: str) -> float:
    return W4_SLEEP if workload == "w4" else 0.0


def worker_lexigram(url: str, rec: Recorder, concurrency: int) -> None:
    """lexigram-tasks: one `WorkerPool` worker on a `RedisTaskQueue`."""
    from lexigram.tasks.backends.redis import RedisTaskQueue  # noqa: PLC0415
    from lexigram.tasks.config import TaskWorkerConfig  # noqa: PLC0415
    from lexigram.tasks.execution import WorkerPool  # noqa: PLC0415

    pause = _sleep_for(rec.workload)

    async def bench(ts: float) -> None:
        if rec.start(ts):
            if pause:
                await asyncio.sleep(pause)
            rec.finish()

    async def main() -> None:
        queue = RedisTaskQueue(url, QUEUE)
        config = TaskWorkerConfig(max_concurrent_tasks=concurrency)
        pool = WorkerPool(queue, {"bench": bench}, size=1, config=config)
        await pool.start()
        await asyncio.Event().wait()

    asyncio.run(main())


def worker_arq(url: str, rec: Recorder, concurrency: int) -> None:
    """arq: one `Worker` (max_jobs = concurrency, poll_delay 10 ms)."""
    from arq.connections import RedisSettings  # noqa: PLC0415
    from arq.worker import Worker, func  # noqa: PLC0415

    pause = _sleep_for(rec.workload)

    async def bench(ctx: Any, ts: float) -> None:
        if rec.start(ts):
            if pause:
                await asyncio.sleep(pause)
            rec.finish()

    async def main() -> None:
        worker = Worker(
            functions=[func(bench, name="bench")],
            redis_settings=RedisSettings.from_dsn(url),
            queue_name=QUEUE,
            max_jobs=concurrency,
            poll_delay=0.01,
            handle_signals=False,
        )
        await worker.async_run()

    asyncio.run(main())


def worker_saq(url: str, rec: Recorder, concurrency: int) -> None:
    """SAQ: one `Worker` with the given concurrency."""
    from saq import Queue, Worker  # noqa: PLC0415

    pause = _sleep_for(rec.workload)

    async def bench(ctx: Any, *, ts: float) -> None:
        if rec.start(ts):
            if pause:
                await asyncio.sleep(pause)
            rec.finish()

    async def main() -> None:
        queue = Queue.from_url(url, name=QUEUE)
        worker = Worker(queue, functions=[("bench", bench)], concurrency=concurrency)
        await worker.start()

    asyncio.run(main())


def _taskiq_broker(url: str) -> Any:
    from taskiq_redis import ListQueueBroker  # noqa: PLC0415

    return ListQueueBroker(url=url, queue_name=QUEUE)


def worker_taskiq(url: str, rec: Recorder, concurrency: int) -> None:
    """Taskiq: the receiver of a `ListQueueBroker` (max_async_tasks = concurrency)."""
    from taskiq.api import run_receiver_task  # noqa: PLC0415

    broker = _taskiq_broker(url)
    pause = _sleep_for(rec.workload)

    @broker.task(task_name="bench")
    async def bench(ts: float) -> None:
        if rec.start(ts):
            if pause:
                await asyncio.sleep(pause)
            rec.finish()

    async def main() -> None:
        broker.is_worker_process = True
        await broker.startup()
        await run_receiver_task(broker, max_async_tasks=concurrency)

    asyncio.run(main())


def _streaq_worker(url: str, concurrency: int = 100) -> Any:
    from streaq import Worker  # noqa: PLC0415

    return Worker(redis_url=url, queue_name=QUEUE, concurrency=concurrency)


def worker_streaq(url: str, rec: Recorder, concurrency: int) -> None:
    """streaq: one `Worker` with the given concurrency."""
    worker = _streaq_worker(url, concurrency)
    pause = _sleep_for(rec.workload)

    @worker.task(name="bench")
    async def bench(ts: float) -> None:
        if rec.start(ts):
            if pause:
                await asyncio.sleep(pause)
            rec.finish()

    worker.run_sync()


def _dramatiq_setup(url: str) -> Any:
    import dramatiq  # noqa: PLC0415
    from dramatiq.brokers.redis import RedisBroker  # noqa: PLC0415

    broker = RedisBroker(url=url)
    dramatiq.set_broker(broker)
    return broker


def worker_dramatiq(url: str, rec: Recorder, concurrency: int) -> None:
    """Dramatiq: one `Worker` (8 threads, `concurrency` for W4) on a `RedisBroker`."""
    import dramatiq  # noqa: PLC0415

    broker = _dramatiq_setup(url)
    pause = _sleep_for(rec.workload)

    @dramatiq.actor(actor_name="bench", queue_name=QUEUE, max_retries=0)
    def bench(ts: float) -> None:
        if rec.start(ts):
            if pause:
                time.sleep(pause)
            rec.finish()

    threads = concurrency if rec.workload == "w4" else 8
    worker = dramatiq.Worker(broker, worker_threads=threads)
    worker.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    worker.stop()


WORKERS: dict[str, Callable[[str, Recorder, int], None]] = {
    "lexigram": worker_lexigram,
    "arq": worker_arq,
    "saq": worker_saq,
    "taskiq": worker_taskiq,
    "streaq": worker_streaq,
    "dramatiq": worker_dramatiq,
}


# ------------------------------------------------------------------------------------
# producer side (the main process)
# ------------------------------------------------------------------------------------


class Producer:
    """Enqueues `bench(ts)` jobs for one framework; async frameworks run in one loop."""

    def __init__(self, framework: str, url: str) -> None:
        self.framework = framework
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.handle: Any = None
        self.task: Any = None
        self.run(self._open())

    def run(self, coro: Any) -> Any:
        """Run `coro` on the producer's loop."""
        return self.loop.run_until_complete(coro)

    async def _open(self) -> None:
        fw = self.framework
        if fw == "lexigram":
            from lexigram.tasks.backends.redis import RedisTaskQueue  # noqa: PLC0415

            self.handle = RedisTaskQueue(self.url, QUEUE)
            await self.handle.connect()
        elif fw == "arq":
            from arq import create_pool  # noqa: PLC0415
            from arq.connections import RedisSettings  # noqa: PLC0415

            self.handle = await create_pool(RedisSettings.from_dsn(self.url))
        elif fw == "saq":
            from saq import Queue  # noqa: PLC0415

            self.handle = Queue.from_url(self.url, name=QUEUE)
            await self.handle.connect()
        elif fw == "taskiq":
            broker = _taskiq_broker(self.url)

            @broker.task(task_name="bench")
            async def bench(ts: float) -> None:
                """Producer-side declaration (never runs here)."""

            await broker.startup()
            self.handle, self.task = broker, bench
        elif fw == "streaq":
            worker = _streaq_worker(self.url)

            @worker.task(name="bench")
            async def bench(ts: float) -> None:
                """Producer-side declaration (never runs here)."""

            self.handle, self.task = worker, bench
            await worker.__aenter__()
        else:
            import dramatiq  # noqa: PLC0415

            _dramatiq_setup(self.url)

            @dramatiq.actor(actor_name="bench", queue_name=QUEUE, max_retries=0)
            def bench(ts: float) -> None:
                """Producer-side declaration (never runs here)."""

            self.task = bench

    async def one(self, ts: float) -> None:
        """Enqueue one `bench(ts)` job."""
        fw = self.framework
        if fw == "lexigram":
            from lexigram.contracts.tasks import Job  # noqa: PLC0415

            await self.handle.enqueue(Job(name="bench", args=(ts,)))
        elif fw == "arq":
            await self.handle.enqueue_job("bench", ts, _queue_name=QUEUE)
        elif fw == "saq":
            await self.handle.enqueue("bench", ts=ts)
        elif fw in ("taskiq",):
            await self.task.kiq(ts)
        elif fw == "streaq":
            await self.task.enqueue(ts)
        else:
            self.task.send(ts)

    async def bulk(self, count: int, ts: float) -> None:
        """Enqueue `count` jobs through the framework's bulk path."""
        fw = self.framework
        if fw == "lexigram":
            from lexigram.contracts.tasks import Job  # noqa: PLC0415

            for start in range(0, count, 1000):
                size = min(1000, count - start)
                await self.handle.enqueue_many([Job(name="bench", args=(ts,)) for _ in range(size)])
        elif fw == "streaq":
            for start in range(0, count, 1000):
                size = min(1000, count - start)
                await self.handle.enqueue_many([self.task.enqueue(ts) for _ in range(size)])
        elif fw == "dramatiq":
            for _ in range(count):
                self.task.send(ts)
        else:  # no bulk API: concurrent single enqueues, 1000 at a time
            for start in range(0, count, 1000):
                size = min(1000, count - start)
                await asyncio.gather(*(self.one(ts) for _ in range(size)))

    async def steady(self, rate: int, seconds: float) -> int:
        """Enqueue at `rate` jobs/s for `seconds`, stamping each with its send time."""
        total = int(rate * seconds)
        started = time.perf_counter()
        for index in range(total):
            target = started + index / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.one(time.time())
        return total

    def close(self) -> None:
        """Close the producer's connections and loop."""
        fw = self.framework
        if fw == "lexigram":
            self.run(self.handle.close())
        elif fw == "arq":
            self.run(self.handle.aclose())
        elif fw == "saq":
            self.run(self.handle.disconnect())
        elif fw == "taskiq":
            self.run(self.handle.shutdown())
        # streaq's context must be left in the task that entered it; the process ends
        # soon after, so its connection is simply dropped.
        self.loop.close()


def spawn_worker(url: str, framework: str, workload: str, expected: int) -> subprocess.Popen[bytes]:
    """Start a worker process for one framework and workload."""
    concurrency = 100
    args = [
        sys.executable,
        __file__,
        "_worker",
        framework,
        workload,
        str(expected),
        str(concurrency),
    ]
    env = {**os.environ, "BENCH_URL": url}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a worker process, SIGKILL it after 5 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_result(client: redis.Redis, timeout: float = 120.0) -> dict[str, Any] | None:
    """Wait for the worker's report (None on timeout)."""
    popped = client.blpop([RESULT_KEY], timeout=timeout)
    return None if popped is None else json.loads(popped[1])


def one_run(framework: str, url: str, n: int, n_single: int) -> dict[str, float]:
    """Run W1-W4 once for `framework` and return the figures."""
    client = redis.Redis.from_url(url)
    out: dict[str, float] = {}
    client.flushdb()
    producer = Producer(framework, url)
    try:
        started = time.perf_counter()
        producer.run(_singles(producer, n_single))
        out["w1_single"] = n_single / (time.perf_counter() - started)
        client.flushdb()
        started = time.perf_counter()
        producer.run(producer.bulk(n, 0.0))
        out["w1_bulk"] = n / (time.perf_counter() - started)

        proc = spawn_worker(url, framework, "w2", n)
        result = wait_result(client)
        stop_worker(proc)
        out["w2"] = n / result["elapsed"] if result else float("nan")

        client.flushdb()
        producer.run(producer.bulk(W4_JOBS, 0.0))
        proc = spawn_worker(url, framework, "w4", W4_JOBS)
        result = wait_result(client)
        stop_worker(proc)
        out["w4"] = result["elapsed"] if result else float("nan")

        client.flushdb()
        expected = int(W3_RATE * W3_SECONDS)
        proc = spawn_worker(url, framework, "w3", expected)
        producer.run(producer.one(-1.0))  # warm-up: the worker is consuming once it ran
        warm = wait_result(client, 60)
        if warm is not None:
            producer.run(producer.steady(W3_RATE, W3_SECONDS))
            result = wait_result(client, 60)
        else:
            result = None
        stop_worker(proc)
        out["w3_p50"] = result["p50"] if result else float("nan")
        out["w3_p99"] = result["p99"] if result else float("nan")
    finally:
        producer.close()
        client.flushdb()
        client.close()
    return out


async def _singles(producer: Producer, count: int) -> None:
    for _ in range(count):
        await producer.one(0.0)


COLUMNS = (
    ("w1_single", "W1 single jobs/s", True),
    ("w1_bulk", "W1 bulk jobs/s", True),
    ("w2", "W2 drain jobs/s", True),
    ("w3_p50", "W3 p50 ms", False),
    ("w3_p99", "W3 p99 ms", False),
    ("w4", "W4 s (ideal 1.0)", False),
)


def print_table(medians: dict[str, dict[str, float]]) -> None:
    """Print the Markdown table and the ratios to the best competitor."""
    competitors = [fw for fw in medians if fw != "lexigram"]
    header = f"| {'framework':<10} | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    print(header)
    print("|" + "|".join("-" * (len(part) + 2) for part in header.strip("|").split(" | ")) + "|")
    for fw, row in medians.items():
        cells = [f"{row.get(key, float('nan')):.1f}" for key, _, _ in COLUMNS]
        print(
            f"| {fw:<10} | "
            + " | ".join(f"{c:>{len(t)}}" for c, (_, t, _) in zip(cells, COLUMNS, strict=True))
            + " |"
        )
    if "lexigram" in medians and competitors:
        print()
        for key, title, higher in COLUMNS:
            values = {fw: medians[fw].get(key, float("nan")) for fw in competitors}
            valid = {fw: v for fw, v in values.items() if not math.isnan(v)}
            if not valid:
                continue
            best = (
                max(valid, key=valid.__getitem__) if higher else min(valid, key=valid.__getitem__)
            )
            ours = medians["lexigram"].get(key, float("nan"))
            ratio = ours / valid[best] if higher else valid[best] / ours
            best_value = valid[best]
            print(f"{title}: lexigram {ours:.1f} vs best {best} {best_value:.1f} -> {ratio:.2f}x")


def main() -> None:
    """Run every chosen framework --runs times, interleaved, and print the medians."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--n-single", type=int, default=5_000)
    parser.add_argument("--only", default=",".join(FRAMEWORKS))
    args = parser.parse_args()
    chosen = [fw.strip() for fw in args.only.split(",") if fw.strip()]
    runs: dict[str, list[dict[str, float]]] = {fw: [] for fw in chosen}
    for run in range(args.runs):
        for fw in chosen:  # interleaved, so drift in the machine hits every framework alike
            result = one_run(fw, args.url, args.n, args.n_single)
            runs[fw].append(result)
            print(
                f"run {run + 1} {fw}: " + ", ".join(f"{k}={v:.1f}" for k, v in result.items()),
                flush=True,
            )
    medians = {
        fw: {key: statistics.median(r[key] for r in results) for key, _, _ in COLUMNS}
        for fw, results in runs.items()
    }
    print()
    print(f"hiredis: {'off' if os.environ.get('BENCH_NO_HIREDIS') else 'on'}; runs: {args.runs}")
    print_table(medians)


def worker_main(argv: list[str]) -> None:
    """Entry point of a worker process (``_worker <framework> <workload> ...``)."""
    framework, workload, expected, concurrency = argv[0], argv[1], int(argv[2]), int(argv[3])
    url = os.environ["BENCH_URL"]
    WORKERS[framework](url, Recorder(url, workload, expected), concurrency)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker_main(sys.argv[2:])
    else:
        main()
