"""The whole conformance kit (poison hook included) on a three-node Redis Cluster.

The test starts its own cluster on free loopback ports. Every key of a queue shares
one hash tag, so every Lua script touches one slot; this runs the queue through
redis-py's ``RedisCluster`` client to prove it (a script that touched another slot
would fail with CROSSSLOT). The kit's default margins hold unwidened.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NoReturn

import pytest
import pytest_asyncio
from redis.asyncio.cluster import RedisCluster

from lexigram.contracts.tasks import Job, TaskQueueProtocol
from lexigram.tasks.backends.redis import (
    RedisCacheBackend,
    RedisTaskQueue,
    RedisWorkflowStateStore,
)
from lexigram.tasks.testing import (
    KeyTTLQueueFactory,
    QueueCancellationConformance,
    QueueConformance,
    QueueFactory,
    QueuePoisonConformance,
    RunStoreFactory,
    WorkflowRunJobsConformance,
    WorkflowRunListingConformance,
    WorkflowRunStoreConformance,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def _wait_for_line(proc: subprocess.Popen[bytes], marker: bytes, within: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "redis-server exited during start-up"
        if marker in line:
            return
    pytest.fail(f"redis-server did not print {marker!r} within {within} s")


@pytest.fixture(scope="module")
def cluster_url(
    tmp_path_factory: pytest.TempPathFactory,
    service_unavailable: Callable[[str], NoReturn],
    free_port: Callable[..., int],
) -> Iterator[str]:
    if REDIS_SERVER is None or REDIS_CLI is None:
        service_unavailable(
            "redis-server/redis-cli are not on PATH; the cluster test starts its own."
        )
    ports = [free_port(partner_offset=10_000) for _ in range(3)]  # + the cluster bus ports
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            directory: Path = tmp_path_factory.mktemp(f"cluster-{port}")
            proc = subprocess.Popen(  # noqa: S603 - a fixed binary with our own arguments
                [
                    REDIS_SERVER,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--dir", str(directory),
                    "--save", "",
                    "--appendonly", "no",
                ],
                stdout=subprocess.PIPE,
            )  # fmt: skip
            nodes.append(proc)
            _wait_for_line(proc, b"Ready to accept connections", 20)
        create = subprocess.run(  # noqa: S603 - a fixed binary with our own arguments
            [
                REDIS_CLI,
                "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in ports),
                "--cluster-replicas", "0",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        assert create.returncode == 0, create.stdout.decode() + create.stderr.decode()
        # The cluster is usable once every node reports it OK.
        deadline = time.monotonic() + 20
        for port in ports:
            while True:
                info = subprocess.run(  # noqa: S603 - a fixed binary with our own arguments
                    [REDIS_CLI, "-p", str(port), "cluster", "info"],
                    capture_output=True,
                    timeout=10,
                    check=False,
                ).stdout
                if b"cluster_state:ok" in info:
                    break
                assert time.monotonic() < deadline, f"node {port} never reached cluster_state:ok"
                time.sleep(0.1)  # polling another process's state: no event to wait on
        for proc in nodes:
            assert proc.stdout is not None
            proc.stdout.close()  # nothing more to read; do not let the pipe fill
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for proc in nodes:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def _cluster_queues(
    cluster_url: str, lease_seconds: float
) -> AsyncIterator[Callable[..., Awaitable[RedisTaskQueue]]]:
    """Handles on one queue of the cluster (a key TTL may be given), each its own client."""
    prefix = f"lexigram-cluster-{uuid.uuid4().hex[:8]}"
    made: list[tuple[RedisTaskQueue, RedisCluster]] = []

    async def factory(idempotency_ttl: float = 86400.0) -> RedisTaskQueue:
        client = RedisCluster.from_url(cluster_url)
        queue = RedisTaskQueue(
            queue_name="conformance",
            key_prefix=prefix,
            client=client,
            visibility_timeout=lease_seconds,
            idempotency_ttl=idempotency_ttl,
        )
        made.append((queue, client))
        return queue

    yield factory
    if made:
        await made[0][0].clear()
    for queue, client in made:
        await queue.close()
        await client.aclose()


@pytest_asyncio.fixture
async def make_queue(cluster_url: str, lease_seconds: float) -> AsyncIterator[QueueFactory]:
    async with _cluster_queues(cluster_url, lease_seconds) as factory:
        yield factory


@pytest_asyncio.fixture
async def queues_with_idempotency_ttl(
    cluster_url: str, lease_seconds: float
) -> AsyncIterator[KeyTTLQueueFactory]:
    """A queue of the cluster holding idempotency keys for the given seconds."""
    async with _cluster_queues(cluster_url, lease_seconds) as factory:
        yield factory


class TestRedisClusterQueueConformance(QueueConformance):
    @pytest.fixture
    def make_queue_with_idempotency_ttl(
        self, queues_with_idempotency_ttl: KeyTTLQueueFactory
    ) -> KeyTTLQueueFactory:
        """Queues holding idempotency keys for the given seconds (the kit's key-TTL test)."""
        return queues_with_idempotency_ttl

    async def test_queue_keys_share_one_cluster_slot(
        self, make_queue: QueueFactory, cluster_url: str
    ) -> None:
        queue = await make_queue()
        assert isinstance(queue, RedisTaskQueue)
        await queue.enqueue(Job(name="x", idempotency_key="k"))
        client = RedisCluster.from_url(cluster_url)
        try:
            keys = (*queue.keys.fixed, queue.keys.idempotency_key("k"))
            slots = {client.keyslot(key) for key in keys}
        finally:
            await client.aclose()
        assert len(slots) == 1, "a queue's keys must all hash to one slot"


class TestRedisClusterQueuePoisonConformance(QueuePoisonConformance):
    async def plant_raw_payload(self, queue: TaskQueueProtocol, raw: bytes) -> str:
        # The queue's own enqueue script stores the payload bytes as given, where
        # `enqueue` puts an encoded job (entry: id, payload, priority, ready-at,
        # idempotency key and ttl, delivery count, retrying flag).
        assert isinstance(queue, RedisTaskQueue)
        job_id = f"poison-{uuid.uuid4().hex[:12]}"
        entry = (job_id, raw, 0, 0, "", 0, 0, "0")
        [(status, stored)] = await queue._enqueue_entries([entry])
        assert (status, stored) == (1, job_id)
        return job_id


class TestRedisClusterCancellation(QueueCancellationConformance):
    """The cancel script publishes through the cluster; workers subscribe on one node."""


async def test_cache_reads_and_writes_many_keys_across_slots(cluster_url: str) -> None:
    """Cache keys carry no hash tag: the batch calls split by slot instead of failing."""
    client = RedisCluster.from_url(cluster_url)
    cache = RedisCacheBackend(client=client, key_prefix=f"lexigram-cluster-{uuid.uuid4().hex[:8]}")
    try:
        keys = [f"k{index}" for index in range(40)]
        assert len({client.keyslot(f"x:cache:{key}") for key in keys}) > 1
        await cache.write_many([(key, key.upper(), 60) for key in keys], [])
        assert await cache.get_many([*keys, "none"]) == [*(k.upper() for k in keys), None]
        await cache.write_many([("k0", "again", None), ("k1", "gone", 0)], keys[2:])
        assert await cache.get_many(keys[:3]) == ["again", None, None]
        await cache.write_many([], ["k0"])
        assert await cache.keys("") == []
    finally:
        await cache.close()
        await client.aclose()


@pytest_asyncio.fixture
async def make_run_store(cluster_url: str) -> AsyncIterator[RunStoreFactory]:
    """Workflow run stores of the cluster under a prefix of the test's own, each its own client.

    A run's hash and the run index share the ``{<prefix>:workflows}`` tag: every script
    that writes them runs in one slot.
    """
    prefix = f"lexigram-cluster-{uuid.uuid4().hex[:8]}"
    made: list[tuple[RedisWorkflowStateStore, RedisCluster]] = []

    async def factory() -> RedisWorkflowStateStore:
        client = RedisCluster.from_url(cluster_url)
        store = RedisWorkflowStateStore(client=client, key_prefix=prefix)
        made.append((store, client))
        return store

    yield factory
    for store, client in made:
        await store.close()
        await client.aclose()


class TestRedisClusterRunStoreConformance(
    WorkflowRunStoreConformance, WorkflowRunJobsConformance, WorkflowRunListingConformance
):
    """Runs are created, joined, listed (through the run index) and deleted in one slot."""
