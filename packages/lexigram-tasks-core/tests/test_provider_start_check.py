"""`TaskProvider.boot` checks every backend before it starts anything, as the commands do.

A wrong password or an unreachable server used to let an application boot: workers
started and logged warnings while they retried, and the first ``.delay()`` (or, later,
the scheduler's store) failed. Boot now makes the command line's start-up check
(`lexigram.tasks._backends.probe`) on every queue at once, and a failure ends it with the
backend's own one-line error before any worker, registration or scheduler started,
leaving nothing running. A provider that runs no worker and no scheduler (an application
that only enqueues) is checked too. The servers themselves are in
``tests-integration/app/test_app_start_check.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from lexigram.app import Application, ApplicationStartError
from lexigram.contracts.tasks import BackendConnectionError, Job, TaskBackendSpec
from lexigram.tasks import MemoryTaskQueue, TaskConfig, TaskProvider, scheduled
from lexigram.tasks.di import _start_check

REFUSED = "Acme at acme://app:***@db:1/ refused the login of user 'app': fix the password."


class Server(MemoryTaskQueue):
    """A queue of a server that refuses the login, never answers, or answers.

    Records whether a worker ever asked it for a job, and whether it was closed.
    """

    def __init__(self, refuse: bool = False, answer: bool = True, queue_name: str = "tasks"):
        super().__init__(queue_name=queue_name)
        self.refuse = refuse
        self.answer = answer
        self.checks = 0
        self.dequeued = 0
        self.closed = 0

    async def check_connection(self) -> None:
        self.checks += 1
        if self.refuse:
            raise BackendConnectionError(REFUSED)
        if not self.answer:
            await asyncio.Event().wait()

    async def dequeue_batch(self, max_jobs: int, *, timeout: float = 0.0) -> list[Job]:
        self.dequeued += 1
        return await super().dequeue_batch(max_jobs, timeout=timeout)

    async def close(self) -> None:
        self.closed += 1
        await super().close()


def _other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def _boot_error(provider: TaskProvider) -> ApplicationStartError:
    with pytest.raises(ApplicationStartError) as raised:
        async with Application.boot(providers=[provider]):
            pytest.fail("the application booted")
    return raised.value


@pytest.mark.parametrize(("workers", "scheduler"), [(2, True), (0, False)])
async def test_a_refused_login_fails_boot_with_the_backends_error_and_starts_nothing(
    workers: int, scheduler: bool, caplog: pytest.LogCaptureFixture
) -> None:
    server = Server(refuse=True)
    provider = TaskProvider(server, worker_count=workers, enable_scheduler=scheduler)
    fired: list[str] = []

    @scheduled("* * * * * *")
    async def every_second() -> None:
        fired.append("fired")

    if scheduler:
        provider.register_scheduled_task(every_second)
    with caplog.at_level(logging.INFO, logger="lexigram"):
        error = await _boot_error(provider)
        await asyncio.sleep(0.05)  # anything left running would log or fire by now
    # What the user reads: the backend's own line, as the command line shows it.
    assert isinstance(error.__cause__, BackendConnectionError)
    assert error.__cause__.message == REFUSED
    assert REFUSED in str(error)
    assert server.checks == 1
    assert server.dequeued == 0  # no worker ever asked for a job
    assert fired == []
    assert provider.scheduler is None or not provider.scheduler.running
    assert server.closed >= 1  # what the boot opened is closed again
    assert _other_tasks() == set()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "Tasks started" not in caplog.text


async def test_a_server_that_never_answers_fails_boot_after_the_start_up_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_start_check, "DEFAULT_CONNECT_TIMEOUT", 0.05)  # 5 s, as the CLI's
    server = Server(answer=False)
    began = time.monotonic()
    error = await _boot_error(TaskProvider(server, worker_count=1, enable_scheduler=False))
    assert time.monotonic() - began < 3.0
    assert isinstance(error.__cause__, BackendConnectionError)
    assert error.__cause__.message == (
        "The memory backend did not answer within 1.05 s (the start-up check's 0.05 s and a "
        "1 s margin). Check that the server is running and reachable, and that the queue "
        "given to TaskProvider is right."
    )
    assert server.dequeued == 0
    assert _other_tasks() == set()


class _Acme:
    """A backend registered in code whose queues are `Server`s."""

    def __init__(self, **server: Any) -> None:
        self.server = server
        self.queues: list[Server] = []

    def create_queue(self, spec: TaskBackendSpec, /) -> Server:
        queue = Server(queue_name=spec.queue_name, **self.server)
        self.queues.append(queue)
        return queue


async def test_every_backend_is_checked_at_once_and_the_first_failure_ends_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The primary never answers (its check would give up after 6 s): the other one's
    # refusal ends the boot at once, and the primary's check is cancelled.
    monkeypatch.setattr(_start_check, "DEFAULT_CONNECT_TIMEOUT", 5.0)
    config = TaskConfig.from_dict(
        {
            "backends": [
                {"name": "primary", "primary": True, "type": "memory"},
                {"name": "mail", "type": "acme", "queue_name": "mail"},
            ],
            "worker": {"worker_count": 1},
        }
    )
    hanging = Server(answer=False)
    acme = _Acme(refuse=True)
    provider = TaskProvider(hanging, config=config)
    provider.backend_registry.register("acme", acme)
    began = time.monotonic()
    error = await _boot_error(provider)
    assert time.monotonic() - began < 3.0
    assert isinstance(error.__cause__, BackendConnectionError)
    assert error.__cause__.message == REFUSED
    assert hanging.checks == 1
    assert [q.checks for q in acme.queues] == [1]
    assert hanging.dequeued == 0
    assert _other_tasks() == set()


async def test_a_failed_check_leaves_the_provider_ready_for_a_new_application() -> None:
    acme = _Acme(refuse=True)
    provider = TaskProvider(config=TaskConfig.from_dict({"backend": {"type": "acme"}}))
    provider.backend_registry.register("acme", acme)
    await _boot_error(provider)
    acme.server["refuse"] = False  # the password is fixed
    async with Application.boot(providers=[provider]):
        assert provider.worker_pool is not None
        assert provider.worker_pool.running
    assert [q.checks for q in acme.queues] == [1, 1]  # a fresh queue each time


async def test_disabled_tasks_are_not_checked() -> None:
    server = Server(answer=False)
    provider = TaskProvider(server, config=TaskConfig.from_dict({"enabled": False}))
    async with Application.boot(providers=[provider]):
        assert server.checks == 0
