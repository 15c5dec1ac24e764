r"""Cost as work grows: enqueue and drain rates and worker memory against the backlog depth.

For each backend and backlog depth (default 10k, 100k, 1M waiting jobs):

1. a fresh queue (a private database, file, server or node; see below) is filled with
   as many no-op jobs as the depth through the bulk path (``enqueue_many``, 1,000 per call, from
   this process): the **enqueue rate** is depth / fill time;
2. the documented CLI worker is started, ``lexigram-tasks worker APP --concurrency 100``
   with every other default (results stored by the backend's default result store; on
   RabbitMQ that is the worker's memory), and for 2 and 4 processes the CLI's own
   ``--workers N`` (one supervisor, N worker processes, one queue);
3. the **drain rate** is counted the way ``cli_bench.py`` counts: the APP and job body are
   its own (``cli_bench.LEXIGRAM_APP``), each job counts itself when it ends, inside its
   worker process. The probe here adds one line per 100 completions per process to a
   file, so several processes can be summed. The first ``--warmup`` completions (start-up,
   connecting, the first batches) are skipped; the rate is over the next ``--window``
   completions. Both are fixed for every depth, and warmup + window stays below the
   smallest depth so the queue never runs dry inside the window;
4. the worker processes' RSS (from /proc) is sampled every 0.2 s: **steady** is the median
   of the samples inside the window (the largest worker process), **peak** its high-water
   mark (VmHWM) when the window ends; the worker then gets SIGTERM (jobs it leased are
   handed back);
5. every queue of a backend (one per depth, plus the delayed case) is filled before the
   first measurement; then each round visits every queue and process count in turn
   (round 1: 10k x 1, 2, 4 processes, 100k x 1, 2, 4, ...; round 2: ...), so a change of
   the machine's load touches every depth alike; before each measurement the queue is
   topped up to its depth again. Medians of the rounds are reported;
6. CPU per job (user + system, from /proc, in 10 ms ticks) of the worker processes, and
   of the broker's processes where they are this case's alone (the private redis-server
   and RabbitMQ node, the PostgreSQL backends connected to the private database), over
   the window: a figure the machine's load moves far less than the wall-clock rate. A
   worker process is counted from its first job on (a child still importing while the
   others drain is not charged to the jobs).

The delayed case: ``--delayed`` jobs (default 100k) scheduled an hour ahead, then
``--ready`` (default 10k) ready ones; the drain rate of the ready ones, one process, the
same warmup and window. Compare it with the 10k row: a scan over delayed jobs shows here.

Where each backend's data lives (every case starts empty and is removed afterwards):

- ``sqlite``: a new database file in a temporary directory;
- ``redis``: a private ``redis-server`` on a free loopback port, persistence as the shared
  one's defaults here (``save ""``, no AOF), so 1M jobs never land in a shared server and
  its SLOWLOG/INFO commandstats can be read and reset (``--redis URL`` uses a server you
  name instead, with a unique queue name whose keys are deleted after; the stored
  results, keyed by job id, are left to the result store's TTL);
- ``postgres``: a private database ``backlog_<hex>`` created on ``--pg``'s server and
  dropped (``WITH (FORCE)``) after the case;
- ``rabbitmq``: a private RabbitMQ node on loopback ports (``tests-chaos/brokers.py``'s
  ``RabbitMQBroker``, memory watermark capped at 2 GB) so a 1M backlog cannot trip the
  shared broker's alarms; ``--amqp URL`` uses a broker you name (unique queue, deleted);
- ``memory``: in-process, necessarily: no CLI worker can share an in-memory queue. One
  child process fills a ``MemoryTaskQueue`` and runs one ``TaskWorker`` (concurrency 100,
  ``InMemoryResultStore``) on it; its RSS includes the backlog it holds. Only 1 process,
  and the depths run one after the other (one child each), not interleaved.

Usage (progress goes to stderr, the tables to stdout)::

    .venv/bin/python benchmarks/backlog_bench.py --backends sqlite,redis,postgres
    .venv/bin/python benchmarks/backlog_bench.py --backends rabbitmq,memory \
        --depths 10000,100000 --rounds 3

Nothing is asserted; it prints tables.
"""

# ruff: noqa: PLC0415, S603, S607 - backends are imported lazily by the process that uses
# them; the worker, redis-server and the RabbitMQ node start from fixed argument lists.

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests-chaos"))

