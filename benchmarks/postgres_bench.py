r"""PostgreSQL queues side by side: lexigram-tasks vs pgqueuer, procrastinate and SAQ.

Workloads W1-W4 (benchmarks/README.md), each framework at its best documented settings, one worker
process each, every framework in its own database of the same local server:

- W1  enqueue N no-op jobs one by one, and in bulk (the framework's batch API)
- W2  drain N pre-enqueued no-op jobs with one worker process
- W3  enqueue-to-start latency p50/p99 at a steady rate (default 500 jobs/s)
- W4  2,000 jobs of ``sleep(0.05)`` at concurrency 100 (ideal: 1.0 s)

The parent process orchestrates; each measurement runs in a fresh child process
(``--child``) so frameworks never share an event loop, a pool or an import. For W3 the
parent is the producer and the child is the worker. Results are the median of
``--runs`` runs, printed as a table with ratios to lexigram-tasks. Nothing is asserted.

Setup (competitors never enter the project's dependencies)::

    uv venv benchmarks/.venv-postgres --python 3.11
    uv pip install --python benchmarks/.venv-postgres/bin/python pgqueuer procrastinate \\
        "saq[postgres]" asyncpg "psycopg[binary]" psycopg-pool \\
        -e packages/lexigram-contracts-tasks -e packages/lexigram-kernel \\
        -e packages/lexigram-tasks-core -e packages/lexigram-tasks-postgres
    benchmarks/.venv-postgres/bin/python benchmarks/postgres_bench.py --runs 3
"""

# ruff: noqa: PLC0415, D102 - each framework is imported lazily, only in the child that runs it
# (the competitors exist only in the benchmark venv); adapter methods share one documented shape.

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg

ADMIN_DSN = ["postgresql://127.0.0.1:5432/test"]  # --pg; each child is given it too
FRAMEWORKS = ("lexigram", "pgqueuer", "pgqueuer-defaults", "procrastinate", "saq")
Handler = Callable[[float], Awaitable[None]]
W3_RATE_HINT = [500.0]  # the producer's rate, passed to W3 children
PGQ_BATCH_CAP = 100  # pgqueuer's fastest batch size on this machine (50: -25 %, 500: -4 %)
# W2 concurrency per framework: each at the level that drained fastest here (a swept
# 100/300/1000); procrastinate and SAQ gain nothing above 100.
W2_CONCURRENCY = {"lexigram": 1000, "pgqueuer": 1000}


DEFAULT_DATABASE = "test"


def database_for(framework: str, base: str) -> str:
    """The name of the framework's database on the server of `base`.

    ``bench_<framework>``, or ``<db>_<framework>`` when `base` names a database ``<db>``
    other than the default, so that sessions sharing a server each keep to their own.
    """
    short = framework.split("-", maxsplit=1)[0]
    database = base.rsplit("/", 1)[1].split("?", 1)[0]
    return f"bench_{short}" if database in ("", DEFAULT_DATABASE) else f"{database}_{short}"


def dsn_for(framework: str, base: str) -> str:
    """Each framework gets a database of its own on the same server."""
    return base.rsplit("/", 1)[0] + "/" + database_for(framework, base)


# --------------------------------------------------------------------------- adapters


class Lexigram:
    """lexigram-tasks: PostgresTaskQueue + WorkerPool (one worker)."""

    def __init__(self, dsn: str) -> None:
        from lexigram.tasks.backends.postgres import PostgresTaskConfig, PostgresTaskQueue
        from lexigram.tasks.config import TaskWorkerConfig
        from lexigram.tasks.execution import WorkerPool

        # The backend's defaults (a pool of 2), as the CLI worker has them.
        config = PostgresTaskConfig(dsn, queue_name="bench")
        self.queue = PostgresTaskQueue(config)
        # Imported here, not in work(): W2/W4 time work(), and importing (with
        # PYTHONDONTWRITEBYTECODE, compiling) the worker engine took 0.3 s of it, while
        # the other frameworks' modules are imported before their timed window.
        self.worker_types = (TaskWorkerConfig, WorkerPool)

    async def setup(self) -> None:
        await self.queue.connect()
        await self.queue.clear()

    async def enqueue_one(self, ts: float) -> None:
        from lexigram.contracts.tasks import Job

        (await self.queue.enqueue(Job(name="h", args=(ts,)))).unwrap()

    async def enqueue_bulk(self, stamps: list[float]) -> None:
        from lexigram.contracts.tasks import Job

        for i in range(0, len(stamps), 1000):
            await self.queue.enqueue_many([Job(name="h", args=(t,)) for t in stamps[i : i + 1000]])

    async def work(self, handler: Handler, concurrency: int, done: asyncio.Event) -> None:
        config_type, pool_type = self.worker_types
        config = config_type(max_concurrent_tasks=concurrency, poll_interval=5.0)
        pool = pool_type(self.queue, {"h": handler}, size=1, config=config)
        await pool.start()
        await done.wait()
        await pool.stop()

    async def close(self) -> None:
        await self.queue.close()


