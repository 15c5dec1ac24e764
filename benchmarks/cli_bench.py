"""The documented CLI worker of every framework, side by side: W2 and W4 per backend.

Each framework's worker runs as its users run it: its own command line, as a separate
process (``lexigram-tasks worker APP --concurrency 100 --burst`` with the default config
otherwise, ``arq``, ``saq``, ``taskiq worker``, ``streaq run``, ``dramatiq``, ``pgq run``,
``procrastinate worker``, ``celery worker``). One measurement:

1. the jobs are enqueued with the framework's bulk path (the producers of
   ``redis_bench.py``, ``postgres_bench.py`` and ``rabbitmq_bench.py``);
2. the worker command is started; the clock starts just before the process does;
3. every job calls the same probe (``clibench_probe``, written next to the APP modules):
   the first job notes its start, each job counts itself when it ends, and the N-th one
   writes both times to a file. Nothing else happens per job (no extra round trip);
4. ``wall`` = N / (process start to the N-th job's end): start-up, imports, connecting,
   fetching and running, every job's result stored or not as the framework stores it;
   ``steady`` = N / (first job's start to the N-th job's end);
5. the worker is stopped (lexigram exits by itself with ``--burst``; the others get SIGTERM).

Workloads: W2 = N (``--jobs``) pre-enqueued no-op jobs; W4 = 2,000 pre-enqueued jobs of
``sleep(0.05)`` at concurrency 100 (the ideal is 1.0 s of running; W4 is reported as
seconds from process start to the last job's end, plus the steady seconds).

Frameworks run interleaved within a run (run 1: all of them, run 2: all of them, ...);
the table is the median of ``--runs``, with the ratio to the fastest anchor. Settings
(results stored, concurrency, pools) are listed in benchmarks/README.md and printed with
the table.

Backends and the environment each runs in (install commands in benchmarks/README.md):

    benchmarks/.venv-redis/bin/python benchmarks/cli_bench.py redis
    benchmarks/.venv-postgres/bin/python benchmarks/cli_bench.py postgres
    benchmarks/.venv-rabbitmq/bin/python benchmarks/cli_bench.py rabbitmq

Options: ``--workloads w2,w4`` ``--jobs 10000`` ``--runs 3`` ``--frameworks a,b`` (a
subset of the backend's frameworks, in that order). Redis data goes to database 11 of
``--redis`` (FLUSHDB'd between steps: never point it at data you keep); PostgreSQL uses a
database per framework (``bench_<framework>``, or ``<db>_<framework>`` when ``--pg`` names
a database other than ``test``); RabbitMQ a throwaway virtual host per step, named after
the one ``--amqp`` names if any (``rabbitmqctl``: run on the broker's host), results in
the Redis database.
Nothing here is asserted; it prints tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CONCURRENCY = 100
W4_JOBS = 2000
W4_SLEEP = 0.05

# What every probe module starts with (cli_latency.py's too): its settings and a counter.
PROBE_HEAD = """
import json, os, threading, time

N = int(os.environ["CLIBENCH_N"])
SLEEP = float(os.environ["CLIBENCH_SLEEP"])
OUT = os.environ["CLIBENCH_OUT"]
_lock = threading.Lock()  # Dramatiq and Celery run jobs in threads
_count = 0
"""

PROBE = (
    PROBE_HEAD
    + """_first = 0.0


def start():
    global _first
    if not _first:
        _first = time.time()


def done():
    global _count
    with _lock:
        _count += 1
        if _count != N:
            return
    last = time.time()
    with open(OUT + ".tmp", "w") as out:
        json.dump({"first": _first, "last": last, "pid": os.getpid()}, out)
    os.replace(OUT + ".tmp", OUT)
"""
)

ASYNC_BODY = """
    clibench_probe.start()
    if clibench_probe.SLEEP:
        await asyncio.sleep(clibench_probe.SLEEP)
    clibench_probe.done()
"""

SYNC_BODY = """
    clibench_probe.start()
    if clibench_probe.SLEEP:
        time.sleep(clibench_probe.SLEEP)
    clibench_probe.done()