import cli_bench  # noqa: E402 - found through the path set just above

CHECKPOINT = 100  # completions per process between two probe lines
RUN_TIMEOUT = 600.0  # seconds from the worker's start to the end of its window
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROGRESS_EVERY = 10.0  # seconds between two progress lines of a long fill

# The module cli_bench's APP imports as `clibench_probe`: the same start()/done() calls,
# counted at the same point; it appends "pid count time" every CHECKPOINT completions
# (count 0: the first job's start) so that the parent can add up several processes.
PROBE = """
import os, time

CHECKPOINT = int(os.environ["BACKLOG_CHECKPOINT"])
SLEEP = 0.0
_fd = -1
_count = 0


def _line(count, when):
    global _fd
    if _fd < 0:
        _fd = os.open(os.environ["CLIBENCH_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, f"{os.getpid()} {count} {when}\\n".encode())


def start():
    if _fd < 0:
        _line(0, time.time())


def done():
    global _count
    _count += 1
    if _count % CHECKPOINT == 0:
        _line(_count, time.time())


def completed():
    return _count
"""


def log(message: str) -> None:
    """Progress goes to stderr, with the time and the load average."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ measurements


@dataclass
class Run:
    """One worker run: its drain rate over the window and its memory."""

    rate: float  # jobs/s over the window
    startup: float  # seconds, worker process start to the first job's start
    rss_steady: float  # MiB, median of the largest worker process's samples in the window
    rss_peak: float  # MiB, the largest worker process's VmHWM at the window's end
    rss_anon: float  # MiB, its anonymous part (steady): RSS less mapped file pages
    worker_cpu: float  # CPU ms per job of the worker processes, inside the window
    broker_cpu: float | None  # CPU ms per job of the broker's processes (None: in-process)


@dataclass
class Case:
    """One backend and depth (or the delayed case): its fill and its runs per process count."""

    enqueue_rate: float = 0.0
    runs: dict[int, list[Run]] = field(default_factory=dict)
    note: str = ""


def window_rate(lines: list[tuple[int, int, float]], warmup: int, window: int) -> float | None:
    """Jobs/s between the moment `warmup` completions were reached and `warmup + window`."""
    latest: dict[int, int] = {}
    total = 0
    begin: tuple[float, int] | None = None
    for pid, count, when in sorted(lines, key=lambda line: line[2]):
        total += count - latest.get(pid, 0)
        latest[pid] = count
        if begin is None and total >= warmup:
            begin = (when, total)
        if begin is not None and total >= warmup + window:
            return (total - begin[1]) / (when - begin[0])
    return None


def read_probe(path: Path) -> list[tuple[int, int, float]]:
    """The probe's lines: (pid, completions so far, time)."""
    if not path.exists():
        return []
    lines = []
    for raw in path.read_text().splitlines():
        parts = raw.split()
        if len(parts) == len(("pid", "count", "time")):
            lines.append((int(parts[0]), int(parts[1]), float(parts[2])))
    return lines


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM and RssAnon of `pid` in KiB (empty once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon"):
            values[key] = int(rest.split()[0])
    return values


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds `pids` have used so far (the ones still running)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLOCK_TICKS


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's process group (a drain), SIGKILL it after 30 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Sampler:
    """RSS and CPU samples of the worker processes (and the broker's) during one run."""

    def __init__(self, home: Home, warmup: int) -> None:
        self.home = home
        self.warmup = warmup
        self.rss: list[tuple[int, int]] = []  # (VmRSS, RssAnon) of the largest worker, KiB
        # (completions, CPU s of each worker process that has started a job, broker CPU s)
        self.cpu: list[tuple[int, dict[int, float], float]] = []
        self.broker: list[int] | None = None
        self.peak = 0

    def take(self, lines: list[tuple[int, int, float]], last: bool) -> None:
        """One sample, once the warmup is over (and always at the window's end)."""
        workers = sorted({pid for pid, _, _ in lines})
        if not workers:
            return
        statuses = [proc_status(pid) for pid in workers]
        self.peak = max([self.peak, *(s.get("VmHWM", 0) for s in statuses)])
        total = sum(lines_by_pid_max(lines).values())
        if total < self.warmup and not last:
            return
        largest = max(statuses, key=lambda s: s.get("VmRSS", 0))
        self.rss.append((largest.get("VmRSS", 0), largest.get("RssAnon", 0)))
        if self.broker is None:
            self.broker = self.home.broker_pids()
        used = {pid: cpu_seconds([pid]) for pid in workers}
        self.cpu.append((total, used, cpu_seconds(self.broker)))

    def run(self, rate: float, startup: float) -> Run:
        """The run's figures from the samples."""
        cpu = self.cpu
        jobs = max(cpu[-1][0] - cpu[0][0], 1)
        # A process is counted from the first sample after its first job: a child still
        # importing while the others drain is not charged to the jobs.
        since = {pid: used for _, sample, _ in reversed(cpu) for pid, used in sample.items()}
        worker_s = sum(cpu[-1][1].get(pid, 0.0) - used for pid, used in since.items())
        broker_ms = (cpu[-1][2] - cpu[0][2]) * 1000 / jobs if self.broker else None
        return Run(
            rate=rate,
            startup=startup,
            rss_steady=statistics.median(rss for rss, _ in self.rss) / 1024,
            rss_peak=self.peak / 1024,
            rss_anon=statistics.median(anon for _, anon in self.rss) / 1024,
            worker_cpu=worker_s * 1000 / jobs,
            broker_cpu=broker_ms,
        )


def run_cli_worker(home: Home, processes: int, scratch: Path, args: argparse.Namespace) -> Run:
    """Start the documented worker, measure the window, stop it."""
    out = scratch / "probe.log"
    out.unlink(missing_ok=True)
    command = [cli_bench._bin("lexigram-tasks"), "worker", "clibench_lexigram"]  # noqa: SLF001
    command += ["--concurrency", str(cli_bench.CONCURRENCY), "--backend", home.url]
    command += ["--queue", home.queue]
    if processes > 1:
        command += ["--workers", str(processes)]
    env = {
        **os.environ,
        "PYTHONPATH": str(scratch),
        "CLIBENCH_OUT": str(out),
        "BACKLOG_CHECKPOINT": str(CHECKPOINT),
        "CLIBENCH_URL": home.url,  # cli_bench's APP module reads it at import
    }
    worker_log = (scratch / "worker.log").open("ab")
    sampler = Sampler(home, args.warmup)
    started = time.time()
    proc = subprocess.Popen(
        command, env=env, cwd=scratch, stdout=worker_log, stderr=worker_log,
        start_new_session=True,
    )  # fmt: skip
    try:
        while True:
            lines = read_probe(out)
            rate = window_rate(lines, args.warmup, args.window)
            sampler.take(lines, last=rate is not None)
            if rate is not None:
                break
            if proc.poll() is not None:
                tail = (scratch / "worker.log").read_text(errors="replace")[-2000:]
                msg = f"the worker exited ({proc.returncode}) before the window ended:\n{tail}"
                raise RuntimeError(msg)
            if time.time() - started > RUN_TIMEOUT:
                msg = f"the window did not end within {RUN_TIMEOUT:.0f} s"
                raise RuntimeError(msg)
            time.sleep(0.2)
    finally:
        stop(proc)
        worker_log.close()
    first = min(when for _, count, when in lines if count == 0)
    return sampler.run(rate, first - started)


def lines_by_pid_max(lines: list[tuple[int, int, float]]) -> dict[int, int]:
    """The latest completion count each process reported."""
    counts: dict[int, int] = {}
    for pid, count, _ in lines:
        counts[pid] = max(counts.get(pid, 0), count)
    return counts


# --------------------------------------------------------------------------- producers


def queue_spec(kind: str, url: str, queue: str) -> Any:
    """The spec the worker's `--backend URL --queue NAME` builds (defaults otherwise)."""
    from lexigram.contracts.tasks import TaskBackendSpec

    return TaskBackendSpec(type=kind, url=url, queue_name=queue)


async def open_queue(kind: str, url: str, queue: str) -> Any:
    """A producer's handle on the queue, through the same factory the worker uses."""
    from lexigram.tasks._backends import create_queue

    handle = create_queue(queue_spec(kind, url, queue))
    connect = getattr(handle, "connect", None)
    if connect is not None:
        await connect()
    return handle


async def enqueue(handle: Any, count: int, *, delay: float = 0.0, progress: str = "") -> float:
    """Enqueue `count` no-op jobs with `enqueue_many`, 1,000 per call; return the seconds."""
    from lexigram.contracts.tasks import Job

    when = time.time() + delay if delay else None
    started = time.perf_counter()
    reported = started
    for first in range(0, count, 1000):
        size = min(1000, count - first)
        jobs = [Job(name="bench", args=(0.0,), scheduled_at=when) for _ in range(size)]
        results = await handle.enqueue_many(jobs)
        failed = [r for r in results if not r.is_ok()]
        if failed:
            msg = f"enqueue_many refused {len(failed)} jobs: {failed[0]}"
            raise RuntimeError(msg)
        if progress and time.perf_counter() - reported > PROGRESS_EVERY:
            reported = time.perf_counter()
            log(f"{progress}: {first + size:,} / {count:,} enqueued")
    return time.perf_counter() - started


# ------------------------------------------------------------------------ backend homes


class Home:
    """Where one case's queue lives: `url` for the worker, `close()` removes everything."""

    kind = ""
    url = ""
    queue = "bench"

    def close(self) -> None:
        """Remove the case's data."""

    def broker_pids(self) -> list[int]:
        """The processes serving this case's queue (measured for CPU per job)."""
        return []


class SQLiteHome(Home):
    """A new SQLite file in a temporary directory."""

    kind = "sqlite"

    def __init__(self, scratch: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sqlite-", dir=scratch))
        self.url = f"sqlite:///{self.dir / 'tasks.db'}"

    def close(self) -> None:
        """Remove the file."""
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisHome(Home):
    """A private redis-server (or, with a URL, a unique queue on that server)."""

    kind = "redis"

    def __init__(self, scratch: Path, url: str) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="redis-", dir=scratch))
        if url:
            self.url = url
            self.queue = f"backlog-{uuid.uuid4().hex[:8]}"
            return
        from brokers import _wait_port, free_port

        port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(port, 10.0)
        self.url = f"redis://127.0.0.1:{port}/0"

    def broker_pids(self) -> list[int]:
        """The private redis-server (a shared server's CPU is not this case's alone)."""
        return [] if self.proc is None else [self.proc.pid]

    def close(self) -> None:
        """Stop the private server (its data was in memory), or delete the queue's keys."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
        else:
            import redis

            client = redis.Redis.from_url(self.url)
            for key in client.scan_iter(match=f"*{self.queue}*", count=10_000):
                client.unlink(key)
            client.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresHome(Home):
    """A private database on the server of `base` (created here, dropped by close)."""

    kind = "postgres"

    def __init__(self, base: str) -> None:
        self.base = base
        self.name = f"backlog_{uuid.uuid4().hex[:8]}"
        asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))
        self.url = base.rsplit("/", 1)[0] + "/" + self.name

    def broker_pids(self) -> list[int]:
        """The server processes connected to the private database right now."""

        async def query() -> list[int]:
            import asyncpg

            conn = await asyncpg.connect(self.url)
            try:
                rows = await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> "
                    "pg_backend_pid()",
                    self.name,
                )
            finally:
                await conn.close()
            return [int(row["pid"]) for row in rows]

        return asyncio.run(query())

    async def _admin(self, statement: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.base)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    def close(self) -> None:
        """Drop the private database, whoever is still connected."""
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


class RabbitMQHome(Home):
    """A private RabbitMQ node (or, with a URL, a unique queue on that broker)."""

    kind = "rabbitmq"

    def __init__(self, scratch: Path, url: str) -> None:
        self.node: Any = None
        if url:
            self.url = url
            self.queue = f"backlog-{uuid.uuid4().hex[:8]}"
            return
        from brokers import RabbitMQBroker

        self.node = RabbitMQBroker(scratch)
        with (self.node.root / "rabbitmq.conf").open("a") as conf:
            conf.write("vm_memory_high_watermark.absolute = 2GB\n")
        self.node.start()
        self.url = self.node.url

    def broker_pids(self) -> list[int]:
        """The private node's Erlang VM."""
        return [] if self.node is None else [self.node.pid]

    def close(self) -> None:
        """Stop the private node and remove its data, or delete the queues."""
        if self.node is not None:
            self.node.stop()
            return

        async def delete() -> None:
            import aio_pika

            connection = await aio_pika.connect(self.url)
            async with connection:
                channel = await connection.channel()
                for name in (self.queue, f"{self.queue}.delayed", f"{self.queue}.dlq"):
                    with contextlib.suppress(Exception):
                        await channel.queue_delete(name)

        asyncio.run(delete())


