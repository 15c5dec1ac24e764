"""The backend registry as the one door: stores, self-description, flags and closing.

A backend registered in code (`TaskBackendRegistry.register`) must be seen by every
lookup made through the registry, not only by `create_queue`; `close_backend` is the
one place that closes a backend object; the flags ``url_required`` and
``process_local`` are read from the backend, never from its name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest

from lexigram.contracts.tasks import (
    SCHEDULE_STATE_FIELDS,
    BackendError,
    BackendLookupProtocol,
    FieldUpdatingSchedulerStoreProtocol,
    LockManagerProtocol,
    SchedulerStoreProtocol,
    TaskBackendSpec,
)
from lexigram.tasks import TaskConfig, _backends
from lexigram.tasks._backends import TaskBackendRegistry
from lexigram.tasks._backends._building import lenders_of
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.concurrency import LockManager
from lexigram.tasks.config import Environment, TaskBackendConfig
from lexigram.tasks.config._environment import check_config
from lexigram.tasks.results import InMemoryResultStore
from lexigram.tasks.scheduling._job import STATE_FIELDS
from lexigram.tasks.scheduling._store import update_record_fields


class _Backend:
    """A backend object registered in code: a queue, a result store, a lock manager."""

    url_schemes: ClassVar[tuple[str, ...]] = ("acme",)
    url_field: ClassVar[str | None] = "acme_url"

    def __init__(self) -> None:
        self.closed = 0
        self.result_store = InMemoryResultStore()
        self.lock_backend = LockManager()

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        return MemoryTaskQueue(queue_name=spec.queue_name)

    def create_result_store(self, spec: TaskBackendSpec, /) -> InMemoryResultStore:
        return self.result_store

    def create_lock_manager(self, spec: TaskBackendSpec, /) -> LockManager:
        return self.lock_backend

    async def close(self) -> None:
        self.closed += 1


@pytest.fixture
def clean_cache() -> Iterator[None]:
    _backends.clear_backend_cache()
    yield
    _backends.clear_backend_cache()


# ------------------------------------------------------------------------ 1: the one door


def test_registered_backend_object_serves_its_stores_through_the_registry() -> None:
    registry = TaskBackendRegistry()
    backend = _Backend()
    registry.register("acme2", backend)
    spec = TaskBackendSpec(type="acme2", queue_name="q")
    assert registry.create_queue(spec).queue_name == "q"
    assert registry.create_store(spec, "create_result_store") is backend.result_store
    assert registry.create_store(spec, "create_progress_store") is None
    assert registry.backend_attribute("acme2", "url_field") == "acme_url"
    with pytest.raises(BackendError, match="acme2"):
        _backends.create_store(spec, "create_result_store")  # entry points alone: unknown


class _Recording(_Backend):
    """Records the specs its factories are handed."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[TaskBackendSpec] = []

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        self.handed.append(spec)
        return super().create_queue(spec)

    def create_result_store(self, spec: TaskBackendSpec, /) -> InMemoryResultStore:
        self.handed.append(spec)
        return super().create_result_store(spec)


def test_every_spec_a_backend_is_handed_carries_the_lookup_that_resolved_it() -> None:
    registry = TaskBackendRegistry()
    backend = _Recording()
    registry.register("acme3", backend)
    spec = TaskBackendSpec(type="acme3", queue_name="q")
    registry.create_queue(spec)
    registry.create_store(spec, "create_result_store")
    assert backend.handed[0] == spec  # the lookup is not part of a spec's equality
    assert isinstance(registry, BackendLookupProtocol)
    # What the registry answers is what the backend asking the lookup gets: a backend
    # registered in this registry alone is found.
    for handed in backend.handed:
        lookup = handed.backends
        assert isinstance(lookup, BackendLookupProtocol)
        assert lookup.backend("acme3") is registry.backend("acme3") is backend
        assert lookup.backend_for_scheme("acme") == registry.backend_for_scheme("acme") == "acme3"
    # What it looked up is what it borrows from: held and released with it.
    assert lenders_of(backend) == ["acme3"]

    # A lookup already set (a backend handing its spec on to the one it borrows from) stays.
    other = TaskBackendRegistry()
    registry.create_queue(TaskBackendSpec(type="acme3", backends=other))
    assert backend.handed[-1].backends is other


