r"""Pages (SQLite) or buffers (PostgreSQL) read, and CPU spent, per dequeue + ack against depth.

The deterministic companion of ``backlog_bench.py``: no worker process, no handler, no
result store; one process fills a fresh queue with `--depth` no-op jobs (``enqueue_many``,
1,000 per call, ids made by `--ids`), then takes `--batches` batches of 100
(``dequeue_batch(100)``) and acks each job (the 100 acks submitted concurrently, as a
worker's settle them), and reports per job:

- **pages**: on SQLite, the page fetches of the queue's connection (hits + misses of
  ``sqlite3_db_status``, the memory map turned off so every fetch is counted; a miss is
  a page not in the connection's cache, read from the file); on
  PostgreSQL, the shared buffers hit + read by every table and index of the private
  database (``pg_statio_user_tables``), read after the connections closed (which
  flushes their counters); a read is a block not in shared buffers (from the OS);
- **CPU ms**: this process's user + system time (SQLite runs in it), and on PostgreSQL
  the backends' of the private database (from /proc; the server must be local);
- on PostgreSQL, the WAL the server wrote (records, full-page images, bytes; from
  ``pg_stat_wal``, which counts every database of the server: run it on a quiet one);
- on PostgreSQL, the scans of each jobs-table index per batch (which plans the
  statements got), and with ``--explain`` the ``EXPLAIN (ANALYZE, BUFFERS)`` of the
  dequeue's pick and of one ack batch, taken after the measured batches. The filled table
  is not vacuumed or analyzed (as in ``backlog_bench.py`` on a server without autovacuum)
  unless ``--vacuum`` is given: the planner's choices differ between the two.

``--ids uuid4`` gives every job a random version 4 id (the previous default), ``--ids
default`` leaves the id to `Job` (time-ordered since the `new_job_id` change).

Usage::

    .venv/bin/python benchmarks/backlog_pages.py --backend sqlite --depth 1000000
    .venv/bin/python benchmarks/backlog_pages.py --backend postgres --depth 10000 --ids uuid4 \
        --explain

Instructions per job on SQLite (callgrind counts every thread of the process, the WAL
checkpointer's included): fill a file once, then drain copies of it with two batch
counts; the difference over the jobs between them leaves out the start and the copy::

    .venv/bin/python benchmarks/backlog_pages.py --backend sqlite --depth 1000000 --keep FILE
    for n in 10 40; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        .venv/bin/python benchmarks/backlog_pages.py --backend sqlite --source FILE --mmap \
        --batches $n; done   # (instructions at 40 - at 10) / 3,000
"""

# ruff: noqa: PLC0415 - backends are imported by the case that uses them.

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import resource
import shutil
import sys
import tempfile
import uuid
from typing import Any

BATCH = 100
_HIT, _MISS = 7, 8  # SQLITE_DBSTATUS_CACHE_HIT / _MISS


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _jobs(count: int, ids: str) -> list[Any]:
    from lexigram.contracts.tasks import Job

    if ids == "uuid4":
        return [Job(id=str(uuid.uuid4()), name="bench", args=(0.0,)) for _ in range(count)]
    return [Job(name="bench", args=(0.0,)) for _ in range(count)]


async def _fill(queue: Any, depth: int, ids: str) -> None:
    for first in range(0, depth, 1000):
        results = await queue.enqueue_many(_jobs(min(1000, depth - first), ids))
        if not all(r.is_ok() for r in results):
            msg = "enqueue_many refused jobs"
            raise RuntimeError(msg)


async def _drain(queue: Any, batches: int) -> int:
    done = 0
    for _ in range(batches):
        jobs = await queue.dequeue_batch(BATCH)
        acked = await asyncio.gather(*(queue.ack(j.id, lease_token=j.lease_token) for j in jobs))
        done += sum(acked)
    return done


_WRITE = 9  # SQLITE_DBSTATUS_CACHE_WRITE: pages written (to the WAL) at commits


class _SQLiteStatus:
    """Page fetches and writes of one `sqlite3.Connection`, read through the C API."""

    def __init__(self, conn: Any) -> None:
        lib = ctypes.CDLL("libsqlite3.so.0")
        self._status = lib.sqlite3_db_status
        self._status.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
        ]
        # CPython 3.11's connection object holds its `sqlite3 *` right after the object
        # header: the only way to reach it from Python (a benchmark's shortcut).
        self._db = ctypes.c_void_p.from_address(id(conn) + object.__basicsize__).value

    def take(self) -> tuple[int, int, int]:
        """Cache hits, misses and pages written since the last call (counters reset)."""
        counts = []
        for op in (_HIT, _MISS, _WRITE):
            cur, high = ctypes.c_int(), ctypes.c_int()
            self._status(self._db, op, ctypes.byref(cur), ctypes.byref(high), 1)
            counts.append(cur.value)
        return counts[0], counts[1], counts[2]


