"""Service URLs for the integration suite.

Each URL resolves, once per session, in this order:

1. the env var (``LEXIGRAM_TEST_REDIS_URL``, ``LEXIGRAM_TEST_AMQP_URL``,
   ``LEXIGRAM_TEST_POSTGRES_DSN``), taken as given;
2. a testcontainers container, but only if a Docker *engine* answers a ping (a ``docker``
   client on PATH is not enough);
3. the local default, if it accepts a TCP connection within 1 s;
4. otherwise the tests that need it are skipped, or fail when ``LEXIGRAM_REQUIRE_SERVICES=1``
   (CI sets it, so a missing service can never turn into a green run).

This file stays free of product imports: per-backend fixtures live in the subdirectory
conftests (``redis/``, ``rabbitmq/``, ``postgres/``, ``conformance/``). What several
directories need (deleting what a test left on a shared service, running the command line
as a process) is here, as fixtures: test modules cannot import a conftest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import random
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit
from uuid import uuid4

import pytest
import pytest_asyncio

REQUIRE_SERVICES_VAR = "LEXIGRAM_REQUIRE_SERVICES"
PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Service:
    name: str
    env_var: str
    default_url: str
    container: Callable[[], AbstractContextManager[str]]


# The container factories import testcontainers lazily: it is needed only once a Docker engine
# has answered, which on most machines here never happens.
@contextmanager
def _redis_container() -> Iterator[str]:
    from testcontainers.redis import RedisContainer

    with RedisContainer("redis:7-alpine") as container:
        host = container.get_container_host_ip()
        yield f"redis://{host}:{container.get_exposed_port(6379)}/0"


@contextmanager
def _rabbitmq_container() -> Iterator[str]:
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3-alpine") as container:
        host = container.get_container_host_ip()
        yield f"amqp://guest:guest@{host}:{container.get_exposed_port(5672)}/"


@contextmanager
def _postgres_container() -> Iterator[str]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver=None) as container:
        yield container.get_connection_url()


REDIS = _Service(
    name="Redis",
    env_var="LEXIGRAM_TEST_REDIS_URL",
    default_url="redis://127.0.0.1:6379/0",
    container=_redis_container,
)
RABBITMQ = _Service(
    name="RabbitMQ",
    env_var="LEXIGRAM_TEST_AMQP_URL",
    default_url="amqp://guest:guest@127.0.0.1:5672/",
    container=_rabbitmq_container,
)
POSTGRES = _Service(
    name="PostgreSQL",
    env_var="LEXIGRAM_TEST_POSTGRES_DSN",
    default_url="postgresql://127.0.0.1:5432/test",
    container=_postgres_container,
)


DOCKER_SOCKET = "/var/run/docker.sock"


@functools.cache
def _docker_engine_answers() -> bool:
    """True only if a Docker engine answers a ping; any failure at all means no."""
    if "DOCKER_HOST" not in os.environ and not _unix_socket_answers(DOCKER_SOCKET):
        # The common case here: a docker client without an engine. Stop before docker-py, whose
        # failed connects leak sockets (a ResourceWarning that filterwarnings=error would raise).
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker  # optional: most machines here have no engine

            client: Any = docker.from_env(timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:  # no engine, no client, bad config: each one means "no Docker"
            return False
        finally:
            gc.collect()  # reap docker-py's leaked sockets while their warning is still ignored


def _unix_socket_answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(PROBE_TIMEOUT_S)
        try:
            sock.connect(path)
        except OSError:
            return False
        return True


def _accepts_connections(url: str) -> bool:
    """Whether the URL's host and port accept a TCP connection within PROBE_TIMEOUT_S."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _resolve(service: _Service) -> Iterator[str]:
    """Yield the service's URL for the session, or skip/fail (see the module docstring)."""
    explicit = os.environ.get(service.env_var)
    if explicit:
        yield explicit
        return
    if _docker_engine_answers():
        with service.container() as url:
            yield url
        return
    if _accepts_connections(service.default_url):
        yield service.default_url
        return
    unavailable(
        f"{service.name} is not reachable: {service.env_var} is unset, no Docker engine answers, "
        f"and nothing accepts connections at {service.default_url}. Start the service, or set "
        f"{service.env_var} to its URL."
    )


def unavailable(msg: str) -> NoReturn:
    """Skip a test whose service or tool is missing; fail it instead under CI's rule."""
    if os.environ.get(REQUIRE_SERVICES_VAR) == "1":
        pytest.fail(f"{msg} ({REQUIRE_SERVICES_VAR}=1 makes this a failure.)", pytrace=False)
    pytest.skip(f"{msg} (Set {REQUIRE_SERVICES_VAR}=1 to fail instead of skipping.)")


