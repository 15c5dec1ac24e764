"""Unit tests of the backend object and the queue constructor (no broker needed)."""

from __future__ import annotations

import dataclasses
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from lexigram.contracts.tasks import (
    OPTIONAL_BACKEND_FACTORIES,
    URL_SCHEMES_GROUP,
    TaskBackendProtocol,
    TaskBackendSpec,
    TaskConfigurationError,
    TaskQueueProtocol,
)
from lexigram.tasks.backends.rabbitmq import (
    LocalStateStore,
    RabbitMQBackend,
    RabbitMQOptions,
    RabbitMQTaskQueue,
    _stores,
    backend,
    create_queue,
)


def test_entry_point_names_the_backend_object() -> None:
    (found,) = entry_points(group="lexigram.tasks.backends", name="rabbitmq")
    loaded = found.load()
    assert loaded is backend
    assert isinstance(loaded, TaskBackendProtocol)


def test_backend_describes_itself() -> None:
    assert backend.url_schemes == ("amqp", "amqps")
    assert backend.url_field == "amqp_url"
    assert backend.options_type is RabbitMQOptions
    assert dataclasses.is_dataclass(RabbitMQOptions)
    with pytest.raises(dataclasses.FrozenInstanceError):
        RabbitMQOptions().durable = False  # type: ignore[misc]


def test_backend_imports_nothing_of_the_core() -> None:
    """A backend depends on the contracts only: no module of it imports core."""
    package = Path(_stores.__file__).parent
    for module in package.glob("*.py"):
        imported = [
            line
            for line in module.read_text().splitlines()
            if line.startswith(("from lexigram.", "import lexigram."))
            and not line.startswith(
                ("from lexigram.contracts.", "from lexigram.tasks.backends.rabbitmq")
            )
        ]
        assert imported == [], f"{module.name} imports {imported}"
    assert not hasattr(RabbitMQTaskQueue, "set_hook_registry")


def test_queue_takes_options_and_keyword_overrides() -> None:
    options = RabbitMQOptions(max_priority=3, visibility_timeout=9)
    queue = RabbitMQTaskQueue("amqp://127.0.0.1:1/", "q", options=options, durable=False)
    assert queue.options.max_priority == 3
    assert queue.options.durable is False
    assert queue.lease_seconds == 9.0
    with pytest.raises(TaskConfigurationError, match="Did you mean 'max_priority'"):
        RabbitMQTaskQueue("amqp://127.0.0.1:1/", "q", max_priorty=3)


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
    assert queue.lease_seconds == 7.0
    assert queue.options.max_priority == 4
    assert queue.options.durable is False
    assert queue.target.vhost == "prod"
    assert "s3cret" not in repr(queue)
    assert "s3cret" not in queue.url
    assert isinstance(queue.state_store, LocalStateStore)


def test_must_exist_is_an_option_the_cli_can_set() -> None:
    # The CLI's read-only commands set it where a backend's options_type declares it.
    assert "must_exist" in {field.name for field in dataclasses.fields(RabbitMQOptions)}
    assert RabbitMQOptions().must_exist is False
    assert RabbitMQOptions.from_options({"must_exist": "true"}).must_exist is True
    queue = create_queue(TaskBackendSpec(type="rabbitmq", options={"must_exist": True}))
    assert isinstance(queue, RabbitMQTaskQueue)
    assert queue.options.must_exist is True


def test_default_url_and_queue_name() -> None:
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
        (42, "is invalid"),
    ],
)
def test_state_store_setting_errors_name_the_fix(setting: object, message: str) -> None:
    spec = TaskBackendSpec(type="rabbitmq", options={"state_store": setting})
    with pytest.raises(TaskConfigurationError, match=message) as info:
        RabbitMQBackend().create_queue(spec)
    assert "pw@" not in str(info.value)


class FakeEntryPoint:
    """Stands for a backend's entry point and, read from the schemes group, for its scheme."""

    def __init__(self, target: object, name: str = "redis") -> None:
        self.target = target
        self.name = name
        self.value = f"fake:{name}"  # the object both entry points name

    def load(self) -> object:
        return self.target


class StoresBackend:
    """A backend offering a cache and a result store, recording the specs it was given."""

    url_schemes = ("redis", "rediss")

    def __init__(self) -> None:
        self.specs: list[tuple[str, TaskBackendSpec]] = []

    def create_queue(self, spec: TaskBackendSpec, /) -> object:
        return object()

    def create_cache_backend(self, spec: TaskBackendSpec, /) -> LocalStateStore:
        self.specs.append(("cache", spec))
        return LocalStateStore()

    def create_result_store(self, spec: TaskBackendSpec, /) -> str:
        self.specs.append(("result", spec))
        return "result-store"

    def create_rate_limiter(self, spec: TaskBackendSpec, /, **kwargs: object) -> dict[str, object]:
        return dict(kwargs)


@pytest.fixture
def stores_backend(monkeypatch: pytest.MonkeyPatch) -> StoresBackend:
    target = StoresBackend()
    monkeypatch.setattr(_stores, "installed_entry_points", lambda **_: [FakeEntryPoint(target)])
    monkeypatch.setattr(_stores, "_INSTALLED", {})
    monkeypatch.setattr(_stores, "_LENDERS", {})
    return target


