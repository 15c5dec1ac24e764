"""The CLI and the provider register a task's options and leave jobs' own values unset."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from click.testing import CliRunner

from lexigram.app import Application
from lexigram.contracts.tasks import Job, Priority
from lexigram.di import Module, module
from lexigram.tasks import (
    HandlerRegistry,
    MemoryTaskQueue,
    TaskProvider,
    TasksModule,
    scheduled,
    task,
)
from lexigram.tasks.cli import _enqueue, cli
from lexigram.tasks.cli._app import load_app
from lexigram.tasks.decorators import schedule_template
from lexigram.tasks.di._handlers import handler_specs, is_handler_class

MODULE = """
    from lexigram.tasks import HandlerRegistry, scheduled, task

    @task(max_retries=1, timeout=2.5, priority=7)
    async def flaky() -> None:
        raise RuntimeError("always")

    @scheduled("*/5 * * * *", name="tick", max_retries=0, timeout=1.0)
    async def tick() -> None:
        return None

    registry = HandlerRegistry()

    @registry.register("from_registry")
    @task(max_retries=4)
    async def from_registry() -> None:
        return None
"""


def test_cli_app_registers_task_options_and_schedules_without_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"wiring_app_{uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    app = load_app(name)
    flaky = app.handlers.options("flaky")
    assert flaky is not None
    assert (flaky.max_retries, flaky.timeout, flaky.priority) == (1, 2.5, 7)
    tick = app.handlers.options("tick")
    assert tick is not None
    assert (tick.max_retries, tick.timeout) == (0, 1.0)
    registered = app.handlers.options("from_registry")
    assert registered is not None
    assert registered.max_retries == 4
    [schedule] = app.schedules
    # The worker's registry governs: the scheduled template carries no copies.
    assert schedule.template.max_retries is None
    assert schedule.template.timeout is None


def test_cli_enqueue_leaves_retries_and_timeout_to_the_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[Job] = []

    async def capture(queue: Any, job: Job) -> Job:
        sent.append(job)
        return job

    monkeypatch.setattr(_enqueue, "enqueue_job", capture)
    env = {"LEX_TASKS__BACKEND__TYPE": "memory"}
    result = CliRunner().invoke(cli, ["enqueue", "flaky"], env=env)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        cli, ["enqueue", "flaky", "--max-retries", "0", "--timeout", "4"], env=env
    )
    assert result.exit_code == 0, result.output
    assert [(job.max_retries, job.timeout) for job in sent] == [(None, None), (0, 4.0)]


class Reports:
    @task(name="wiring.report", max_retries=1, timeout=0.5)
    async def report(self, day: int) -> int:
        return day

    @scheduled("0 4 * * *", name="wiring.nightly", max_retries=0, timeout=3.0)
    async def nightly(self) -> None:
        return None


class Plain:
    task_name = "wiring.plain"

    async def handle(self) -> None:
        return None


def test_handler_class_methods_carry_their_task_options() -> None:
    specs = {spec.task_name: spec for spec in handler_specs(Reports())}
    report = specs["wiring.report"].options
    assert report is not None
    assert (report.max_retries, report.timeout) == (1, 0.5)
    nightly = specs["wiring.nightly"].options
    assert nightly is not None
    assert (nightly.max_retries, nightly.timeout) == (0, 3.0)
    [plain] = handler_specs(Plain())
    assert plain.options is None
    # Its schedule enqueues at the priority a task has by default, as every schedule does.
    assert schedule_template(plain.task_name, plain.options).priority == Priority.NORMAL


@task(name="wiring.module_level")
async def module_level(day: int) -> int:
    return day


class Mixed:
    shared = module_level  # a module-level task kept on the class: not a method of it

    @task(name="wiring.mixed_method")
    async def method(self, day: int) -> int:
        return day


class OnlyAssigned:
    shared = module_level


class MixedChild(Mixed):
    """Inherits both: the method stays a method, the assigned task stays out."""


async def test_a_task_assigned_to_a_class_attribute_is_not_bound_as_a_method() -> None:
    # The producer side (`delay`'s signature check) and the handler classes agree: an
    # assigned task keeps its own parameters and is not registered bound to an instance.
    [spec] = handler_specs(Mixed())
    assert spec.task_name == "wiring.mixed_method"
    assert await spec.handler(3) == 3
    assert [s.task_name for s in handler_specs(MixedChild())] == ["wiring.mixed_method"]
    assert not is_handler_class(OnlyAssigned)
    assert module_level.signature(4).args == (4,)


def _renaming(func: Any) -> Any:
    """A decorator that does not copy the function's name (no functools.wraps)."""

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await func(*args, **kwargs)

    return wrapper


class WrappedMethod:
    @task(name="wiring.wrapped")
    @_renaming
    async def wrapped(self, day: int) -> int:
        return day * 2


async def test_a_method_behind_a_renaming_decorator_is_still_a_method() -> None:
    # Its qualified name is the decorator's, but @task was applied in the class body.
    [spec] = handler_specs(WrappedMethod())
    assert spec.task_name == "wiring.wrapped"
    assert await spec.handler(3) == 6


async def test_booted_provider_registers_bound_methods_with_their_options() -> None:
    @module(
        imports=[
            TasksModule.configure(queue=MemoryTaskQueue(), enable_scheduler=True),
            TasksModule.scope(Reports, Plain),
        ]
    )
    class AppModule(Module): ...

    async with Application.boot(modules=[AppModule]) as app:
        provider = await app.container.resolve(TaskProvider)
        registry: HandlerRegistry = provider.registry
        report = registry.options("wiring.report")
        nightly = registry.options("wiring.nightly")
        plain = registry.options("wiring.plain")
        assert report is not None
        assert (report.max_retries, report.timeout) == (1, 0.5)
        assert nightly is not None
        assert (nightly.max_retries, nightly.timeout) == (0, 3.0)
        assert plain is not None
        assert (plain.max_retries, plain.timeout) == (None, None)
        assert provider.scheduler is not None
        [template] = [
            job.job_template
            for job in provider.scheduler.get_scheduled_jobs()
            if job.job_id == "scheduled:wiring.nightly"
        ]
        # The worker's registry governs: the schedule's jobs carry no copies.
        assert template.max_retries is None
        assert template.timeout is None