def test_a_spec_built_without_a_registry_carries_the_installed_backends(
    clean_cache: None,
) -> None:
    handed: list[TaskBackendSpec] = []
    memory = _backends.load_backend("memory")

    class Spy:
        def create_queue(self, spec: TaskBackendSpec, /) -> Any:
            handed.append(spec)
            return memory.create_queue(spec)

    _backends._cache["spy"] = Spy()  # as if installed: loaded once per process
    _backends.create_queue(TaskBackendSpec(type="spy"))
    (spec,) = handed
    assert isinstance(spec.backends, BackendLookupProtocol)
    assert repr(spec.backends) == repr(_backends.INSTALLED) == "the installed backends"
    assert spec.backends.backend("memory") is memory
    assert spec.backends.backend_for_scheme("memory") == "memory"


def test_registered_queue_factory_offers_no_store(caplog: pytest.LogCaptureFixture) -> None:
    registry = TaskBackendRegistry()
    registry.register("plain", lambda spec: MemoryTaskQueue(queue_name=spec.queue_name))
    spec = TaskBackendSpec(type="plain", queue_name="p")
    assert isinstance(registry.create_queue(spec), MemoryTaskQueue)
    with caplog.at_level(logging.INFO, logger=_backends.__name__):
        assert registry.create_store(spec, "create_result_store") is None
    assert "Task backend 'plain' offers no create_result_store; using the in-memory version." in (
        caplog.text
    )


def test_register_refuses_a_class_and_a_non_backend() -> None:
    registry = TaskBackendRegistry()
    with pytest.raises(TypeError, match="the class _Backend"):
        registry.register("acme2", _Backend)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="create_queue"):
        registry.register("acme2", 42)  # type: ignore[arg-type]


def test_registered_factory_failure_is_blamed_on_the_registration() -> None:
    registry = TaskBackendRegistry()

    def broken(spec: TaskBackendSpec) -> MemoryTaskQueue:
        msg = "boom"
        raise RuntimeError(msg)

    registry.register("memory", broken)
    with pytest.raises(BackendError, match=r"registered in code as 'memory'.*boom"):
        registry.create_queue(TaskBackendSpec(type="memory"))


def test_spec_from_config_reads_a_registered_backend_self_description() -> None:
    registry = TaskBackendRegistry()
    registry.register("acme2", _Backend())
    by_url = TaskBackendConfig.model_validate({"url": "acme://host/1"})
    assert _backends.spec_from_config(by_url, registry=registry).type == "acme2"
    by_field = TaskBackendConfig.model_validate({"type": "acme2"})
    # The backend's url_field is read through the registry (not set here: no URL).
    assert _backends.url_of(by_field, registry=registry) == ("acme_url", None)
    config = TaskConfig.from_dict({"backend": {"type": "acme2"}})
    assert registry.create_backend(config).queue_name == config.backend.queue_name


def test_config_check_counts_a_registered_backend_as_installed() -> None:
    registry = TaskBackendRegistry()
    registry.register("acme2", lambda spec: MemoryTaskQueue())
    config = TaskConfig.from_dict({"backend": {"type": "acme2"}})
    assert not [
        issue
        for issue in check_config(config, Environment.DEVELOPMENT, registry=registry)
        if issue.field.endswith(".type")
    ]
    assert any(
        "No task backend named 'acme2'" in issue.message
        for issue in check_config(config, Environment.DEVELOPMENT)
    )


# ------------------------------------------------------------------- 2: the fallback's words


def test_create_store_says_what_the_caller_uses_instead(
    caplog: pytest.LogCaptureFixture, clean_cache: None
) -> None:
    spec = TaskBackendSpec(type="memory")
    with caplog.at_level(logging.DEBUG, logger=_backends.__name__):
        _backends.create_store(
            spec, "create_workflow_state_store", fallback="no workflow run store"
        )
        _backends.create_store(spec, "create_result_store")
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (
        logging.DEBUG,  # process-local: what was asked for
        (
            "Task backend 'memory' offers no create_workflow_state_store; using no workflow "
            "run store."
        ),
    ) in lines
    assert (
        logging.DEBUG,
        "Task backend 'memory' offers no create_result_store; using the in-memory version.",
    ) in lines