def make_home(kind: str, scratch: Path, args: argparse.Namespace) -> Home:
    """A fresh place for one case of `kind`."""
    if kind == "sqlite":
        return SQLiteHome(scratch)
    if kind == "redis":
        return RedisHome(scratch, args.redis)
    if kind == "postgres":
        return PostgresHome(args.pg)
    return RabbitMQHome(scratch, args.amqp)


# ------------------------------------------------------------------------------ cases


@dataclass
class Target:
    """One queue under measurement: its home, the producer's handle, its figures."""

    label: str
    ready: int
    delayed: int
    processes: list[int]
    home: Home
    handle: Any = None
    case: Case = field(default_factory=Case)


def run_backend(
    kind: str, specs: list[tuple[str, int, int]], args: argparse.Namespace, scratch: Path
) -> dict[str, Case]:
    """Fill one fresh queue per (name, ready, delayed), then measure them interleaved.

    Every queue is filled first; then each round visits every queue and process count in
    turn, so a change in the machine's load touches every depth alike.
    """
    loop = asyncio.new_event_loop()
    targets: list[Target] = []
    try:
        for name, ready, delayed in specs:
            label = f"{kind} {name}"
            processes = args.processes if not delayed else [1]
            target = Target(label, ready, delayed, processes, make_home(kind, scratch, args))
            targets.append(target)
            home = target.home
            target.handle = loop.run_until_complete(open_queue(kind, home.url, home.queue))
            if delayed:
                loop.run_until_complete(
                    enqueue(target.handle, delayed, delay=3600.0, progress=label)
                )
            seconds = loop.run_until_complete(enqueue(target.handle, ready, progress=label))
            target.case.enqueue_rate = ready / seconds
            log(f"{label}: filled at {target.case.enqueue_rate:,.0f} jobs/s")
        for round_ in range(1, args.rounds + 1):
            for target in targets:
                for count in target.processes:
                    measure(loop, target, count, round_, args, scratch)
    finally:
        for target in targets:
            if target.handle is not None:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(target.handle.close())
            target.home.close()
        loop.close()
        log(f"{kind}: cleaned up; disk: {shutil.disk_usage('/').free / 2**30:.0f} GiB free")
    return {target.label.split(" ", 1)[1]: target.case for target in targets}


