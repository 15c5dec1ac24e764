from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from lexigram.contracts.tasks import Err, Job, JobTemplate, Ok, TaskQueueError
from lexigram.tasks.config import TaskSchedulerConfig
from lexigram.tasks.scheduling import (
    CronExpression,
    MisfirePolicy,
    NoOccurrenceError,
    ScheduledJob,
    ScheduleHandle,
    TaskScheduler,
    fire_key,
)


class _Collector:
    """An async enqueue callback that records jobs and signals each arrival."""

    def __init__(self, result: Any = None) -> None:
        self.jobs: list[Job] = []
        self.arrived = asyncio.Event()
        self.result = result

    async def __call__(self, job: Job) -> Any:
        self.jobs.append(job)
        self.arrived.set()
        return Ok(job.id) if self.result is None else self.result


def _make_due(scheduler: TaskScheduler, job_id: str, occurrences_ago: int = 0) -> None:
    """Move a schedule's next run to a past occurrence, so the loop fires it at once."""
    job = scheduler.scheduled_jobs[job_id]
    due = job.cron.latest_at_or_before(time.time())
    for _ in range(occurrences_ago):
        due = job.cron.get_prev(due)
    job.next_run = due


def test_schedule_ids_are_unique_within_one_second() -> None:
    # Schedule ids used to be f"scheduled_{name}_{int(time.time())}" and collided.
    scheduler = TaskScheduler()
    ids = [scheduler.schedule_job_sync(JobTemplate(name="cleanup"), "0 0 * * *") for _ in range(50)]
    assert len(set(ids)) == 50
    assert len(scheduler.get_scheduled_jobs()) == 50
    assert all(job_id.startswith("scheduled_cleanup_") for job_id in ids)


async def test_two_templates_scheduled_in_the_same_second_both_exist() -> None:
    scheduler = TaskScheduler()
    first = await scheduler.schedule_job(JobTemplate(name="report"), "0 9 * * *")
    second = await scheduler.schedule_job(JobTemplate(name="report"), "0 9 * * *")
    assert first != second
    assert {job.job_id for job in scheduler.get_scheduled_jobs()} == {first, second}


def test_schedule_job_sync_registers_the_schedule() -> None:
    scheduler = TaskScheduler()
    before = time.time()
    job_id = scheduler.schedule_job_sync(JobTemplate(name="a", args=(1,)), "*/5 * * * *", "mine")
    scheduled = scheduler.get_scheduled_job("mine")
    assert job_id == "mine"
    assert scheduled is not None
    assert scheduled.job_id == "mine"
    assert scheduled.cron_expression == "*/5 * * * *"
    assert scheduled.enabled
    assert scheduled.timezone == "UTC"
    assert before < scheduled.next_run <= before + 300
    assert scheduler.get_scheduled_job("other") is None


def test_schedule_job_accepts_a_job_as_template() -> None:
    scheduler = TaskScheduler()
    job = Job(name="send", args=(1, 2), kwargs={"to": "x"}, priority=7, max_retries=1)
    job_id = scheduler.schedule_job_sync(job, "0 * * * *")
    template = scheduler.scheduled_jobs[job_id].job_template
    assert template == JobTemplate(
        name="send", args=(1, 2), kwargs={"to": "x"}, priority=7, max_retries=1
    )


def test_schedule_job_with_same_id_replaces_the_schedule() -> None:
    scheduler = TaskScheduler()
    scheduler.schedule_job_sync(JobTemplate(name="a"), "0 * * * *", "x")
    scheduler.schedule_job_sync(JobTemplate(name="b"), "30 * * * *", "x")
    assert len(scheduler.scheduled_jobs) == 1
    assert scheduler.scheduled_jobs["x"].job_template.name == "b"


def test_schedule_job_rejects_an_invalid_cron() -> None:
    scheduler = TaskScheduler()
    with pytest.raises(ValueError, match="minute field '61' is out of range 0-59"):
        scheduler.schedule_job(JobTemplate(name="a"), "61 * * * *")
    assert scheduler.scheduled_jobs == {}


def test_schedule_job_per_schedule_timezone() -> None:
    scheduler = TaskScheduler(timezone="Europe/Paris")
    default_id = scheduler.schedule_job_sync(JobTemplate(name="a"), "0 9 * * *")
    tokyo_id = scheduler.schedule_job_sync(
        JobTemplate(name="a"), "0 9 * * *", timezone="Asia/Tokyo"
    )
    assert scheduler.scheduled_jobs[default_id].timezone == "Europe/Paris"
    assert scheduler.scheduled_jobs[tokyo_id].timezone == "Asia/Tokyo"


