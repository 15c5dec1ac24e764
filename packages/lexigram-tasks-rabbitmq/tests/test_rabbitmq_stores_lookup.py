"""The backend `stores:` names is found through the spec's lookup when the core gave one.

The core hands every backend a `TaskBackendSpec` whose `backends` is the registry it
resolved the configuration with; the RabbitMQ backend must ask that registry for the
backend its ``stores`` option names (so a backend registered in code can lend its stores)
and never read the entry points then. No broker is needed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    BackendConflictError,
    BackendLookupProtocol,
    BackendNotFoundError,
    TaskBackendProtocol,
    TaskBackendSpec,
    TaskConfigurationError,
)
from lexigram.tasks.backends.rabbitmq import LocalStateStore, RabbitMQBackend, _stores


class Lender:
    """A backend registered in code under "acme": a cache and a result store."""

    url_schemes = ("acme",)

    def __init__(self) -> None:
        self.specs: list[tuple[str, TaskBackendSpec]] = []
        self.closed = 0

    def create_queue(self, spec: TaskBackendSpec, /) -> object:
        return object()

    def create_cache_backend(self, spec: TaskBackendSpec, /) -> LocalStateStore:
        self.specs.append(("cache", spec))
        return LocalStateStore()

    def create_result_store(self, spec: TaskBackendSpec, /) -> str:
        self.specs.append(("result", spec))
        return "acme-results"

    async def close(self) -> None:
        self.closed += 1


class Lookup:
    """A `BackendLookupProtocol` that knows one backend per type, and their schemes."""

    def __init__(self, backends: dict[str, Any], schemes: dict[str, str | Exception]) -> None:
        self.backends = backends
        self.schemes = schemes

    def backend(self, backend_type: str, /) -> TaskBackendProtocol:
        found = self.backends.get(backend_type)
        if found is None:
            msg = f"No task backend {backend_type!r} is installed or registered."
            raise BackendNotFoundError(msg)
        return found  # type: ignore[no-any-return]

    def backend_for_scheme(self, scheme: str, /) -> str | None:
        found = self.schemes.get(scheme)
        if isinstance(found, Exception):
            raise found
        return found


@pytest.fixture
def no_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any read of the entry points: a spec with a lookup must not need them."""

    def read(**_: object) -> list[object]:
        msg = "the entry points were read although the spec carries a lookup"
        raise AssertionError(msg)

    monkeypatch.setattr(_stores, "installed_entry_points", read)
    monkeypatch.setattr(_stores, "_TYPES_OF_SCHEMES", {})
    monkeypatch.setattr(_stores, "_INSTALLED", {})
    monkeypatch.setattr(_stores, "_LENDERS", {})


def _spec(stores: object, lookup: BackendLookupProtocol) -> TaskBackendSpec:
    return TaskBackendSpec(
        name="jobs", type="rabbitmq", queue_name="q", options={"stores": stores}, backends=lookup
    )


def test_the_lookup_satisfies_the_protocol() -> None:
    assert isinstance(Lookup({}, {}), BackendLookupProtocol)


@pytest.mark.usefixtures("no_entry_points")
def test_a_stores_url_is_resolved_and_borrowed_through_the_lookup() -> None:
    lender = Lender()
    lookup = Lookup({"acme": lender}, {"acme": "acme"})
    spec = _spec("acme://:pw@host/0", lookup)
    backend = RabbitMQBackend()

    assert backend.create_result_store(spec) == "acme-results"
    kind, borrowed = lender.specs[-1]
    assert (kind, borrowed.type, borrowed.url, borrowed.name) == (
        "result",
        "acme",
        "acme://:pw@host/0",
        "jobs",
    )
    assert borrowed.backends is lookup  # handed on, for a lender that borrows in turn

    queue = backend.create_queue(spec)  # its job-state records: the lender's cache
    assert isinstance(queue.state_store, LocalStateStore)
    assert lender.specs[-1][0] == "cache"


@pytest.mark.usefixtures("no_entry_points")
def test_a_stores_mapping_names_its_type_through_the_lookup() -> None:
    lender = Lender()
    spec = _spec({"type": "acme", "options": {"key_prefix": "app"}}, Lookup({"acme": lender}, {}))
    assert RabbitMQBackend().create_result_store(spec) == "acme-results"
    assert dict(lender.specs[-1][1].options) == {"key_prefix": "app"}


@pytest.mark.usefixtures("no_entry_points")
@pytest.mark.parametrize(
    ("stores", "schemes", "message"),
    [
        ({"type": "nosuch"}, {}, r"backend 'nosuch' for stores: No task backend 'nosuch'"),
        ("mongodb://u:pw@host/db", {}, "served by no backend that keeps records"),
        ("amqp://u:pw@host/", {"amqp": "rabbitmq"}, "served by no backend that keeps records"),
        (
            "kv://u:pw@host/0",
            {"kv": BackendConflictError("URL scheme 'kv' is served by several backends")},
            "served by several backends",
        ),
    ],
)
def test_what_the_lookup_cannot_resolve_is_a_configuration_error(
    stores: object, schemes: dict[str, str | Exception], message: str
) -> None:
    spec = _spec(stores, Lookup({"acme": Lender()}, schemes))
    with pytest.raises(TaskConfigurationError, match=message) as info:
        RabbitMQBackend().create_result_store(spec)
    assert "pw@" not in str(info.value)


@pytest.mark.usefixtures("no_entry_points")
async def test_a_lender_found_through_the_lookup_is_left_to_the_program() -> None:
    lender = Lender()
    spec = _spec("acme://host/0", Lookup({"acme": lender}, {"acme": "acme"}))
    backend = RabbitMQBackend()
    backend.create_result_store(spec)

    await backend.close()

    # The core releases it after this backend, unless another program still holds it
    # (lexigram-tasks-core: test_provider_shared_backends.py).
    assert lender.closed == 0


@pytest.fixture
def installed_lender(monkeypatch: pytest.MonkeyPatch) -> Lender:
    """The installed backend of ``acme://`` URLs, as a spec built outside the core finds it.

    Such a spec carries no lookup: the installed backends are read, and nobody else
    knows the RabbitMQ backend borrowed from them.
    """
    lender = Lender()
    monkeypatch.setattr(_stores, "_TYPES_OF_SCHEMES", {"acme": "acme"})
    monkeypatch.setattr(_stores, "_INSTALLED", {"acme": lender})
    monkeypatch.setattr(_stores, "_LENDERS", {})
    return lender


OUTSIDE_THE_CORE = TaskBackendSpec(
    name="jobs", type="rabbitmq", queue_name="q", options={"stores": "acme://host/0"}
)


async def test_a_lender_found_without_a_lookup_is_released_with_the_backend(
    installed_lender: Lender,
) -> None:
    backend = RabbitMQBackend()
    backend.create_result_store(OUTSIDE_THE_CORE)
    backend.create_result_store(OUTSIDE_THE_CORE)  # the same lender: released once

    await backend.close()

    assert installed_lender.closed == 1


def test_a_lender_borrowed_on_an_ended_loop_is_forgotten_not_closed(
    installed_lender: Lender,
) -> None:
    # Its pools were that loop's: closing it on another loop would cut the connections a
    # program of this loop has to it (as a test of the same process once did).
    backend = RabbitMQBackend()

    async def borrow() -> None:
        backend.create_result_store(OUTSIDE_THE_CORE)

    asyncio.run(borrow())
    asyncio.run(backend.close())

    assert installed_lender.closed == 0
    assert _stores._LENDERS == {}
