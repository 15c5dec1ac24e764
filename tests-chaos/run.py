"""Fault-injection runs of the real CLI workers on private brokers; prints one table.

Usage: python tests-chaos/run.py [--backends sqlite,redis,postgres,rabbitmq] [--jobs N]
       [--scenarios storm,broker-kill,broker-pause,poison,scheduler-churn,producer-kill]
       [--short] [--workdir DIR]

Every scenario starts its own broker (Redis, PostgreSQL, RabbitMQ: ``brokers.py``) or database file
(SQLite) on loopback in a temporary directory, enqueues its jobs, starts three
``lexigram-tasks worker chaos_app --concurrency 8`` processes and injects one fault:

storm            SIGKILL a random consuming worker every second (while another consumes) and
                 start a replacement; 6 kills (30), or until drained
broker-kill      SIGKILL the broker once a third of the jobs ran; restart it on its data 2 s later
broker-pause     SIGSTOP the broker once a third ran; SIGCONT it 12 s later (6 s with --short)
poison           undecodable payloads written into the broker's storage, a job stored under an id
                 that is not UTF-8 (not on PostgreSQL, whose text cannot hold one), and jobs
                 naming a task nobody handles, among good jobs: all must be dead-lettered
scheduler-churn  three ``lexigram-tasks scheduler`` processes fire an every-second schedule while
                 one of them is SIGKILLed and replaced every 2 s: each occurrence runs once
producer-kill    a producer process (``producer.py``) enqueueing batches is SIGKILLed mid-write
                 and replaced, 6 times (20): every batch it was told was stored must run (on
                 SQLite the file must also pass ``PRAGMA integrity_check``)

Columns: ``acked`` jobs whose enqueue returned Ok (scheduler-churn: occurrences run);
``lost`` acked jobs never completed, not dead-lettered, not still waiting or leased at the end;
``dup ok`` extra runs explained by a fault: a run by a worker SIGKILLed while it held the job,
or a run that overlapped a broker kill or pause; ``dup bad`` any other extra run;
``stuck`` jobs still leased after the workers stopped and a lease went by; ``dlq`` actual/
expected dead letters; ``recovery s`` from the end of the fault (broker back, storm over) to
the first job completing after it. Exit status 1 on any lost, unexplained duplicate, stuck job,
a DLQ count other than expected, or a row with nothing acknowledged (it tested nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from brokers import PostgresBroker, RabbitMQBroker, RedisBroker, SQLiteFile  # noqa: E402
from harness import Run, write_config  # noqa: E402

from lexigram.contracts.tasks import Job, JobStatus, TaskQueueProtocol, encode_job  # noqa: E402

LEASE = 3.0
WORKERS = 3
BATCH = 250
ACK_SLACK = 2.0  # seconds an ack may still be on its way after the handler returned
POISON = (
    b"\x00\x01\x02 not a job",
    b"{}",
    b'{"name": "record"}',
    b"\xff\xfe\xfd",
    b'{"id": 7, "name": 5, "args": "no"}',
    b"[1, 2, 3]",
)
UNKNOWN_TASKS = 4
BACKENDS = ("sqlite", "redis", "postgres", "rabbitmq")
SCENARIOS = ("storm", "broker-kill", "broker-pause", "poison", "scheduler-churn", "producer-kill")
BROKER_FAULTS = {"broker-kill", "broker-pause"}
# Backend options the run adds for one backend: --rabbitmq-queue-type sets RabbitMQ's, through
# the environment, so that the producer processes of producer-kill declare the same queue.
QUEUE_TYPE_VAR = "CHAOS_RABBITMQ_QUEUE_TYPE"
EXTRA_OPTIONS: dict[str, dict[str, object]] = {
    "rabbitmq": {"queue_type": os.environ[QUEUE_TYPE_VAR]} if QUEUE_TYPE_VAR in os.environ else {}
}
Broker = RedisBroker | PostgresBroker | RabbitMQBroker | SQLiteFile


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
            not self.acked  # a run that stored nothing tested nothing
            or self.lost
            or self.dup_bad
            or self.stuck
            or self.dlq != self.expected_dlq
            or any(note.startswith("ERROR") for note in self.notes)
        )


def open_queue(kind: str, url: str, queue_name: str) -> TaskQueueProtocol:
    """The producer's handle on the scenario's queue (the same options as the workers')."""
    if kind == "redis":
        from lexigram.tasks.backends.redis import RedisTaskQueue

        return RedisTaskQueue(url, queue_name, key_prefix=queue_name, visibility_timeout=LEASE)
    if kind == "postgres":
        from lexigram.tasks.backends.postgres import PostgresTaskQueue

        return PostgresTaskQueue(
            dsn=url, schema=queue_name, queue_name=queue_name, visibility_timeout=LEASE
        )
    if kind == "rabbitmq":
        from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue

        extra: dict[str, Any] = dict(EXTRA_OPTIONS["rabbitmq"])
        return RabbitMQTaskQueue(url, queue_name, visibility_timeout=LEASE, **extra)
    from lexigram.tasks.backends.sqlite import SQLiteTaskQueue

    return SQLiteTaskQueue(url, queue_name=queue_name, visibility_timeout=LEASE)


async def plant(kind: str, queue: Any, raw: bytes, url: str, stored_id: bytes = b"") -> str:
    """Store `raw` where an encoded job would be, so a worker's dequeue meets it.

    `stored_id` (SQLite only): the id's bytes as stored, instead of a new id.
    """
    job_id = f"poison-{uuid.uuid4().hex[:12]}"
    if kind == "redis":
        # One enqueue-script entry: id, payload, priority, ready-at (0 = now), idempotency
        # key and ttl, delivery count, retrying flag.
        entry = (job_id, raw, 0, 0, "", 0, 0, "0")
        [(status, stored)] = await queue._enqueue_entries([entry])  # noqa: SLF001
        if (status, stored) != (1, job_id):
            msg = f"the Redis enqueue script refused the planted payload: {status}"
            raise RuntimeError(msg)
    elif kind == "postgres":
        import asyncpg

        config = queue.config
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
    elif kind == "rabbitmq":
        import aio_pika

        await queue.count(queue.queue_name)  # declares the queue with the backend's arguments
        conn = await aio_pika.connect(url)
        try:
            channel = await conn.channel(publisher_confirms=True)
            message = aio_pika.Message(raw, message_id=job_id, delivery_mode=2)
            await channel.default_exchange.publish(message, routing_key=queue.queue_name)
        finally:
            await conn.close()
    else:
        await queue.count(queue.queue_name)  # creates the tables
        with contextlib.closing(sqlite3.connect(queue.path)) as db, db:
            db.execute(
                "INSERT INTO lexigram_jobs (id, queue, priority, available_at, payload) "
                "VALUES (CAST(? AS TEXT), ?, 0, 0, ?)",
                (stored_id or job_id, queue.queue_name, raw),
            )
    return job_id


async def plant_unnamed(kind: str, queue: Any, url: str) -> bool:
    """Store a job under an id that is not UTF-8, as another program could; False: cannot.

    PostgreSQL text is valid UTF-8 by construction. Elsewhere the worker must rename the
    job to a printable id (which starts with ``poison-`` too) and dead-letter it. On
    RabbitMQ the message also carries a header named by those bytes.
    """
    raw_id = f"poison-{uuid.uuid4().hex[:12]}-".encode() + b"\xff\xfe"
    payload = encode_job(Job(name="record", args=("unnamed",)))  # it never runs: poison
    if kind == "redis":
        import redis.asyncio as aioredis

        placeholder = f"poison-{uuid.uuid4().hex[:12]}"
        entry = (placeholder, payload, 0, 0, "", 0, 0, "0")
        await queue._enqueue_entries([entry])  # noqa: SLF001
        client = aioredis.Redis.from_url(url)
        try:
            for key in queue.keys.fixed:  # every record of the job, moved to the raw id
                kind_of_key = await client.type(key)
                if kind_of_key == b"hash" and (value := await client.hget(key, placeholder)):
                    await client.hdel(key, placeholder)
                    await client.hset(key, raw_id, value)
                elif kind_of_key == b"zset" and (score := await client.zscore(key, placeholder)):
                    await client.zrem(key, placeholder)
                    await client.zadd(key, {raw_id: score})
        finally:
            await client.aclose()
    elif kind == "rabbitmq":
        import aio_pika
        import pamqp.encode

        def octets(encoder: Any, value: str) -> bytes:
            data = value.encode("utf-8", "surrogateescape")
            return bytes(encoder.pack(len(data))) + data

        def raw_names(table: dict[str, str]) -> bytes:  # long-string values only
            fields = b""
            for key, value in table.items():
                name, text = key.encode("utf-8", "surrogateescape"), value.encode()
                fields += bytes([len(name)]) + name + b"S" + len(text).to_bytes(4, "big") + text
            return len(fields).to_bytes(4, "big") + fields

        await queue.count(queue.queue_name)  # declares the queue with the backend's arguments
        conn = await aio_pika.connect(url)
        # pamqp refuses to send such an id or header name: only the publish sends raw bytes
        # (the connection's own tables hold booleans).
        strict_string, strict_table = pamqp.encode._string, pamqp.encode.METHODS["table"]  # noqa: SLF001
        try:
            channel = await conn.channel(publisher_confirms=True)
            escaped = raw_id.decode("utf-8", "surrogateescape")
            message = aio_pika.Message(
                b"\xff foreign", message_id=escaped, headers={escaped: "x"}, delivery_mode=2
            )
            pamqp.encode._string, pamqp.encode.METHODS["table"] = octets, raw_names  # noqa: SLF001
            await channel.default_exchange.publish(message, routing_key=queue.queue_name)
        finally:
            pamqp.encode._string, pamqp.encode.METHODS["table"] = strict_string, strict_table  # noqa: SLF001
            await conn.close()
    elif kind == "sqlite":
        await plant(kind, queue, payload, url, stored_id=raw_id)
    else:
        return False
    return True


async def enqueue(
    producer: TaskQueueProtocol, jobs: int, scenario: str, kind: str, url: str
) -> set[str]:
    """Enqueue `jobs` record jobs (and the poison); return the keys whose enqueue was Ok."""
    acked: set[str] = set()
    batch = [Job(name="record", args=(f"j{i:05d}",), max_retries=50) for i in range(jobs)]
    for start in range(0, len(batch), BATCH):
        chunk = batch[start : start + BATCH]
        for job, result in zip(chunk, await producer.enqueue_many(chunk), strict=True):
            if result.is_ok():
                acked.add(str(job.args[0]))
    if scenario == "poison":
        for raw in POISON:
            await plant(kind, producer, raw, url)
        await plant_unnamed(kind, producer, url)
        for i in range(UNKNOWN_TASKS):
            result = await producer.enqueue(Job(name="no_such_task", args=(i,)))
            if not result.is_ok():
                msg = f"enqueueing the unknown-task job failed: {result}"
                raise RuntimeError(msg)
    return acked


async def producer_kills(run: Run, url: str, jobs: int, short: bool) -> tuple[set[str], float]:
    """SIGKILL a producer mid-write, over and over; return the acked keys, the last kill."""
    acked_file = run.root / "acked.log"
    rng = random.Random(5)
    last = 0.0
    rounds = 6 if short else 20
    for n in range(rounds):
        proc = subprocess.Popen(  # noqa: ASYNC220 - started and killed here, never awaited
            [sys.executable, str(HERE / "producer.py"), run.kind, url, run.queue, f"p{n}",
             str(acked_file), str(jobs // rounds)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(rng.uniform(1.5, 2.5))  # start-up, then some batches
        last = run.sigkill(proc)
    text = acked_file.read_text() if acked_file.exists() else ""
    return {line.split()[1] for line in text.splitlines() if line.startswith("acked ")}, last


def completed(run: Run) -> set[str]:
    """Keys with at least one finished run."""
    return {key for key, recs in run.runs().items() if any(r[0] == "done" for r in recs)}


async def wait_until(predicate: Any, timeout: float) -> bool:
    """Poll `predicate` (a callable) four times a second until true or `timeout` s passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.25)
    return bool(predicate())


async def inject(run: Run, broker: Broker, scenario: str, acked: set[str], short: bool) -> float:
    """Inject the scenario's fault; return the wall time the last fault ended (0: none)."""
    if scenario == "storm":
        rng = random.Random(22)
        fault_end = 0.0
        kills, wanted = 0, 6 if short else 30
        deadline = time.monotonic() + 4.0 * wanted
        while kills < wanted and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            if completed(run) >= acked:
                break
            at = run.kill_one(rng)
            if at is not None:
                fault_end, kills = at, kills + 1
        return fault_end
    if scenario in BROKER_FAULTS:
        if isinstance(broker, SQLiteFile):
            msg = "SQLite has no server process to kill or pause"
            raise TypeError(msg)
        await wait_until(lambda: len(completed(run)) >= len(acked) // 3, 120.0)
        began = time.time()
        if scenario == "broker-kill":
            broker.kill()
            await asyncio.sleep(2.0)
            broker.start()
        else:
            broker.pause()
            await asyncio.sleep(6.0 if short else 12.0)
            broker.resume()
        ended = time.time()
        run.windows.append((began - ACK_SLACK, ended + ACK_SLACK))
        with (run.root / "faults.log").open("a") as out:
            out.write(f"{scenario} {began:.6f} {ended:.6f}\n")
        return ended
    return 0.0


def spans_of(recs: list[tuple[str, int, float]]) -> list[tuple[int, float, float | None]]:
    """A job's runs from its records: (pid, started, finished or None when it never did)."""
    spans: list[tuple[int, float, float | None]] = []
    for kind, pid, at in recs:
        if kind == "start":
            spans.append((pid, at, None))
            continue
        for i in range(len(spans) - 1, -1, -1):
            if spans[i][0] == pid and spans[i][2] is None:
                spans[i] = (pid, spans[i][1], at)
                break
    return spans


def classify(run: Run, outcome: Outcome) -> None:
    """Count the extra runs of every job: explained by a fault, or not."""
    for key, recs in run.runs().items():
        spans = spans_of(recs)
        if len(spans) < 2:  # noqa: PLR2004 - one run is no duplicate
            continue
        legit = 0
        for pid, began, ended in spans:
            killed_at = run.killed.get(pid)
            held = (
                killed_at is not None
                and killed_at >= began
                and (ended is None or killed_at <= ended + ACK_SLACK)
            )
            in_fault = any(
                began <= hi and (ended if ended is not None else hi) >= lo for lo, hi in run.windows
            )
            if not (held or in_fault):
                legit += 1
        bad = max(0, legit - 1)
        outcome.dup_bad += bad
        outcome.dup_ok += len(spans) - 1 - bad
        if bad:
            shown = sum(note.startswith("unexplained duplicate of") for note in outcome.notes)
            if shown < 5:  # noqa: PLR2004 - a few examples; the count is in the table
                runs = ", ".join(f"pid {pid} {began:.3f}-{ended}" for pid, began, ended in spans)
                outcome.notes.append(f"unexplained duplicate of {key}: runs {runs}")


async def finish(run: Run, outcome: Outcome, producer: TaskQueueProtocol, acked: set[str]) -> None:
    """Stop everything, then count lost, stuck and dead-lettered jobs."""
    await asyncio.sleep(LEASE + 1.0)  # a late redelivery shows up as a duplicate
    await run.stop_all()
    await asyncio.sleep(LEASE + 0.5)  # a lease a stopped worker still held has run out
    outcome.stuck = await asyncio.wait_for(producer.count(run.queue, JobStatus.RUNNING), 30.0)
    waiting = await asyncio.wait_for(producer.count(run.queue, JobStatus.PENDING), 30.0)
    dead = run.dead_lettered()
    outcome.dlq = len(dead)
    good_dead = [j for j, why in dead.items() if not j.startswith("poison-")
                 and "unknown_task" not in why]  # fmt: skip
    if outcome.scenario != "poison" and good_dead:
        outcome.notes.append(f"good jobs dead-lettered: {good_dead[:3]}")
    missing = acked - completed(run)
    outcome.lost = max(0, len(missing) - waiting - outcome.stuck)
    if waiting:
        outcome.notes.append(f"{waiting} jobs still waiting at the end")
    if outcome.lost:
        outcome.notes.append(f"lost (never completed): {sorted(missing)[:10]}")
    if run.killed:
        outcome.notes.append(f"{len(run.killed)} workers SIGKILLed")
    classify(run, outcome)


async def churn(run: Run, outcome: Outcome, short: bool) -> None:
    """Schedulers started and SIGKILLed while an every-second schedule fires; count ticks."""
    run.schedulers = [run.start_scheduler() for _ in range(3)]
    rng = random.Random(7)
    kills = 0
    while kills < (6 if short else 20):
        await asyncio.sleep(2.0)
        exited = [proc for proc in run.schedulers if proc.poll() is not None]
        if exited:
            # Waiting for it to run its schedules would wait for ever.
            tail = run.logs[exited[0].pid].read_text(errors="replace").strip()[-300:]
            outcome.notes.append(f"ERROR a scheduler exited by itself: {tail}")
            break
        # Kill only schedulers that run their schedules: on a loaded machine a process still
        # importing would die before it ever fired, which tests nothing.
        ready = [i for i, proc in enumerate(run.schedulers) if run.scheduling(proc)]
        if len(ready) < 2:  # noqa: PLR2004 - keep one up while a replacement starts
            continue
        victim = rng.choice(ready)
        run.killed[run.schedulers[victim].pid] = run.sigkill(run.schedulers[victim])
        run.schedulers[victim] = run.start_scheduler()
        kills += 1
    await asyncio.sleep(2.0)
    for proc in run.schedulers:
        proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(LEASE + 2.0)
    ticks = run.ticks()
    outcome.acked = len(ticks)
    twice = {fire: pids for fire, pids in ticks.items() if len(pids) > 1}
    outcome.dup_bad = sum(len(pids) - 1 for pids in twice.values())
    if twice:
        outcome.notes.append(f"occurrences run more than once: {sorted(twice.items())[:5]}")
    fires = sorted(float(f) for f in ticks if f != "None")
    if fires:
        gaps = [b - a for a, b in itertools.pairwise(fires) if b - a > 1.5]  # noqa: PLR2004
        outcome.notes.append(
            f"{len(ticks)} occurrences over {fires[-1] - fires[0] + 1:.0f} s, "
            f"{len(gaps)} gaps (seconds no scheduler fired, e.g. none was up)"
        )


async def body(run: Run, broker: Broker, outcome: Outcome, jobs: int, short: bool) -> None:
    """Enqueue, start the workers, inject the fault, wait for the drain, count."""
    url = broker.url
    if run.kind == "postgres":
        from lexigram.tasks.backends.postgres import migrate

        await migrate(url, run.queue)
    producer = open_queue(run.kind, url, run.queue)
    try:
        if outcome.scenario == "scheduler-churn":
            run.workers = await run.spawn_many(2)
            await churn(run, outcome, short)
            await run.stop_all()
            return
        fault_end = 0.0
        if outcome.scenario == "producer-kill":
            run.workers = await run.spawn_many(WORKERS)
            acked, fault_end = await producer_kills(run, url, jobs, short)
        else:
            acked = await enqueue(producer, jobs, outcome.scenario, run.kind, url)
        outcome.acked = len(acked)
        if outcome.scenario == "poison":
            # One more where a store can hold an id that is not UTF-8 (`plant_unnamed`).
            outcome.expected_dlq = len(POISON) + UNKNOWN_TASKS + (run.kind != "postgres")
        if not run.workers:
            run.workers = await run.spawn_many(WORKERS)
            fault_end = await inject(run, broker, outcome.scenario, acked, short)
        if not await wait_until(lambda: completed(run) >= acked, 60.0 if short else 180.0):
            outcome.notes.append("not every acked job completed within the recovery window")
        if fault_end:
            outcome.recovery = run.done_after(fault_end)
        await finish(run, outcome, producer, acked)
        if run.kind == "sqlite":  # a producer SIGKILLed mid-write must leave the file sound
            with contextlib.closing(sqlite3.connect(url)) as db:
                (verdict,) = db.execute("PRAGMA integrity_check").fetchone()
            if verdict != "ok":
                outcome.notes.append(f"ERROR the database file is damaged: {verdict}")
    finally:
        with contextlib.suppress(Exception):  # the broker may be gone
            await asyncio.wait_for(producer.close(), 10.0)


def make_broker(kind: str, base: Path) -> Broker:
    """A new private broker of `kind` (not started)."""
    if kind == "redis":
        return RedisBroker(base)
    if kind == "postgres":
        return PostgresBroker(base)
    if kind == "rabbitmq":
        return RabbitMQBroker(base)
    return SQLiteFile(base)


async def run_scenario(kind: str, scenario: str, jobs: int, short: bool, base: Path) -> Outcome:
    """Run one scenario on a fresh private broker; return its row."""
    outcome = Outcome(kind, scenario)
    broker: Broker | None = None
    run: Run | None = None
    try:
        broker = make_broker(kind, base)
        broker.start()
        queue = f"chaos_{scenario.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
        root = Path(tempfile.mkdtemp(prefix=f"{kind}-{scenario}-", dir=base))
        write_config(
            root / "chaos.yaml", kind, broker.url, queue, LEASE, extra=EXTRA_OPTIONS.get(kind, {})
        )
        # Jobs run long enough that the queue outlives the fault and every kill meets jobs in
        # flight (24 at once: about 60 storm jobs or 120 others a second).
        pause = 0.4 if scenario == "storm" else 0.2
        run = Run(kind, root, root / "chaos.yaml", queue, pause)
        await body(run, broker, outcome, jobs, short)
    except Exception as exc:  # one broken scenario must not hide the others: it is a row
        outcome.notes.append(f"ERROR {type(exc).__name__}: {exc}")
    finally:
        if run is not None:
            for proc in [*run.workers, *run.schedulers]:
                if proc.poll() is None:
                    run.sigkill(proc)
        if broker is not None:
            broker.stop()
    return outcome


def print_table(rows: list[Outcome]) -> None:
    """Print the one table of the run, then the notes."""
    header = ("backend", "scenario", "acked", "lost", "dup ok", "dup bad", "stuck",
              "dlq act/exp", "recovery s", "result")  # fmt: skip
    lines = [header]
    for row in rows:
        recovery = "-" if row.recovery is None else f"{row.recovery:.1f}"
        lines.append((row.backend, row.scenario, str(row.acked), str(row.lost), str(row.dup_ok),
                      str(row.dup_bad), str(row.stuck), f"{row.dlq}/{row.expected_dlq}",
                      recovery, "FAIL" if row.failed else "ok"))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for index, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    for row in rows:
        for note in row.notes:
            print(f"{row.backend}/{row.scenario}: {note}")


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (backend, scenario) pairs this run covers (SQLite has no broker to fault)."""
    backends = [b for b in args.backends.split(",") if b]
    scenarios = [s for s in args.scenarios.split(",") if s]
    for name, known in ((backends, BACKENDS), (scenarios, SCENARIOS)):
        unknown = set(name) - set(known)
        if unknown:
            msg = f"unknown {sorted(unknown)}: choose from {', '.join(known)}"
            raise SystemExit(msg)
    return [(k, s) for k in backends for s in scenarios
            if not (k == "sqlite" and s in BROKER_FAULTS)]  # fmt: skip


async def main(argv: list[str]) -> int:
    """Run the planned scenarios one after the other; return the exit status."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--jobs", type=int, default=None, help="jobs per scenario")
    parser.add_argument("--short", action="store_true", help="500 jobs, shorter faults")
    parser.add_argument("--workdir", default=None, help="keep logs here (default: a temp dir)")
    parser.add_argument(
        "--rabbitmq-queue-type", choices=("classic", "quorum"), default="classic",
        help="the RabbitMQ backend's queue_type option (default: the backend's, classic)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.rabbitmq_queue_type != "classic":
        EXTRA_OPTIONS["rabbitmq"]["queue_type"] = args.rabbitmq_queue_type
        os.environ[QUEUE_TYPE_VAR] = args.rabbitmq_queue_type
    jobs = args.jobs or (500 if args.short else 3000)
    began = time.monotonic()
    rows = []
    with contextlib.ExitStack() as stack:
        if args.workdir:
            base = Path(args.workdir)
            base.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any run
        else:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lexigram-chaos-")))
        base.chmod(0o755)  # the PostgreSQL cluster runs as the postgres user, inside it
        # The producer's own warnings (its pool reconnecting while the broker is down) are
        # expected during the faults: keep them in a file rather than around the table.
        logging.basicConfig(filename=base / "producer.log", level=logging.INFO, force=True)
        for kind, scenario in plan(args):
            print(f"running {kind} {scenario} ({jobs} jobs)...", flush=True)
            rows.append(await run_scenario(kind, scenario, jobs, args.short, base))
        print()
        print_table(rows)
    print(f"\n{len(rows)} scenarios in {time.monotonic() - began:.0f} s")
    return 1 if any(row.failed for row in rows) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(asyncio.run(main(sys.argv[1:])))
