"""Fault-injection runs for the first-party backends; prints one table, exits 1 on a fault.

Usage: python tests-chaos/run_chaos.py [--short] [--backend redis|postgres|sqlite ...]
       [--scenario storm|broker-kill|pause|poison ...]

Every scenario starts its own broker (Redis, PostgreSQL) or database file (SQLite) on
loopback, enqueues its jobs, starts three worker processes (``chaos_worker.py``) and injects
one fault:

storm        SIGKILL a random worker every second and start a new one, until the queue drains
broker-kill  SIGKILL the broker (PostgreSQL: the postmaster and every backend) once a third of
             the jobs ran, restart it on the same data 2 s later
pause        SIGSTOP the broker once a third of the jobs ran, SIGCONT it 10 s later (5 s short)
poison       plant raw undecodable payloads where encoded jobs are stored, among good jobs

Columns: ``acked`` jobs whose enqueue the backend acknowledged; ``lost`` acknowledged jobs
neither run nor dead-lettered nor still in the queue; ``dup ok`` jobs run more than once where
a run was by a worker later SIGKILLed, or finished during a broker fault (its ack could not
land), ``dup bad`` the other jobs run more than once; ``stuck`` jobs still waiting or in flight
after the recovery window; ``dlq`` jobs the workers dead-lettered (poison: must equal the
number planted; elsewhere 0); ``recovery`` seconds from the end of the last fault until every
acknowledged job had run or was dead-lettered.

The run fails (exit 1) on any lost job, unexplained duplicate, stuck job, or unexpected DLQ
count. ``--short`` runs one storm per backend with 300 jobs (about a minute; meant for CI);
with ``--scenario`` it runs those scenarios at 300 jobs instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from brokers import PostgresBroker, RedisBroker, SQLiteFile  # noqa: E402
from chaos_worker import open_queue  # noqa: E402

from lexigram.contracts.tasks import Job, TaskQueueProtocol  # noqa: E402

LEASE = 5.0
WORKERS = 3
BATCH = 200
FIELDS = 4  # a results line: kind, job key or id, pid, time (a DLQ line adds a reason)
POISON = (
    b"\x00\x01\x02 not a job",
    b"{}",
    b'{"name": "record"}',
    b"\xff\xfe\xfd",
    b'{"id": 7, "name": 5, "args": "no"}',
    b"[1, 2, 3]",
)
BACKENDS = ("redis", "postgres", "sqlite")
SCENARIOS = ("storm", "broker-kill", "pause", "poison")
BROKER_FAULTS = {"broker-kill", "pause"}


class Broker(Protocol):
    """What the runner needs of a private broker."""

    kind: str
    root: Path

    @property
    def url(self) -> str: ...  # noqa: D102

    def start(self) -> None: ...  # noqa: D102

    def stop(self) -> None: ...  # noqa: D102


@dataclass
class Outcome:
    """One row of the table."""

    backend: str
    scenario: str
    acked: int = 0
    lost: int = 0
    dup_ok: int = 0
    dup_bad: int = 0
    stuck: int = 0
    dlq: int = 0
    expected_dlq: int = 0
    recovery: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when the row shows a lost, duplicated, stuck or wrongly dead-lettered job."""
        return bool(
            self.lost
            or self.dup_bad
            or self.stuck
            or self.dlq != self.expected_dlq
            or any(note.startswith("ERROR") for note in self.notes)
        )