async def test_schedule_job_returns_an_awaitable_handle() -> None:
    scheduler = TaskScheduler()
    handle = scheduler.schedule_job(JobTemplate(name="a"), "0 * * * *", "h")
    assert isinstance(handle, ScheduleHandle)
    assert handle.value == "h"
    assert "h" in scheduler.scheduled_jobs  # registered before any await
    assert await handle == "h"
    assert repr(handle) == "ScheduleHandle('h')"


def test_schedule_job_without_await_and_without_a_loop_is_fine() -> None:
    # The published reference calls schedule_job without await; filterwarnings=error would turn a
    # "coroutine was never awaited" warning into a failure.
    scheduler = TaskScheduler()
    handle = scheduler.schedule_job(JobTemplate(name="a"), "0 * * * *")
    del handle
    assert len(scheduler.scheduled_jobs) == 1


def test_unschedule_job_sync_removes() -> None:
    scheduler = TaskScheduler()
    job_id = scheduler.schedule_job_sync(JobTemplate(name="a"), "0 * * * *")
    assert scheduler.unschedule_job_sync(job_id) is True
    assert scheduler.unschedule_job_sync(job_id) is False
    assert scheduler.get_scheduled_jobs() == []


async def test_unschedule_job_async_removes() -> None:
    scheduler = TaskScheduler()
    job_id = await scheduler.schedule_job(JobTemplate(name="a"), "0 * * * *")
    assert await scheduler.unschedule_job(job_id) is True
    assert await scheduler.unschedule_job(job_id) is False


def test_enable_and_disable_job() -> None:
    scheduler = TaskScheduler()
    job_id = scheduler.schedule_job_sync(JobTemplate(name="a"), "* * * * *")
    assert scheduler.disable_job(job_id) is True
    assert not scheduler.scheduled_jobs[job_id].enabled
    assert job_id not in scheduler.get_next_run_times()
    scheduler.scheduled_jobs[job_id].next_run = 0.0  # long past while disabled
    assert scheduler.enable_job(job_id) is True
    # Re-enabled schedules resume from now: occurrences missed while disabled are skipped.
    assert scheduler.get_next_run_times()[job_id] > time.time()
    assert scheduler.enable_job("missing") is False
    assert scheduler.disable_job("missing") is False


def test_get_next_run_times_lists_enabled_jobs() -> None:
    scheduler = TaskScheduler()
    a = scheduler.schedule_job_sync(JobTemplate(name="a"), "0 * * * *")
    b = scheduler.schedule_job_sync(JobTemplate(name="b"), "0 0 * * *")
    times = scheduler.get_next_run_times()
    assert set(times) == {a, b}
    assert times[a] == scheduler.scheduled_jobs[a].next_run


def test_scheduler_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="Timezone 'Nowhere/Land' is not a known"):
        TaskScheduler(timezone="Nowhere/Land")
    with pytest.raises(ValueError, match="Unknown misfire_policy 'sometimes'"):
        TaskScheduler(misfire_policy="sometimes")
    with pytest.raises(ValueError, match="check_interval must be > 0"):
        TaskScheduler(check_interval=0)
    with pytest.raises(ValueError, match="max_catch_up must be >= 1"):
        TaskScheduler(max_catch_up=0)


def test_scheduler_from_config_uses_interval_and_timezone() -> None:
    config = TaskSchedulerConfig(check_interval=2.5, timezone="Europe/Berlin")
    scheduler = TaskScheduler.from_config(config, misfire_policy="skip")
    assert scheduler.check_interval == 2.5
    assert scheduler.timezone == "Europe/Berlin"
    assert scheduler.misfire_policy is MisfirePolicy.SKIP
    job_id = scheduler.schedule_job_sync(JobTemplate(name="a"), "0 9 * * *")
    assert scheduler.scheduled_jobs[job_id].timezone == "Europe/Berlin"


def test_make_job_key_is_deterministic_per_occurrence() -> None:
    scheduler = TaskScheduler()
    job_id = scheduler.schedule_job_sync(
        JobTemplate(name="report", args=(1,), priority=3), "0 * * * *", "sched-1"
    )
    scheduled = scheduler.scheduled_jobs[job_id]
    fire_time = 1_700_000_000.0
    first = scheduler.make_job(scheduled, fire_time)
    again = scheduler.make_job(scheduled, fire_time)
    other = scheduler.make_job(scheduled, fire_time + 3600)
    assert first.id != again.id  # ids are per call; the key is the occurrence's identity
    assert str(uuid.UUID(first.id)) == first.id
    assert again.idempotency_key == first.idempotency_key != other.idempotency_key
    assert first.idempotency_key == fire_key("sched-1", fire_time) == "sched-1@1700000000"
    assert first.cron_expression == "0 * * * *"
    assert (first.name, first.args, first.priority) == ("report", (1,), 3)
    assert first.metadata == {"schedule_id": "sched-1", "fire_time": fire_time}
    assert other.id != first.id