class PgQueuer:
    """pgqueuer: asyncpg driver, QueueManager with LISTEN/NOTIFY (tuned batch size)."""

    tuned = True

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def setup(self) -> None:
        from pgqueuer import AsyncpgDriver, Queries

        self.conn = await asyncpg.connect(self.dsn)
        self.queries = Queries(AsyncpgDriver(self.conn))
        if not await self.queries.has_table("pgqueuer"):
            await self.queries.install()
        await self.queries.clear_queue()

    async def enqueue_one(self, ts: float) -> None:
        await self.queries.enqueue("h", str(ts).encode())

    async def enqueue_bulk(self, stamps: list[float]) -> None:
        for i in range(0, len(stamps), 1000):
            chunk = stamps[i : i + 1000]
            await self.queries.enqueue(
                ["h"] * len(chunk), [str(t).encode() for t in chunk], [0] * len(chunk)
            )

    async def work(self, handler: Handler, concurrency: int, done: asyncio.Event) -> None:
        from pgqueuer import AsyncpgDriver, Queries, QueueManager

        conn = await asyncpg.connect(self.dsn)
        qm = QueueManager(Queries(AsyncpgDriver(conn)))

        @qm.entrypoint("h")
        async def h(job: Any) -> None:
            await handler(float(job.payload))

        if self.tuned:
            batch = max(
                1, min(concurrency // 2, PGQ_BATCH_CAP)
            )  # its docs: max_concurrent >= 2 x batch
            run = qm.run(
                batch_size=batch,
                max_concurrent_tasks=max(concurrency, 2 * batch),
                dequeue_timeout=timedelta(seconds=5),
            )
        else:
            run = qm.run()  # documented defaults: batch_size=10, no concurrency cap
        runner = asyncio.create_task(run)
        await done.wait()
        qm.shutdown.set()
        await runner
        await conn.close()

    async def close(self) -> None:
        await self.conn.close()


class PgQueuerDefaults(PgQueuer):
    """pgqueuer with its documented defaults (batch_size=10)."""

    tuned = False


_procrastinate_handler: list[Handler] = []


class Procrastinate:
    """procrastinate: PsycopgConnector, async worker with LISTEN/NOTIFY."""

    def __init__(self, dsn: str) -> None:
        import procrastinate

        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

        @self.app.task(name="h")
        async def h(ts: float) -> None:
            await _procrastinate_handler[0](ts)

        self.task = h

    async def setup(self) -> None:
        await self.app.open_async()
        connector = self.app.connector
        exists = await connector.execute_query_one_async(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS e"
        )
        if not exists["e"]:
            await self.app.schema_manager.apply_schema_async()
        await connector.execute_query_async("DELETE FROM procrastinate_jobs")

    async def enqueue_one(self, ts: float) -> None:
        await self.task.defer_async(ts=ts)

    async def enqueue_bulk(self, stamps: list[float]) -> None:
        for i in range(0, len(stamps), 1000):
            await self.task.batch_defer_async(*({"ts": t} for t in stamps[i : i + 1000]))

    async def work(self, handler: Handler, concurrency: int, done: asyncio.Event) -> None:
        _procrastinate_handler[:] = [handler]
        runner = asyncio.create_task(
            self.app.run_worker_async(
                concurrency=concurrency,
                wait=True,
                listen_notify=True,
                install_signal_handlers=False,
                delete_jobs="always",
            )
        )
        await done.wait()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner

    async def close(self) -> None:
        await self.app.close_async()


class Saq:
    """SAQ's PostgresQueue (psycopg pool), Worker with LISTEN/NOTIFY."""

    def __init__(self, dsn: str) -> None:
        from saq.queue.postgres import PostgresQueue

        self.queue = PostgresQueue.from_url(dsn, name="bench")

    async def setup(self) -> None:
        await self.queue.connect()
        async with self.queue.pool.connection() as conn:
            await conn.execute("DELETE FROM saq_jobs")

    async def enqueue_one(self, ts: float) -> None:
        await self.queue.enqueue("h", ts=ts)

    async def enqueue_bulk(self, stamps: list[float]) -> None:
        # SAQ has no batch insert: concurrent single enqueues are its bulk path.
        for i in range(0, len(stamps), 200):
            await asyncio.gather(*(self.queue.enqueue("h", ts=t) for t in stamps[i : i + 200]))

    async def work(self, handler: Handler, concurrency: int, done: asyncio.Event) -> None:
        from saq import Worker

        async def h(ctx: Any, *, ts: float) -> None:
            await handler(ts)

        worker = Worker(self.queue, functions=[("h", h)], concurrency=concurrency)
        runner = asyncio.create_task(worker.start())
        await done.wait()
        with contextlib.suppress(TimeoutError):  # its stop can hang after a backlog
            await asyncio.wait_for(worker.stop(), 10.0)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner

    async def close(self) -> None:
        await self.queue.disconnect()


ADAPTERS: dict[str, Any] = {
    "lexigram": Lexigram,
    "pgqueuer": PgQueuer,
    "pgqueuer-defaults": PgQueuerDefaults,
    "procrastinate": Procrastinate,
    "saq": Saq,
}


# --------------------------------------------------------------------------- children


async def _w1(adapter: Any, n: int, _concurrency: int) -> dict[str, Any]:
    started = time.perf_counter()
    for _ in range(n):
        await adapter.enqueue_one(time.time())
    one = n / (time.perf_counter() - started)
    await adapter.setup()  # empty again
    started = time.perf_counter()
    await adapter.enqueue_bulk([time.time()] * n)
    return {"one_by_one": one, "bulk": n / (time.perf_counter() - started)}


async def _drain(adapter: Any, n: int, concurrency: int, pause: float) -> dict[str, Any]:
    await adapter.enqueue_bulk([time.time()] * n)
    done, count = asyncio.Event(), [0]

    async def handler(_ts: float) -> None:
        if pause:
            await asyncio.sleep(pause)  # W4's simulated I/O
        count[0] += 1
        if count[0] >= n:
            done.set()

    started = time.perf_counter()
    await adapter.work(handler, concurrency, done)
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "rate": n / elapsed}


