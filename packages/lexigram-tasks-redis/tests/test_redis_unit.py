"""Unit tests of the Redis backend's pure logic (no server needed)."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import re
import socket
import ssl

import pytest

from lexigram.contracts.tasks import (
    OPTIONAL_BACKEND_FACTORIES,
    PRIORITY_MAX,
    PRIORITY_MIN,
    BackendConnectionError,
    Job,
    TaskBackendSpec,
    TaskConfigurationError,
    TaskQueueProtocol,
)
from lexigram.tasks.backends import redis as redis_backend
from lexigram.tasks.backends.redis import (
    RedisBackend,
    RedisConnector,
    RedisOptions,
    RedisTaskQueue,
    backend,
)
from lexigram.tasks.backends.redis import _scripts as lua
from lexigram.tasks.backends.redis._batch import GroupCommit
from lexigram.tasks.backends.redis._connection import LuaScript, check_url
from lexigram.tasks.backends.redis._diagnose import CommandDeadline, ConnectFailed, diagnose
from lexigram.tasks.backends.redis._keys import QueueKeys, StoreKeys, check_name, glob_escape
from redis import exceptions as rexc


def test_queue_keys_share_the_hash_tag() -> None:
    keys = QueueKeys.build("app", "emails")
    assert keys.tag == "{app:emails}"
    assert len(keys.fixed) == 10
    assert len(set(keys.fixed)) == 10
    assert all(key.startswith("{app:emails}:") for key in keys.fixed)
    assert keys.idempotency_key("order:1") == "{app:emails}:idem:order:1"
    assert keys.idempotency_pattern == "{app:emails}:idem:*"


def test_queue_keys_match_script_key_order() -> None:
    keys = QueueKeys.build("p", "q")
    names = [key.rsplit(":", 1)[-1] for key in keys.fixed]
    assert names == [
        "jobs",
        "ready",
        "delayed",
        "inflight",
        "score",
        "deliveries",
        "retrying",
        "idem",
        "seq",
        "notify",
    ]
    for index, name in enumerate(("K_JOBS", "K_READY", "K_DELAYED", "K_INFLIGHT"), start=1):
        assert re.search(rf"{name}.*KEYS\[{index}\]", lua.ENQUEUE.text.replace("\n", " "))


@pytest.mark.parametrize("bad", ["", "a{b", "a}b", "{x}"])
def test_names_with_braces_are_refused(bad: str) -> None:
    with pytest.raises(TaskConfigurationError, match="hash tag"):
        check_name("queue name", bad)
    with pytest.raises(TaskConfigurationError):
        RedisTaskQueue(queue_name=bad)
    with pytest.raises(TaskConfigurationError):
        RedisTaskQueue(key_prefix=bad)


def test_store_keys_and_glob_escape() -> None:
    keys = StoreKeys.build("app", "results")
    assert keys.key("r", "job-1") == "{app:results}:r:job-1"
    assert keys.pattern("r", "a*[b]?") == "{app:results}:r:a\\*\\[b\\]\\?*"
    assert glob_escape("plain:text") == "plain:text"
    assert glob_escape("a\\b") == "a\\\\b"


def test_ready_scores_fit_exactly_in_a_double() -> None:
    # Lowest priority, huge sequence: still below 2^53, so Redis keeps it exact.
    worst = (PRIORITY_MAX - PRIORITY_MIN) * lua.PRIORITY_UNIT + (lua.PRIORITY_UNIT - 1)
    assert worst < 2**53
    assert float(worst) == worst
    # Higher priority always sorts first, whatever the sequence.
    high = (PRIORITY_MAX - 10) * lua.PRIORITY_UNIT + (lua.PRIORITY_UNIT - 1)
    low = (PRIORITY_MAX - 9) * lua.PRIORITY_UNIT + 1
    assert high < low


def test_scripts_have_stable_digests_and_use_server_time() -> None:
    for script in lua.QUEUE_SCRIPTS:
        assert isinstance(script, LuaScript)
        assert re.fullmatch(r"[0-9a-f]{40}", script.sha)
        assert script.text.count("KEYS[1]") >= 1
    assert "redis.call('TIME')" in lua.DEQUEUE.text
    assert "ZPOPMIN" in lua.DEQUEUE.text
    # Blocking commands never run inside a script (they would not block there).
    for script in lua.QUEUE_SCRIPTS:
        assert "BLPOP" not in script.text


@pytest.mark.parametrize(
    "url",
    ["redis://localhost:6379/0", "rediss://user:pw@host:6380/1", "unix:///tmp/redis.sock"],
)
def test_supported_urls(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis://:hunter2@localhost:6379/x", "names the database 'x', which is not a number"),
        ("redis://localhost:6379/0?socket_timout=3", "Did you mean 'socket_timeout'?"),
        ("rediss://:hunter2@localhost:6380/0?colour=red", "query option 'colour'"),
    ],
)
def test_a_database_or_query_redis_py_would_drop_is_refused(url: str, words: str) -> None:
    with pytest.raises(TaskConfigurationError, match=re.escape(words)) as info:
        check_url(url)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0?socket_timeout=3&health_check_interval=10",
        "rediss://localhost:6380/0?ssl_cert_reqs=none&client_name=worker",
        "redis://localhost:6379?db=2",
    ],
)
def test_the_query_options_redis_py_takes_are_accepted(url: str) -> None:
    assert check_url(url) == url


def test_unsupported_url_is_refused_with_the_password_masked() -> None:
    with pytest.raises(TaskConfigurationError) as info:
        check_url("http://user:hunter2@host:80")
    assert "hunter2" not in str(info.value)


def test_queue_construction_is_lazy_and_masks_the_password() -> None:
    queue = RedisTaskQueue(url="rediss://app:hunter2@redis.example:6380/3", queue_name="q")
    assert "hunter2" not in repr(queue)
    assert "rediss://app:***@redis.example:6380/3" in repr(queue)
    assert queue.visibility_timeout == 30.0
    assert isinstance(queue, TaskQueueProtocol)


def test_reference_example_constructor_forms() -> None:
    assert RedisTaskQueue(url="redis://localhost").queue_name == "tasks"
    assert RedisTaskQueue("redis://localhost:6379", "emails").queue_name == "emails"
    assert "6390" in repr(RedisTaskQueue(url="redis://localhost:6390"))


@pytest.mark.parametrize(
    ("option", "value"),
    [("visibility_timeout", 0), ("visibility_timeout", -1.0), ("idempotency_ttl", -5)],
)
def test_bad_queue_options_are_refused(option: str, value: float) -> None:
    with pytest.raises(TaskConfigurationError, match=option):
        RedisTaskQueue(**{option: value})  # type: ignore[arg-type]


def test_backend_option_parsing() -> None:
    spec = TaskBackendSpec(
        type="redis",
        url="redis://example:6379/2",
        queue_name="jobs",
        options={"visibility_timeout": "12", "max_connections": "20", "key_prefix": "svc"},
    )
    queue = RedisBackend().create_queue(spec)
    assert queue.visibility_timeout == 12.0
    assert queue.key_prefix == "svc"
    assert queue.keys.tag == "{svc:jobs}"
    with pytest.raises(TaskConfigurationError, match="unknown option 'nope'"):
        backend.create_queue(TaskBackendSpec(type="redis", options={"nope": 1}))
    with pytest.raises(TaskConfigurationError, match="Did you mean 'visibility_timeout'"):
        backend.create_queue(TaskBackendSpec(type="redis", options={"visibilty_timeout": 1}))
    with pytest.raises(TaskConfigurationError, match="a whole number"):
        backend.create_queue(TaskBackendSpec(type="redis", options={"max_size": "many"}))
    with pytest.raises(TaskConfigurationError, match="is not a number"):
        backend.create_queue(TaskBackendSpec(type="redis", options={"visibility_timeout": True}))


def test_backend_describes_itself() -> None:
    assert backend.url_schemes == ("redis", "rediss", "unix", "redis+sentinel")
    assert backend.url_field == "redis_url"
    assert backend.options_type is RedisOptions
    assert dataclasses.is_dataclass(RedisOptions)
    defaults = RedisOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        defaults.key_prefix = "x"  # type: ignore[misc]
    assert (defaults.visibility_timeout, defaults.command_timeout) == (30.0, 10.0)
    spec = TaskBackendSpec(type="redis", options={"command_timeout": "2.5", "client_name": "w"})
    assert RedisOptions.from_spec(spec).command_timeout == 2.5
    assert backend.connector(spec).command_timeout == 2.5


def test_backend_shares_one_connector_per_url_and_options() -> None:
    owner = RedisBackend()
    spec = TaskBackendSpec(type="redis", url="redis://a:6379/0")
    other = TaskBackendSpec(type="redis", url="redis://b:6379/0")
    assert owner.connector(spec) is owner.create_queue(spec).connector
    assert owner.connector(spec) is not owner.connector(other)
    for name in OPTIONAL_BACKEND_FACTORIES:
        assert callable(getattr(owner, name)), name


def test_entry_point_names_the_backend_object() -> None:
    points = importlib.metadata.entry_points(group="lexigram.tasks.backends", name="redis")
    assert [point.load() for point in points] == [backend]
    assert redis_backend.create_queue(TaskBackendSpec(type="redis")).queue_name == "tasks"
    assert sorted(redis_backend.__all__) == redis_backend.__all__


def test_connector_refuses_bad_settings() -> None:
    with pytest.raises(TaskConfigurationError):
        RedisConnector(max_connections=0)
    with pytest.raises(TaskConfigurationError):
        RedisConnector(retry_timeout=-1)
    with pytest.raises(TaskConfigurationError, match="command_timeout"):
        RedisConnector(command_timeout=0)


async def test_connector_reports_a_failed_first_contact_at_once() -> None:
    connector = RedisConnector("redis://127.0.0.1:1/0", retry_timeout=30)
    attempts = 0

    async def always_down(_client: object) -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(BackendConnectionError, match="refused the connection") as info:
        await connector.call("test", always_down)
    assert attempts == 1
    assert info.value.details["transient"] is True
    assert info.value.details["reason"] == "refused"
    await connector.close()


async def test_connector_retries_an_outage_after_a_first_success() -> None:
    connector = RedisConnector("redis://127.0.0.1:1/0", retry_timeout=0.2)
    attempts = 0

    async def fine(_client: object) -> int:
        return 1

    async def always_down(_client: object) -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionRefusedError(111, "Connection refused")

    assert await connector.call("test", fine) == 1
    with pytest.raises(BackendConnectionError, match=r"stayed unreachable for 0\.2 s") as info:
        await connector.call("test", always_down)
    assert attempts >= 2
    assert info.value.details["transient"] is True
    await connector.close()


async def test_connector_gives_a_command_a_deadline() -> None:
    connector = RedisConnector("redis://127.0.0.1:1/0", command_timeout=0.05)

    async def never(_client: object) -> None:
        await asyncio.Event().wait()

    with pytest.raises(BackendConnectionError, match=r"did not answer test within 0\.05 s"):
        await connector.call("test", never)
    await connector.close()


async def test_group_commit_runs_a_lone_call_inline() -> None:
    batches: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        batches.append(items)
        return [item * 2 for item in items]

    commit: GroupCommit[int, int] = GroupCommit(run, max_batch=10)
    assert await commit.submit(1) == 2
    assert await commit.submit(2) == 4
    assert batches == [[1], [2]]


async def test_group_commit_batches_concurrent_calls() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def run(items: list[int]) -> list[int]:
        batches.append(items)
        await gate.wait()
        return [item + 100 for item in items]

    commit: GroupCommit[int, int] = GroupCommit(run, max_batch=4)
    tasks = [asyncio.create_task(commit.submit(n)) for n in range(10)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*tasks) == [n + 100 for n in range(10)]
    assert batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]


async def test_group_commit_hands_errors_to_every_waiter_of_the_batch() -> None:
    gate = asyncio.Event()
    calls = 0

    async def run(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        await gate.wait()
        if calls == 2:
            msg = "down"
            raise BackendConnectionError(msg)
        return items

    commit: GroupCommit[int, int] = GroupCommit(run, max_batch=10)
    tasks = [asyncio.create_task(commit.submit(n)) for n in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == 0
    assert all(isinstance(result, BackendConnectionError) for result in results[1:])
    # The commit is usable again afterwards.
    assert await commit.submit(7) == 7


async def test_enqueue_of_a_non_job_or_invalid_job_needs_no_server() -> None:
    queue = RedisTaskQueue("redis://127.0.0.1:1/0")
    # A dict on purpose: enqueue must reject what is not a Job.
    not_a_job = await queue.enqueue({"name": "x"})  # type: ignore[arg-type]
    assert not_a_job.is_err()
    invalid = await queue.enqueue(Job(name="x", args=(object(),)))
    assert invalid.is_err()
    mixed = await queue.enqueue_many([Job(name="bad", priority=999)])
    assert len(mixed) == 1
    assert mixed[0].is_err()


@pytest.mark.parametrize(
    ("exc", "kind", "transient"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "refused", True),
        (socket.gaierror(-2, "Name or service not known"), "dns", True),
        (ssl.SSLCertVerificationError("certificate verify failed"), "tls", False),
        (rexc.ResponseError("DB index is out of range"), "db", False),
        (rexc.AuthenticationError("WRONGPASS invalid username-password pair"), "auth", False),
        (rexc.AuthenticationError("NOAUTH Authentication required."), "noauth", False),
        (rexc.ResponseError("Protocol error: unauthenticated multibulk length"), "noauth", False),
        (rexc.NoPermissionError("NOPERM no permissions to run 'evalsha'"), "noperm", False),
        (rexc.InvalidResponse('Protocol error, got "H" as reply type byte'), "not_redis", False),
        (CommandDeadline("no reply"), "silent", True),
        (rexc.ConnectionError("Connection closed by server."), "closed", True),
    ],
)
def test_each_failure_gets_its_kind(exc: BaseException, kind: str, transient: bool) -> None:
    found = diagnose(
        exc,
        url="redis://app:secret@cache.example:6390/3",
        masked="redis://app:***@cache.example:6390/3",
        what="enqueue",
        connect_timeout=5.0,
        command_timeout=10.0,
    )
    assert (found.kind, found.transient) == (kind, transient)
    assert "secret" not in found.message
    assert "redis://app:***@cache.example:6390/3" in found.message
    assert "\n" not in found.message


def test_failure_names_the_unix_socket_and_the_database() -> None:
    refused = diagnose(
        FileNotFoundError(2, "No such file or directory"),
        url="unix:///run/redis.sock",
        masked="unix:///run/redis.sock",
        what="enqueue",
        connect_timeout=5.0,
        command_timeout=10.0,
    )
    assert "socket /run/redis.sock does not exist" in refused.message
    wrapped = ConnectFailed("Could not connect to Redis: TimeoutError")
    wrapped.__cause__ = TimeoutError()
    slow = diagnose(
        wrapped,
        url="rediss://cache.example:6390/0",
        masked="rediss://cache.example:6390/0",
        what="enqueue",
        connect_timeout=2.0,
        command_timeout=10.0,
    )
    assert slow.kind == "connect_timeout"
    assert "within 2 s (socket_connect_timeout)" in slow.message
    assert "does not speak TLS" in slow.message


class CountingConnector(RedisConnector):
    """A connector that counts how often it was closed (it never connects here)."""

    closes = 0

    async def close(self) -> None:
        self.closes += 1


async def test_closing_a_store_never_closes_the_connector_under_its_queue() -> None:
    connector = CountingConnector()
    queue = RedisTaskQueue(connector=connector)
    results = redis_backend.RedisResultStore(connector=connector)
    tracker = redis_backend.RedisProgressTracker(connector=connector)

    await results.close()
    await tracker.close()
    assert connector.closes == 0

    await queue.close()
    assert connector.closes == 1


async def test_closing_the_queue_never_closes_the_connector_under_its_stores() -> None:
    connector = CountingConnector()
    queue = RedisTaskQueue(connector=connector)
    results = redis_backend.RedisResultStore(connector=connector)

    await queue.close()
    assert connector.closes == 0
    await results.close()
    assert connector.closes == 1


async def test_the_last_store_of_a_shared_connector_closes_it() -> None:
    # RabbitMQ's ``stores`` option borrows stores with no Redis queue beside them.
    connector = CountingConnector()
    results = redis_backend.RedisResultStore(connector=connector)
    tracker = redis_backend.RedisProgressTracker(connector=connector)

    await results.close()
    assert connector.closes == 0
    await tracker.close()  # its own share and that of the result reader inside it
    assert connector.closes == 1


def test_a_silent_tls_connection_suggests_a_plain_port() -> None:
    found = diagnose(
        CommandDeadline("no reply"),
        url="rediss://127.0.0.1:6379/0",
        masked="rediss://127.0.0.1:6379/0",
        what="enqueue",
        connect_timeout=5.0,
        command_timeout=2.0,
    )
    assert found.kind == "silent"
    assert found.message.endswith(
        "speaks plain Redis (no TLS) also looks like this: use redis:// for it."
    )
    plain = diagnose(
        CommandDeadline("no reply"),
        url="redis://127.0.0.1:6379/0",
        masked="redis://127.0.0.1:6379/0",
        what="enqueue",
        connect_timeout=5.0,
        command_timeout=2.0,
    )
    assert "rediss" not in plain.message


@pytest.mark.parametrize(
    "bad",
    [
        {"visibility_timeout": 0},
        {"wait_for_replicas": -1},
        {"replication_timeout": -1.0, "wait_for_replicas": 1},
    ],
    ids=["visibility_timeout", "wait_for_replicas", "replication_timeout"],
)
async def test_a_queue_refused_its_arguments_takes_no_share_of_a_given_connector(
    bad: dict[str, float],
) -> None:
    connector = RedisConnector("redis://127.0.0.1:6379/0")
    first = RedisTaskQueue(connector=connector)
    with pytest.raises(TaskConfigurationError):
        RedisTaskQueue(connector=connector, **bad)  # type: ignore[arg-type]
    # The one queue that was built is the connector's only user: releasing it closes it.
    await first.close()
    assert connector._sharers == 0