def test_delay_sleeps_until_the_earliest_next_run() -> None:
    scheduler = TaskScheduler(check_interval=60.0)
    assert scheduler._delay(1000.0) == 60.0  # nothing scheduled: check_interval
    a = scheduler.schedule_job_sync(JobTemplate(name="a"), "0 0 * * *")
    b = scheduler.schedule_job_sync(JobTemplate(name="b"), "0 0 * * *")
    scheduler.scheduled_jobs[a].next_run = 1012.5
    scheduler.scheduled_jobs[b].next_run = 1003.0
    assert scheduler._delay(1000.0) == pytest.approx(3.0)
    scheduler.scheduled_jobs[b].next_run = 5000.0
    assert scheduler._delay(1000.0) == pytest.approx(12.5)
    scheduler.scheduled_jobs[a].next_run = 999.0
    assert scheduler._delay(1000.0) == 0.0
    scheduler.disable_job(a)
    assert scheduler._delay(1000.0) == 60.0


async def test_scheduler_fires_without_waiting_for_check_interval() -> None:
    # check_interval is 60 s, yet an every-second schedule fires within about a second:
    # the loop sleeps until the next run, not for a fixed tick.
    scheduler = TaskScheduler(check_interval=60.0)
    collector = _Collector()
    job_id = await scheduler.schedule_job(JobTemplate(name="tick"), "* * * * * *")
    await scheduler.start_scheduler(collector)
    try:
        await asyncio.wait_for(collector.arrived.wait(), timeout=3.0)
    finally:
        await scheduler.stop_scheduler()
    job = collector.jobs[0]
    assert job.name == "tick"
    assert job.metadata["schedule_id"] == job_id
    assert job.idempotency_key == fire_key(job_id, job.metadata["fire_time"])
    assert job.cron_expression == "* * * * * *"
    assert scheduler.scheduled_jobs[job_id].last_run == job.metadata["fire_time"]
    assert scheduler.scheduled_jobs[job_id].next_run > job.metadata["fire_time"]


async def test_scheduler_wakes_when_a_job_is_scheduled_while_running() -> None:
    scheduler = TaskScheduler(check_interval=60.0)
    collector = _Collector()
    await scheduler.start_scheduler(collector)
    try:
        # The loop is asleep for check_interval (nothing scheduled); scheduling wakes it.
        job_id = scheduler.schedule_job_sync(JobTemplate(name="late"), "0 0 * * *")
        _make_due(scheduler, job_id)
        await asyncio.wait_for(collector.arrived.wait(), timeout=3.0)
    finally:
        await scheduler.stop_scheduler()
    assert collector.jobs[0].name == "late"


async def test_scheduler_accepts_a_sync_callback() -> None:
    scheduler = TaskScheduler()
    received: list[Job] = []
    arrived = asyncio.Event()

    def callback(job: Job) -> None:
        received.append(job)
        arrived.set()

    job_id = scheduler.schedule_job_sync(JobTemplate(name="sync"), "0 0 * * *")
    _make_due(scheduler, job_id)
    await scheduler.start_scheduler(callback)
    try:
        await asyncio.wait_for(arrived.wait(), timeout=3.0)
    finally:
        await scheduler.stop_scheduler()
    assert received[0].name == "sync"


async def test_scheduler_logs_err_results_and_keeps_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = TaskScheduler()
    collector = _Collector(result=Err(TaskQueueError("Queue 'q' is full.")))
    scheduler.schedule_job_sync(JobTemplate(name="a"), "0 0 * * *", "err-sched")
    _make_due(scheduler, "err-sched")
    with caplog.at_level(logging.ERROR, logger="lexigram.tasks.scheduling"):
        await scheduler.start_scheduler(collector)
        try:
            await asyncio.wait_for(collector.arrived.wait(), timeout=3.0)
        finally:
            await scheduler.stop_scheduler()
    assert any(
        "err-sched" in r.getMessage() and "Queue 'q' is full." in r.getMessage()
        for r in caplog.records
    )
    assert scheduler.running is False


