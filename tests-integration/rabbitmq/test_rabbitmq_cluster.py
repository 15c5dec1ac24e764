"""Failover on a three-node RabbitMQ cluster with quorum queues.

The test starts its own cluster: three private nodes on free loopback ports, each with
its own node name, distribution port, data and log directories and plugin list, and a
shared Erlang cookie of their own (the shared broker and its cookie are never touched),
joined with ``rabbitmqctl join_cluster``. The producer and the worker are given all three
nodes in one URL (``amqp://guest:guest@127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/``), each
in another order, so each connects to a known node first.

While jobs flow, one node is SIGKILLed: the one the worker is connected to, and (in the
other test) the quorum queue's leader, which is also the producer's node. Every job
whose enqueue returned Ok must run, and the queue must end empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from lexigram.contracts.tasks import BackendConnectionError, Job
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.execution import WorkerPool

# Three Erlang nodes booting take both cores of a small machine for a minute: run alone
# (exclusive), so neither these tests nor the others time out under the load they make.
pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.exclusive]

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
START_WITHIN = 60.0
JOBS = 400


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Node:
    """One private RabbitMQ node of the test cluster."""

    root: Path
    home: Path
    user: pwd.struct_passwd
    port: int
    dist_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"lexigram-cluster-{self.port}@localhost"

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),  # where the cluster's own Erlang cookie is
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def prepare(self) -> None:
        self.root.mkdir()
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        for name in ("mnesia", "log"):
            (self.root / name).mkdir()
        for path in (self.root, *self.root.iterdir()):
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def start(self) -> None:
        env = self.env()
        with (self.root / "server.log").open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - the distribution's start script
                [*as_user(self.user), "env", *(f"{k}={v}" for k, v in env.items()), str(SERVER)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_WITHIN
        while not listening(self.port):
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(f"node {self.name} exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"node {self.name} did not listen within {START_WITHIN:g} s")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the whole node (the Erlang VM and its helpers): a crash, no goodbye."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)

    def log_tail(self) -> str:
        text = ""
        for log in (self.root / "server.log", *sorted((self.root / "log").glob("*.log"))):
            with contextlib.suppress(OSError):
                text += log.read_text(errors="replace")[-400:]
        return text

    async def ctl(self, *args: str, within: float = 60.0) -> str:
        proc = await asyncio.create_subprocess_exec(
            *as_user(self.user),
            "env",
            *(f"{k}={v}" for k, v in self.env().items()),
            str(CTL),
            "-n",
            self.name,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), within)
        text = out.decode(errors="replace")
        assert proc.returncode == 0, f"rabbitmqctl {' '.join(args)} on {self.name}: {text}"
        return text


def as_user(user: pwd.struct_passwd) -> list[str]:
    return ["runuser", "-u", user.pw_name, "--"] if os.geteuid() != user.pw_uid else []


@dataclass
class Cluster:
    nodes: list[Node]

    def url(self, *order: int) -> str:
        """A cluster URL listing the nodes in `order` (the client tries them so)."""
        hosts = ",".join(self.nodes[i].url for i in order)
        return f"amqp://guest:guest@{hosts}/"

    async def ensure_running(self) -> None:
        """Start again every node a test killed and wait until it is back in the cluster."""
        stopped = [n for n in self.nodes if n.process is None or n.process.poll() is not None]
        for node in stopped:
            node.start()
        for node in stopped:
            await asyncio.to_thread(node.wait_listening)
            await node.ctl("await_startup")

    async def leader_of(self, queue: str) -> int:
        """Index of the node leading quorum queue `queue`."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                listing = await node.ctl(
                    "list_queues", "name", "leader", "-q", "--no-table-headers"
                )
                for line in listing.splitlines():
                    name, _, leader = line.partition("\t")
                    if name == queue:
                        return next(i for i, n in enumerate(self.nodes) if n.name == leader.strip())
        pytest.fail(f"no node lists quorum queue {queue!r}")


@pytest.fixture(scope="module")
def cluster(
    service_unavailable: Callable[[str], NoReturn], free_port: Callable[[], int]
) -> Iterator[Cluster]:
    """Three private RabbitMQ nodes joined into one cluster (module scope: started once)."""
    if not SERVER.is_file() or not CTL.is_file():
        service_unavailable("the cluster test needs rabbitmq-server and rabbitmqctl installed")
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("rabbitmq")
        except KeyError:
            service_unavailable("running RabbitMQ as root is refused and there is no rabbitmq user")
    else:
        user = pwd.getpwuid(os.geteuid())
    base = Path(tempfile.mkdtemp(prefix="lexigram-rabbitmq-cluster-"))
    base.chmod(0o755)
    home = base / "home"
    home.mkdir()
    cookie = home / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(16).upper())
    cookie.chmod(0o400)
    for path in (home, cookie):
        os.chown(path, user.pw_uid, user.pw_gid)
    nodes = [Node(base / f"node{i}", home, user, free_port(), free_port()) for i in range(3)]
    try:
        for node in nodes:
            node.prepare()
            node.start()
        for node in nodes:
            node.wait_listening()
        asyncio.run(_join(nodes))
        yield Cluster(nodes)
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(base, ignore_errors=True)


