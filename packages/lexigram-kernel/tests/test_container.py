from __future__ import annotations

import asyncio
from typing import Annotated, Protocol

import pytest

from lexigram.di import (
    CircularDependencyError,
    Container,
    ContainerRegistrarProtocol,
    ContainerResolverProtocol,
    ContainerScope,
    Named,
    ResolutionError,
    named,
)


class Settings:
    def __init__(self, dsn: str = "memory://") -> None:
        self.dsn = dsn


class Database:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings


class Repository:
    def __init__(self, db: Database, label: str = "default") -> None:
        self.db = db
        self.label = label


class Queue(Protocol):
    def name(self) -> str: ...


class NamedQueue:
    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name

    def name(self) -> str:
        return self.queue_name


class Mailer:
    def __init__(self, queue: Annotated[Queue, Named("emails")]) -> None:
        self.queue = queue


class OptionalUser:
    def __init__(self, db: Database | None, settings: Settings | None = None) -> None:
        self.db = db
        self.settings = settings


class Chicken:
    def __init__(self, egg: Egg) -> None:
        self.egg = egg


class Egg:
    def __init__(self, chicken: Chicken) -> None:
        self.chicken = chicken


class Unit: ...


@pytest.fixture
def container() -> Container:
    return Container()


async def test_singleton_instance_is_returned_as_given(container):
    settings = Settings("x")
    container.singleton(Settings, settings)
    assert await container.resolve(Settings) is settings


async def test_singleton_factory_runs_once(container):
    calls = []

    def make() -> Settings:
        calls.append(1)
        return Settings()

    container.singleton(Settings, factory=make)
    first = await container.resolve(Settings)
    assert await container.resolve(Settings) is first
    assert calls == [1]


async def test_singleton_without_instance_builds_the_class_by_injection(container):
    container.singleton(Settings, Settings("y"))
    container.singleton(Database)
    db = await container.resolve(Database)
    assert db.settings.dsn == "y"
    assert await container.resolve(Database) is db


async def test_singleton_concurrent_first_resolves_build_one_instance(container):
    built = []

    async def make() -> Settings:
        await asyncio.sleep(0)
        built.append(1)
        return Settings()

    container.singleton(Settings, factory=make)
    results = await asyncio.gather(*(container.resolve(Settings) for _ in range(5)))
    assert len({id(r) for r in results}) == 1
    assert built == [1]


async def test_singleton_rejects_instance_and_factory_together(container):
    with pytest.raises(TypeError, match="both an instance and a factory"):
        container.singleton(Settings, Settings(), factory=Settings)


async def test_singleton_of_protocol_without_instance_is_rejected(container):
    with pytest.raises(TypeError, match="not a concrete class"):
        container.singleton(Queue)


async def test_transient_builds_a_new_instance_each_time(container):
    container.singleton(Settings, Settings())
    container.transient(Database, Database)
    first = await container.resolve(Database)
    second = await container.resolve(Database)
    assert first is not second
    assert first.settings is second.settings


async def test_transient_rejects_a_non_callable_factory(container):
    with pytest.raises(TypeError, match="not callable"):
        container.transient(Database, 42)


async def test_scoped_instance_is_cached_per_scope(container):
    container.singleton(Settings, Settings())
    container.scoped(Database, Database)
    scope_a = container.create_scope()
    scope_b = container.create_scope()
    a1 = await scope_a.resolve(Database)
    assert await scope_a.resolve(Database) is a1
    b1 = await scope_b.resolve(Database)
    assert b1 is not a1
    assert b1.settings is a1.settings  # singletons are shared with the root


async def test_scoped_resolved_from_root_names_the_fix(container):
    container.scoped(Settings, Settings)
    with pytest.raises(ResolutionError, match=r"is scoped.*create_scope\(\)"):
        await container.resolve(Settings)


async def test_scoped_injected_into_singleton_is_rejected_even_from_a_scope(container):
    container.scoped(Settings, Settings)
    container.singleton(Database)
    with pytest.raises(ResolutionError, match="do not inject scoped services into singletons"):
        await container.create_scope().resolve(Database)


async def test_scope_resolves_itself_and_the_root(container):
    scope = container.create_scope()
    assert await scope.resolve(ContainerResolverProtocol) is scope
    assert await scope.resolve(ContainerScope) is scope
    assert await scope.resolve(Container) is container
    assert await scope.resolve(ContainerRegistrarProtocol) is container
    assert await container.resolve(ContainerResolverProtocol) is container


async def test_named_binding_resolves_through_annotated(container):
    emails, reports = NamedQueue("emails"), NamedQueue("reports")
    container.singleton(Queue, emails, name="emails")
    container.singleton(Annotated[Queue, Named("reports")], reports)
    assert await container.resolve(Annotated[Queue, Named("emails")]) is emails
    assert await container.resolve(Annotated[Queue, named("reports")]) is reports
    assert container.has(Annotated[Queue, Named("emails")])
    assert not container.has(Queue)
    assert (Queue, "emails") in container.registrations()


async def test_named_binding_is_injected_into_a_constructor(container):
    emails = NamedQueue("emails")
    container.singleton(Queue, emails, name="emails")
    container.transient(Mailer, Mailer)
    assert (await container.resolve(Mailer)).queue is emails