async def test_scheduler_survives_a_raising_callback(caplog: pytest.LogCaptureFixture) -> None:
    # Policy "all" with two missed occurrences: both fire in one check, the first fails.
    scheduler = TaskScheduler(misfire_policy="all")
    calls: list[Job] = []
    second = asyncio.Event()

    async def callback(job: Job) -> None:
        calls.append(job)
        if len(calls) == 1:
            msg = "broker down"
            raise ConnectionError(msg)
        second.set()

    scheduler.schedule_job_sync(JobTemplate(name="a"), "0 * * * *", "boom")
    _make_due(scheduler, "boom", occurrences_ago=1)
    with caplog.at_level(logging.ERROR, logger="lexigram.tasks.scheduling"):
        await scheduler.start_scheduler(callback)
        try:
            await asyncio.wait_for(second.wait(), timeout=4.0)
        finally:
            await scheduler.stop_scheduler()
    assert any("Could not enqueue occurrence boom@" in r.getMessage() for r in caplog.records)
    assert calls[1].metadata["fire_time"] > calls[0].metadata["fire_time"]


def _loop_running(scheduler: TaskScheduler) -> bool:
    return scheduler._loop_task is not None


async def test_start_scheduler_twice_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = TaskScheduler()
    collector = _Collector()
    await scheduler.start_scheduler(collector)
    try:
        with caplog.at_level(logging.WARNING, logger="lexigram.tasks.scheduling"):
            await scheduler.start_scheduler(collector)
        assert _loop_running(scheduler)
        assert "start_scheduler() called on a running scheduler; ignored." in caplog.text
    finally:
        await scheduler.stop_scheduler()
    assert not _loop_running(scheduler)
    assert not scheduler.running
    await scheduler.stop_scheduler()  # stopping twice is harmless


async def test_disabled_job_does_not_fire() -> None:
    scheduler = TaskScheduler()
    collector = _Collector()
    off = scheduler.schedule_job_sync(JobTemplate(name="off"), "0 0 * * *")
    _make_due(scheduler, off)
    scheduler.disable_job(off)
    scheduler.scheduled_jobs[off].next_run = 0.0  # due long ago, but disabled
    on = scheduler.schedule_job_sync(JobTemplate(name="on"), "0 0 * * *")
    _make_due(scheduler, on)
    await scheduler.start_scheduler(collector)
    try:
        await asyncio.wait_for(collector.arrived.wait(), timeout=3.0)
    finally:
        await scheduler.stop_scheduler()
    assert {job.name for job in collector.jobs} == {"on"}


def test_scheduled_job_round_trips_through_a_dict() -> None:
    scheduled = ScheduledJob(
        job_template=JobTemplate(name="a", args=(1, "x"), kwargs={"k": [1]}, timeout=5.0),
        cron_expression="0 9 * * 1-5",
        next_run=1_700_000_000.0,
        enabled=False,
        timezone="Europe/Paris",
        job_id="s1",
        last_run=1_699_999_000.0,
    )
    again = ScheduledJob.from_dict(scheduled.to_dict())
    assert again == scheduled
    assert ScheduledJob.from_dict(
        {"job_template": {"name": "b"}, "cron_expression": "* * * * *", "next_run": 1}
    ) == ScheduledJob(JobTemplate(name="b"), "* * * * *", 1.0)


def test_scheduled_job_calculate_next_run() -> None:
    scheduled = ScheduledJob(JobTemplate(name="a"), "0 9 * * *", 0.0, timezone="Asia/Tokyo")
    # 09:00 in Tokyo is 00:00 UTC.
    assert scheduled.calculate_next_run(1_704_067_200.0 - 1) == 1_704_067_200.0  # 2024-01-01
    assert scheduled.calculate_next_run() > time.time()
    scheduled.cron_expression = "0 10 * * *"  # the parsed expression follows the change
    assert scheduled.calculate_next_run(1_704_067_200.0 - 1) == 1_704_067_200.0 + 3600


async def test_stop_scheduler_cancels_a_callback_that_never_returns() -> None:
    scheduler = TaskScheduler()
    entered = asyncio.Event()

    async def hangs(job: Job) -> None:
        entered.set()
        await asyncio.Event().wait()

    job_id = scheduler.schedule_job_sync(JobTemplate(name="a"), "0 0 * * *")
    _make_due(scheduler, job_id)
    await scheduler.start_scheduler(hangs)
    await asyncio.wait_for(entered.wait(), timeout=3.0)
    await scheduler.stop_scheduler(timeout=0.05)
    assert not _loop_running(scheduler)