@dataclass
class Run:
    """The live state of one scenario."""

    kind: str
    url: str
    queue: str
    results: Path
    pause: float
    workers: list[asyncio.subprocess.Process] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)
    windows: list[tuple[float, float]] = field(default_factory=list)

    async def spawn(self) -> asyncio.subprocess.Process:
        """Start one worker process and wait until it runs."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "chaos_worker.py"), self.kind, self.url, self.queue,
            str(LEASE), str(self.results), str(self.pause),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.stdout is not None  # noqa: S101 - PIPE above
        line = await asyncio.wait_for(proc.stdout.readline(), 60.0)
        if line != b"started\n":
            msg = f"a {self.kind} worker did not start (said {line!r})"
            raise RuntimeError(msg)
        return proc

    async def kill_one(self, rng: random.Random) -> None:
        """SIGKILL a random worker and start a replacement."""
        victim = rng.randrange(len(self.workers))
        proc = self.workers[victim]
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        self.killed.add(proc.pid)
        self.workers[victim] = await self.spawn()

    async def stop_all(self) -> None:
        """SIGTERM every worker; SIGKILL one that has not stopped after 15 s."""
        for proc in self.workers:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                await asyncio.wait_for(proc.wait(), 15.0)
            except TimeoutError:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()

    def read(self) -> tuple[dict[str, list[tuple[int, float]]], dict[str, str]]:
        """Runs per job key ((pid, finished at)), and dead-lettered job id -> reason."""
        runs: dict[str, list[tuple[int, float]]] = {}
        dead: dict[str, str] = {}
        if not self.results.exists():
            return runs, dead
        for line in self.results.read_text().splitlines():
            parts = line.split(" ", 4)
            if len(parts) < FIELDS:
                continue
            if parts[0] == "done":
                runs.setdefault(parts[1], []).append((int(parts[2]), float(parts[3])))
            elif parts[0] == "dlq":
                dead[parts[1]] = " ".join(parts[FIELDS:])
        return runs, dead


def make_broker(kind: str) -> Broker:
    """A new private broker of `kind` (not started)."""
    if kind == "redis":
        return RedisBroker()
    if kind == "postgres":
        return PostgresBroker()
    return SQLiteFile()


async def plant(kind: str, queue: TaskQueueProtocol, raw: bytes) -> str:
    """Store `raw` where an encoded job would be, so the next dequeue meets it."""
    job_id = f"poison-{uuid.uuid4().hex[:12]}"
    if kind == "redis":
        # One enqueue-script entry: id, payload, priority, ready-at (0 = now), idempotency
        # key and ttl, delivery count, retrying flag.
        entry = (job_id, raw, 0, 0, "", 0, 0, "0")
        [(status, stored)] = await queue._enqueue_entries([entry])  # type: ignore[attr-defined]  # noqa: SLF001
        if (status, stored) != (1, job_id):
            msg = f"the Redis enqueue script refused the planted payload: {status}"
            raise RuntimeError(msg)
    elif kind == "postgres":
        import asyncpg

        config = queue.config  # type: ignore[attr-defined]
        conn = await asyncpg.connect(config.dsn)
        try:
            await conn.execute(
                f'INSERT INTO "{config.schema}"."{config.table}" (id, queue, payload) '  # noqa: S608
                "VALUES ($1, $2, $3)",
                job_id,
                config.queue_name,
                raw,
            )
        finally:
            await conn.close()
    else:
        await queue.count(queue.queue_name)  # creates the tables
        with sqlite3.connect(queue.path) as db:  # type: ignore[attr-defined]
            db.execute(
                "INSERT INTO lexigram_jobs (id, queue, priority, available_at, payload) "
                "VALUES (?, ?, 0, 0, ?)",
                (job_id, queue.queue_name, raw),
            )
    return job_id


async def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.25)
    return predicate()


async def _enqueue(
    producer: TaskQueueProtocol, jobs: int, scenario: str, kind: str
) -> tuple[dict[str, str], set[str]]:
    """Enqueue `jobs` jobs (and the poison payloads); return job id -> key, acknowledged keys."""
    keys: dict[str, str] = {}
    batch: list[Job] = []
    for i in range(jobs):
        job = Job(name="record", args=(f"j{i:05d}",), max_retries=50)
        keys[job.id] = f"j{i:05d}"
        batch.append(job)
    acked: set[str] = set()
    for start in range(0, len(batch), BATCH):
        chunk = batch[start : start + BATCH]
        for job, result in zip(chunk, await producer.enqueue_many(chunk), strict=True):
            if result.is_ok():
                acked.add(keys[job.id])
    if scenario == "poison":
        for raw in POISON:
            await plant(kind, producer, raw)
    return keys, acked


async def _inject(
    run: Run, broker: Broker, scenario: str, *, short: bool, ran: Callable[[], int], total: int
) -> float:
    """Inject the scenario's fault; return when (monotonic) the last fault ended."""
    fault_end = time.monotonic()
    if scenario == "storm":
        rng = random.Random(22)
        for _ in range(8 if short else 30):
            await asyncio.sleep(1.0)
            if ran() >= total:
                break
            await run.kill_one(rng)
            fault_end = time.monotonic()
    elif scenario in BROKER_FAULTS:
        if not isinstance(broker, RedisBroker | PostgresBroker):
            msg = f"{broker.kind} has no server process to kill or pause"
            raise RuntimeError(msg)
        await _wait_until(lambda: ran() >= total // 3, 120.0)
        began = time.time()
        if scenario == "broker-kill":
            broker.kill()
            await asyncio.sleep(2.0)
            broker.start()
        else:
            broker.pause()
            await asyncio.sleep(5.0 if short else 10.0)
            broker.resume()
        fault_end = time.monotonic()
        run.windows.append((began - LEASE, time.time() + LEASE))
    return fault_end


def _account(outcome: Outcome, run: Run, keys: dict[str, str], acked: set[str]) -> None:
    """Fill in lost, duplicates and DLQ from the results file (stuck is already counted)."""
    runs, dead = run.read()
    outcome.dlq = len(dead)
    good_dead = [j for j in dead if j in keys]
    if good_dead:
        reasons = sorted({dead[j] for j in good_dead})
        outcome.notes.append(f"good jobs dead-lettered: {len(good_dead)} ({reasons[:2]})")
    accounted = set(runs) | {keys[j] for j in good_dead}
    outcome.lost = max(0, len(acked - accounted) - outcome.stuck)
    for key_runs in runs.values():
        if len(key_runs) == 1:
            continue
        explained = any(pid in run.killed for pid, _ in key_runs) or any(
            lo <= at <= hi for _, at in key_runs for lo, hi in run.windows
        )
        if explained:
            outcome.dup_ok += 1
        else:
            outcome.dup_bad += 1
    if run.killed:
        outcome.notes.append(f"{len(run.killed)} workers SIGKILLed")


async def _scenario_body(
    outcome: Outcome,
    run: Run,
    broker: Broker,
    producer: TaskQueueProtocol,
    *,
    jobs: int,
    short: bool,
) -> None:
    """Enqueue, start the workers, inject the fault, wait for the drain, count."""
    if run.kind == "postgres":
        from lexigram.tasks.backends.postgres import migrate

        await migrate(broker.url, run.queue)
    keys, acked = await _enqueue(producer, jobs, outcome.scenario, run.kind)
    outcome.acked = len(acked)
    if outcome.scenario == "poison":
        outcome.expected_dlq = len(POISON)

    def ran() -> int:
        runs, dead = run.read()
        return len(acked & (set(runs) | {keys.get(j, j) for j in dead}))

    run.workers = [await run.spawn() for _ in range(WORKERS)]
    fault_end = await _inject(run, broker, outcome.scenario, short=short, ran=ran, total=len(acked))
    if await _wait_until(lambda: ran() >= len(acked), 60.0 if short else 120.0):
        outcome.recovery = max(0.0, time.monotonic() - fault_end)
    # Let a late redelivery show up as a duplicate before counting.
    await asyncio.sleep(LEASE + 1.0)
    await run.stop_all()
    outcome.stuck = await asyncio.wait_for(producer.count(run.queue), 30.0)
    _account(outcome, run, keys, acked)


async def run_scenario(kind: str, scenario: str, jobs: int, short: bool) -> Outcome:
    """Run one scenario on a fresh private broker; return its row."""
    outcome = Outcome(kind, scenario)
    broker = make_broker(kind)
    broker.start()
    queue_name = f"chaos_{scenario.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
    # Storm jobs run long enough (0.2 s each) for the queue to outlive several kills.
    pause = 0.2 if scenario == "storm" else 0.05
    run = Run(kind, broker.url, queue_name, broker.root / "results.log", pause=pause)
    producer = open_queue(kind, broker.url, queue_name, LEASE)
    try:
        await _scenario_body(outcome, run, broker, producer, jobs=jobs, short=short)
    except Exception as exc:  # one broken scenario must not hide the others: it is a row
        outcome.notes.append(f"ERROR {type(exc).__name__}: {exc}")
        for proc in run.workers:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
    finally:
        with contextlib.suppress(Exception):  # the broker may be gone
            await asyncio.wait_for(producer.close(), 10.0)
        broker.stop()
    return outcome


def print_table(rows: list[Outcome]) -> None:
    """Print the one table of the run."""
    header = (
        "backend", "scenario", "acked", "lost", "dup ok", "dup bad", "stuck", "dlq",
        "recovery s", "result",
    )  # fmt: skip
    lines = [header]
    for row in rows:
        recovery = "-" if row.recovery is None else f"{row.recovery:.1f}"
        lines.append(
            (
                row.backend,
                row.scenario,
                str(row.acked),
                str(row.lost),
                str(row.dup_ok),
                str(row.dup_bad),
                str(row.stuck),
                f"{row.dlq}/{row.expected_dlq}",
                recovery,
                "FAIL" if row.failed else "ok",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for index, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    for row in rows:
        for note in row.notes:
            print(f"{row.backend}/{row.scenario}: {note}")


def plan(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """The (backend, scenario, jobs) list this run covers."""
    backends = args.backend or list(BACKENDS)
    if args.short:
        chosen = args.scenario or ["storm"]
        sizes = dict.fromkeys(SCENARIOS, 300)
    else:
        chosen = args.scenario or list(SCENARIOS)
        sizes = {"storm": 2000, "broker-kill": 1000, "pause": 1000, "poison": 300}
    return [
        (kind, scenario, sizes[scenario])
        for kind in backends
        for scenario in chosen
        if not (kind == "sqlite" and scenario in BROKER_FAULTS)
    ]


async def main(argv: list[str]) -> int:
    """Run the planned scenarios one after the other; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--short", action="store_true", help="300 jobs, storm only by default")
    parser.add_argument("--backend", action="append", choices=BACKENDS)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    args = parser.parse_args(argv)
    began = time.monotonic()
    rows = []
    for kind, scenario, jobs in plan(args):
        print(f"running {kind} {scenario} ({jobs} jobs)...", flush=True)
        rows.append(await run_scenario(kind, scenario, jobs, args.short))
    print()
    print_table(rows)
    print(f"\n{len(rows)} scenarios in {time.monotonic() - began:.0f} s")
    return 1 if any(row.failed for row in rows) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(asyncio.run(main(sys.argv[1:])))
