"""RabbitMQ task-queue benchmark: lexigram-tasks against Taskiq, Dramatiq and Celery.

Workloads W1-W4 (benchmarks/README.md), each run side by side for every framework on the
same broker, median of --runs:

- W1 single: enqueue N1 no-op jobs one by one (awaiting each), jobs/s.
- W1 gather: enqueue N no-op jobs with single-job calls, 1,000 concurrent at a time
             (asyncio frameworks only), jobs/s.
- W1 bulk:   enqueue N no-op jobs with the framework's bulk API (lexigram
             `enqueue_many`; gather for Taskiq; a loop for Dramatiq and Celery), jobs/s.
- W2 drain:  one worker process drains those N pre-enqueued no-op jobs, jobs/s
             (first job start to last job end, measured in the worker).
- W3:        enqueue-to-start latency p50/p99 (ms) at a steady 500 jobs/s for 4 s, one
             worker process, measured after a warm-up job has gone through.
- W4:        2,000 jobs of sleep(0.05) at concurrency 100, seconds (ideal 1.0).

Settings, each framework at its documented best for the workload:

- lexigram: durable classic queue, persistent messages, publisher confirms on every
  enqueue (an Ok means the broker has it), manual acks, worker concurrency 100.
- Taskiq (taskiq-aio-pika): qos (prefetch) 100, max_async_tasks 100; aio-pika's default
  channel, i.e. publisher confirms on.
- Dramatiq (pika): defaults (no publisher confirms, acks after the job), 8 worker threads
  (100 for W4). ``dramatiq-confirmed`` is W1 again with ``confirm_delivery=True``, the
  like-for-like publisher (its worker side is Dramatiq's, so W2-W4 are not repeated).
- Celery (py-amqp): solo pool (threads pool of 100 for W4), prefetch multiplier 100, no
  result backend, its default early acks (the job is acked when received) and its
  default publishing without confirms. ``celery-confirmed`` is W1 again with the
  transport option ``confirm_publish=True``.

Every framework gets a fresh virtual host for each step (deleted afterwards), so
queues never leak between frameworks. Workers are separate processes; results come
back through Redis (database 14 of --redis, flushed). Nothing is asserted; it prints a
table.

Usage (see benchmarks/README.md for the venv):
    benchmarks/.venv-rabbitmq/bin/python benchmarks/rabbitmq_bench.py [--runs 3] \
        [--only lexigram,celery]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

FRAMEWORKS = ("lexigram", "taskiq", "dramatiq", "dramatiq-confirmed", "celery", "celery-confirmed")
QUEUE = "bench"
RESULT_KEY = "bench:rabbitmq:result"
W3_RATE = 500
W3_SECONDS = 4.0
W4_JOBS = 2000
W4_SLEEP = 0.05
CONCURRENCY = 100


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
        self.lock = threading.Lock()  # Dramatiq and Celery's threads pool run in threads

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
        """Record a job end; the last one reports the elapsed time (and latencies)."""
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


def _pause(workload: str) -> float:
    return W4_SLEEP if workload == "w4" else 0.0


def worker_lexigram(url: str, rec: Recorder) -> None:
    """A lexigram WorkerPool (one worker, concurrency 100) on RabbitMQTaskQueue."""
    from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue  # noqa: PLC0415
    from lexigram.tasks.config import TaskWorkerConfig  # noqa: PLC0415
    from lexigram.tasks.execution import WorkerPool  # noqa: PLC0415

    pause = _pause(rec.workload)

    async def bench(ts: float) -> None:
        if rec.start(ts):
            if pause:
                await asyncio.sleep(pause)
            rec.finish()

    async def main() -> None:
        queue = RabbitMQTaskQueue(url, QUEUE)
        await queue.connect()
        config = TaskWorkerConfig(max_concurrent_tasks=CONCURRENCY)
        pool = WorkerPool(queue, {"bench": bench}, size=1, config=config)
        await pool.start()
        await asyncio.Event().wait()

    asyncio.run(main())


def _taskiq_broker(url: str) -> Any:
    from taskiq_aio_pika import AioPikaBroker  # noqa: PLC0415

    return AioPikaBroker(url=url, qos=CONCURRENCY)


def worker_taskiq(url: str, rec: Recorder) -> None:
    """A Taskiq receiver (max_async_tasks 100, qos 100)."""
    from taskiq.api import run_receiver_task  # noqa: PLC0415

    broker = _taskiq_broker(url)
    pause = _pause(rec.workload)

    @broker.task(task_name="bench")
    async def bench(ts: float) -> None:
        if rec.start(ts):
            if pause:
                await asyncio.sleep(pause)
            rec.finish()

    async def main() -> None:
        broker.is_worker_process = True
        await broker.startup()
        await run_receiver_task(broker, max_async_tasks=CONCURRENCY)

    asyncio.run(main())


def _dramatiq_setup(url: str, *, confirm: bool) -> Any:
    import dramatiq  # noqa: PLC0415
    from dramatiq.brokers.rabbitmq import RabbitmqBroker  # noqa: PLC0415

    broker = RabbitmqBroker(url=url, confirm_delivery=confirm)
    dramatiq.set_broker(broker)
    return broker


def _worker_dramatiq(url: str, rec: Recorder, *, confirm: bool) -> None:
    import dramatiq  # noqa: PLC0415

    broker = _dramatiq_setup(url, confirm=confirm)
    pause = _pause(rec.workload)

    @dramatiq.actor(actor_name="bench", queue_name=QUEUE, max_retries=0)
    def bench(ts: float) -> None:
        if rec.start(ts):
            if pause:
                time.sleep(pause)
            rec.finish()

    threads = CONCURRENCY if rec.workload == "w4" else 8
    worker = dramatiq.Worker(broker, worker_threads=threads)
    worker.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    worker.stop()


def worker_dramatiq(url: str, rec: Recorder) -> None:
    """A Dramatiq worker (default broker settings)."""
    _worker_dramatiq(url, rec, confirm=False)


def worker_dramatiq_confirmed(url: str, rec: Recorder) -> None:
    """A Dramatiq worker whose broker publishes with confirms."""
    _worker_dramatiq(url, rec, confirm=True)


def _celery_app(url: str, *, confirm: bool = False) -> Any:
    from celery import Celery  # noqa: PLC0415

    app = Celery("bench", broker=url)
    if confirm:
        app.conf.broker_transport_options = {"confirm_publish": True}
    app.conf.update(
        task_default_queue=QUEUE,
        task_ignore_result=True,
        worker_prefetch_multiplier=CONCURRENCY,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
    )
    return app


def worker_celery(url: str, rec: Recorder, *, confirm: bool = False) -> None:
    """A Celery worker: solo pool (threads pool of 100 for W4)."""
    app = _celery_app(url, confirm=confirm)
    pause = _pause(rec.workload)

    @app.task(name="bench")
    def bench(ts: float) -> None:
        if rec.start(ts):
            if pause:
                time.sleep(pause)
            rec.finish()

    pool = ["--pool=threads", f"--concurrency={CONCURRENCY}"] if pause else ["--pool=solo"]
    app.worker_main(["worker", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
                     "--without-heartbeat", *pool])  # fmt: skip


WORKERS: dict[str, Callable[[str, Recorder], None]] = {
    "lexigram": worker_lexigram,
    "taskiq": worker_taskiq,
    "dramatiq": worker_dramatiq,
    "dramatiq-confirmed": worker_dramatiq_confirmed,
    "celery": worker_celery,
    "celery-confirmed": lambda url, rec: worker_celery(url, rec, confirm=True),
}


# ------------------------------------------------------------------------------------
# producer side (the main process)
# ------------------------------------------------------------------------------------


class Producer:
    """Enqueues `bench(ts)` jobs for one framework; async frameworks run in one loop."""

    def __init__(self, framework: str, url: str, stores: str | None = None) -> None:
        self.framework = framework
        self.url = url
        self.stores = stores  # lexigram: the `stores:` URL its worker has (job states)
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
            from lexigram.tasks.backends.rabbitmq import (  # noqa: PLC0415
                RabbitMQOptions,
                RabbitMQTaskQueue,
            )

            # An app gives its producer the worker's configuration: with `stores:`, each
            # enqueue records the job's state there before publishing it.
            options = RabbitMQOptions.from_options({"stores": self.stores} if self.stores else {})
            self.handle = RabbitMQTaskQueue(self.url, QUEUE, options=options)
            await self.handle.connect()
        elif fw == "taskiq":
            broker = _taskiq_broker(self.url)

            @broker.task(task_name="bench")
            async def bench(ts: float) -> None:
                """Producer-side declaration (never runs here)."""

            await broker.startup()
            self.handle, self.task = broker, bench
        elif fw.startswith("dramatiq"):
            import dramatiq  # noqa: PLC0415

            self.handle = _dramatiq_setup(self.url, confirm=fw == "dramatiq-confirmed")

            @dramatiq.actor(actor_name="bench", queue_name=QUEUE, max_retries=0)
            def bench(ts: float) -> None:
                """Producer-side declaration (never runs here)."""

            self.task = bench
        else:
            app = _celery_app(self.url, confirm=fw == "celery-confirmed")

            @app.task(name="bench")
            def bench(ts: float) -> None:
                """Producer-side declaration (never runs here)."""

            self.handle, self.task = app, bench

    async def one(self, ts: float) -> None:
        """Enqueue one job stamped `ts`."""
        fw = self.framework
        if fw == "lexigram":
            from lexigram.contracts.tasks import Job  # noqa: PLC0415

            await self.handle.enqueue(Job(name="bench", args=(ts,)))
        elif fw == "taskiq":
            await self.task.kiq(ts)
        elif fw.startswith("dramatiq"):
            self.task.send(ts)
        else:
            self.task.apply_async((ts,))

    async def bulk(self, count: int, ts: float) -> None:
        """Enqueue `count` jobs through the framework's bulk path."""
        fw = self.framework
        if fw == "lexigram":
            from lexigram.contracts.tasks import Job  # noqa: PLC0415

            for start in range(0, count, 1000):
                size = min(1000, count - start)
                await self.handle.enqueue_many([Job(name="bench", args=(ts,)) for _ in range(size)])
        elif fw == "taskiq":  # no bulk API: concurrent kiq calls, 1000 at a time
            for start in range(0, count, 1000):
                size = min(1000, count - start)
                await asyncio.gather(*(self.task.kiq(ts) for _ in range(size)))
        else:  # Dramatiq and Celery publish synchronously: a plain loop is their bulk path
            for _ in range(count):
                await self.one(ts)

    async def together(self, count: int, ts: float) -> None:
        """Enqueue `count` jobs with single-job calls, 1,000 concurrent at a time (asyncio only)."""
        for start in range(0, count, 1000):
            size = min(1000, count - start)
            await asyncio.gather(*(self.one(ts) for _ in range(size)))

    async def steady(self, rate: int, seconds: float) -> int:
        """Enqueue at `rate` jobs/s for `seconds`, stamping each with its send time."""
        total = int(rate * seconds)
        started = time.perf_counter()
        for index in range(total):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.one(time.time())
        return total

    def close(self) -> None:
        """Close the producer's connection and loop."""
        fw = self.framework
        if fw == "lexigram":
            self.run(self.handle.close())
        elif fw == "taskiq":
            self.run(self.handle.shutdown())
        elif fw.startswith("dramatiq"):
            self.handle.close()
        else:
            self.handle.close()
        self.loop.close()