async def test_named_conflicting_with_name_argument_is_rejected(container):
    with pytest.raises(TypeError, match="contradicts"):
        container.singleton(Annotated[Queue, Named("a")], NamedQueue("a"), name="b")


def test_named_rejects_an_empty_name():
    with pytest.raises(TypeError, match="non-empty string"):
        Named("")


async def test_constructor_injection_uses_defaults_when_unbound(container):
    container.singleton(Settings, Settings())
    container.transient(Database, Database)
    container.transient(Repository, Repository)
    repo = await container.resolve(Repository)
    assert repo.label == "default"
    assert isinstance(repo.db, Database)


async def test_constructor_injection_passes_none_for_unbound_optional_hints(container):
    container.transient(OptionalUser, OptionalUser)
    user = await container.resolve(OptionalUser)
    assert user.db is None
    assert user.settings is None


async def test_factory_taking_the_container_can_resolve_lazily(container):
    container.singleton(Settings, Settings("lazy"))

    async def make(c: ContainerResolverProtocol) -> Database:
        return Database(await c.resolve(Settings))

    container.transient(Database, make)
    container.transient(Repository, lambda c: Repository(Database(Settings("lambda"))))
    assert (await container.resolve(Database)).settings.dsn == "lazy"
    assert (await container.resolve(Repository)).db.settings.dsn == "lambda"


async def test_factory_with_type_hints_is_injected(container):
    container.singleton(Settings, Settings("hinted"))

    def make(settings: Settings) -> Database:
        return Database(settings)

    container.singleton(Database, factory=make)
    assert (await container.resolve(Database)).settings.dsn == "hinted"


async def test_factory_returning_a_coroutine_is_awaited(container):
    container.singleton(Settings, Settings("coro"))
    container.transient(Database, lambda c: c.resolve(Settings))
    assert (await container.resolve(Database)).dsn == "coro"


async def test_resolve_optional_returns_none_only_when_unbound(container):
    assert await container.resolve_optional(Settings) is None
    container.transient(Database, Database)
    with pytest.raises(ResolutionError):
        await container.resolve_optional(Database)  # bound, but its dependency is missing


async def test_missing_dependency_message_names_type_requester_and_chain(container):
    container.transient(Database, Database)
    container.transient(Repository, Repository)
    with pytest.raises(ResolutionError) as info:
        await container.resolve(Repository)
    message = str(info.value)
    assert "Nothing is bound to `Settings`" in message
    assert "parameter 'settings' of `Database`" in message
    assert "`Repository` -> `Database` -> `Settings`" in message
    assert "container.singleton(Settings, instance)" in message
    assert info.value.service_type is Settings
    assert info.value.chain == ("`Repository`", "`Database`", "`Settings`")
    assert isinstance(info.value, LookupError)


async def test_missing_named_dependency_lists_the_names_that_exist(container):
    container.singleton(Queue, NamedQueue("other"), name="other")
    container.transient(Mailer, Mailer)
    with pytest.raises(ResolutionError) as info:
        await container.resolve(Mailer)
    message = str(info.value)
    assert "`Queue` named 'emails'" in message
    assert "exist as: 'other'" in message
    assert "name='emails'" in message
    assert info.value.name == "emails"


async def test_missing_direct_request_says_nothing_is_bound(container):
    with pytest.raises(ResolutionError, match=r"^Nothing is bound to `Settings`\. Bind it"):
        await container.resolve(Settings)


async def test_cycle_is_detected_and_shown(container):
    container.transient(Chicken, Chicken)
    container.transient(Egg, Egg)
    with pytest.raises(CircularDependencyError) as info:
        await container.resolve(Chicken)
    assert "`Chicken` -> `Egg` -> `Chicken`" in str(info.value)


async def test_cycle_through_a_container_factory_is_detected(container):
    container.singleton(Settings, factory=lambda c: c.resolve(Database))
    container.singleton(Database)
    with pytest.raises(CircularDependencyError, match="`Settings` -> `Database` -> `Settings`"):
        await container.resolve(Settings)


async def test_factory_error_propagates_with_a_note_of_the_chain(container):
    def broken() -> Settings:
        msg = "boom"
        raise RuntimeError(msg)

    container.singleton(Settings, factory=broken)
    container.transient(Database, Database)
    with pytest.raises(RuntimeError, match="boom") as info:
        await container.resolve(Database)
    assert info.value.__notes__ == ["While building `Database` -> `Settings`."]


def _make_local_class() -> type:
    class Local: ...

    class NeedsLocal:
        def __init__(self, local: Local) -> None:
            self.local = local

    return NeedsLocal


async def test_unresolvable_hint_explains_module_level_types(container):
    needs_local = _make_local_class()
    container.transient(needs_local, needs_local)
    with pytest.raises(ResolutionError, match="define the types they name at module level"):
        await container.resolve(needs_local)


async def test_has_sees_bindings_and_the_container_itself(container):
    assert container.has(Container)
    assert not container.has(Unit)
    container.transient(Unit, Unit)
    assert container.has(Unit)
    assert isinstance(container, ContainerRegistrarProtocol)
    assert isinstance(container, ContainerResolverProtocol)


async def test_later_registration_replaces_the_earlier_one(container):
    container.singleton(Settings, Settings("first"))
    container.singleton(Settings, Settings("second"))
    assert (await container.resolve(Settings)).dsn == "second"
