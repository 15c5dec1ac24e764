"""A provider's shutdown leaves a backend open while another provider still holds it.

A backend object shares its connection pools between every queue and store built from
it, in every provider of the process. A provider's shutdown used to close the backend
(its `close`) outright, which cut the connections of another provider still running on
it: that one then logged its backend as unreachable and reconnected. Providers now hold
their backends from boot to shutdown, and the last holder on a loop closes them.
"""

from __future__ import annotations

from typing import ClassVar

from lexigram.app import Application
from lexigram.contracts.tasks import TaskBackendSpec
from lexigram.tasks import TaskConfig, TaskProvider
from lexigram.tasks._backends import TaskBackendRegistry
from lexigram.tasks.backends.memory import MemoryTaskQueue


class SharedBackend:
    """A backend with pools of its own (its `close`), registered in several registries."""

    url_schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.closed = 0

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        return MemoryTaskQueue(queue_name=spec.queue_name)

    async def close(self) -> None:
        self.closed += 1


def _registries(backend: SharedBackend, count: int) -> list[TaskBackendRegistry]:
    registries = [TaskBackendRegistry() for _ in range(count)]
    for registry in registries:
        registry.register("shared", backend)
    return registries


async def test_the_last_holder_closes_a_backend() -> None:
    backend = SharedBackend()
    first, second = _registries(backend, 2)
    first.hold_backends(["shared", "shared"])  # one hold per distinct type
    second.hold_backends(["shared"])

    await first.release_backends(["shared"], held=True)
    assert backend.closed == 0  # the second still holds it
    await TaskBackendRegistry().release_backends(["shared"])  # a caller holding nothing
    assert backend.closed == 0

    await second.release_backends(["shared"], held=True)
    assert backend.closed == 1


async def test_releasing_what_nobody_holds_closes_it_as_before() -> None:
    backend = SharedBackend()
    (registry,) = _registries(backend, 1)
    await registry.release_backends(["shared", "never-loaded"])
    assert backend.closed == 1


def _provider(backend: SharedBackend, queue_name: str) -> TaskProvider:
    config = TaskConfig.model_validate({"backend": {"type": "shared", "queue_name": queue_name}})
    provider = TaskProvider(config=config, worker_count=1, enable_scheduler=False)
    provider.backend_registry.register("shared", backend)
    return provider


async def test_a_provider_shutting_down_leaves_the_backend_of_a_running_one_open() -> None:
    backend = SharedBackend()
    running = _provider(backend, "a")
    stopping = _provider(backend, "b")
    async with Application.boot(providers=[running]):
        async with Application.boot(providers=[stopping]):
            assert stopping.queue is not None  # booted on the shared backend, then shut down
        assert backend.closed == 0  # `running` still uses its pools
    assert backend.closed == 1

    # Shutting down twice gives the hold back once: a later provider's hold survives it.
    later = _provider(backend, "c")
    async with Application.boot(providers=[later]):
        await stopping.shutdown()
        assert backend.closed == 1
    assert backend.closed == 2


class BorrowingBackend:
    """A backend whose queues keep their records in another ("shared"), as RabbitMQ's
    ``stores`` option does: it finds that one through its spec's lookup."""

    url_schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.closed = 0

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        assert spec.backends is not None
        spec.backends.backend("shared")  # where its records would go
        return MemoryTaskQueue(queue_name=spec.queue_name)

    async def close(self) -> None:
        self.closed += 1


def _borrowing_provider(
    lender: SharedBackend, borrower: BorrowingBackend, queue_name: str
) -> TaskProvider:
    config = TaskConfig.model_validate({"backend": {"type": "borrowing", "queue_name": queue_name}})
    provider = TaskProvider(config=config, worker_count=1, enable_scheduler=False)
    provider.backend_registry.register("shared", lender)
    provider.backend_registry.register("borrowing", borrower)
    return provider


async def test_a_backend_lent_to_another_stays_open_for_the_provider_that_uses_it() -> None:
    lender, borrower = SharedBackend(), BorrowingBackend()
    running = _provider(lender, "a")
    stopping = _borrowing_provider(lender, borrower, "b")
    async with Application.boot(providers=[running]):
        async with Application.boot(providers=[stopping]):
            assert stopping.queue is not None
        assert borrower.closed == 1
        assert lender.closed == 0  # `running` still uses its pools
    assert lender.closed == 1


async def test_a_lender_nobody_else_holds_is_released_after_its_borrower() -> None:
    lender, borrower = SharedBackend(), BorrowingBackend()
    alone = _borrowing_provider(lender, borrower, "b")
    async with Application.boot(providers=[alone]):
        assert alone.queue is not None
    assert (borrower.closed, lender.closed) == (1, 1)

    # The provider outliving the borrower holds the lender too, whichever boots first.
    running = _provider(lender, "a")
    later = _borrowing_provider(lender, BorrowingBackend(), "c")
    async with Application.boot(providers=[later]):
        async with Application.boot(providers=[running]):
            assert running.queue is not None  # booted on the lender, then shut down
        assert lender.closed == 1  # `later` still holds it through its borrower
    assert lender.closed == 2