async def _w3(adapter: Any, n: int, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    done = asyncio.Event()

    async def record(ts: float) -> None:
        latencies.append(time.time() - ts)
        if len(latencies) >= n:
            done.set()

    # A framework that loses or drops jobs must not hang the run: give up after the
    # producer's duration plus 30 s and report how many arrived.
    asyncio.get_running_loop().call_later(n / W3_RATE_HINT[0] + 30.0, done.set)
    work = asyncio.create_task(adapter.work(record, concurrency, done))
    await asyncio.sleep(1.0)  # let the worker connect and LISTEN before the producer starts
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await work
    if not latencies:
        return {"p50_ms": float("inf"), "p99_ms": float("inf"), "received": 0}
    latencies.sort()
    return {
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[max(0, int(len(latencies) * 0.99) - 1)],
        "received": len(latencies),
    }


async def vacuum(dsn: str) -> None:
    """VACUUM the framework's database before a measurement.

    Every framework starts from a clean table whatever its `setup` does (pgqueuer
    truncates, the others delete): without this, dead rows of earlier runs slow down
    whoever deletes instead of truncating, more so where autovacuum is off (as on
    this project's CI server).
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM (ANALYZE)")
    finally:
        await conn.close()


async def child(framework: str, workload: str, n: int, concurrency: int) -> dict[str, Any]:
    """Run one measurement in this (child) process and return its figures."""
    adapter = ADAPTERS[framework](dsn_for(framework, ADMIN_DSN[0]))
    await adapter.setup()
    await vacuum(dsn_for(framework, ADMIN_DSN[0]))
    try:
        if workload == "w1":
            return await _w1(adapter, n, concurrency)
        if workload == "w2":
            return await _drain(adapter, n, concurrency, 0.0)
        if workload == "w4":
            return await _drain(adapter, n, concurrency, 0.05)
        if workload == "w3":
            return await _w3(adapter, n, concurrency)
        msg = f"unknown workload {workload!r}"
        raise ValueError(msg)
    finally:
        await adapter.close()


async def produce(framework: str, n: int, rate: float) -> None:
    """W3's producer: enqueue `n` jobs at `rate` per second, stamped with their send time."""
    adapter = ADAPTERS[framework](dsn_for(framework, ADMIN_DSN[0]))
    if framework.startswith("pgqueuer"):
        await adapter.setup()
    elif framework == "procrastinate":
        await adapter.app.open_async()
    elif framework == "saq":
        await adapter.queue.connect()
    else:
        await adapter.queue.connect()
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # the steady rate
        await adapter.enqueue_one(time.time())
    await adapter.close()


def run_child(
    framework: str, workload: str, n: int, concurrency: int, rate: float
) -> dict[str, Any]:
    """Run one measurement in a child process (and produce the W3 jobs from here)."""
    cmd = [sys.executable, __file__, "--child", framework, workload, str(n), str(concurrency)]
    cmd += ["--w3-rate", str(rate), "--pg", ADMIN_DSN[0]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)  # noqa: S603 - our own script
    if proc.stdout is None:
        msg = "child has no stdout"
        raise RuntimeError(msg)
    if workload == "w3":
        ready = proc.stdout.readline().strip()
        if ready != "ready":
            msg = f"W3 worker of {framework} failed to start: {ready!r}"
            raise RuntimeError(msg)
        asyncio.run(produce(framework, n, rate))
    try:
        out, _ = proc.communicate(timeout=300)
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, IndexError, ValueError) as exc:
        proc.kill()
        proc.wait()
        print(f"{framework} {workload} failed: {exc!r}", file=sys.stderr)
        return {}