"""

HEAD = "import asyncio, os, time\nimport clibench_probe\nURL = os.environ['CLIBENCH_URL']\n"
RESULTS_URL = "os.environ['CLIBENCH_RESULTS']"

LEXIGRAM_APP = HEAD + "from lexigram.tasks import task\n\n@task\nasync def {name}(ts):" + ASYNC_BODY

# ----------------------------------------------------------------------------- Redis

REDIS_APPS = {
    "arq": HEAD
    + """from arq.connections import RedisSettings
from arq.worker import func

async def bench(ctx, ts):"""
    + ASYNC_BODY
    + """
class WorkerSettings:
    functions = [func(bench, name="bench")]
    redis_settings = RedisSettings.from_dsn(URL)
    queue_name = "bench"
    max_jobs = 100
    poll_delay = 0.01
""",
    "saq": HEAD
    + """from saq import Queue

async def bench(ctx, *, ts):"""
    + ASYNC_BODY
    + """
settings = {"queue": Queue.from_url(URL, name="bench"), "functions": [("bench", bench)],
            "concurrency": 100}
""",
    "taskiq": HEAD
    + """from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

broker = ListQueueBroker(url=URL, queue_name="bench").with_result_backend(
    RedisAsyncResultBackend(redis_url=URL))

@broker.task(task_name="bench")
async def bench(ts):"""
    + ASYNC_BODY,
    "streaq": HEAD
    + """from streaq import Worker

worker = Worker(redis_url=URL, queue_name="bench", concurrency=100)

@worker.task(name="bench")
async def bench(ts):"""
    + ASYNC_BODY,
    "dramatiq": HEAD
    + """import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

broker = RedisBroker(url=URL)
broker.add_middleware(Results(backend=RedisBackend(url=URL)))
dramatiq.set_broker(broker)

@dramatiq.actor(actor_name="bench", queue_name="bench", max_retries=0, store_results=True)
def bench(ts):"""
    + SYNC_BODY,
}

# -------------------------------------------------------------------------- PostgreSQL

POSTGRES_APPS = {
    "pgqueuer": HEAD
    + """import contextlib
import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver

@contextlib.asynccontextmanager
async def main():
    conn = await asyncpg.connect(URL)
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("h")
    async def h(job):
        ts = float(job.payload)"""
    + ASYNC_BODY.replace("\n    ", "\n        ")
    + """
    yield pgq
    await conn.close()
""",
    "procrastinate": HEAD
    + """import procrastinate

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=URL))

@app.task(name="h")
async def h(ts):"""
    + ASYNC_BODY,
}

# ---------------------------------------------------------------------------- RabbitMQ

RABBITMQ_APPS = {
    "taskiq": HEAD
    + f"""from taskiq_aio_pika import AioPikaBroker
from taskiq_redis import RedisAsyncResultBackend

broker = AioPikaBroker(url=URL, qos=100).with_result_backend(
    RedisAsyncResultBackend(redis_url={RESULTS_URL}))

@broker.task(task_name="bench")
async def bench(ts):"""
    + ASYNC_BODY,
    "dramatiq": HEAD
    + f"""import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

broker = RabbitmqBroker(url=URL)
broker.add_middleware(Results(backend=RedisBackend(url={RESULTS_URL})))
dramatiq.set_broker(broker)

@dramatiq.actor(actor_name="bench", queue_name="bench", max_retries=0, store_results=True)
def bench(ts):"""
    + SYNC_BODY,
    "celery": HEAD
    + f"""from celery import Celery

app = Celery("clibench_celery", broker=URL, backend={RESULTS_URL})
app.conf.update(task_default_queue="bench", broker_connection_retry_on_startup=True)

@app.task(name="bench")
def bench(ts):"""
    + SYNC_BODY,
}

LEXIGRAM_RABBITMQ_CONFIG = """
tasks:
  backend:
    type: rabbitmq
    url: "{url}"
    queue_name: bench
    options:
      stores: "{results}"