async def _sqlite_drain(queue: Any, status: _SQLiteStatus, batches: int) -> dict[str, int]:
    """Drain as `_drain` does; the jobs, and the pages the takes and the acks fetched.

    A take's statements run while `dequeue_batch` runs (see `Database.run_now`), the
    acks' at once too; their commit (and the pages it reads) comes before the next take
    returns, so it is counted with the acks.
    """
    totals = dict.fromkeys(("jobs", "take", "ack", "misses", "written"), 0)

    def count(phase: str) -> None:
        hits, misses, written = status.take()
        totals[phase] += hits + misses
        totals["misses"] += misses
        totals["written"] += written

    for _ in range(batches):
        count("ack")
        jobs = await queue.dequeue_batch(BATCH)
        count("take")
        acked = await asyncio.gather(*(queue.ack(j.id, lease_token=j.lease_token) for j in jobs))
        totals["jobs"] += sum(acked)
    await queue.check_connection()  # an awaited call: the last acks are committed
    count("ack")
    return totals


async def sqlite_fill(path: str, depth: int, ids: str) -> None:
    """Fill a new SQLite file at `path` with `depth` jobs, and keep it (``--keep``)."""
    from lexigram.contracts.tasks import TaskBackendSpec
    from lexigram.tasks._backends import create_queue

    queue: Any = create_queue(
        TaskBackendSpec(type="sqlite", url=f"sqlite:///{path}", queue_name="q")
    )
    await _fill(queue, depth, ids)
    await queue.close()


async def sqlite_case(
    depth: int, ids: str, batches: int, *, source: str | None = None, mmap: bool = False
) -> dict[str, float]:
    """Fill a new SQLite file (or copy `source`), drain `batches` batches; figures per job."""
    from lexigram.contracts.tasks import TaskBackendSpec
    from lexigram.tasks._backends import create_queue

    with tempfile.TemporaryDirectory() as home:
        url = f"sqlite:///{home}/q.db"
        if source is not None:
            shutil.copyfile(source, f"{home}/q.db")
        queue: Any = create_queue(TaskBackendSpec(type="sqlite", url=url, queue_name="q"))
        if source is None:
            await _fill(queue, depth, ids)
        await queue.dequeue_batch(BATCH)  # opens the connection; leases 100 left to expire
        conn = queue._db._conn  # noqa: SLF001 - a benchmark reads the backend's connection
        if not mmap:
            conn.execute("PRAGMA mmap_size = 0")
        await queue.check_connection()  # an awaited call: that lease is committed
        status = _SQLiteStatus(conn)
        status.take()
        cpu = _cpu()
        totals = await _sqlite_drain(queue, status, batches)
        cpu = _cpu() - cpu
        await queue.close()
    done = totals["jobs"]
    if not done:
        return {"jobs": 0}  # --batches 0: the baseline of an instruction count
    return {
        "jobs": done,
        "pages/job": (totals["take"] + totals["ack"]) / done,
        "of which take": totals["take"] / done,
        "of which ack and commit": totals["ack"] / done,
        "of which cache misses": totals["misses"] / done,
        "pages written/job": totals["written"] / done,
        "client CPU ms/job": cpu * 1e3 / done,
    }


def _proc_cpu(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:  # noqa: PTH123
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


async def postgres_case(
    server: str, depth: int, ids: str, batches: int, *, explain: bool, vacuum: bool
) -> dict[str, float]:
    """Fill a new PostgreSQL database, drain `batches` batches; figures per job."""
    import asyncpg

    from lexigram.contracts.tasks import TaskBackendSpec
    from lexigram.tasks._backends import create_queue

    name = f"backlog_pages_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = server.rsplit("/", 1)[0] + f"/{name}"
    try:
        spec = TaskBackendSpec(type="postgres", url=url, queue_name="q")
        filler: Any = create_queue(spec)
        await filler.connect()
        await _fill(filler, depth, ids)
        await filler.close()
        if vacuum:
            probe = await asyncpg.connect(url)
            await probe.execute("VACUUM ANALYZE")  # as autovacuum leaves a freshly filled table
            await probe.close()
        # A backend flushes its statistics within a second or when it exits, which comes
        # after close() returned: the fill's and the VACUUM's (an ON CONFLICT insert counts
        # a primary-key scan) must not land in the drain's figures.
        await asyncio.sleep(1.5)
        queue: Any = create_queue(spec)
        await queue.connect()
        await queue.dequeue_batch(BATCH)
        await asyncio.sleep(1.5)
        pids = [
            r["pid"]
            for r in await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
        ]
        before, scans = await _statio(url), await _index_scans(url)
        wal = await _wal(url)
        server_cpu = _proc_cpu(pids)
        cpu = _cpu()
        done = await _drain(queue, batches)
        cpu = _cpu() - cpu
        server_cpu = _proc_cpu(pids) - server_cpu
        await queue.close()
        await asyncio.sleep(0.5)
        after = await _statio(url)
        wal = tuple(now - then for now, then in zip(await _wal(url), wal, strict=True))
        for index, count in (await _index_scans(url)).items():
            used = count - scans.get(index, 0)
            print(f"-- {index}: {used / (done / BATCH):.1f} scans per batch", file=sys.stderr)
        figures = {
            "jobs": done,
            "buffers/job": (after[0] + after[1] - before[0] - before[1]) / done,
            "of which read": (after[1] - before[1]) / done,
            "client CPU ms/job": cpu * 1e3 / done,
            "server CPU ms/job": server_cpu * 1e3 / done,
            "WAL records/job": wal[0] / done,
            "full-page images/job": wal[1] / done,
            "WAL bytes/job": wal[2] / done,
        }
        if explain:
            await _explain(url, queue)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return figures


async def _statio(url: str) -> tuple[int, int]:
    """Shared buffers hit and read (not in shared buffers) by the database's tables."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT sum(coalesce(heap_blks_hit, 0) + coalesce(idx_blks_hit, 0)"
            " + coalesce(toast_blks_hit, 0) + coalesce(tidx_blks_hit, 0))::bigint AS hit,"
            " sum(coalesce(heap_blks_read, 0) + coalesce(idx_blks_read, 0)"
            " + coalesce(toast_blks_read, 0) + coalesce(tidx_blks_read, 0))::bigint AS read"
            " FROM pg_statio_user_tables"
        )
        return int(row["hit"]), int(row["read"])
    finally:
        await conn.close()


async def _wal(url: str) -> tuple[int, int, int]:
    """The server's WAL records, full-page images and bytes so far (every database's)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow("SELECT wal_records, wal_fpi, wal_bytes::bigint FROM pg_stat_wal")
        return int(row["wal_records"]), int(row["wal_fpi"]), int(row["wal_bytes"])
    finally:
        await conn.close()