def measure(  # noqa: PLR0917 - one measurement's coordinates
    loop: asyncio.AbstractEventLoop, target: Target, count: int, round_: int,
    args: argparse.Namespace, scratch: Path,
) -> None:  # fmt: skip
    """Top the queue up to its depth, run the worker once, record the figures."""
    waiting = loop.run_until_complete(target.handle.get_task_count())
    missing = target.ready + target.delayed - waiting
    if missing > 0:
        loop.run_until_complete(enqueue(target.handle, missing))
    try:
        run = run_cli_worker(target.home, count, scratch, args)
    except RuntimeError as error:
        log(f"{target.label} round {round_} x{count}: FAILED {error}")
        target.case.note = str(error).splitlines()[0]
        return
    target.case.runs.setdefault(count, []).append(run)
    log(
        f"{target.label} round {round_} x{count}: {run.rate:,.0f} jobs/s, start-up "
        f"{run.startup:.1f} s, RSS {run.rss_steady:.0f} MiB (peak {run.rss_peak:.0f}, anon "
        f"{run.rss_anon:.0f}), CPU ms/job worker {run.worker_cpu:.3f} broker {run.broker_cpu}"
    )


def run_memory_case(ready: int, delayed: int, args: argparse.Namespace, scratch: Path) -> Case:
    """The in-memory backend: one child process fills and drains its own queue."""
    command = [sys.executable, __file__, "--memory-child", str(scratch), str(ready), str(delayed)]
    command += ["--rounds", str(args.rounds), "--warmup", str(args.warmup)]
    command += ["--window", str(args.window)]
    env = {**os.environ, "PYTHONPATH": str(scratch), "BACKLOG_CHECKPOINT": str(CHECKPOINT)}
    env["CLIBENCH_OUT"] = str(scratch / "probe.log")
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log(f"memory ready {ready:,}: FAILED {done.stderr[-2000:]}")
        return Case(note="the child failed")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    case = Case(enqueue_rate=data["enqueue_rate"])
    case.runs[1] = [Run(**run) for run in data["runs"]]
    for run in case.runs[1]:
        log(f"memory ready {ready:,}: {run.rate:,.0f} jobs/s, RSS {run.rss_steady:.0f} MiB")
    return case