"""


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


# The documented worker: its defaults but the concurrency (and --burst to exit).
LEXIGRAM = ["lexigram-tasks", "worker", "clibench_lexigram", "--concurrency", "100", "--burst"]
TASKIQ = ["taskiq", "worker", "clibench_taskiq:broker", "--workers", "1"]
TASKIQ += ["--max-async-tasks", "100"]
DRAMATIQ = ["dramatiq", "clibench_dramatiq", "--processes", "1", "--threads", "100"]
CELERY = ["celery", "-A", "clibench_celery", "worker", "--pool", "threads", "--concurrency"]
CELERY += ["100", "--queues", "bench", "--without-gossip", "--without-mingle"]
PGQUEUER = ["pgq", "run", "clibench_pgqueuer:main", "--batch-size", "50"]
PGQUEUER += ["--max-concurrent-tasks", "100"]
PROCRASTINATE = ["procrastinate", "--app", "clibench_procrastinate.app", "worker"]
PROCRASTINATE += ["--concurrency", "100"]

# Per backend and framework: the command (its first word a script of this environment);
# {url} is the broker's URL, {app_dir} the scratch directory holding the APP modules.
COMMANDS: dict[str, dict[str, list[str]]] = {
    "redis": {
        "lexigram": [*LEXIGRAM, "--backend", "{url}", "--queue", "bench"],
        "arq": ["arq", "clibench_arq.WorkerSettings"],
        "saq": ["saq", "clibench_saq.settings"],
        "taskiq": TASKIQ,
        "streaq": ["streaq", "run", "clibench_streaq:worker"],
        "dramatiq": DRAMATIQ,
    },
    "postgres": {
        "lexigram": [*LEXIGRAM, "--backend", "{url}", "--queue", "bench"],
        "pgqueuer": PGQUEUER,
        "procrastinate": PROCRASTINATE,
    },
    "rabbitmq": {
        "lexigram": [*LEXIGRAM, "--config", "{app_dir}/lexigram-rabbitmq.yaml"],
        # Nothing to configure without stores: the command line alone, as on the others.
        "lexigram-memory": [*LEXIGRAM, "--backend", "{url}", "--queue", "bench"],
        "taskiq": TASKIQ,
        "dramatiq": DRAMATIQ,
        "celery": CELERY,
    },
}

DEFAULT_FRAMEWORKS = {
    "redis": ("lexigram", "arq", "saq", "taskiq", "streaq", "dramatiq"),
    "postgres": ("lexigram", "pgqueuer"),
    "rabbitmq": ("lexigram", "taskiq", "dramatiq", "celery", "lexigram-memory"),
}

SETTINGS = {
    "lexigram": "`lexigram-tasks worker APP --concurrency 100 --burst`, default config: one "
    "process, results stored (Redis/PostgreSQL result store of the backend; on RabbitMQ "
    "`stores: redis://`, the documented way to keep results)",
    "arq": "`arq WorkerSettings`: max_jobs 100, poll_delay 10 ms (default 500 ms); results "
    "kept by default (keep_result 3,600 s)",
    "saq": "`saq settings`: concurrency 100; the finished job with its result kept by "
    "default (ttl 600 s)",
    "taskiq": "`taskiq worker --workers 1 --max-async-tasks 100`; RedisAsyncResultBackend",
    "streaq": "`streaq run`: concurrency 100; results kept by default (ttl 5 min)",
    "dramatiq": "`dramatiq --processes 1 --threads 100`; Results middleware, RedisBackend, "
    "`store_results=True`",
    "pgqueuer": "`pgq run --batch-size 50 --max-concurrent-tasks 100` (its docs: concurrency "
    ">= 2x batch); no return values, each job's end status logged in its log table",
    "procrastinate": "`procrastinate worker --concurrency 100`; job rows kept with their "
    "status (no return values)",
    "lexigram-memory": "the same on RabbitMQ without `stores`: the CLI's true default, "
    "results kept in the worker's memory only (lost when it exits); not the like-for-like row",
    "celery": "`celery worker --pool threads --concurrency 100 --without-gossip "
    "--without-mingle`; Redis result backend",
}


# --------------------------------------------------------------------------- one step


@dataclass
class Step:
    """One measurement's outcome."""

    wall: float  # seconds, process start to the N-th job's end
    steady: float  # seconds, first job's start to the N-th job's end


