"""Unit tests of the pure helpers: URLs, names, priority mapping, delay buckets, settings."""

from __future__ import annotations

import pytest

from lexigram.contracts.tasks import PRIORITY_MAX, Priority, TaskConfigurationError
from lexigram.tasks.backends.rabbitmq import RabbitMQOptions, map_priority
from lexigram.tasks.backends.rabbitmq._options import (
    BUCKET_MAX_EXP,
    BUCKET_MIN_EXP,
    bucket_queue_name,
    delay_bucket,
    parse_amqp_url,
    split_amqp_url,
    state_namespace,
    validate_queue_name,
)
from lexigram.tasks.backends.rabbitmq._topology import (
    bucket_arguments,
    dead_letter_arguments,
    main_queue_arguments,
)


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://guest:guest@localhost:5672/", "/"),
        ("amqp://localhost", "/"),
        ("amqp://localhost/%2F", "/"),
        ("amqp://u:p@broker:5672/orders", "orders"),
        ("amqp://u:p@broker/team%2Fa", "team/a"),
    ],
)
def test_parse_amqp_url_reads_vhost(url: str, vhost: str) -> None:
    assert parse_amqp_url(url).vhost == vhost


def test_parse_amqp_url_default_ports_by_scheme() -> None:
    assert parse_amqp_url("amqp://h/").port == 5672
    assert parse_amqp_url("amqps://h/").port == 5671
    assert parse_amqp_url("AMQPS://h:6000/").scheme == "amqps"
    assert parse_amqp_url("amqps://h:6000/").port == 6000


@pytest.mark.parametrize("url", ["redis://u:secret@h:6379/0", "http://u:secret@h/", "amqp://"])
def test_parse_amqp_url_rejects_other_urls_without_leaking_password(url: str) -> None:
    with pytest.raises(TaskConfigurationError) as info:
        parse_amqp_url(url)
    assert "secret" not in str(info.value)
    assert str(info.value).endswith(".")


def test_split_amqp_url_gives_every_node_the_credentials_vhost_and_query() -> None:
    url = "amqps://u:p%40w@r1:5671, r2 ,r3:6000/orders?cafile=ca.pem&heartbeat=30"
    assert split_amqp_url(url) == [
        "amqps://u:p%40w@r1:5671/orders?cafile=ca.pem&heartbeat=30",
        "amqps://u:p%40w@r2/orders?cafile=ca.pem&heartbeat=30",
        "amqps://u:p%40w@r3:6000/orders?cafile=ca.pem&heartbeat=30",
    ]
    assert [parse_amqp_url(node).port for node in split_amqp_url(url)] == [5671, 5671, 6000]
    assert split_amqp_url("amqp://guest:guest@h:5672/") == ["amqp://guest:guest@h:5672/"]


def test_parse_amqp_url_of_a_cluster_is_its_first_node() -> None:
    target = parse_amqp_url("amqp://u:p@r1:5673,r2:5674/team%2Fa")
    assert (target.host, target.port, target.vhost) == ("r1", 5673, "team/a")


@pytest.mark.parametrize(
    "url", ["amqp://u:secret@r1,,r2/", "amqp://u:secret@r1,/", "amqp://u:secret@r1,r2:port/"]
)
def test_cluster_url_with_a_bad_node_is_refused_without_leaking_password(url: str) -> None:
    with pytest.raises(TaskConfigurationError) as info:
        parse_amqp_url(url)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("name", ["", "amq.tasks", "x" * 201])
def test_validate_queue_name_rejects_unusable_names(name: str) -> None:
    with pytest.raises(TaskConfigurationError, match="queue_name"):
        validate_queue_name(name)


def test_names_of_the_queue_family() -> None:
    assert bucket_queue_name("emails", 10) == "emails.delay.1024ms"
    assert state_namespace("/", "emails") == "lexigram:rabbitmq:/:emails:"


# -- priorities ------------------------------------------------------------------------


@pytest.mark.parametrize("max_priority", [1, 2, 3, 5, 10, 20, 100, 254, 255])
def test_map_priority_keeps_order_and_range(max_priority: int) -> None:
    mapped = [map_priority(p, max_priority) for p in range(PRIORITY_MAX + 1)]
    assert mapped == sorted(mapped)
    assert mapped[0] == 0
    assert mapped[-1] == max_priority
    assert all(0 <= level <= max_priority for level in mapped)


def test_map_priority_default_keeps_named_points_apart() -> None:
    levels = [
        map_priority(p, 10)
        for p in (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL)
    ]
    assert levels == [0, 5, 6, 7]


def test_map_priority_is_identity_for_small_values_and_full_range() -> None:
    assert [map_priority(p, 10) for p in range(6)] == [0, 1, 2, 3, 4, 5]
    assert [map_priority(p, 255) for p in (0, 7, 200, 255)] == [0, 7, 200, 255]


def test_map_priority_kit_priorities_stay_distinct() -> None:
    priorities = (0, 1, 2, 5, 10, 20, 100, 255)
    assert len({map_priority(p, 10) for p in priorities}) == len(priorities)


def test_map_priority_zero_levels_and_quorum() -> None:
    assert map_priority(200, 0) == 0
    assert map_priority(Priority.NORMAL, 10, "quorum") == 0
    assert map_priority(Priority.NORMAL + 1, 10, "quorum") == 5
    assert map_priority(Priority.CRITICAL, 10, "quorum") == 5


# -- delay buckets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "exp"),
    [(0.0, None), (0.031, None), (0.032, 5), (0.0639, 5), (0.064, 6), (1.0, 9), (3600, 21)],
)
def test_delay_bucket_picks_largest_power_of_two_not_above(seconds: float, exp: int | None) -> None:
    assert delay_bucket(seconds) == exp