@pytest.fixture(scope="session")
def service_unavailable() -> Callable[[str], NoReturn]:
    """`unavailable`, for tests that need more than a URL (a server binary, admin rights)."""
    return unavailable


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis server for this test session."""
    yield from _resolve(REDIS)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """AMQP URL of a RabbitMQ broker for this test session."""
    yield from _resolve(RABBITMQ)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a PostgreSQL database for this test session."""
    yield from _resolve(POSTGRES)


# -- what a test leaves on a shared service -----------------------------------------------
# The clients are imported on first use, as testcontainers is: this file stays light.


async def _delete_redis_prefix(url: str, prefix: str) -> None:
    """Delete every key of `prefix`: ``{prefix:...``, ``{prefix}...``, ``prefix:...`` (SCAN)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        for pattern in (f"{{{prefix}:*", f"{{{prefix}}}*", f"{prefix}:*"):
            batch = [key async for key in client.scan_iter(match=pattern, count=1000)]
            for start in range(0, len(batch), 500):
                await client.delete(*batch[start : start + 500])
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def delete_redis_prefix() -> Callable[[str, str], Coroutine[Any, Any, None]]:
    """`await delete_redis_prefix(url, prefix)` deletes every key under `prefix`."""
    return _delete_redis_prefix


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"lexigram-test-{uuid4().hex[:8]}"
    yield prefix
    asyncio.run(_delete_redis_prefix(redis_url, prefix))


async def _drop_pg_schema(dsn: str, schema: str) -> None:
    """``DROP SCHEMA IF EXISTS "schema" CASCADE``: the schema and every table in it."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def drop_pg_schema() -> Callable[[str, str], Coroutine[Any, Any, None]]:
    """`await drop_pg_schema(dsn, schema)` drops the schema with everything in it."""
    return _drop_pg_schema


def _rabbitmq_family(name: str) -> tuple[list[str], list[str]]:
    """Queues and exchanges a `RabbitMQTaskQueue` named `name` may declare."""
    queues = [name, f"{name}.dlx"] + [f"{name}.delay.{1 << exp}ms" for exp in range(5, 32)]
    exchanges = [f"{name}.dlx", f"{name}.delayed", f"{name}.cancel"]
    return queues, exchanges


async def _delete_rabbitmq_family(url: str, name: str) -> None:
    """Delete every queue and exchange of `name`'s family (missing ones are skipped)."""
    import aiormq

    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        queues, exchanges = _rabbitmq_family(name)
        for queue in queues:
            try:
                await channel.queue_delete(queue)
            except aiormq.exceptions.AMQPError:
                channel = await connection.channel()
        for exchange in exchanges:
            try:
                await channel.exchange_delete(exchange)
            except aiormq.exceptions.AMQPError:
                channel = await connection.channel()
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def delete_rabbitmq_family() -> Callable[[str, str], Coroutine[Any, Any, None]]:
    """`await delete_rabbitmq_family(url, name)` deletes the queues and exchanges of `name`."""
    return _delete_rabbitmq_family


# -- the command line as a process ---------------------------------------------------------