def test_a_shared_backend_without_a_store_is_told_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = TaskBackendRegistry()
    registry.register("acme2", _Backend())
    with caplog.at_level(logging.DEBUG, logger=_backends.__name__):
        registry.create_store(TaskBackendSpec(type="acme2"), "create_dlq_backend")
    assert [r.levelno for r in caplog.records] == [logging.INFO]


# --------------------------------------------------------------- 3: the backend lock manager


async def test_backend_lock_manager_backs_the_core_lock_manager() -> None:
    registry = TaskBackendRegistry()
    backend = _Backend()
    registry.register("acme2", backend)
    shared = registry.create_store(TaskBackendSpec(type="acme2"), "create_lock_manager")
    assert isinstance(shared, LockManagerProtocol)
    manager = LockManager(backend=shared)
    async with manager.acquire("k", timeout=5):
        assert backend.lock_backend.held_keys() == ["k"]


# ---------------------------------------------------------------------- 4: closing a backend


class _ClosingBackend:
    def __init__(self, *, fail: bool = False, sync: bool = False) -> None:
        self.closed = 0
        self.fail = fail
        self.sync = sync

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        return MemoryTaskQueue()

    def close(self) -> Any:
        self.closed += 1
        if self.fail:
            msg = "pool already gone"
            raise RuntimeError(msg)
        if self.sync:
            return None

        async def done() -> None:
            return None

        return done()


def _loaded(type_: str, backend: Any) -> None:
    _backends._cache[type_] = backend  # stands in for an entry point's load


async def test_close_backend_closes_once_and_forgets_the_loaded_object(clean_cache: None) -> None:
    backend = _ClosingBackend()
    _loaded("acme3", backend)
    await _backends.release_backends(["acme3", "acme3", "never-loaded"])
    assert backend.closed == 1
    assert "acme3" not in _backends._cache
    await _backends.close_backend("acme3")  # no longer loaded: nothing to close
    assert backend.closed == 1


async def test_close_backend_takes_a_sync_close_and_logs_a_failing_one(
    caplog: pytest.LogCaptureFixture, clean_cache: None
) -> None:
    sync = _ClosingBackend(sync=True)
    failing = _ClosingBackend(fail=True)
    _loaded("sync", sync)
    _loaded("failing", failing)
    with caplog.at_level(logging.WARNING, logger=_backends.__name__):
        await _backends.release_backends(["sync", "failing"])
    assert (sync.closed, failing.closed) == (1, 1)
    assert "Closing task backend 'failing'" in caplog.text
    assert "pool already gone" in caplog.text


async def test_registry_closes_a_registered_backend_and_keeps_it() -> None:
    registry = TaskBackendRegistry()
    backend = _Backend()
    registry.register("acme2", backend)
    await registry.release_backends(["acme2"])
    assert backend.closed == 1
    assert registry.backend("acme2") is backend


# --------------------------------------------------------- 5: the field-updating scheduler store


class _FourMethodStore:
    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {"k": {"enabled": True, "next_run": 1.0}}
        self.calls: list[str] = []

    async def save_job(self, job_id: str, job: Mapping[str, Any]) -> None:
        self.calls.append("save_job")
        self.records[job_id] = dict(job)

    async def load_jobs(self) -> dict[str, dict[str, Any]]:
        self.calls.append("load_jobs")
        return {k: dict(v) for k, v in self.records.items()}

    async def update_next_run(self, job_id: str, next_run: float) -> None:
        self.calls.append("update_next_run")
        self.records[job_id]["next_run"] = next_run

    async def delete_job(self, job_id: str) -> None:
        self.records.pop(job_id, None)


class _FieldStore(_FourMethodStore):
    async def update_fields(self, job_id: str, fields: Mapping[str, Any]) -> None:
        self.calls.append("update_fields")
        if job_id in self.records:
            self.records[job_id].update(fields)