async def ensure_databases() -> None:
    """Create one database per framework on the local server (once)."""
    conn = await asyncpg.connect(ADMIN_DSN[0])
    try:
        for framework in FRAMEWORKS:
            name = database_for(framework, ADMIN_DSN[0])
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


# --------------------------------------------------------------------------- table


def main() -> None:
    """Parse the arguments; run a child measurement or the whole comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--w1", type=int, default=2000, help="jobs enqueued in W1")
    parser.add_argument("--w2", type=int, default=10000, help="jobs drained in W2")
    parser.add_argument(
        "--w2-concurrency", type=int, default=0, help="0 = each framework's best (W2_CONCURRENCY)"
    )
    parser.add_argument("--w3-rate", type=float, default=500.0)
    parser.add_argument("--w3-seconds", type=float, default=6.0)
    parser.add_argument("--w4", type=int, default=2000)
    parser.add_argument("--only", default=",".join(FRAMEWORKS))
    parser.add_argument("--workloads", default="w1,w2,w3,w4", help="comma-separated subset")
    parser.add_argument(
        "--pg", default=ADMIN_DSN[0], help="server (a database other than test names theirs)"
    )
    parser.add_argument("--child", nargs=4, metavar=("FRAMEWORK", "WORKLOAD", "N", "CONC"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    ADMIN_DSN[0] = args.pg
    if args.child:
        framework, workload, n, conc = args.child
        W3_RATE_HINT[0] = args.w3_rate
        result = asyncio.run(child(framework, workload, int(n), int(conc)))
        sys.stdout.write(json.dumps(result) + "\n")
        return

    asyncio.run(ensure_databases())
    frameworks = [f for f in args.only.split(",") if f]
    w3_jobs = int(args.w3_rate * args.w3_seconds)
    plan = [
        ("w1", args.w1, 1),
        ("w2", args.w2, args.w2_concurrency),  # 0: per framework, below
        ("w3", w3_jobs, 100),
        ("w4", args.w4, 100),
    ]
    workloads = set(args.workloads.split(","))
    plan = [step for step in plan if step[0] in workloads]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in range(args.runs):
        for workload, n, conc in plan:
            for framework in frameworks:
                level = conc or W2_CONCURRENCY.get(framework, 100)
                out = run_child(framework, workload, n, level, args.w3_rate)
                results.setdefault((framework, workload), []).append(out)
                print(f"run {run + 1} {workload} {framework}: {out}", file=sys.stderr)

    print_table(args, frameworks, results)


def print_table(
    args: argparse.Namespace,
    frameworks: list[str],
    results: dict[tuple[str, str], list[dict[str, Any]]],
) -> None:
    """Print the medians as a Markdown table with ratios to lexigram-tasks."""

    def med(framework: str, workload: str, key: str) -> float:
        values = [r[key] for r in results[(framework, workload)] if key in r]
        return statistics.median(values) if values else float("nan")

    rows = [
        ("W1 enqueue one-by-one (jobs/s)", "w1", "one_by_one", True),
        ("W1 enqueue bulk (jobs/s)", "w1", "bulk", True),
        (f"W2 drain {args.w2} no-op (jobs/s)", "w2", "rate", True),
        (f"W3 p50 latency @ {args.w3_rate:g}/s (ms)", "w3", "p50_ms", False),
        (f"W3 p99 latency @ {args.w3_rate:g}/s (ms)", "w3", "p99_ms", False),
        (f"W4 {args.w4} x sleep(0.05) @100 (s, ideal 1.0)", "w4", "seconds", False),
    ]
    print(f"\nmedian of {args.runs} runs; ratio = lexigram / other (>1 = lexigram better)\n")
    header = "| workload | " + " | ".join(frameworks) + " |"
    print(header)
    print("|" + "---|" * (len(frameworks) + 1))
    for label, workload, key, higher_better in rows:
        if not any((framework, workload) in results for framework in frameworks):
            continue
        base = med("lexigram", workload, key) if "lexigram" in frameworks else None
        cells = []
        for framework in frameworks:
            value = med(framework, workload, key)
            cell = f"{value:,.1f}" if value < 100 else f"{value:,.0f}"  # noqa: PLR2004 - display
            if base is not None and framework != "lexigram" and value:
                ratio = base / value if higher_better else value / base
                cell += f" ({ratio:.2f}x)"
            cells.append(cell)
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