def precompile(app_dir: Path) -> None:
    """Compile every module the workers import, as installing a package does.

    pip writes the bytecode of what it installs; uv and an editable install do not, and
    with PYTHONDONTWRITEBYTECODE set (as on some CI machines) every worker would compile
    its imports from source at each start: over a second of "start-up" that no installed
    application pays. Compiled once here, for every framework alike.
    """
    import sysconfig  # noqa: PLC0415

    roots = [sysconfig.get_paths()["purelib"], str(app_dir)]
    roots += [str(src) for src in sorted((HERE.parent / "packages").glob("*/src"))]
    subprocess.run(  # noqa: S603 - a fixed argument list
        [sys.executable, "-m", "compileall", "-q", "-j", "0", *roots],
        check=False,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
    )


def run_cli(command: list[str], env: dict[str, str], app_dir: Path, out: Path) -> Step:
    """Start the worker, wait for the probe's file, stop the worker."""
    log = (app_dir / "worker.log").open("wb")
    started = time.time()
    proc = subprocess.Popen(  # noqa: S603 - fixed argument lists
        command, env=env, cwd=app_dir, stdout=log, stderr=log, start_new_session=True
    )
    try:
        deadline = started + 120
        while not out.exists():
            if proc.poll() is not None and not out.exists():
                tail = (app_dir / "worker.log").read_text(errors="replace")[-2000:]
                msg = f"{command[0]} exited {proc.returncode} before the last job:\n{tail}"
                raise RuntimeError(msg)
            if time.time() > deadline:
                msg = f"{command[0]} did not finish within 120 s"
                raise RuntimeError(msg)
            time.sleep(0.02)
        data = json.loads(out.read_text())
    finally:
        if proc.poll() is None:
            try:
                proc.wait(1.0 if "--burst" in command else 0.0)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        log.close()
    return Step(wall=data["last"] - started, steady=data["last"] - data["first"])