async def test_update_record_fields_uses_update_fields_when_declared() -> None:
    store = _FieldStore()
    assert isinstance(store, FieldUpdatingSchedulerStoreProtocol)
    await update_record_fields(store, "k", {"enabled": False, "next_run": 5.0, "job_name": "x"})
    assert store.calls == ["update_fields"]
    assert store.records["k"] == {"enabled": False, "next_run": 5.0}


async def test_update_record_fields_falls_back_to_a_rewrite() -> None:
    store = _FourMethodStore()
    assert isinstance(store, SchedulerStoreProtocol)
    assert not isinstance(store, FieldUpdatingSchedulerStoreProtocol)
    await update_record_fields(store, "k", {"enabled": False, "next_run": 5.0})
    assert store.calls == ["update_next_run", "load_jobs", "save_job"]
    assert store.records["k"] == {"enabled": False, "next_run": 5.0}


def test_contracts_state_fields_are_cores() -> None:
    assert set(SCHEDULE_STATE_FIELDS) == STATE_FIELDS


# ------------------------------------------------------------ 6: a URL a backend can go without


def _url_issues(backend: dict[str, Any]) -> list[str]:
    config = TaskConfig.from_dict({"backend": backend})
    return [
        f"{issue.field}: {issue.fix}"
        for issue in check_config(config, Environment.DEVELOPMENT)
        if "no URL" in issue.message
    ]


def test_sqlite_without_a_url_is_not_an_error() -> None:
    assert _url_issues({"type": "sqlite"}) == []
    assert not _backends.url_required("sqlite")


def test_missing_url_fix_names_the_fields_once(clean_cache: None) -> None:
    # A backend whose older URL field is `postgres_dsn`, registered here so that the test
    # does not need the PostgreSQL backend installed (core's own suite runs without it).
    registry = TaskBackendRegistry()
    registry.register("acmepg", _DsnFieldBackend())
    config = TaskConfig.from_dict({"backend": {"type": "acmepg"}})
    fixes = [
        f"{issue.field}: {issue.fix}"
        for issue in check_config(config, Environment.DEVELOPMENT, registry=registry)
        if "no URL" in issue.message
    ]
    assert fixes == [
        (
            "tasks.backend.postgres_dsn: Set tasks.backend.url (or tasks.backend.postgres_dsn),"
            " e.g. from an environment variable."
        )
    ]


def test_missing_url_fix_without_an_older_field(clean_cache: None) -> None:
    registry = TaskBackendRegistry()
    registry.register("acme2", _NoFieldBackend())
    config = TaskConfig.from_dict({"backend": {"type": "acme2"}})
    fixes = [
        issue.fix
        for issue in check_config(config, Environment.DEVELOPMENT, registry=registry)
        if "no URL" in issue.message
    ]
    assert fixes == ["Set tasks.backend.url, e.g. from an environment variable."]


class _DsnFieldBackend:
    url_schemes: ClassVar[tuple[str, ...]] = ("acmepg",)
    url_field: ClassVar[str | None] = "postgres_dsn"

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        return MemoryTaskQueue()


class _NoFieldBackend:
    url_schemes: ClassVar[tuple[str, ...]] = ("acme",)
    url_field: ClassVar[str | None] = None

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        return MemoryTaskQueue()


# ------------------------------------------------------------------------- 7: process-local


def test_process_local_is_read_from_the_backend() -> None:
    assert _backends.is_process_local("memory")
    assert not _backends.is_process_local("sqlite")
    assert not _backends.is_process_local("no-such-backend")
    registry = TaskBackendRegistry()

    class Local(_NoFieldBackend):
        process_local = True

    registry.register("local", Local())
    registry.register("shared", _NoFieldBackend())
    assert registry.is_process_local("local")
    assert not registry.is_process_local("shared")
    assert registry.is_process_local("memory")


def test_a_process_local_backend_is_flagged_in_production() -> None:
    registry = TaskBackendRegistry()

    class Local(_NoFieldBackend):
        process_local = True

    registry.register("local", Local())
    config = TaskConfig.from_dict({"backend": {"type": "local"}})
    issues = check_config(config, Environment.PRODUCTION, registry=registry)
    assert any(
        issue.field == "tasks.backend.type" and "process-local local" in issue.message
        for issue in issues
    )