async def memory_child(scratch: str, ready: int, delayed: int, args: argparse.Namespace) -> None:
    """Fill a MemoryTaskQueue and drain it with one TaskWorker, `rounds` times."""
    sys.path.insert(0, scratch)
    import clibench_lexigram
    import clibench_probe

    from lexigram.tasks.backends.memory import MemoryTaskQueue
    from lexigram.tasks.config import TaskWorkerConfig
    from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
    from lexigram.tasks.results import InMemoryResultStore

    out = Path(os.environ["CLIBENCH_OUT"])
    queue = MemoryTaskQueue()
    if delayed:
        await enqueue(queue, delayed, delay=3600.0)
    result: dict[str, Any] = {"enqueue_rate": ready / await enqueue(queue, ready), "runs": []}
    handler = clibench_lexigram.bench
    for _ in range(args.rounds):
        missing = ready + delayed - await queue.get_task_count()
        if missing > 0:
            await enqueue(queue, missing)
        out.unlink(missing_ok=True)  # noqa: ASYNC240 - nothing else runs on this loop yet
        clibench_probe._count = 0  # noqa: SLF001 - a fresh count per run, as a new process has
        clibench_probe._fd = -1  # noqa: SLF001
        worker = TaskWorker(
            "bench", queue, {"bench": handler}, TaskWorkerConfig(max_concurrent_tasks=100),
            TaskWorkerServices(result_store=InMemoryResultStore()),
        )  # fmt: skip
        started = time.time()
        await worker.start()
        samples: list[dict[str, int]] = []
        cpu: list[tuple[int, float]] = []
        while True:
            rate = window_rate(read_probe(out), args.warmup, args.window)
            if clibench_probe.completed() >= args.warmup or rate is not None:
                samples.append(proc_status(os.getpid()))
                cpu.append((clibench_probe.completed(), time.process_time()))
            if rate is not None:
                break
            await asyncio.sleep(0.05)
        peak = proc_status(os.getpid()).get("VmHWM", 0)
        await worker.stop(drain=True)
        first = min(when for _, count, when in read_probe(out) if count == 0)
        steady = statistics.median(s.get("VmRSS", 0) for s in samples)
        anon = statistics.median(s.get("RssAnon", 0) for s in samples)
        jobs = max(cpu[-1][0] - cpu[0][0], 1)
        result["runs"].append(
            {"rate": rate, "startup": first - started, "rss_steady": steady / 1024,
             "rss_peak": peak / 1024, "rss_anon": anon / 1024,
             "worker_cpu": (cpu[-1][1] - cpu[0][1]) * 1000 / jobs, "broker_cpu": None}
        )  # fmt: skip
    print(json.dumps(result))