def test_delay_bucket_never_overshoots_and_halves_the_rest() -> None:
    for millis in (32, 33, 100, 999, 1000, 1025, 65_535, 3_600_000, 86_400_000):
        exp = delay_bucket(millis / 1000)
        assert exp is not None
        assert BUCKET_MIN_EXP <= exp <= BUCKET_MAX_EXP
        assert (1 << exp) <= millis
        assert millis - (1 << exp) < (1 << exp)


def test_delay_bucket_caps_long_delays() -> None:
    assert delay_bucket(90 * 86400) == BUCKET_MAX_EXP


def test_delay_bucket_hops_to_due_in_few_steps() -> None:
    remaining, hops = 3_600_000, 0
    while (exp := delay_bucket(remaining / 1000)) is not None:
        remaining -= 1 << exp
        hops += 1
    assert remaining < 32
    assert hops <= 22


# -- queue arguments -------------------------------------------------------------------


def test_main_queue_arguments_classic_and_quorum() -> None:
    classic = main_queue_arguments("q", RabbitMQOptions(max_priority=7))
    assert classic == {
        "x-dead-letter-exchange": "q.dlx",
        "x-max-priority": 7,
        "x-queue-version": 2,
        "x-queue-mode": "lazy",
    }
    quorum = main_queue_arguments("q", RabbitMQOptions(queue_type="quorum"))
    assert quorum == {"x-dead-letter-exchange": "q.dlx", "x-queue-type": "quorum"}
    bare = main_queue_arguments(
        "q", RabbitMQOptions(max_priority=0, queue_version=None, queue_mode=None)
    )
    assert bare == {"x-dead-letter-exchange": "q.dlx"}


def test_bucket_arguments_dead_letter_back_to_the_queue() -> None:
    args = bucket_arguments("q", 10, RabbitMQOptions(queue_version=None))
    assert args == {
        "x-message-ttl": 1024,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "q",
        "x-queue-mode": "lazy",
    }
    quorum = bucket_arguments("q", 10, RabbitMQOptions(queue_type="quorum"))
    assert quorum["x-dead-letter-strategy"] == "at-least-once"
    assert quorum["x-overflow"] == "reject-publish"
    assert "x-queue-version" not in quorum
    assert "x-queue-mode" not in quorum


def test_dead_letter_arguments_ttl_in_milliseconds() -> None:
    settings = RabbitMQOptions(dead_letter_ttl=1.5, queue_version=1, queue_mode="default")
    assert dead_letter_arguments(settings) == {
        "x-message-ttl": 1500,
        "x-queue-version": 1,
        "x-queue-mode": "default",
    }
    bare = RabbitMQOptions(dead_letter_ttl=None, queue_version=None, queue_mode=None)
    assert dead_letter_arguments(bare) == {}


# -- options ---------------------------------------------------------------------------


def test_options_from_spec_convert_strings() -> None:
    options = RabbitMQOptions.from_options(
        {
            "durable": "false",
            "max_priority": "20",
            "visibility_timeout": "2.5",
            "queue_type": "classic",
            "dead_letter_ttl": "0",
            "queue_mode": "none",
            "queue_version": "0",
            "broker_idempotency": "off",
        }
    )
    assert options.durable is False
    assert options.max_priority == 20
    assert options.visibility_timeout == 2.5
    assert options.broker_idempotency is False
    # 0 / "none" mean "send no argument": the broker's default.
    assert dead_letter_arguments(options) == {}
    assert main_queue_arguments("q", options) == {
        "x-dead-letter-exchange": "q.dlx",
        "x-max-priority": 20,
    }
    # None means "the default", as for every backend.
    assert RabbitMQOptions.from_options({"dead_letter_ttl": None}).dead_letter_ttl == 7 * 86400


def test_options_reject_unknown_keys_naming_the_nearest() -> None:
    with pytest.raises(TaskConfigurationError, match="unknown option 'max_priorty'") as info:
        RabbitMQOptions.from_options({"max_priorty": 3})
    assert "Did you mean 'max_priority'?" in str(info.value)
    RabbitMQOptions.from_options({"state_store": None, "stores": None})


@pytest.mark.parametrize(
    "options",
    [
        {"queue_type": "stream"},
        {"queue_version": 3},
        {"queue_mode": "eager"},
        {"delay_mode": "sometimes"},
        {"max_priority": 256},
        {"max_priority": "ten"},
        {"durable": "maybe"},
        {"visibility_timeout": 0},
        {"visibility_timeout": "soon"},
        {"publish_window": 0},
        {"queue_type": "quorum", "durable": False},
    ],
)
def test_options_reject_bad_values(options: dict[str, object]) -> None:
    with pytest.raises(TaskConfigurationError) as info:
        RabbitMQOptions.from_options(options)
    assert str(info.value).endswith(".")


@pytest.mark.parametrize(
    ("options", "enabled"),
    [
        ({}, True),  # classic, durable, 10 priority levels: the default
        ({"queue_type": "quorum"}, False),  # quorum queues log acks before applying them
        ({"max_priority": 0}, False),  # a sync message would wait behind the backlog
        ({"durable": False}, False),  # nothing is on disk to keep in step
    ],
)
def test_sync_messages_only_where_they_are_taken_at_once(
    options: dict[str, object], enabled: bool
) -> None:
    from lexigram.tasks.backends.rabbitmq._ack_sync import AckSync
    from lexigram.tasks.backends.rabbitmq._connection import AMQPLink

    async def no_room() -> None:
        return None

    link = AMQPLink("amqp://h/", "q", RabbitMQOptions(**options))  # type: ignore[arg-type]
    assert AckSync(link, no_room).enabled is enabled