def _run_cli(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    app_dir: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``lexigram-tasks ARGS`` as a real process; its exit code and output, unchecked.

    `env` replaces the environment (this process's by default); with `app_dir`, that
    directory comes first on the process's PYTHONPATH, so an APP module written there imports.
    """
    environ = dict(os.environ if env is None else env)
    if app_dir is not None:
        environ["PYTHONPATH"] = os.pathsep.join([str(app_dir), *sys.path])
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "lexigram.tasks.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environ,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run_cli(*args, cwd=, env=, app_dir=, timeout=60)`: ``lexigram-tasks`` as a process."""
    return _run_cli


def _ephemeral_floor() -> int:
    """Lowest port the kernel hands out to outgoing connections (32768 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_PORTS_FROM = 20000
_handed_out: set[int] = set()


def pick_free_port(partner_offset: int = 0) -> int:
    """A loopback port nothing listens on, below the range outgoing connections use.

    A port from ``bind(0)`` lies in that range, so between the test closing its probe
    socket and a server binding the port, any outgoing connection (a booting Erlang node
    makes dozens) may take it as its local port and the server fails to start.
    With `partner_offset`, ``port + partner_offset`` is free and below that range too
    (Redis Cluster's bus port is the node's port + 10000).
    """
    ceiling = _ephemeral_floor() - partner_offset
    low = _PORTS_FROM
    if ceiling - low < 1000:  # an unusual range: anywhere, at the kernel's risk
        low, ceiling = 1024, 65535 - partner_offset
    while True:
        port = random.randrange(low, ceiling)
        ports = {port, port + partner_offset}
        if not ports & _handed_out and all(_port_free(p) for p in ports):
            _handed_out.update(ports)
            return port


@pytest.fixture(scope="session")
def free_port() -> Callable[..., int]:
    """`pick_free_port`: call it for each port a test's own server needs."""
    return pick_free_port


@pytest.fixture
def unique_name() -> str:
    """Eight hex characters for a per-test key prefix, queue or table name."""
    return uuid4().hex[:8]


@pytest.fixture
def outage_lines(caplog: pytest.LogCaptureFixture) -> Callable[[str], tuple[str, str]]:
    """Reads the one outage a backend's logger reported: its two WARNINGs (begin, end).

    Call it with the logger's name; it fails unless that logger wrote exactly two warnings,
    the second saying the server is reachable again, and no record with a traceback.
    """

    def lines(logger: str) -> tuple[str, str]:
        ours = [record for record in caplog.records if record.name == logger]
        warned = [record.getMessage() for record in ours if record.levelno == logging.WARNING]
        assert len(warned) == 2, warned
        assert "reachable again after" in warned[1]
        assert all(record.exc_info is None for record in ours)
        return warned[0], warned[1]

    return lines


StartTogether = Callable[[Path, Sequence[str], int], Awaitable[list[asyncio.subprocess.Process]]]


async def _start_together(
    script: Path, args: Sequence[str], count: int
) -> list[asyncio.subprocess.Process]:
    """Start `count` copies of `script` and hand them one start time once all are ready.

    Each copy prints ``ready`` when it has imported and set itself up, then reads the
    wall-clock start time from its stdin. A copy slow to start (a loaded CI machine) would
    otherwise begin after the others ended and leave a hole in what they observe together.
    """
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60.0)
            assert line == b"ready\n", f"{script.name} did not start: {line!r}"
        start_at = time.time() + 0.2
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start_at}\n".encode())
            await proc.stdin.drain()
    except BaseException:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        raise
    return procs


@pytest.fixture(scope="session")
def start_together() -> StartTogether:
    """Start copies of a script at one wall-clock time, after every copy is ready."""
    return _start_together


class TcpProxy:
    """A TCP proxy to a server, for outage tests.

    `pause` holds back every frame both ways (a server that stops answering: a paused
    process, a frozen VM) until `resume`; `cut` closes the listener and every connection
    through it (a server that went away) until `restore` listens again on the same port.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.listen_port = 0  # chosen by the first `restore`, kept by the later ones
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: asyncio.Server | None = None
        self.pumps: set[asyncio.Task[None]] = set()

    def pause(self) -> None:
        """Hold back every frame from now on, in both directions."""
        self.flowing.clear()

    def resume(self) -> None:
        """Forward the held frames and everything after them."""
        self.flowing.set()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    await self.flowing.wait()
                    writer.write(data)
                    await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
        for pump in (self._pump(reader, upstream_writer), self._pump(upstream_reader, writer)):
            task = asyncio.ensure_future(pump)
            self.pumps.add(task)
            task.add_done_callback(self.pumps.discard)

    async def restore(self) -> int:
        """Listen (again) on the proxy's port; return it."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.listen_port)
        self.listen_port = int(self.server.sockets[0].getsockname()[1])
        return self.listen_port

    async def cut(self) -> None:
        """Stop listening and close every connection through the proxy."""
        self.flowing.set()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for task in list(self.pumps):
            task.cancel()
        await asyncio.gather(*self.pumps, return_exceptions=True)

    def url(self, url: str) -> str:
        """`url` (its scheme, credentials, path and query) pointed at this proxy."""
        parts = urlsplit(url)
        credentials, at, _ = parts.netloc.rpartition("@")
        return parts._replace(netloc=f"{credentials}{at}127.0.0.1:{self.listen_port}").geturl()


@pytest_asyncio.fixture
async def tcp_proxy() -> AsyncIterator[Callable[[str, int], Awaitable[TcpProxy]]]:
    """Start `TcpProxy`s to (host, port); each is cut when the test ends."""
    started: list[TcpProxy] = []

    async def start(host: str, port: int) -> TcpProxy:
        proxy = TcpProxy(host, port)
        await proxy.restore()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        await proxy.cut()