# ------------------------------------------------------------------------------ report


def median_run(runs: list[Run]) -> tuple[float, float, float, float, float, float, str]:
    """Medians of rate, start-up, RSS (steady, peak, anon), worker CPU, broker CPU (text)."""
    brokers = [r.broker_cpu for r in runs if r.broker_cpu is not None]
    return (
        statistics.median(r.rate for r in runs),
        statistics.median(r.startup for r in runs),
        statistics.median(r.rss_steady for r in runs),
        statistics.median(r.rss_peak for r in runs),
        statistics.median(r.rss_anon for r in runs),
        statistics.median(r.worker_cpu for r in runs),
        f"{statistics.median(brokers):.3f}" if brokers else "in-process",
    )


def print_table(results: dict[tuple[str, str], Case], args: argparse.Namespace) -> None:
    """One Markdown table: a row per backend, case and process count."""
    print(
        f"\n### Backlog depth (warmup {args.warmup:,}, window {args.window:,} completions, "
        f"median of {args.rounds} rounds)\n"
    )
    print(
        f"| backend | backlog | enqueue jobs/s | worker processes | drain jobs/s "
        f"| vs {min(args.depths):,} | per round | start-up s | RSS steady MiB | RSS peak MiB "
        "| of which anon MiB | worker CPU ms/job | broker CPU ms/job |"
    )
    print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for (kind, name), case in results.items():
        if not case.runs:
            print(f"| {kind} | {name} | {case.enqueue_rate:,.0f} | | FAILED: {case.note} |")
            continue
        for count, runs in sorted(case.runs.items()):
            rate, startup, steady, peak, anon, worker_cpu, broker_cpu = median_run(runs)
            base = results.get((kind, f"{min(args.depths):,}"))
            ratio = ""
            if base is not None and count in base.runs:
                ratio = f"{rate / median_run(base.runs[count])[0]:.2f}"
            per_round = " / ".join(f"{r.rate:,.0f}" for r in runs)
            shown = "1 (in-process TaskWorker)" if kind == "memory" else f"{count} (`-w {count}`)"
            print(
                f"| {kind} | {name} | {case.enqueue_rate:,.0f} | {shown} | {rate:,.0f} | "
                f"{ratio} | {per_round} | {startup:.1f} | {steady:.0f} | {peak:.0f} | {anon:.0f} | "
                f"{worker_cpu:.3f} | {broker_cpu} |"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options; `--help` shows the module's description."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backends", default="sqlite,redis,postgres,rabbitmq,memory",
        help="comma-separated, run in this order (default: all five)",
    )  # fmt: skip
    parser.add_argument(
        "--depths", default="10000,100000,1000000",
        help="backlog depths, comma-separated (default 10000,100000,1000000)",
    )  # fmt: skip
    parser.add_argument(
        "--processes", default="1,2,4",
        help="worker process counts (the CLI's --workers N), comma-separated (default 1,2,4)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="measurements per row (default 3)")
    parser.add_argument(
        "--warmup", type=int, default=1000,
        help="completions skipped after the worker starts (default 1,000)",
    )  # fmt: skip
    parser.add_argument(
        "--window", type=int, default=8000,
        help="completions counted for the drain rate (default 8,000)",
    )  # fmt: skip
    parser.add_argument(
        "--delayed", type=int, default=100_000,
        help="delayed jobs (an hour ahead) in the delayed case; 0 skips it (default 100,000)",
    )  # fmt: skip
    parser.add_argument(
        "--ready", type=int, default=10_000,
        help="ready jobs beside them in the delayed case (default 10,000)",
    )  # fmt: skip
    parser.add_argument(
        "--pg", default="postgresql://127.0.0.1:5432/test",
        help="a database on the PostgreSQL server to use; each case creates and drops "
        "its own database there (default postgresql://127.0.0.1:5432/test)",
    )  # fmt: skip
    parser.add_argument(
        "--redis",
        default="",
        help="a Redis URL to use instead of a private redis-server (unique queue, keys deleted)",
    )
    parser.add_argument(
        "--amqp",
        default="",
        help="an AMQP URL to use instead of a private RabbitMQ node (unique queue, deleted)",
    )
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.depths = [int(d) for d in args.depths.split(",")]
    args.processes = [int(p) for p in args.processes.split(",")]
    if not args.memory_child and args.warmup + args.window + 1000 > min(args.depths):
        parser.error("warmup + window must stay 1,000 below the smallest depth")
    return args


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary directory holding the APP module and the probe."""
    with tempfile.TemporaryDirectory(prefix="backlog-") as name:
        path = Path(name)
        path.chmod(0o755)  # the private RabbitMQ node runs as its own user below it
        (path / "clibench_probe.py").write_text(PROBE, encoding="utf-8")
        app = cli_bench.LEXIGRAM_APP.format(name="bench")
        (path / "clibench_lexigram.py").write_text(app, encoding="utf-8")
        cli_bench.precompile(path)  # workers start from bytecode, as an installed package does
        yield path


def main() -> None:
    """Run every case in order, print the table."""
    args = parse_args()
    if args.memory_child:
        scratch, ready, delayed = args.memory_child
        os.environ.setdefault("CLIBENCH_URL", "memory://")
        asyncio.run(memory_child(scratch, int(ready), int(delayed), args))
        return
    # A SIGTERM to this script unwinds through every `finally`: workers stopped, data removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: dict[tuple[str, str], Case] = {}
    with scratch_dir() as scratch:
        for kind in args.backends.split(","):
            specs = [(f"{d:,}", d, 0) for d in args.depths]
            if args.delayed:
                specs.append(
                    (f"{args.ready:,} + {args.delayed:,} delayed", args.ready, args.delayed)
                )
            if kind == "memory":
                for name, ready, delayed in specs:
                    results[kind, name] = run_memory_case(ready, delayed, args, scratch)
                continue
            for name, case in run_backend(kind, specs, args, scratch).items():
                results[kind, name] = case
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print_table(results, args)


if __name__ == "__main__":
    main()