async def test_unscheduling_during_enqueue_leaves_no_trace() -> None:
    scheduler = TaskScheduler()
    done = asyncio.Event()

    def unschedule_itself(job: Job) -> None:
        scheduler.unschedule_job_sync(job.metadata["schedule_id"])
        done.set()

    job_id = scheduler.schedule_job_sync(JobTemplate(name="a"), "0 0 * * *")
    _make_due(scheduler, job_id)
    await scheduler.start_scheduler(unschedule_itself)
    try:
        await asyncio.wait_for(done.wait(), timeout=3.0)
    finally:
        await scheduler.stop_scheduler()
    assert scheduler.get_scheduled_jobs() == []


def test_reprs_name_the_steps() -> None:
    from lexigram.tasks.workflows import BranchStep, TaskChain, TaskChord, TaskGroup, TaskStep

    step = TaskStep("a", print)
    assert repr(TaskChain([step], workflow_id="w")) == "TaskChain(['a'], workflow_id='w')"
    assert repr(TaskGroup([step], workflow_id="w")) == "TaskGroup(['a'], workflow_id='w')"
    assert repr(TaskChord([step], TaskStep("cb", print))) == "TaskChord(['a'], callback='cb')"
    assert repr(BranchStep(bool, step, step)) == "BranchStep(if_true='a', if_false='a')"


def _one_off_in(seconds: int) -> tuple[str, float]:
    """A cron expression with a year field, matching one second `seconds` from now."""
    at = datetime.fromtimestamp(int(time.time()) + seconds, UTC)
    return f"{at.second} {at.minute} {at.hour} {at.day} {at.month} * {at.year}", at.timestamp()


@pytest.mark.parametrize("policy", ["latest", "all"])
async def test_a_one_off_fires_once_then_rests_and_the_others_keep_firing(policy: str) -> None:
    # Its last occurrence fired, a one-off has no next run: it used to raise at every
    # check from then on, and no schedule after it in the check fired again.
    scheduler = TaskScheduler(check_interval=0.2, misfire_policy=policy)
    collector = _Collector()
    expression, due = _one_off_in(60)
    await scheduler.schedule_job(JobTemplate(name="once"), expression, job_id="once")
    await scheduler.schedule_job(JobTemplate(name="tick"), "* * * * * *", job_id="tick")
    once = scheduler.scheduled_jobs["once"]
    scheduler._callback = collector
    scheduler.running = True
    await scheduler._fire(once, due + 0.5)  # its moment has come
    assert [job.name for job in collector.jobs] == ["once"]
    assert collector.jobs[0].metadata["fire_time"] == due
    assert once.enabled is False  # at rest: never due again
    scheduler.running = False
    collector.jobs.clear()
    await scheduler.start_scheduler(collector)
    try:
        await asyncio.sleep(1.6)
    finally:
        await scheduler.stop_scheduler()
    names = [job.name for job in collector.jobs]
    assert "tick" in names
    assert "once" not in names


def test_a_cron_with_no_occurrence_left_says_so() -> None:
    expression, due = _one_off_in(60)
    cron = CronExpression(expression)
    assert cron.get_next(due - 10) == due
    with pytest.raises(NoOccurrenceError, match="has no occurrence after"):
        cron.get_next(due)
    with pytest.raises(NoOccurrenceError, match="has no occurrence before"):
        cron.get_prev(due)


async def test_a_one_off_declared_after_its_moment_rests_paused_and_the_others_fire(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A module still declaring last year's one-off used to stop the scheduler at start
    # ("never matches a date"), taking every other schedule with it.
    past = datetime.fromtimestamp(int(time.time()) - 86_400 * 400, UTC)
    expression = f"0 0 12 1 1 * {past.year}"
    cron = CronExpression(expression)  # well formed: it had its occurrence
    last = cron.get_prev()
    scheduler = TaskScheduler(check_interval=0.2)
    collector = _Collector()
    with caplog.at_level("WARNING", logger="lexigram.tasks.scheduling._scheduler"):
        scheduler.schedule_job_sync(JobTemplate(name="once"), expression, job_id="once")
    once = scheduler.scheduled_jobs["once"]
    assert (once.enabled, once.next_run) == (False, last)
    [record] = caplog.records
    assert "has no occurrence left" in record.getMessage()
    assert "kept paused" in record.getMessage()
    scheduler.schedule_job_sync(JobTemplate(name="tick"), "* * * * * *", job_id="tick")
    await scheduler.start_scheduler(collector)
    try:
        await asyncio.sleep(1.3)
    finally:
        await scheduler.stop_scheduler()
    names = [job.name for job in collector.jobs]
    assert "tick" in names
    assert "once" not in names


def test_a_year_that_never_comes_is_still_refused() -> None:
    with pytest.raises(ValueError, match="never matches a date"):
        CronExpression("0 0 12 30 2 * 2030")  # 30 February
