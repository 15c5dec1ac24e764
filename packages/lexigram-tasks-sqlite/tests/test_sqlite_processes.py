"""Another process on the same file wakes this one: jobs, results, progress and locks.

The peer (`sqlite_peer.py`) is a real second process with its own connection and
wake-up socket; each check measures from the peer's call to this process's wake-up.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from lexigram.tasks.backends.sqlite import (
    SQLiteLockManager,
    SQLiteOptions,
    SQLiteProgressTracker,
    SQLiteResultStore,
    SQLiteTaskQueue,
)

PEER = Path(__file__).with_name("sqlite_peer.py")
WAKE_MARGIN = 0.1  # the kit's default wake_margin
# The fallback poll is set far above the margin, so only the wake-up socket can meet it.
SLOW_POLL = SQLiteOptions(poll_interval=30.0)


class Peer:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def send(self, command: str) -> float:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"{command}\n".encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 10.0)
        return float(line)


@pytest_asyncio.fixture
async def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "shared.db")


@pytest_asyncio.fixture
async def peer(db_path: str) -> AsyncIterator[Peer]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PEER),
        db_path,
        "jobs",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 30.0) == b"ready\n"
    yield Peer(proc)
    if proc.returncode is None:
        assert proc.stdin is not None
        proc.stdin.write(b"quit\n")
        await proc.stdin.drain()
        await asyncio.wait_for(proc.wait(), 10.0)


async def test_an_enqueue_in_another_process_wakes_a_blocked_consumer(
    db_path: str, peer: Peer
) -> None:
    queue = SQLiteTaskQueue(db_path, queue_name="jobs", options=SLOW_POLL)
    try:
        latencies = []
        for trial in range(5):
            waiting = asyncio.create_task(queue.dequeue_batch(1, timeout=10.0))
            await asyncio.sleep(0.2)  # the consumer is blocked
            sent_at = await peer.send(f"enqueue job{trial}")
            jobs = await waiting
            latencies.append(time.time() - sent_at)
            assert [job.name for job in jobs] == [f"job{trial}"]
            assert await queue.ack(jobs[0].id, lease_token=jobs[0].lease_token)
        assert sorted(latencies)[3] <= WAKE_MARGIN, latencies
    finally:
        await queue.close()


async def test_a_result_stored_in_another_process_wakes_wait(db_path: str, peer: Peer) -> None:
    store = SQLiteResultStore(db_path, options=SLOW_POLL)
    try:
        waiting = asyncio.create_task(store.wait("job-1", timeout=10.0))
        await asyncio.sleep(0.2)
        sent_at = await peer.send("result job-1")
        result = await waiting
        assert result is not None
        assert result.data == "from the peer"
        assert time.time() - sent_at <= WAKE_MARGIN * 3
    finally:
        await store.close()


async def test_progress_from_another_process_streams_live(db_path: str, peer: Peer) -> None:
    tracker = SQLiteProgressTracker(db_path, options=SLOW_POLL)
    try:
        await peer.send("progress task-1 1 4")
        seen: list[tuple[int, str]] = []

        async def follow() -> None:
            seen.extend([(s.current, s.status.value) async for s in tracker.subscribe("task-1")])

        following = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        for current in (2, 3):
            await peer.send(f"progress task-1 {current} 4")
        await peer.send("done task-1")
        await asyncio.wait_for(following, 5.0)
        assert seen == [(1, "running"), (2, "running"), (3, "running"), (4, "complete")]
    finally:
        await tracker.close()


async def test_a_lock_released_in_another_process_wakes_its_waiter(
    db_path: str, peer: Peer
) -> None:
    locks = SQLiteLockManager(db_path, options=SLOW_POLL)
    try:
        await peer.send("lock report")
        lock = locks.acquire("report", timeout=5.0)
        assert not await lock.try_acquire()
        waiting = asyncio.create_task(lock.acquire_wait(timeout=10.0))
        await asyncio.sleep(0.2)
        released_at = await peer.send("unlock report")
        assert await waiting
        assert time.time() - released_at <= WAKE_MARGIN * 3
        await lock.release()
    finally:
        await locks.close()


@pytest.mark.parametrize("poll_interval", [0.2])
async def test_without_the_socket_the_bounded_poll_still_wakes(
    db_path: str, peer: Peer, poll_interval: float
) -> None:
    queue = SQLiteTaskQueue(
        db_path, queue_name="jobs", options=SQLiteOptions(poll_interval=poll_interval)
    )
    queue.database.notifier.supported = False  # as on a platform without UNIX sockets
    try:
        waiting = asyncio.create_task(queue.dequeue_batch(1, timeout=10.0))
        await asyncio.sleep(0.1)
        sent_at = await peer.send("enqueue polled")
        jobs = await waiting
        assert [job.name for job in jobs] == ["polled"]
        assert time.time() - sent_at <= poll_interval + WAKE_MARGIN
    finally:
        await queue.close()