def rabbitmqctl(*args: str) -> None:
    """Run rabbitmqctl (the benchmark runs on the broker's host)."""
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True)  # noqa: S603, S607


class VirtualHost:
    """A throwaway virtual host for one step of one framework."""

    def __init__(self, base_url: str) -> None:
        # A virtual host named in the URL (amqp://.../NAME) prefixes the throwaway ones
        # instead of being nested into a path the broker would reject.
        scheme, _, rest = base_url.partition("://")
        server, _, named = rest.partition("/")
        self.name = f"{named.strip('/') or 'lexigram-bench'}-{uuid.uuid4().hex[:8]}"
        self.url = f"{scheme}://{server}/{self.name}"
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")

    def delete(self) -> None:
        """Delete the virtual host and everything in it."""
        rabbitmqctl("delete_vhost", self.name)


def spawn_worker(url: str, redis_url: str, framework: str, workload: str, expected: int) -> Any:
    """Start one worker process for one framework and workload."""
    args = [sys.executable, __file__, "_worker", framework, workload, str(expected)]
    env = {**os.environ, "BENCH_URL": url, "BENCH_REDIS": redis_url}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def stop_worker(proc: Any) -> None:
    """SIGTERM, then SIGKILL after 5 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_result(client: redis.Redis, timeout: float = 120.0) -> dict[str, Any] | None:
    """Wait for a worker's report."""
    popped = client.blpop([RESULT_KEY], timeout=timeout)
    return None if popped is None else json.loads(popped[1])