@dataclass
class Bench:
    """One backend's runner: fills the queue with the reused producers, runs the CLIs."""

    backend: str
    args: argparse.Namespace
    app_dir: Path
    figures: dict[tuple[str, str], list[Step]] = field(default_factory=dict)

    def write_apps(self) -> None:
        """Write the probe and every framework's APP module into the scratch directory."""
        (self.app_dir / "clibench_probe.py").write_text(PROBE, encoding="utf-8")
        name = "h" if self.backend == "postgres" else "bench"
        apps = {"redis": REDIS_APPS, "postgres": POSTGRES_APPS, "rabbitmq": RABBITMQ_APPS}
        modules = {"lexigram": LEXIGRAM_APP.format(name=name), **apps[self.backend]}
        for framework, source in modules.items():
            (self.app_dir / f"clibench_{framework}.py").write_text(source, encoding="utf-8")

    def env(self, url: str, jobs: int, sleep: float, out: Path) -> dict[str, str]:
        """The worker's environment: where to connect and what the probe waits for."""
        return {
            **os.environ,
            "PYTHONPATH": str(self.app_dir),
            "CLIBENCH_URL": url,
            "CLIBENCH_RESULTS": self.args.redis,
            "CLIBENCH_N": str(jobs),
            "CLIBENCH_SLEEP": str(sleep),
            "CLIBENCH_OUT": str(out),
        }

    def step(self, framework: str, workload: str) -> Step:
        """Fill the queue, run the framework's worker command once, clean up."""
        jobs = self.args.jobs if workload == "w2" else W4_JOBS
        sleep = 0.0 if workload == "w2" else W4_SLEEP
        out = self.app_dir / "done.json"
        out.unlink(missing_ok=True)
        fill = {"redis": self.fill_redis, "postgres": self.fill_postgres}
        cleanup: Callable[[], None] = lambda: None  # noqa: E731
        if self.backend == "rabbitmq":
            url, cleanup = self.fill_rabbitmq(framework, jobs)
        else:
            url = fill[self.backend](framework, jobs)
        try:
            template = COMMANDS[self.backend][framework]
            command = [_bin(template[0])]
            command += [part.format(url=url, app_dir=self.app_dir) for part in template[1:]]
            return run_cli(command, self.env(url, jobs, sleep, out), self.app_dir, out)
        finally:
            cleanup()

    def fill_redis(self, framework: str, jobs: int) -> str:
        """Empty database 11, enqueue the jobs with redis_bench's producer."""
        import redis_bench  # noqa: PLC0415

        import redis  # noqa: PLC0415

        url = self.args.redis
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
        producer = redis_bench.Producer(framework, url)
        try:
            producer.run(producer.bulk(jobs, time.time()))
        finally:
            producer.close()
        return url

    def fill_postgres(self, framework: str, jobs: int) -> str:
        """Empty the framework's database, enqueue with postgres_bench's adapter, vacuum."""
        import postgres_bench  # noqa: PLC0415

        dsn = postgres_bench.dsn_for(framework, self.args.pg)

        async def fill() -> None:
            adapter = postgres_bench.ADAPTERS[framework](dsn)
            await adapter.setup()
            if framework == "lexigram":  # its result store's table, emptied like the queue
                await _truncate_lexigram_results(dsn)
            try:
                if jobs:
                    await adapter.enqueue_bulk([time.time()] * jobs)
            finally:
                await adapter.close()
            await postgres_bench.vacuum(dsn)

        asyncio.run(fill())
        return dsn

    def rabbitmq_stores(self, framework: str) -> str | None:
        """The `stores:` URL of the framework's RabbitMQ config (its producer's too)."""
        return self.args.redis if framework == "lexigram" else None

    def fill_rabbitmq(self, framework: str, jobs: int) -> tuple[str, Callable[[], None]]:
        """A fresh virtual host filled by rabbitmq_bench's producer; results go to Redis."""
        import rabbitmq_bench  # noqa: PLC0415

        import redis  # noqa: PLC0415

        client = redis.Redis.from_url(self.args.redis)
        client.flushdb()
        client.close()
        vhost = rabbitmq_bench.VirtualHost(self.args.amqp)
        producer = rabbitmq_bench.Producer(
            framework.split("-", maxsplit=1)[0], vhost.url, self.rabbitmq_stores(framework)
        )
        try:
            producer.run(producer.bulk(jobs, time.time()))
        finally:
            producer.close()
        config = LEXIGRAM_RABBITMQ_CONFIG.format(url=vhost.url, results=self.args.redis)
        (self.app_dir / "lexigram-rabbitmq.yaml").write_text(config, encoding="utf-8")
        return vhost.url, vhost.delete


async def _truncate_lexigram_results(dsn: str) -> None:
    import asyncpg  # noqa: PLC0415

    conn = await asyncpg.connect(dsn)
    try:
        # The database is the benchmark's own (bench_lexigram): every result table in it,
        # whichever schema the backend keeps its tables in.
        tables = await conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            " AND tablename LIKE '%result%'"
        )
        for row in tables:
            await conn.execute(f'TRUNCATE "{row["schemaname"]}"."{row["tablename"]}"')
    finally:
        await conn.close()


# ----------------------------------------------------------------------------- report


