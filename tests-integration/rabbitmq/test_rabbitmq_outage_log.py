"""A RabbitMQ outage is one WARNING when it begins and one when it ends, for the whole process.

A process holds several connections to one broker: every queue object has its own, and
one whose first connect fails opens a new one at each retry of the loops that use it
(taking jobs, following cancellations). Each used to log its own "unreachable" WARNING,
so a booted provider logged the same outage six times in a second, and a refused login
was called "unreachable" too. The connections of one broker URL now share one outage
record, and a broker that turns the login away says so, in the words of the connect error.

The outage is a `TcpProxy` (the top conftest's) that the test cuts and restores: the
broker itself stays up for the other tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import pytest_asyncio

from lexigram.app import Application
from lexigram.contracts.tasks import Job
from lexigram.tasks import TaskConfig, TaskProvider
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.execution import WorkerPool

pytestmark = [pytest.mark.rabbitmq]

BACKEND = "lexigram.tasks.backends.rabbitmq"
CLIENTS = ("aiormq", "aio_pika")

DeleteFamily = Callable[[str, str], Awaitable[None]]


def backend_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The WARNINGs (and worse) the RabbitMQ backend logged."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith(BACKEND) and record.levelno >= logging.WARNING
    ]


def client_noise(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What aiormq and aio-pika logged at WARNING or above (their templates)."""
    return [
        f"{record.name} {record.levelname}: {record.msg}"
        for record in caplog.records
        if record.name.startswith(CLIENTS) and record.levelno >= logging.WARNING
    ]


async def until_logged(caplog: pytest.LogCaptureFixture, text: str, within: float = 15.0) -> None:
    """Wait for a backend record containing `text` (aio-pika reconnects on its own time)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if any(text in line for line in backend_warnings(caplog)):
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"no backend warning with {text!r} within {within} s: {backend_warnings(caplog)}")


def with_password(url: str, password: str) -> str:
    """`url` with another password (and the user it names)."""
    parts = urlsplit(url)
    user = parts.username or "guest"
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:{password}@{host}").geturl()


def user_of(url: str) -> str:
    return unquote(urlsplit(url).username or "guest")


@pytest_asyncio.fixture
async def two_queues(
    amqp_url: str, queue_name: str, delete_rabbitmq_family: DeleteFamily
) -> AsyncIterator[tuple[str, str]]:
    """Two queue names of this test, deleted afterwards."""
    names = (f"{queue_name}-a", f"{queue_name}-b")
    yield names
    for name in names:
        await delete_rabbitmq_family(amqp_url, name)


def provider_on(url: str, names: tuple[str, str], done: list[str]) -> TaskProvider:
    """A provider with two RabbitMQ queues on `url`, two workers on each."""
    options = {"reconnect_interval": 0.3, "publish_timeout": 30}
    config = TaskConfig.model_validate(
        {
            "backends": [
                {
                    "name": name,
                    "primary": index == 0,
                    "type": "rabbitmq",
                    "url": url,
                    "queue_name": name,
                    "options": options,
                }
                for index, name in enumerate(names)
            ],
            "worker": {"poll_interval": 0.2},
        }
    )
    provider = TaskProvider(config=config, worker_count=2, enable_scheduler=False)

    async def record(key: str) -> None:
        done.append(key)

    provider.register_handler("record", record)
    return provider


async def until_done(done: list[str], keys: set[str], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not keys <= set(done) and time.monotonic() < deadline:  # noqa: ASYNC110 - the workers run on their own
        await asyncio.sleep(0.05)
    assert keys <= set(done), f"never ran: {sorted(keys - set(done))}"


async def test_a_broker_outage_under_a_booted_provider_is_one_warning_and_one_end(
    amqp_url: str,
    two_queues: tuple[str, str],
    broker_proxy: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two queues, two workers each: one WARNING when the broker goes, one when it is back."""
    done: list[str] = []
    provider = provider_on(broker_proxy.url(amqp_url), two_queues, done)
    async with Application.boot(providers=[provider]):
        queues = [provider.queues[name] for name in two_queues]
        for queue, name in zip(queues, two_queues, strict=True):
            await queue.enqueue(Job(name="record", args=(f"before-{name}",)))
        await until_done(done, {f"before-{name}" for name in two_queues})
        caplog.set_level(logging.DEBUG)
        await broker_proxy.cut()
        # Enqueued during the outage: each waits for its queue's reconnect (at least once).
        during = [
            asyncio.ensure_future(queue.enqueue(Job(name="record", args=(f"during-{name}",))))
            for queue, name in zip(queues, two_queues, strict=True)
        ]
        await asyncio.sleep(2.0)  # several reconnect attempts of every connection fail
        await broker_proxy.restore()
        for outcome in await asyncio.gather(*during):
            assert outcome.is_ok()
        await until_done(done, {f"during-{name}" for name in two_queues})
        await until_logged(caplog, "reachable again after")
        await asyncio.sleep(1.0)  # a late connection would log its own lines by now

    warned = backend_warnings(caplog)
    assert len(warned) == 2, warned
    begun, ended = warned
    assert begun.startswith("RabbitMQ at amqp://")
    assert " unreachable (" in begun
    assert begun.endswith("; reconnecting every 0.3 s.")
    assert "reachable again after" in ended
    assert client_noise(caplog) == []
    assert all(r.exc_info is None for r in caplog.records if r.name.startswith(BACKEND))
    # The failed attempts in between are there, at DEBUG.
    assert any(
        r.name.startswith(BACKEND)
        and r.levelno == logging.DEBUG
        and "still unreachable" in r.getMessage()
        for r in caplog.records
    )