async def _join(nodes: list[Node]) -> None:
    async def join(node: Node) -> None:
        await node.ctl("stop_app")
        await node.ctl("join_cluster", nodes[0].name)
        await node.ctl("start_app")
        await node.ctl("await_startup")

    # One node at a time: two nodes joining at once race on the cluster's schema, and
    # mnesia then refuses to start on one of them.
    for node in nodes[1:]:
        await join(node)
    status = await nodes[0].ctl("cluster_status", "--formatter", "json")
    for node in nodes:
        assert node.name in status, f"{node.name} did not join: {status}"


class Runs:
    """What the in-process worker ran, job key by job key."""

    def __init__(self) -> None:
        self.done: Counter[str] = Counter()

    async def record(self, key: str) -> None:
        await asyncio.sleep(0.01)  # the job's "work": jobs are in flight when the node dies
        self.done[key] += 1


async def flow_through_failover(cluster: Cluster, *, kill: Callable[[int], int]) -> None:
    """Produce a steady stream through a worker, SIGKILL a node midway, check every job ran.

    The producer lists node 0 first (it declares the queue there, so node 0 leads it),
    the worker node 1 first. `kill` gets the leader's index and returns the node to kill.
    """
    await cluster.ensure_running()
    queue_name = f"lexigram-cluster-{secrets.token_hex(4)}"
    options = {"queue_type": "quorum", "reconnect_interval": 0.3, "visibility_timeout": 5.0}
    producer = RabbitMQTaskQueue(cluster.url(0, 1, 2), queue_name, publish_timeout=40, **options)  # type: ignore[arg-type]
    consumer = RabbitMQTaskQueue(cluster.url(1, 2, 0), queue_name, **options)  # type: ignore[arg-type]
    runs = Runs()
    confirmed: list[str] = []
    failed: list[str] = []
    refused: list[str] = []
    pool = WorkerPool(
        consumer,
        {"record": runs.record},
        size=1,
        config=TaskWorkerConfig(max_concurrent_tasks=10, poll_interval=0.2),
    )
    try:
        await producer.connect()
        leader = await cluster.leader_of(queue_name)
        assert leader == 0, "the quorum queue should lead on the node that declared it"
        await consumer.connect()
        await pool.start()
        victim = kill(leader)
        for index in range(JOBS):
            if index == JOBS // 3:
                await asyncio.to_thread(cluster.nodes[victim].kill)
            key = f"job-{index:05d}"
            try:
                result = await producer.enqueue(Job(id=key, name="record", args=(key,)))
            except BackendConnectionError:
                failed.append(key)
                continue
            if result.is_ok():
                confirmed.append(key)
            else:
                refused.append(f"{key}: {result}")
            await asyncio.sleep(0.005)
        deadline = time.monotonic() + 40
        while not set(confirmed) <= set(runs.done) and time.monotonic() < deadline:  # noqa: ASYNC110 - the pool runs in this loop
            await asyncio.sleep(0.1)
        missing = sorted(set(confirmed) - set(runs.done))
        assert not missing, f"{len(missing)} confirmed jobs never ran, e.g. {missing[:5]}"
        assert len(confirmed) == JOBS, (
            f"only {len(confirmed)} enqueues confirmed ({failed[:3]}, {refused[:3]})"
        )
        await pool.stop(drain=True, timeout=10.0)
        assert await producer.count(queue_name) == 0
        twice = sum(1 for n in runs.done.values() if n > 1)
        print(  # noqa: T201
            f"node {victim} killed (leader {leader}): {len(confirmed)} confirmed, "
            f"{len(failed)} refused, {twice} ran twice (in flight at the kill)"
        )
    finally:
        with contextlib.suppress(Exception):
            await pool.stop(drain=False, timeout=5.0)
        with contextlib.suppress(Exception):
            await producer.delete_queues(if_empty=False)
        await consumer.close()
        await producer.close()


@pytest.mark.timeout(300)
async def test_worker_node_dies_and_the_worker_moves_to_a_surviving_node(cluster: Cluster) -> None:
    # The worker is on node 1; the leader (and the producer) on node 0 stay up.
    await flow_through_failover(cluster, kill=lambda leader: 1)


@pytest.mark.timeout(300)
async def test_quorum_leader_dies_and_a_new_leader_takes_over(cluster: Cluster) -> None:
    # The leader is node 0, which the producer is connected to; the worker is on node 1.
    await flow_through_failover(cluster, kill=lambda leader: leader)