async def _index_scans(url: str) -> dict[str, int]:
    """Scans of each index of the database (which plan the worker's statements got)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT indexrelname, idx_scan FROM pg_stat_user_indexes")
        return {row["indexrelname"]: int(row["idx_scan"]) for row in rows}
    finally:
        await conn.close()


async def _explain(url: str, queue: Any) -> None:
    import asyncpg

    sql = queue._sql  # noqa: SLF001 - the backend's own statements
    conn = await asyncpg.connect(url)
    # Inside a transaction that is rolled back: the plans' side effects are not kept.
    transaction = conn.transaction()
    await transaction.start()
    try:
        pick = sql.explain_dequeue.removeprefix("EXPLAIN ")
        _show("dequeue pick", await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {pick}", "q", BATCH))
        await conn.execute("SAVEPOINT plan")
        plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql.dequeue}", "q", BATCH, 60.0)
        _show("dequeue (pick and lease)", plan)
        await conn.execute("ROLLBACK TO SAVEPOINT plan")
        leased = await conn.fetch(sql.dequeue, "q", BATCH, 60.0)
        ids = [r["id"] for r in leased]
        seqs = [r["seq"] for r in leased]
        counts = [r["delivery_count"] for r in leased]
        plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql.ack_many}", ids, seqs, counts)
        _show("ack of the 100 just leased", plan)
    finally:
        await transaction.rollback()
        await conn.close()


_WIDTH = 150


def _show(title: str, plan: list[Any]) -> None:
    print(f"-- {title}", file=sys.stderr)
    for row in plan:
        line = row[0]
        print(line if len(line) <= _WIDTH else line[:_WIDTH] + " ...", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Run one case and print its figures as one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--depth", type=int, default=10_000)
    parser.add_argument("--ids", choices=("default", "uuid4"), default="default")
    parser.add_argument("--batches", type=int, default=50, help="batches of 100 (default 50)")
    parser.add_argument("--explain", action="store_true", help="PostgreSQL: print the plans")
    parser.add_argument(
        "--vacuum",
        action="store_true",
        help="PostgreSQL: VACUUM ANALYZE the filled table first (as autovacuum would)",
    )
    parser.add_argument("--pg", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument(
        "--keep", metavar="FILE", help="SQLite: fill a new file FILE with --depth jobs and stop"
    )
    parser.add_argument(
        "--source",
        metavar="FILE",
        help="SQLite: drain a copy of FILE (made with --keep) instead of filling a new one",
    )
    parser.add_argument(
        "--mmap",
        action="store_true",
        help="SQLite: keep the backend's memory map (pages read through it are not counted)",
    )
    args = parser.parse_args(argv)
    if args.backend == "sqlite" and args.keep:
        asyncio.run(sqlite_fill(args.keep, args.depth, args.ids))
        return
    if args.backend == "sqlite":
        figures = asyncio.run(
            sqlite_case(args.depth, args.ids, args.batches, source=args.source, mmap=args.mmap)
        )
    else:
        figures = asyncio.run(
            postgres_case(
                args.pg,
                args.depth,
                args.ids,
                args.batches,
                explain=args.explain,
                vacuum=args.vacuum,
            )
        )
    shown = ", ".join(
        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()
    )
    case = f"a copy of {args.source}" if args.source else f"depth {args.depth:,} ids {args.ids}"
    print(f"{args.backend} {case}: {shown}")


if __name__ == "__main__":
    main()