def run_worker(
    client: redis.Redis, url: str, redis_url: str, framework: str, *, job: tuple[str, int]
) -> dict[str, Any] | None:
    """Start a worker for one workload and wait for its report; always stop it."""
    proc = spawn_worker(url, redis_url, framework, *job)
    try:
        return wait_result(client)
    finally:
        stop_worker(proc)


W1_ONLY = ("dramatiq-confirmed", "celery-confirmed")
ASYNC_PRODUCERS = ("lexigram", "taskiq")  # the others' enqueue calls block: nothing to gather
CONFIRMED = ("taskiq", "dramatiq-confirmed", "celery-confirmed")
NAN = float("nan")


@contextmanager
def fresh_producer(framework: str, amqp_url: str) -> Iterator[tuple[Producer, str]]:
    """A producer on a virtual host of its own; both closed and deleted afterwards."""
    vhost = VirtualHost(amqp_url)
    producer = Producer(framework, vhost.url)
    try:
        yield producer, vhost.url
    finally:
        producer.close()
        vhost.delete()


def rate(count: int, step: Callable[[], Any]) -> float:
    """Jobs per second of `step`, which handles `count` jobs."""
    started = time.perf_counter()
    step()
    return count / (time.perf_counter() - started)


def one_run(
    framework: str, amqp_url: str, redis_url: str, n: int, n_single: int
) -> dict[str, float]:
    """Run W1 to W4 once for `framework`, each step in a fresh virtual host."""
    out = dict.fromkeys(("w1_gather", "w2", "w4", "w3_p50", "w3_p99"), NAN)
    with fresh_producer(framework, amqp_url) as (producer, _):
        out["w1_single"] = rate(n_single, lambda: producer.run(_singles(producer, n_single)))
    if framework in ASYNC_PRODUCERS:
        with fresh_producer(framework, amqp_url) as (producer, _):
            out["w1_gather"] = rate(n, lambda: producer.run(producer.together(n, 0.0)))
    if framework in W1_ONLY:
        with fresh_producer(framework, amqp_url) as (producer, _):
            out["w1_bulk"] = rate(n, lambda: producer.run(producer.bulk(n, 0.0)))
        return out

    # No socket timeout: BLPOP waits as long as the slowest framework needs.
    client = redis.Redis.from_url(redis_url, socket_timeout=None)
    client.flushdb()
    try:
        with fresh_producer(framework, amqp_url) as (producer, url):
            out["w1_bulk"] = rate(n, lambda: producer.run(producer.bulk(n, 0.0)))
            result = run_worker(client, url, redis_url, framework, job=("w2", n))
            out["w2"] = n / result["elapsed"] if result else NAN

        with fresh_producer(framework, amqp_url) as (producer, url):
            producer.run(producer.bulk(W4_JOBS, 0.0))
            result = run_worker(client, url, redis_url, framework, job=("w4", W4_JOBS))
            out["w4"] = result["elapsed"] if result else NAN

        with fresh_producer(framework, amqp_url) as (producer, url):
            expected = int(W3_RATE * W3_SECONDS)
            proc = spawn_worker(url, redis_url, framework, "w3", expected)
            try:
                producer.run(producer.one(-1.0))  # warm-up: the worker is consuming once it ran
                result = None
                if wait_result(client, 60) is not None:
                    producer.run(producer.steady(W3_RATE, W3_SECONDS))
                    result = wait_result(client, 60)
            finally:
                stop_worker(proc)
            out["w3_p50"] = result["p50"] if result else NAN
            out["w3_p99"] = result["p99"] if result else NAN
    finally:
        client.flushdb()
        client.close()
    return out


