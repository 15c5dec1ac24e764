"""Unit tests of the backend object and the queue constructor (no broker needed)."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from lexigram.contracts.tasks import (
    TaskBackendProtocol,
    TaskBackendSpec,
    TaskConfigurationError,
    TaskQueueProtocol,
)
from lexigram.tasks.backends.rabbitmq import (
    LocalStateStore,
    RabbitMQBackend,
    RabbitMQTaskQueue,
    _backend,
    backend,
    create_queue,
)


def test_entry_point_names_the_backend_object() -> None:
    (found,) = entry_points(group="lexigram.tasks.backends", name="rabbitmq")
    loaded = found.load()
    assert loaded is backend
    assert isinstance(loaded, TaskBackendProtocol)


def test_create_queue_applies_spec_without_connecting() -> None:
    spec = TaskBackendSpec(
        name="notifications",
        type="rabbitmq",
        # Nothing listens on port 1: constructing must not try to connect.
        url="amqp://user:s3cret@127.0.0.1:1/prod",
        queue_name="emails",
        options={"visibility_timeout": "7", "max_priority": 4, "durable": "false"},
    )
    queue = create_queue(spec)
    assert isinstance(queue, RabbitMQTaskQueue)
    assert isinstance(queue, TaskQueueProtocol)
    assert queue.queue_name == "emails"
    assert queue.visibility_timeout == 7.0
    assert queue.settings.max_priority == 4
    assert queue.settings.durable is False
    assert queue.target.vhost == "prod"
    assert "s3cret" not in repr(queue)
    assert "s3cret" not in queue.url
    assert isinstance(queue.state_store, LocalStateStore)


def test_default_url_and_queue_name_match_the_seed() -> None:
    queue = RabbitMQTaskQueue()
    assert queue.queue_name == "tasks"
    assert queue.url == "amqp://localhost:5672/"
    assert queue.visibility_timeout == 30.0


def test_create_queue_rejects_bad_url_scheme() -> None:
    spec = TaskBackendSpec(type="rabbitmq", url="redis://localhost:6379/0")
    with pytest.raises(TaskConfigurationError, match="scheme"):
        backend.create_queue(spec)


def test_state_store_object_is_used_as_given() -> None:
    store = LocalStateStore()
    spec = TaskBackendSpec(type="rabbitmq", options={"state_store": store})
    queue = RabbitMQBackend().create_queue(spec)
    assert queue.state_store is store


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("mongodb://u:pw@host/db", "scheme"),
        ({"type": "no-such-backend", "url": "x://"}, "not installed"),
        (42, "not supported"),
    ],
)
def test_state_store_setting_errors_name_the_fix(setting: object, message: str) -> None:
    spec = TaskBackendSpec(type="rabbitmq", options={"state_store": setting})
    with pytest.raises(TaskConfigurationError, match=message) as info:
        RabbitMQBackend().create_queue(spec)
    assert "pw@" not in str(info.value)


def test_state_store_backend_without_cache_factory_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class NoCache:
        def create_queue(self, spec: TaskBackendSpec, /) -> object:
            return object()

    class FakeEntryPoint:
        def load(self) -> object:
            return NoCache()

    monkeypatch.setattr(_backend, "entry_points", lambda **_: [FakeEntryPoint()])
    spec = TaskBackendSpec(type="rabbitmq", options={"state_store": {"type": "nocache"}})
    with pytest.raises(TaskConfigurationError, match="create_cache_backend"):
        RabbitMQBackend().create_queue(spec)


def test_state_store_is_built_once_per_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[TaskBackendSpec] = []

    def factory(spec: TaskBackendSpec) -> LocalStateStore:
        built.append(spec)
        return LocalStateStore()

    monkeypatch.setattr(_backend, "_cache_factory", lambda type_: factory)
    shared = RabbitMQBackend()
    options = {"state_store": "redis://:pw@127.0.0.1:6379/3"}
    first = shared.create_queue(TaskBackendSpec(type="rabbitmq", queue_name="a", options=options))
    second = shared.create_queue(TaskBackendSpec(type="rabbitmq", queue_name="b", options=options))
    assert first.state_store is second.state_store
    assert [(spec.type, spec.url) for spec in built] == [("redis", "redis://:pw@127.0.0.1:6379/3")]
