"""Fixtures for the RabbitMQ integration tests: a unique queue per test, deleted afterwards."""

from __future__ import annotations

import asyncio
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiormq
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue

DeleteFamily = Callable[[str, str], Awaitable[None]]  # the top conftest's delete_rabbitmq_family


async def queue_depth(url: str, name: str) -> int:
    """Ready messages in one queue (0 if it does not exist)."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        try:
            ok = await channel.queue_declare(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return 0
        return int(ok.message_count or 0)
    finally:
        await connection.close()


@pytest.fixture
def queue_name() -> str:
    """A queue name no other test uses."""
    return f"lexigram-test-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def make_rabbitmq_queue(
    amqp_url: str, queue_name: str, delete_rabbitmq_family: DeleteFamily
) -> AsyncIterator[Callable[..., RabbitMQTaskQueue]]:
    """Factory of handles on the test's queue; all closed and the queues deleted afterwards."""
    made: list[RabbitMQTaskQueue] = []

    def factory(**options: object) -> RabbitMQTaskQueue:
        queue = RabbitMQTaskQueue(amqp_url, queue_name, **options)  # type: ignore[arg-type]
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.close()
    await delete_rabbitmq_family(amqp_url, queue_name)


@pytest_asyncio.fixture
async def rabbitmq_queue(
    make_rabbitmq_queue: Callable[..., RabbitMQTaskQueue],
) -> RabbitMQTaskQueue:
    """A fresh classic queue with the default options."""
    return make_rabbitmq_queue()


async def rabbitmqctl(*args: str, within: float = 60.0) -> str:
    """Run ``rabbitmqctl ARGS`` (the tests run as root on the broker's host)."""
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), within)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"rabbitmqctl {' '.join(args)} failed: {text}"
    return text


async def drop_connections(queue_name: str) -> int:
    """Force-close (broker side) every connection a queue object named `queue_name` opened.

    The broker closes them with CONNECTION_FORCED, as on a network loss or a node
    shutdown; returns how many were closed.
    """
    listing = await rabbitmqctl("list_connections", "pid", "client_properties", "-q")
    pids = [
        line.split("\t", 1)[0]
        for line in listing.splitlines()
        if f'"lexigram-tasks:{queue_name} (' in line
    ]
    for pid in pids:
        await rabbitmqctl("close_connection", pid, "lexigram test: simulated connection loss")
    return len(pids)


@pytest.fixture
def broker_admin(amqp_url: str, service_unavailable: Callable[[str], NoReturn]) -> None:
    """Require ``rabbitmqctl`` for the broker under test (it must run on this host).

    Skipped like a missing service, or failed when LEXIGRAM_REQUIRE_SERVICES=1.
    """
    host = urlsplit(amqp_url).hostname
    if shutil.which("rabbitmqctl") and host in ("127.0.0.1", "localhost", "::1"):
        return
    service_unavailable(
        f"rabbitmqctl is not available for the broker at {host!r} (needed to force failures)."
    )


class Broker:
    """Direct access to the broker under test (raw AMQP and, for admin, rabbitmqctl)."""

    def __init__(self, url: str, delete_family: DeleteFamily) -> None:
        self.url = url
        self._delete_family = delete_family
        # The virtual host of `url` ("/" when it names none): rabbitmqctl needs it by name.
        self.vhost = unquote(urlsplit(url).path[1:]) or "/"

    def url_for_vhost(self, vhost: str) -> str:
        """`url` pointing at virtual host `vhost` instead of its own."""
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))

    async def depth(self, name: str) -> int:
        """Ready messages in queue `name` (0 if it does not exist)."""
        return await queue_depth(self.url, name)

    async def delete_family(self, name: str) -> None:
        """Delete a queue's whole family of queues and exchanges."""
        await self._delete_family(self.url, name)

    @staticmethod
    async def ctl(*args: str) -> str:
        """Run rabbitmqctl (needs the `broker_admin` fixture)."""
        return await rabbitmqctl(*args)

    @staticmethod
    async def drop_connections(queue_name: str) -> int:
        """Force-close the connections of queue objects named `queue_name`."""
        return await drop_connections(queue_name)


@pytest.fixture
def broker(amqp_url: str, delete_rabbitmq_family: DeleteFamily) -> Broker:
    """The broker under test, for looking behind the queue object's back."""
    return Broker(amqp_url, delete_rabbitmq_family)


WORKER_SCRIPT = Path(__file__).with_name("worker_process.py")


class Worker:
    """One `worker_process.py` child."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ready(self, within: float = 30.0) -> None:
        """Wait for the child's "ready" line (it is consuming)."""
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), within)
        assert line.strip() == b"ready", f"worker {self.proc.pid} said {line!r} instead of ready"

    async def kill(self) -> None:
        """SIGKILL: no drain, no goodbye; its TCP connection just dies."""
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()

    async def stop(self, within: float = 20.0) -> int:
        """SIGTERM (graceful drain), then SIGKILL if it does not exit in time."""
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), within)
            except TimeoutError:
                self.proc.kill()
        return await self.proc.wait()


@pytest_asyncio.fixture
async def spawn_worker(
    amqp_url: str, redis_url: str, queue_name: str, delete_rabbitmq_family: DeleteFamily
) -> AsyncIterator[Callable[..., Awaitable[Worker]]]:
    """Start worker processes on the test's queue; the test's Redis keys use its name."""
    workers: list[Worker] = []

    async def start(concurrency: int = 10, pause: float = 0.05) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER_SCRIPT),
            amqp_url,
            redis_url,
            queue_name,
            f"lexigram-test:{queue_name}",
            str(concurrency),
            str(pause),
            stdout=asyncio.subprocess.PIPE,
        )
        worker = Worker(proc)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        await worker.kill()
    recorder = aioredis.Redis.from_url(redis_url)
    try:
        await recorder.delete(
            f"lexigram-test:{queue_name}:starts", f"lexigram-test:{queue_name}:runs"
        )
    finally:
        await recorder.aclose()
    await delete_rabbitmq_family(amqp_url, queue_name)


@pytest_asyncio.fixture(autouse=True)
async def _close_borrowed_redis_connections() -> AsyncIterator[None]:
    """Close what the Redis backend opened for borrowed stores (state store, `stores`).

    Those stores share the process-wide Redis backend's connections, which a queue's
    close() leaves open on purpose; closing them here keeps sockets from outliving the
    test's event loop.
    """
    yield
    from lexigram.tasks.backends.redis import backend as redis_backend

    await redis_backend.close()


@pytest_asyncio.fixture
async def broker_proxy(amqp_url: str, tcp_proxy: Callable[[str, int], Awaitable[Any]]) -> Any:
    """A `TcpProxy` (the top conftest's) to the test broker; `url(amqp_url)` goes through it."""
    parts = urlsplit(amqp_url)
    return await tcp_proxy(parts.hostname or "127.0.0.1", parts.port or 5672)