async def _singles(producer: Producer, count: int) -> None:
    for _ in range(count):
        await producer.one(0.0)


COLUMNS = (
    ("w1_single", "W1 single jobs/s", True),
    ("w1_gather", "W1 gather jobs/s", True),
    ("w1_bulk", "W1 bulk jobs/s", True),
    ("w2", "W2 drain jobs/s", True),
    ("w3_p50", "W3 p50 ms", False),
    ("w3_p99", "W3 p99 ms", False),
    ("w4", "W4 s (ideal 1.0)", False),
)


def print_table(medians: dict[str, dict[str, float]]) -> None:
    """Print the medians as a Markdown table, then lexigram's ratios."""
    titles = [title for _, title, _ in COLUMNS]
    print(f"| {'framework':<18} | " + " | ".join(titles) + " |")
    print(f"|{'-' * 20}|" + "|".join("-" * (len(t) + 2) for t in titles) + "|")
    for fw, row in medians.items():
        cells = [
            f"{row.get(key, float('nan')):.1f}".rjust(len(t))
            for (key, _, _), t in zip(COLUMNS, titles, strict=True)
        ]
        print(f"| {fw:<18} | " + " | ".join(cells) + " |")
    competitors = [fw for fw in medians if fw != "lexigram"]
    if "lexigram" not in medians or not competitors:
        return
    print()
    for key, title, higher in COLUMNS:
        valid = {fw: medians[fw][key] for fw in competitors if medians[fw][key] == medians[fw][key]}
        confirmed = {fw: valid[fw] for fw in valid if fw in CONFIRMED}
        if key.startswith("w1") and confirmed:
            # Report both W1 baselines: the fastest overall and the fastest with confirms.
            best_c = max(confirmed, key=confirmed.__getitem__)
            ours_c = medians["lexigram"][key]
            print(
                f"{title} (with confirms): lexigram {ours_c:.1f} vs {best_c} "
                f"{confirmed[best_c]:.1f} -> {ours_c / confirmed[best_c]:.2f}x"
            )
        if not valid:
            continue
        best = max(valid, key=valid.__getitem__) if higher else min(valid, key=valid.__getitem__)
        ours = medians["lexigram"][key]
        ratio = ours / valid[best] if higher else valid[best] / ours
        print(
            f"{title}: lexigram {ours:.1f} vs best competitor {best} "
            f"{valid[best]:.1f} -> {ratio:.2f}x"
        )


def main() -> None:
    """Run every framework --runs times, interleaved, and print the medians."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--n-single", type=int, default=5_000)
    parser.add_argument("--only", default=",".join(FRAMEWORKS))
    args = parser.parse_args()
    chosen = [fw.strip() for fw in args.only.split(",") if fw.strip()]
    runs: dict[str, list[dict[str, float]]] = {fw: [] for fw in chosen}
    for run in range(args.runs):
        for fw in chosen:  # interleaved, so drift in the machine hits every framework alike
            result = one_run(fw, args.url, args.redis, args.n, args.n_single)
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
    print_table(medians)


def worker_main(argv: list[str]) -> None:
    """Entry point of a worker process."""
    framework, workload, expected = argv[0], argv[1], int(argv[2])
    rec = Recorder(os.environ["BENCH_REDIS"], workload, expected)
    WORKERS[framework](os.environ["BENCH_URL"], rec)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker_main(sys.argv[2:])
    else:
        main()
