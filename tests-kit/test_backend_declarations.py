"""What a backend object declares: the reference backend's and every installed backend's.

The queue's behaviour is `test_reference_kit.py`'s; this checks the object an entry point
names (`backend_problems`), and that core reads what it declares: the flags
(``url_required``, ``process_local``), the optional `close`, and a registration in code
standing in for an entry point.
"""

# ruff: noqa: INP001, S101, D103, PLR2004 - run by path (importlib mode); test names say what

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from reference_backend import ReferenceBackend, ReferenceQueue, drop_store

from lexigram.contracts.tasks import (
    BACKENDS_GROUP,
    ClosableBackendProtocol,
    TaskBackendProtocol,
    TaskBackendSpec,
    backend_problems,
    installed_entry_points,
)
from lexigram.tasks._backends import TaskBackendRegistry, load_backend


def test_reference_backend_declares_everything_correctly() -> None:
    backend = ReferenceBackend()
    assert backend_problems(backend) == []
    assert isinstance(backend, TaskBackendProtocol)
    assert isinstance(backend, ClosableBackendProtocol)


@pytest.mark.parametrize(
    "name", sorted({ep.name for ep in installed_entry_points(group=BACKENDS_GROUP)})
)
def test_every_installed_backend_declares_correctly(name: str) -> None:
    assert backend_problems(load_backend(name)) == []


class _Bad:
    url_schemes = "redis"  # a string, read letter by letter
    url_field = "redis-url"
    options_type = dict
    url_required = "no"
    process_local = 1
    create_result_store = None
    close = "closed"

    def create_queue(self, spec: TaskBackendSpec, /) -> Any:
        return None


def test_backend_problems_names_each_wrong_declaration() -> None:
    problems = "\n".join(backend_problems(_Bad()))
    for name in (
        "url_schemes",
        "url_field",
        "options_type",
        "url_required",
        "process_local",
        "create_result_store",
        "close",
    ):
        assert name in problems, name
    assert backend_problems(ReferenceBackend) == [
        (
            "ReferenceBackend is a class: the entry point must name an instance of it "
            "(or a create_queue function)."
        )
    ]


def test_registered_reference_backend_is_read_like_an_installed_one() -> None:
    registry = TaskBackendRegistry()
    backend = ReferenceBackend()
    registry.register("reference", backend)
    spec = TaskBackendSpec(
        type="reference", queue_name="kit-declared", options={"lease_seconds": "2"}
    )
    queue = registry.create_queue(spec)
    assert isinstance(queue, ReferenceQueue)
    assert queue.lease_seconds == 2.0
    assert registry.create_store(spec, "create_result_store") is None
    assert registry.is_process_local("reference")
    assert not registry.url_required("reference")
    asyncio.run(registry.release_backends(["reference", "reference"]))
    assert backend.closed == 1
    assert "reference" in registry  # closing does not unregister
    drop_store("kit-declared")