async def test_a_refused_login_is_one_warning_that_says_what_to_fix(
    amqp_url: str, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker pool and a producer on a wrong password: one WARNING, naming the login."""
    url = with_password(amqp_url, f"wrong-{uuid.uuid4().hex[:6]}")
    consumer = RabbitMQTaskQueue(url, queue_name, reconnect_interval=0.3)
    producer = RabbitMQTaskQueue(url, queue_name, reconnect_interval=0.3)
    pool = WorkerPool(
        consumer, {"record": lambda: None}, size=3, config=TaskWorkerConfig(poll_interval=0.2)
    )
    caplog.set_level(logging.DEBUG)
    try:
        await pool.start()
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await producer.enqueue(Job(name="record"))
        await asyncio.sleep(2.0)  # the pool's loops retry a few times each
    finally:
        await pool.stop(drain=False, timeout=5.0)
        await consumer.close()
        await producer.close()

    warned = backend_warnings(caplog)
    assert len(warned) == 1, warned
    (line,) = warned
    assert line.startswith("RabbitMQ at amqp://")
    assert (
        f"refused the login of user {user_of(amqp_url)!r} (ACCESS_REFUSED): fix the user name "
        "or password in the URL (the part before the @); reconnecting every 0.3 s."
    ) in line
    assert "unreachable" not in line
    assert "wrong-" not in caplog.text  # the password is masked
    assert client_noise(caplog) == []


@pytest_asyncio.fixture
async def own_user(amqp_url: str, broker: Any, broker_admin: None) -> AsyncIterator[str]:
    """A broker user of this test (all rights on the test's virtual host); its URL."""
    name, password = f"lexigram-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await broker.ctl("add_user", name, password)
    try:
        await broker.ctl("set_permissions", "-p", broker.vhost, name, ".*", ".*", ".*")
        parts = urlsplit(amqp_url)
        host = parts.netloc.rpartition("@")[2]
        yield parts._replace(netloc=f"{name}:{password}@{host}").geturl()
    finally:
        await broker.ctl("delete_user", name)


async def test_a_login_refused_during_an_outage_is_told_once_and_the_end_once(
    own_user: str,
    queue_name: str,
    broker: Any,
    caplog: pytest.LogCaptureFixture,
    delete_rabbitmq_family: DeleteFamily,
) -> None:
    """The connection drops, then the broker turns its login away until the password is back.

    The loss is the outage's WARNING ("unreachable"); the refusal is news that needs a fix,
    so it gets one WARNING of its own; the reconnect ends it with one line.
    """
    user, password = user_of(own_user), unquote(urlsplit(own_user).password or "")
    queue = RabbitMQTaskQueue(own_user, queue_name, reconnect_interval=0.3)
    try:
        await queue.connect()
        assert (await queue.enqueue(Job(name="before"))).is_ok()
        caplog.set_level(logging.DEBUG)
        await broker.ctl("change_password", user, f"changed-{uuid.uuid4().hex}")
        assert await broker.drop_connections(queue_name) >= 1
        await until_logged(caplog, "refused the login")
        await asyncio.sleep(1.0)  # more refused attempts, quietly
        await broker.ctl("change_password", user, password)
        await until_logged(caplog, "reachable again after")
        assert (await queue.enqueue(Job(name="after"))).is_ok()
        assert await queue.count(queue_name) == 2
    finally:
        await queue.close()
        await delete_rabbitmq_family(own_user, queue_name)

    warned = backend_warnings(caplog)
    assert len(warned) == 3, warned
    lost, refused, back = warned
    assert " unreachable (" in lost
    assert "CONNECTION_FORCED" in lost
    assert (
        f"refused the login of user {user!r} (ACCESS_REFUSED): fix the user name or password "
        "in the URL (the part before the @); reconnecting every 0.3 s."
    ) in refused
    assert "reachable again after" in back
    assert password not in caplog.text
    assert client_noise(caplog) == []
