"""@scheduled takes every option of @task and stacks with it; the priority range of both."""

from __future__ import annotations

from typing import Any

import pytest

from lexigram.contracts.tasks import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    Priority,
    TaskValidationError,
)
from lexigram.tasks.decorators import TaskFunction, scheduled, task

CRON = "*/5 * * * *"


async def ping(user_id: int) -> int:
    return user_id


def key_of(user_id: int) -> str:
    return f"k{user_id}"


OPTIONS: list[dict[str, Any]] = [
    {"queue": "reports"},
    {"idempotency_key": "sync-{user_id}"},
    {"idempotency_key": key_of},
    {"retry_on": (ConnectionError,)},
    {"dont_retry_on": (ValueError,)},
    {"retry_backoff": 2.0, "retry_backoff_max": 30.0, "retry_jitter": False},
    {"store_result": False},
    {"rate_limit": "10/m"},
    {"priority": Priority.HIGH, "max_retries": 7, "timeout": 12.5},
]


@pytest.mark.parametrize("options", OPTIONS)
def test_scheduled_accepts_every_option_of_task(options: dict[str, Any]) -> None:
    as_task = task(name="ping", **options)(ping)
    as_scheduled = scheduled(CRON, name="ping", **options)(ping)
    assert as_scheduled.options == as_task.options
    assert as_scheduled.idempotency_key == as_task.idempotency_key
    assert as_scheduled.cron == CRON
    assert as_scheduled.s(3).idempotency_key == as_task.s(3).idempotency_key


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"retry_backoff": -1.0}, ValueError, "retry_backoff"),
        ({"retry_on": (int,)}, TypeError, "exception classes"),
        ({"rate_limit": "fast"}, TaskValidationError, "rate_limit='fast'"),
        ({"priority": PRIORITY_MAX + 1}, ValueError, "priority=256"),
    ],
)
def test_scheduled_checks_options_as_task_does(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        task(name="ping", **options)(ping)
    with pytest.raises(error, match=match):
        scheduled(CRON, name="ping", **options)(ping)


def test_scheduled_keeps_its_positional_parameters_and_the_new_ones_are_keywords() -> None:
    made = scheduled(CRON, "nightly", Priority.LOW, 2, 30.0)(ping)
    assert (made.name, made.options.priority, made.options.max_retries) == ("nightly", 0, 2)
    assert made.options.timeout == 30.0
    with pytest.raises(TypeError):
        scheduled(CRON, "nightly", 0, 2, 30.0, "reports")  # type: ignore[call-arg]


def test_scheduled_above_task_keeps_the_task_and_adds_the_cron() -> None:
    @scheduled(CRON)
    @task(name="reports.sync", queue="reports", max_retries=5, idempotency_key="sync-{user_id}")
    async def sync(user_id: int) -> int:
        return user_id

    assert isinstance(sync, TaskFunction)
    assert not isinstance(sync.__wrapped__, TaskFunction)  # one task, not a task of a task
    assert sync.name == "reports.sync"
    assert sync.cron == CRON
    assert sync.options.queue == "reports"
    assert sync.options.max_retries == 5
    assert sync.idempotency_key == "sync-{user_id}"
    job = sync.s(4)
    assert (job.name, job.idempotency_key) == ("reports.sync", "sync-4")


async def test_task_above_scheduled_keeps_the_cron() -> None:
    @task(name="cleanup", rate_limit="1/s", store_result=False)
    @scheduled(CRON, priority=Priority.HIGH)
    async def cleanup() -> int:
        return 1

    assert cleanup.cron == CRON
    assert cleanup.name == "cleanup"
    assert cleanup.options.priority == Priority.HIGH
    assert cleanup.options.store_result is False
    assert cleanup.options.rate_limit is not None
    assert cleanup.options.rate_limit.text == "1/s"
    assert await cleanup() == 1


def test_bare_task_above_scheduled_keeps_everything() -> None:
    @task
    @scheduled(CRON, name="hourly", queue="reports")
    def hourly() -> None:
        return None

    assert (hourly.name, hourly.cron, hourly.options.queue) == ("hourly", CRON, "reports")


def test_stacked_decorators_may_repeat_a_setting_with_the_same_value() -> None:
    @scheduled(CRON, name="same", queue="reports")
    @task(name="same", queue="reports", max_retries=1)
    def same() -> None:
        return None

    assert (same.name, same.options.queue, same.options.max_retries) == ("same", "reports", 1)


@pytest.mark.parametrize(
    ("outer", "inner", "setting"),
    [
        ({"name": "a"}, {"name": "b"}, "name"),
        ({"priority": 1}, {"priority": 9}, "priority"),
        ({"queue": "x"}, {"queue": "y"}, "queue"),
        ({"idempotency_key": "a"}, {"idempotency_key": "b"}, "idempotency_key"),
        ({"rate_limit": "1/s"}, {"rate_limit": "2/s"}, "rate_limit"),
    ],
)
def test_stacked_decorators_setting_one_option_twice_differently_raise(
    outer: dict[str, Any], inner: dict[str, Any], setting: str
) -> None:
    with pytest.raises(TaskValidationError, match=f"set {setting} to"):
        scheduled(CRON, **outer)(task(**inner)(ping))
    with pytest.raises(TaskValidationError, match=f"set {setting} to"):
        task(**outer)(scheduled(CRON, **inner)(ping))


def test_two_different_crons_stacked_raise() -> None:
    with pytest.raises(TaskValidationError, match="set cron to"):
        scheduled("0 9 * * *")(scheduled(CRON)(ping))


def test_a_stacked_method_task_takes_the_arguments_after_self() -> None:
    class Sync:
        @scheduled(CRON)
        @task(name="sync.user")
        async def sync(self, user_id: int) -> int:
            return user_id

    job = Sync.sync.s(7)
    assert (job.name, job.args, Sync.sync.cron) == ("sync.user", (7,), CRON)


@pytest.mark.parametrize("priority", [PRIORITY_MIN - 1, PRIORITY_MAX + 1, 300])
def test_an_out_of_range_priority_fails_when_decorating(priority: int) -> None:
    with pytest.raises(ValueError, match=f"@task\\(priority={priority}\\)") as raised:
        task(priority=priority)
    assert len(str(raised.value).splitlines()) == 1
    assert f"{PRIORITY_MIN} to {PRIORITY_MAX}" in str(raised.value)
    with pytest.raises(ValueError, match=f"@scheduled\\(priority={priority}\\)"):
        scheduled(CRON, priority=priority)


@pytest.mark.parametrize("priority", [PRIORITY_MIN, Priority.CRITICAL, 21, PRIORITY_MAX])
def test_every_priority_a_job_accepts_is_accepted(priority: int) -> None:
    assert task(priority=priority)(ping).s(1).priority == priority
    assert scheduled(CRON, priority=priority)(ping).options.priority == priority
