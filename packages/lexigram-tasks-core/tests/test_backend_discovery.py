from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    URL_SCHEMES_GROUP,
    BackendConflictError,
    BackendError,
    BackendImportError,
    BackendNotFoundError,
    TaskBackendSpec,
    TaskConfigurationError,
    TaskQueueProtocol,
)
from lexigram.tasks import TaskConfig, _backends
from lexigram.tasks._backends import _entry_points
from lexigram.tasks.config import TaskBackendConfig


class _FakeDist:
    def __init__(self, name: str, version: str = "1.0") -> None:
        self.name = name
        self.version = version


class _FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint with a chosen distribution."""

    def __init__(self, name: str, value: str, dist: str, target: Any = None) -> None:
        self.name = name
        self.value = value
        self.dist = _FakeDist(dist)
        self._target = target

    def load(self) -> Any:
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


class _FakeEntryPoints(list[Any]):
    @property
    def names(self) -> set[str]:
        return {ep.name for ep in self}


class _Registered(list[Any]):
    """The backends group's fake entry points, and the url-schemes group's in `schemes`."""

    def __init__(self) -> None:
        super().__init__()
        self.schemes: list[Any] = []


def _never_built(spec: TaskBackendSpec) -> TaskQueueProtocol:
    """The factory of a stand-in backend that a test loads but never builds a queue from."""
    msg = f"no queue was to be built for {spec.type!r}"
    raise AssertionError(msg)


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Registered]:
    registered = _Registered()

    def entry_points(*, group: str, name: str | None = None) -> _FakeEntryPoints:
        if group == URL_SCHEMES_GROUP:
            return _FakeEntryPoints(registered.schemes)
        assert group == _backends.BACKENDS_GROUP
        return _FakeEntryPoints(ep for ep in registered if name is None or ep.name == name)

    # Patched where it is looked up: the package only re-exports.
    monkeypatch.setattr(_entry_points, "installed_entry_points", entry_points)
    _backends.clear_backend_cache()
    yield registered
    _backends.clear_backend_cache()


def test_available_backends_lists_memory_from_real_entry_points() -> None:
    assert "memory" in _backends.available_backends()


def test_the_group_is_read_once_until_the_cache_is_cleared(fake_entry_points: _Registered) -> None:
    assert _backends.available_backends() == []
    fake_entry_points.append(_FakeEntryPoint("acme", "acme_tasks:backend", "acme-tasks"))
    assert _backends.available_backends() == []  # one read per process, like the backends
    _backends.clear_backend_cache()
    assert _backends.available_backends() == ["acme"]


def test_load_backend_memory_resolves_through_entry_point() -> None:
    _backends.clear_backend_cache()
    queue = _backends.create_queue(TaskBackendSpec(type="memory", queue_name="q1"))
    assert type(queue).__name__ == "MemoryTaskQueue"
    assert queue.queue_name == "q1"


def test_load_backend_unknown_type_names_installed_and_no_pip_hint_for_third_party() -> None:
    _backends.clear_backend_cache()
    with pytest.raises(BackendNotFoundError) as info:
        _backends.load_backend("nosuch")
    message = str(info.value)
    assert "'nosuch'" in message
    assert "'memory'" in message  # the installed types are listed
    assert "pip install" not in message  # not ours: no lexigram-tasks extra to suggest
    assert message.endswith(".")


def test_load_backend_typo_suggests_the_installed_type(fake_entry_points: _Registered) -> None:
    target = _backends._FunctionBackend(create_queue=_never_built)
    fake_entry_points.append(
        _FakeEntryPoint("sqlite", "a:backend", "lexigram-tasks-sqlite", target)
    )
    with pytest.raises(BackendNotFoundError) as info:
        _backends.load_backend("sqlit")
    assert "Did you mean 'sqlite'?" in str(info.value)
    assert "pip install" not in str(info.value)  # it is installed already
    assert info.value.details["suggestion"] == "sqlite"


def test_load_backend_first_party_type_gets_the_extra(fake_entry_points: _Registered) -> None:
    with pytest.raises(BackendNotFoundError) as info:
        _backends.load_backend("redis")
    assert 'pip install "lexigram-tasks[redis]"' in str(info.value)
    with pytest.raises(BackendNotFoundError) as typo:
        _backends.load_backend("rediss")
    assert "Did you mean 'redis'?" in str(typo.value)
    assert 'pip install "lexigram-tasks[redis]"' in str(typo.value)


def test_first_party_backends_match_the_meta_package_extras() -> None:
    import tomllib
    from pathlib import Path

    from lexigram.tasks.constants import FIRST_PARTY_BACKENDS

    meta = Path(__file__).parents[2] / "lexigram-tasks" / "pyproject.toml"
    extras = tomllib.loads(meta.read_text())["project"]["optional-dependencies"]
    # An extra is a backend's when it pulls that backend's distribution, lexigram-tasks-<type>.
    backend_extras = {
        name
        for name, requirements in extras.items()
        if name != "all" and any(r.startswith(f"lexigram-tasks-{name}==") for r in requirements)
    }
    assert sorted(FIRST_PARTY_BACKENDS) == sorted(backend_extras)


def test_load_backend_two_distributions_conflict_names_both(fake_entry_points: _Registered) -> None:
    fake_entry_points.append(_FakeEntryPoint("redis", "a:backend", "lexigram-tasks-redis"))
    fake_entry_points.append(_FakeEntryPoint("redis", "b:backend", "acme-redis"))
    with pytest.raises(BackendConflictError) as info:
        _backends.load_backend("redis")
    assert "lexigram-tasks-redis 1.0" in str(info.value)
    assert "acme-redis 1.0" in str(info.value)


def test_load_backend_same_distribution_twice_is_not_a_conflict(
    fake_entry_points: _Registered,
) -> None:
    target = _backends._FunctionBackend(create_queue=_never_built)
    fake_entry_points.append(_FakeEntryPoint("x", "a:backend", "dist-x", target))
    fake_entry_points.append(_FakeEntryPoint("x", "a:backend", "dist-x", target))
    assert _backends.load_backend("x") is target


def test_load_backend_import_failure_names_distribution(fake_entry_points: _Registered) -> None:
    error = ModuleNotFoundError("No module named 'aio_pika'")
    fake_entry_points.append(
        _FakeEntryPoint("rabbitmq", "m:backend", "lexigram-tasks-rabbitmq", error)
    )
    with pytest.raises(BackendImportError) as info:
        _backends.load_backend("rabbitmq")
    assert "lexigram-tasks-rabbitmq" in str(info.value)
    assert info.value.__cause__ is error


def test_load_backend_function_entry_point_is_wrapped(fake_entry_points: _Registered) -> None:
    from lexigram.tasks.backends.memory import MemoryTaskQueue

    def create_queue(spec: TaskBackendSpec) -> MemoryTaskQueue:
        return MemoryTaskQueue(queue_name=spec.queue_name)

    fake_entry_points.append(_FakeEntryPoint("fn", "m:create_queue", "dist-fn", create_queue))
    queue = _backends.create_queue(TaskBackendSpec(type="fn", queue_name="z"))
    assert isinstance(queue, MemoryTaskQueue)


def test_load_backend_rejects_non_backend_object(fake_entry_points: _Registered) -> None:
    fake_entry_points.append(_FakeEntryPoint("bad", "m:CONSTANT", "dist-bad", 42))
    with pytest.raises(BackendError) as info:
        _backends.load_backend("bad")
    message = str(info.value)
    assert "create_queue" in message
    assert "'bad = m:CONSTANT'" in message  # the entry point
    assert "dist-bad 1.0" in message  # the distribution
    assert "fault of dist-bad, not of lexigram-tasks" in message


def test_load_backend_missing_attribute_blames_the_distribution(
    fake_entry_points: _Registered,
) -> None:
    error = AttributeError("module 'acme_tasks' has no attribute 'backnd'")
    fake_entry_points.append(_FakeEntryPoint("acme", "acme_tasks:backnd", "acme-tasks", error))
    with pytest.raises(BackendImportError) as info:
        _backends.load_backend("acme")
    message = str(info.value)
    assert "'acme = acme_tasks:backnd'" in message
    assert "acme-tasks 1.0" in message
    assert "AttributeError: module 'acme_tasks' has no attribute 'backnd'" in message
    assert info.value.details["distribution"] == "acme-tasks"
    assert info.value.__cause__ is error


def test_load_backend_import_time_error_blames_the_distribution(
    fake_entry_points: _Registered,
) -> None:
    fake_entry_points.append(
        _FakeEntryPoint("acme", "acme_tasks:backend", "acme-tasks", RuntimeError("boom"))
    )
    with pytest.raises(BackendImportError, match=r"RuntimeError: boom\. This is a fault of acme"):
        _backends.load_backend("acme")


def test_factory_that_raises_becomes_backend_error(fake_entry_points: _Registered) -> None:
    def create_queue(spec: TaskBackendSpec) -> Any:
        msg = "host"
        raise KeyError(msg)

    fake_entry_points.append(_FakeEntryPoint("acme", "m:create_queue", "acme-tasks", create_queue))
    with pytest.raises(BackendError) as info:
        _backends.create_queue(TaskBackendSpec(type="acme"))
    message = str(info.value)
    assert "create_queue" in message
    assert "acme-tasks 1.0" in message
    assert "KeyError: 'host'" in message


def test_store_factory_that_raises_becomes_backend_error(fake_entry_points: _Registered) -> None:
    class Backend:
        def create_queue(self, spec: TaskBackendSpec) -> Any:
            return None

        def create_result_store(self, spec: TaskBackendSpec) -> Any:
            msg = "no pool"
            raise ValueError(msg)

    fake_entry_points.append(_FakeEntryPoint("acme", "m:backend", "acme-tasks", Backend()))
    with pytest.raises(BackendError, match=r"create_result_store.*ValueError: no pool"):
        _backends.create_store(TaskBackendSpec(type="acme"), "create_result_store")


def test_factory_configuration_error_passes_through(fake_entry_points: _Registered) -> None:
    from lexigram.contracts.tasks import TaskConfigurationError

    def create_queue(spec: TaskBackendSpec) -> Any:
        msg = "Backend option x is unknown."
        raise TaskConfigurationError(msg)

    fake_entry_points.append(_FakeEntryPoint("acme", "m:create_queue", "acme-tasks", create_queue))
    with pytest.raises(TaskConfigurationError, match="option x"):
        _backends.create_queue(TaskBackendSpec(type="acme"))


def test_create_queue_rejects_factory_returning_non_queue(fake_entry_points: _Registered) -> None:
    target = _backends._FunctionBackend(create_queue=lambda spec: object())  # type: ignore[arg-type,return-value]
    fake_entry_points.append(_FakeEntryPoint("odd", "m:backend", "dist-odd", target))
    with pytest.raises(BackendError, match="TaskQueueProtocol"):
        _backends.create_queue(TaskBackendSpec(type="odd"))


def test_scheme_resolution_reads_the_backends_url_schemes(fake_entry_points: _Registered) -> None:
    class Backend:
        url_schemes = ("acme", "acmes")
        url_field = "redis_url"

        def create_queue(self, spec: TaskBackendSpec) -> Any:
            return None

    broken = ModuleNotFoundError("No module named 'nothing'")
    fake_entry_points.append(_FakeEntryPoint("acmetype", "m:backend", "acme-tasks", Backend()))
    fake_entry_points.append(_FakeEntryPoint("broken", "n:backend", "broken-tasks", broken))
    assert _backends.backend_for_scheme("ACMES") == "acmetype"
    assert _backends.backend_for_scheme("acmetype") == "acmetype"  # a type name is a scheme
    assert _backends.backend_for_scheme("nope") is None
    assert _backends.known_schemes() == ["acme", "acmes"]
    config = TaskBackendConfig(type="acmetype")  # the backend's url_field is read
    assert _backends.spec_from_config(config).url == "redis://localhost:6379"


def test_declared_schemes_find_a_backend_without_importing_any(
    fake_entry_points: _Registered,
) -> None:
    class Backend:
        url_schemes = ("old",)

        def create_queue(self, spec: TaskBackendSpec) -> Any:
            return None

    # Loading the declaring backend would raise: resolving its schemes must not load it.
    never = RuntimeError("the declaring backend was imported")
    fake_entry_points.append(_FakeEntryPoint("acmetype", "acme:backend", "acme-tasks", never))
    fake_entry_points.append(_FakeEntryPoint("oldtype", "old:backend", "old-tasks", Backend()))
    for scheme in ("acme", "acmes"):
        fake_entry_points.schemes.append(_FakeEntryPoint(scheme, "acme:backend", "acme-tasks"))
    fake_entry_points.schemes.append(_FakeEntryPoint("orphan", "gone:backend", "gone-tasks"))
    assert _backends.backend_for_scheme("ACMES") == "acmetype"
    assert _backends.backend_for_scheme("old") == "oldtype"  # undeclared: read by importing
    assert _backends.backend_for_scheme("orphan") is None  # declared for no installed backend
    assert _backends.known_schemes() == ["acme", "acmes", "old"]
    fake_entry_points.schemes.append(_FakeEntryPoint("old", "acme:backend", "acme-tasks"))
    _backends.clear_backend_cache()
    with pytest.raises(
        BackendConflictError, match=r"several installed backends \(acmetype, oldtype"
    ):
        _backends.backend_for_scheme("old")


def test_two_backends_claiming_one_scheme_conflict(fake_entry_points: _Registered) -> None:
    class Backend:
        url_schemes = ("same",)

        def create_queue(self, spec: TaskBackendSpec) -> Any:
            return None

    fake_entry_points.append(_FakeEntryPoint("a", "m:backend", "dist-a", Backend()))
    fake_entry_points.append(_FakeEntryPoint("b", "m:backend", "dist-b", Backend()))
    with pytest.raises(BackendConflictError, match="several installed backends"):
        _backends.backend_for_scheme("same")


def test_registry_explicit_factory_wins_over_entry_points() -> None:
    from lexigram.tasks.backends.memory import MemoryTaskQueue

    registry = _backends.TaskBackendRegistry.with_defaults()
    made: list[MemoryTaskQueue] = []

    def factory(spec: TaskBackendSpec) -> MemoryTaskQueue:
        made.append(MemoryTaskQueue(queue_name=spec.queue_name))
        return made[-1]

    registry.register("memory", factory)
    assert "memory" in registry
    queue = registry.create_queue(TaskBackendSpec(type="memory"))
    assert made == [queue]  # the registered factory's queue, not the installed backend's


def test_entry_point_type_is_real_entry_point_class() -> None:
    # Guards the fake above: the real API still exposes .names and .dist.
    from importlib.metadata import entry_points

    eps = entry_points(group=_backends.BACKENDS_GROUP)
    assert "memory" in eps.names
    assert all(isinstance(ep, EntryPoint) for ep in eps)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("reddis://:hunter2@127.0.0.1:6379/8", "has the scheme 'reddis', which no installed"),
        ("rediss//:hunter2@127.0.0.1:6379/8", "is not a URL (its '://' is missing or mistyped)"),
    ],
)
def test_a_url_no_backend_serves_is_refused_rather_than_dropped(url: str, words: str) -> None:
    # Without a type, falling back to the default would run on the in-memory backend.
    config = TaskConfig.from_dict({"backend": {"url": url}})
    with pytest.raises(TaskConfigurationError, match=re.escape(words)) as refused:
        _backends.spec_from_config(config.backend)
    assert str(refused.value).startswith("tasks.backend.url = ")
    assert "hunter2" not in str(refused.value)


def test_a_url_alone_chooses_its_backend_and_a_disagreeing_type_is_refused() -> None:
    chosen = TaskConfig.from_dict({"backend": {"url": "memory://"}})
    assert _backends.spec_from_config(chosen.backend).type == "memory"
    clash = TaskConfig.from_dict({"backend": {"type": "memory", "url": "unknown-scheme://x"}})
    assert _backends.spec_from_config(clash.backend).type == "memory"  # nobody serves it
    both = TaskConfig.from_dict(
        {"backends": [{"name": "jobs", "type": "acme", "url": "memory://"}]}
    )
    with pytest.raises(TaskConfigurationError) as refused:
        _backends.spec_from_config(both.backends[0])
    assert str(refused.value) == (
        "tasks.backends[jobs].url is a memory:// URL, served by the 'memory' backend, but "
        "tasks.backends[jobs].type is 'acme'. Set type: memory (or drop type and let the URL "
        "choose), or give a URL of the backend you meant."
    )
