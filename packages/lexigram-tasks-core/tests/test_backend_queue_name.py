"""A backend's queue reports exactly the `spec.queue_name` it was built from.

Core finds a queue by its name (counts, dead-letter retries, routing), so a queue that
reports a namespaced name (``"acme:" + spec.queue_name``) would show 0 waiting jobs and
retry dead letters onto a queue nobody consumes: the builder refuses it at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lexigram.contracts.tasks import BackendError, TaskBackendSpec
from lexigram.tasks import _backends
from lexigram.tasks._backends import TaskBackendRegistry
from lexigram.tasks.backends.memory import MemoryTaskQueue


class _Prefixed:
    """Serves spec.queue_name under a namespaced name, and reports that name."""

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        return MemoryTaskQueue(queue_name="acme:" + spec.queue_name)


class _Exact:
    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        return MemoryTaskQueue(queue_name=spec.queue_name)


@pytest.fixture
def clean_cache() -> Iterator[None]:
    _backends.clear_backend_cache()
    yield
    _backends.clear_backend_cache()


def test_registry_refuses_a_queue_reporting_another_name() -> None:
    registry = TaskBackendRegistry()
    registry.register("pref", _Prefixed())
    with pytest.raises(BackendError) as info:
        registry.create_queue(TaskBackendSpec(type="pref", queue_name="tasks"))
    message = info.value.message
    assert "\n" not in message
    assert "Task backend 'pref'" in message
    assert "for queue_name 'tasks' whose queue_name is 'acme:tasks'" in message
    assert "keep any backend-side namespacing internal and return spec.queue_name" in message
    assert info.value.details["call"] == "create_queue"


def test_installed_backend_is_checked_too(clean_cache: None) -> None:
    _backends._cache["pref"] = _Prefixed()  # stands in for an entry point's load
    with pytest.raises(BackendError, match="whose queue_name is 'acme:emails'"):
        _backends.create_queue(TaskBackendSpec(type="pref", queue_name="emails"))


def test_another_queue_of_the_backend_is_checked_against_its_own_name() -> None:
    registry = TaskBackendRegistry()
    registry.register("exact", _Exact())
    registry.register("pref", _Prefixed())
    queue = registry.create_queue(TaskBackendSpec(type="exact", queue_name="other"))
    assert queue.queue_name == "other"
    for name in ("tasks", "emails.high", "a:b"):
        memory = registry.create_queue(TaskBackendSpec(type="memory", queue_name=name))
        assert memory.queue_name == name
    with pytest.raises(BackendError, match="for queue_name 'other' whose queue_name is"):
        registry.create_queue(TaskBackendSpec(type="pref", queue_name="other"))
