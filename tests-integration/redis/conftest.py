"""Fixtures for the Redis integration tests: a unique key prefix per test, cleaned up."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from lexigram.tasks.backends.redis import RedisConnector, RedisTaskQueue

DeletePrefix = Callable[[str, str], Awaitable[None]]  # the top conftest's delete_redis_prefix


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test uses (every key this test makes starts with it)."""
    return f"lexigram-test-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def clean_prefix(
    redis_url: str, key_prefix: str, delete_redis_prefix: DeletePrefix
) -> AsyncIterator[str]:
    """The test's key prefix; its keys are deleted afterwards."""
    yield key_prefix
    await delete_redis_prefix(redis_url, key_prefix)


@pytest_asyncio.fixture
async def connector(redis_url: str, clean_prefix: str) -> AsyncIterator[RedisConnector]:
    """A connector to the test Redis; the test's keys are deleted afterwards."""
    conn = RedisConnector(redis_url)
    yield conn
    await conn.close()


@pytest_asyncio.fixture
async def make_redis_queue(
    redis_url: str, key_prefix: str, delete_redis_prefix: DeletePrefix
) -> AsyncIterator[Callable[..., RedisTaskQueue]]:
    """Factory of queues under the test's key prefix; all closed and deleted afterwards."""
    made: list[RedisTaskQueue] = []

    def factory(queue_name: str = "tasks", **options: object) -> RedisTaskQueue:
        queue = RedisTaskQueue(redis_url, queue_name, key_prefix=key_prefix, **options)  # type: ignore[arg-type]
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.close()
    await delete_redis_prefix(redis_url, key_prefix)


@pytest_asyncio.fixture
async def redis_queue(make_redis_queue: Callable[..., RedisTaskQueue]) -> RedisTaskQueue:
    """A fresh queue with a 1 s visibility timeout."""
    return make_redis_queue(visibility_timeout=1.0)


PROC_SCRIPT = Path(__file__).with_name("redis_proc.py")


class Child:
    """One `redis_proc.py` child process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def ready(self, within: float = 20.0) -> None:
        """Wait for the child's "ready" line (it is consuming, scheduling, ...)."""
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), within)
        assert line.strip() == b"ready", f"child {self.pid} said {line!r} instead of ready"

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    async def stop(self, within: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit within `within` seconds."""
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), within)
            except TimeoutError:
                self.proc.kill()
        return await self.proc.wait()


@pytest_asyncio.fixture
async def spawn(
    redis_url: str, key_prefix: str, delete_redis_prefix: DeletePrefix
) -> AsyncIterator[Callable[..., Awaitable[Child]]]:
    """Start `redis_proc.py <mode>` children (under the test's key prefix); all reaped."""
    children: list[Child] = []

    async def start(mode: str, *extra: str, url: str | None = None) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PROC_SCRIPT),
            mode,
            "--url",
            url or redis_url,
            "--prefix",
            key_prefix,
            *extra,
            stdout=asyncio.subprocess.PIPE,
        )
        child = Child(proc)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
        await child.proc.wait()
    await delete_redis_prefix(redis_url, key_prefix)
