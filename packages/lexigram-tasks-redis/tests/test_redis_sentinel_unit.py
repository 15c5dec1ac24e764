"""Unit tests of the Sentinel URL and the replica wait's settings (no server needed).

The failover itself runs against real sentinels in
``tests-integration/redis/test_redis_sentinel.py``.
"""

from __future__ import annotations

import pytest
from redis.asyncio.sentinel import MasterNotFoundError

from lexigram.contracts.tasks import TaskBackendSpec, TaskConfigurationError
from lexigram.tasks.backends.redis import RedisBackend, RedisConnector, RedisTaskQueue
from lexigram.tasks.backends.redis._diagnose import Diagnosis, diagnose
from lexigram.tasks.backends.redis._sentinel import SentinelTarget
from redis import exceptions as rexc

URL = "redis+sentinel://app:hunter2@s1:26379,s2:26380,s3/tasks-primary/2"


def test_the_url_names_sentinels_service_database_and_credentials() -> None:
    target = SentinelTarget.parse(URL)
    assert target.sentinels == (("s1", 26379), ("s2", 26380), ("s3", 26379))
    assert (target.service_name, target.db) == ("tasks-primary", 2)
    assert (target.username, target.password) == ("app", "hunter2")
    assert target.node_url() == "redis://app:hunter2@localhost:6379/2"


def test_the_parsed_url_never_prints_its_password() -> None:
    shown = repr(SentinelTarget.parse(URL))
    assert "hunter2" not in shown
    assert "password='***'" in shown
    assert "username='app'" in shown
    assert "password=None" in repr(SentinelTarget.parse("redis+sentinel://s1/svc"))


def test_the_database_defaults_to_zero_and_credentials_to_none() -> None:
    target = SentinelTarget.parse("redis+sentinel://[::1]:26379/svc")
    assert target.sentinels == (("::1", 26379),)
    assert (target.db, target.username, target.password) == (0, None, None)
    assert target.node_url() == "redis://localhost:6379/0"


def test_a_password_with_reserved_characters_survives_the_node_url() -> None:
    target = SentinelTarget.parse("redis+sentinel://:p%40ss%3Aw@s1/svc")
    assert target.password == "p@ss:w"  # noqa: S105 - a test value
    assert target.node_url() == "redis://:p%40ss%3Aw@localhost:6379/0"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://s1:26379", "names no service"),
        ("redis+sentinel:///svc", "names no sentinel"),
        ("redis+sentinel://s1:port/svc", "unusable sentinel address"),
        ("redis+sentinel://s1:70000/svc", "unusable sentinel address"),
        ("redis+sentinel://s1/svc/zero", "path other than"),
        ("redis+sentinel://s1/svc/0/extra", "path other than"),
    ],
)
def test_bad_urls_are_refused_with_the_password_masked(url: str, problem: str) -> None:
    with pytest.raises(TaskConfigurationError, match=problem) as info:
        RedisConnector(url.replace("://", "://app:hunter2@"))
    assert "hunter2" not in str(info.value)


def test_queue_and_backend_take_the_url_lazily_and_mask_the_password() -> None:
    queue = RedisTaskQueue(URL, "emails")
    assert "hunter2" not in repr(queue)
    assert "redis+sentinel://app:***@s1:26379,s2:26380,s3/tasks-primary/2" in repr(queue)
    assert "hunter2" not in repr(queue.connector)
    spec = TaskBackendSpec(type="redis", url=URL, options={"wait_for_replicas": "1"})
    assert RedisBackend().create_queue(spec).connector.masked_url == queue.connector.masked_url
    assert "redis+sentinel" in RedisBackend().url_schemes  # what core resolves schemes by


def test_tls_options_are_refused_behind_sentinel() -> None:
    with pytest.raises(TaskConfigurationError, match="TLS behind Sentinel") as info:
        RedisConnector(URL, connection_kwargs={"ssl_ca_certs": "/etc/ca.pem"})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"wait_for_replicas": -1}, "wait_for_replicas"),
        ({"wait_for_replicas": 1, "replication_timeout": 0}, "replication_timeout"),
    ],
)
def test_bad_replica_wait_settings_are_refused(options: dict[str, float], problem: str) -> None:
    with pytest.raises(TaskConfigurationError, match=problem):
        RedisTaskQueue(URL, "emails", **options)  # type: ignore[arg-type]


def _diagnosed(
    exc: BaseException,
    *,
    masked: str = "redis+sentinel://app:***@s1:26379/tasks-primary/2",
    what: str = "enqueue",
) -> Diagnosis:
    """`diagnose` of `exc` on the module's Sentinel URL, with the usual timeouts."""
    return diagnose(
        exc, url=URL, masked=masked, what=what, connect_timeout=5.0, command_timeout=10.0
    )


def test_no_primary_is_diagnosed_as_a_sentinel_problem() -> None:
    found = _diagnosed(MasterNotFoundError("No master found for 'tasks-primary'"))
    assert found.kind == "no_primary"
    assert found.transient
    assert "service name" in found.message
    assert "hunter2" not in found.message


def test_no_primary_shows_none_of_redis_pys_connection_reprs() -> None:
    noisy = "No master found for 'svc' : {'127.0.0.1:1': <redis.asyncio.client.Redis(...)>}"
    found = _diagnosed(MasterNotFoundError(noisy))
    assert "<redis" not in found.message
    assert "port 26379 by default" in found.message


def test_a_redis_server_given_as_a_sentinel_is_named_as_such() -> None:
    found = _diagnosed(
        rexc.ResponseError("unknown command 'SENTINEL', with args beginning with: 'get-master"),
        masked="redis+sentinel://app:***@s1:6379/tasks-primary/2",
        what="connect",
    )
    assert found.kind == "not_sentinel"
    assert not found.transient
    assert "is not a Redis Sentinel" in found.message