def test_state_store_backend_without_cache_factory_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class NoCache:
        def create_queue(self, spec: TaskBackendSpec, /) -> object:
            return object()

    monkeypatch.setattr(_stores, "installed_entry_points", lambda **_: [FakeEntryPoint(NoCache())])
    monkeypatch.setattr(_stores, "_INSTALLED", {})
    monkeypatch.setattr(_stores, "_LENDERS", {})
    spec = TaskBackendSpec(type="rabbitmq", options={"state_store": {"type": "nocache"}})
    with pytest.raises(TaskConfigurationError, match="create_cache_backend"):
        RabbitMQBackend().create_queue(spec)


class ClosingStateStore(LocalStateStore):
    """A state store that records whether it was closed."""

    closed = False

    async def close(self) -> None:
        self.closed = True


async def test_a_state_store_built_from_the_options_is_closed_with_its_queue(
    stores_backend: StoresBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stores_backend, "create_cache_backend", lambda spec: ClosingStateStore())
    options = {"state_store": "redis://:pw@127.0.0.1:6379/3"}
    backend = RabbitMQBackend()
    first = backend.create_queue(TaskBackendSpec(type="rabbitmq", queue_name="a", options=options))
    second = backend.create_queue(TaskBackendSpec(type="rabbitmq", queue_name="b", options=options))
    assert isinstance(first.state_store, ClosingStateStore)
    assert first.state_store is not second.state_store  # each queue owns the one it built

    await first.close()

    assert first.state_store.closed
    assert isinstance(second.state_store, ClosingStateStore)
    assert not second.state_store.closed
    await second.close()


async def test_a_state_store_passed_in_is_left_open() -> None:
    store = ClosingStateStore()
    given = RabbitMQTaskQueue("amqp://guest:guest@127.0.0.1/", "a", state_store=store)
    in_options = RabbitMQTaskQueue(
        "amqp://guest:guest@127.0.0.1/", "b", options=RabbitMQOptions(state_store=store)
    )
    assert in_options.state_store is store

    await given.close()
    await in_options.close()

    assert not store.closed


def test_store_factories_return_none_without_stores_option() -> None:
    spec = TaskBackendSpec(type="rabbitmq")
    factory = RabbitMQBackend()
    for name in OPTIONAL_BACKEND_FACTORIES:
        assert getattr(factory, name)(spec) is None, name


def test_stores_option_borrows_another_backends_stores(stores_backend: StoresBackend) -> None:
    setting = {"type": "redis", "url": "redis://h:6379/0", "options": {"key_prefix": "app"}}
    spec = TaskBackendSpec(
        name="notify", type="rabbitmq", queue_name="q", options={"stores": setting}
    )
    factory = RabbitMQBackend()
    assert factory.create_result_store(spec) == "result-store"
    assert factory.create_progress_store(spec) is None  # that backend has none: core's memory
    assert factory.create_rate_limiter(spec, name="x", rate=5) == {"name": "x", "rate": 5}
    kind, borrowed = stores_backend.specs[0]
    assert (kind, borrowed.type, borrowed.url, borrowed.name, borrowed.queue_name) == (
        "result",
        "redis",
        "redis://h:6379/0",
        "notify",
        "q",
    )
    assert dict(borrowed.options) == {"key_prefix": "app"}
    # The job-state records default to the stores backend's cache.
    queue = factory.create_queue(spec)
    assert isinstance(queue.state_store, LocalStateStore)  # the stores backend's cache
    assert stores_backend.specs[-1][0] == "cache"


def _installed(
    monkeypatch: pytest.MonkeyPatch, backends: list[FakeEntryPoint], schemes: list[FakeEntryPoint]
) -> None:
    def entry_points(*, group: str, name: str | None = None) -> list[FakeEntryPoint]:
        assert name is None
        return schemes if group == URL_SCHEMES_GROUP else list(backends)

    monkeypatch.setattr(_stores, "installed_entry_points", entry_points)
    monkeypatch.setattr(_stores, "_TYPES_OF_SCHEMES", {})
    monkeypatch.setattr(_stores, "_INSTALLED", {})
    monkeypatch.setattr(_stores, "_LENDERS", {})


class NeverLoaded(FakeEntryPoint):
    """A backend's entry point that the lookup of a URL's scheme must not import."""

    def load(self) -> object:
        msg = f"backend {self.name!r} was imported to read a scheme decided without it"
        raise AssertionError(msg)


def test_a_stores_url_finds_a_declaring_backend_without_importing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backends: list[FakeEntryPoint] = [NeverLoaded(object(), "acme")]
    schemes = [FakeEntryPoint(object(), "acmes")]
    schemes[0].value = backends[0].value  # the scheme's entry point names acme's object
    _installed(monkeypatch, backends, schemes)
    spec = _stores.other_spec("ACMES://host/0", "rabbitmq", "q", "stores")
    assert (spec.type, spec.url) == ("acme", "ACMES://host/0")


def test_a_stores_url_whose_scheme_two_backends_serve_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Served:
        url_schemes = ("kv",)

    _installed(
        monkeypatch, [FakeEntryPoint(Served(), "alpha"), FakeEntryPoint(Served(), "beta")], []
    )
    with pytest.raises(TaskConfigurationError, match=r"several installed backends \(alpha, beta\)"):
        _stores.other_spec("kv://host/0", "rabbitmq", "q", "stores")


def test_a_stores_url_whose_scheme_is_a_backend_type_imports_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _installed(monkeypatch, [NeverLoaded(object(), "acme"), NeverLoaded(object(), "other")], [])
    spec = _stores.other_spec("acme://host/0", "rabbitmq", "q", "stores")
    assert spec.type == "acme"