def versions(frameworks: list[str]) -> str:
    """The installed versions of what was measured."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    names = {
        "lexigram": "lexigram-tasks-core",
        "lexigram-memory": "lexigram-tasks-rabbitmq",
        "arq": "arq",
        "saq": "saq",
        "taskiq": "taskiq",
        "streaq": "streaq",
        "dramatiq": "dramatiq",
        "pgqueuer": "pgqueuer",
        "procrastinate": "procrastinate",
        "celery": "celery",
    }
    extra = ["redis", "hiredis", "taskiq-redis", "taskiq-aio-pika", "asyncpg", "aio-pika"]
    parts = []
    for name in [names[f] for f in frameworks] + extra:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts) + f"; Python {platform.python_version()}"


def print_tables(bench: Bench, frameworks: list[str], workloads: list[str]) -> None:
    """One table per workload: per-run figures, medians, ratio to the fastest anchor."""
    args = bench.args
    for workload in workloads:
        jobs = args.jobs if workload == "w2" else W4_JOBS
        print(f"\n### {bench.backend} {workload.upper()} ({jobs:,} jobs, median of {args.runs})")
        if workload == "w2":
            print("| framework | wall jobs/s (start to N-th) | steady jobs/s | per run (wall) |")
        else:
            print("| framework | wall s (start to last) | steady s (ideal 1.0) | per run (wall) |")
        print("|---|---:|---:|---|")
        medians: dict[str, tuple[float, float]] = {}
        for framework in frameworks:
            steps = bench.figures.get((framework, workload), [])
            if not steps:
                print(f"| {framework} | n/a | n/a | |")
                continue
            wall = statistics.median(s.wall for s in steps)
            steady = statistics.median(s.steady for s in steps)
            medians[framework] = (wall, steady)
            if workload == "w2":
                per_run = " / ".join(f"{jobs / s.wall:,.0f}" for s in steps)
                print(f"| {framework} | {jobs / wall:,.0f} | {jobs / steady:,.0f} | {per_run} |")
            else:
                per_run = " / ".join(f"{s.wall:.2f}" for s in steps)
                print(f"| {framework} | {wall:.2f} | {steady:.2f} | {per_run} |")
        anchors = {f: m for f, m in medians.items() if not f.startswith("lexigram")}
        if "lexigram" in medians and anchors:
            best = min(anchors, key=lambda f: anchors[f][0])
            ratio_wall = anchors[best][0] / medians["lexigram"][0]
            best_steady = min(anchors, key=lambda f: anchors[f][1])
            ratio_steady = anchors[best_steady][1] / medians["lexigram"][1]
            kind = "rate" if workload == "w2" else "speed"
            print(
                f"lexigram / fastest anchor ({kind}): wall {ratio_wall:.2f}x ({best}), "
                f"steady {ratio_steady:.2f}x ({best_steady})"
            )


def main() -> None:
    """Parse the options, run every step interleaved, print the tables."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("backend", choices=sorted(COMMANDS))
    parser.add_argument("--workloads", default="w2,w4")
    parser.add_argument("--jobs", type=int, default=10_000, help="W2 jobs (default 10,000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frameworks", default="", help="comma-separated subset")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--pg", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672")
    args = parser.parse_args()
    frameworks = (
        args.frameworks.split(",") if args.frameworks else list(DEFAULT_FRAMEWORKS[args.backend])
    )
    workloads = args.workloads.split(",")
    if args.backend == "postgres":
        import postgres_bench  # noqa: PLC0415

        postgres_bench.ADMIN_DSN[0] = args.pg
        asyncio.run(postgres_bench.ensure_databases())
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="clibench-") as scratch:
        bench = Bench(args.backend, args, Path(scratch))
        bench.write_apps()
        precompile(bench.app_dir)
        for workload in workloads:
            for run in range(1, args.runs + 1):
                for framework in frameworks:
                    try:
                        step = bench.step(framework, workload)
                    except Exception as error:  # reported, the run goes on
                        print(f"{workload} run {run} {framework}: FAILED {error}", flush=True)
                        continue
                    bench.figures.setdefault((framework, workload), []).append(step)
                    load = os.getloadavg()[0]
                    print(
                        f"{workload} run {run} {framework:14} wall {step.wall:7.3f} s"
                        f"  steady {step.steady:7.3f} s  (load {load:.2f})",
                        flush=True,
                    )
    print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    print(f"versions: {versions(frameworks)}")
    for framework in frameworks:
        print(f"- {framework}: {SETTINGS[framework]}")
    print_tables(bench, frameworks, workloads)


if __name__ == "__main__":
    main()
