"""Schedules belong to a namespace; state (paused, last run and outcome) is stored."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from lexigram.contracts.tasks import Err, Job, JobTemplate, TaskQueueError
from lexigram.tasks.config import TaskSchedulerConfig
from lexigram.tasks.scheduling import (
    InMemorySchedulerStore,
    ScheduledJob,
    TaskScheduler,
    storage_key,
    update_record_fields,
)

EVERY_SECOND = "* * * * * *"


async def check(scheduler: TaskScheduler, callback: Callable[[Job], Any]) -> None:
    """One scheduler check with every enabled schedule due now."""
    now = time.time()
    for job in scheduler.get_scheduled_jobs():
        job.next_run = job.cron.latest_at_or_before(now)
    scheduler._callback = callback
    scheduler.running = True
    await scheduler._tick()


async def test_two_namespaces_keep_the_same_schedule_id_apart() -> None:
    store = InMemorySchedulerStore()
    billing = TaskScheduler(store=store, namespace="billing", queue_name="billing-q")
    mail = TaskScheduler(store=store, namespace="mail", queue_name="mail-q")
    await billing.schedule_job(JobTemplate(name="invoice"), EVERY_SECOND, "cli:tick")
    await mail.schedule_job(JobTemplate(name="digest"), EVERY_SECOND, "cli:tick")
    saved = await store.load_jobs()
    assert sorted(saved) == ["billing/cli:tick", "mail/cli:tick"]
    assert saved["mail/cli:tick"].queue_name == "mail-q"

    restarted = TaskScheduler(store=store, namespace="mail")
    assert await restarted.restore_from_store() == 1
    fired: list[Job] = []
    await check(restarted, fired.append)
    assert [job.name for job in fired] == ["digest"]


async def test_unowned_records_are_left_alone_unless_declared_or_adopted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InMemorySchedulerStore()
    for schedule_id, name in (("cli:tick", "tick"), ("dynamic", "other")):
        legacy = ScheduledJob(JobTemplate(name=name), EVERY_SECOND, 0.0, job_id=schedule_id)
        await store.save_job(schedule_id, legacy)  # as an older version keyed it

    with caplog.at_level(logging.WARNING, logger="lexigram.tasks.scheduling"):
        bystander = TaskScheduler(store=store, namespace="other")
        assert await bystander.restore_from_store() == 0
    assert "2 stored schedule(s) have no namespace" in caplog.text
    assert "lexigram-tasks schedule remove" in caplog.text

    declaring = TaskScheduler(store=store, namespace="app")
    declaring.schedule_job_sync(JobTemplate(name="tick"), EVERY_SECOND, "cli:tick")
    assert await declaring.restore_from_store() == 1
    assert sorted(await store.load_jobs()) == ["app/cli:tick", "dynamic"]

    adopting = TaskScheduler(store=store, namespace="app", adopt_unowned=True)
    assert await adopting.restore_from_store() == 2
    assert sorted(await store.load_jobs()) == ["app/cli:tick", "app/dynamic"]


async def test_a_schedule_removed_from_the_store_is_not_fired_again() -> None:
    store = InMemorySchedulerStore()
    scheduler = TaskScheduler(store=store, namespace="app")
    await scheduler.schedule_job(JobTemplate(name="tick"), EVERY_SECOND, "cli:tick")
    await store.delete_job(storage_key("app", "cli:tick"))  # another process removed it
    fired: list[Job] = []
    await check(scheduler, fired.append)
    assert fired == []
    assert scheduler.get_scheduled_job("cli:tick") is None


async def test_pause_and_resume_in_the_store_reach_the_running_scheduler() -> None:
    store = InMemorySchedulerStore()
    scheduler = TaskScheduler(store=store, namespace="app")
    await scheduler.schedule_job(JobTemplate(name="tick"), EVERY_SECOND, "cli:tick")
    key = storage_key("app", "cli:tick")
    await store.update_fields(key, {"enabled": False})
    fired: list[Job] = []
    await check(scheduler, fired.append)
    assert fired == []
    assert scheduler.scheduled_jobs["cli:tick"].enabled is False

    await store.update_fields(key, {"enabled": True})
    await scheduler.sync_from_store()
    resumed = scheduler.scheduled_jobs["cli:tick"]
    assert resumed.enabled is True
    assert resumed.next_run > time.time()  # no catch-up
    await check(scheduler, fired.append)
    assert len(fired) == 1


async def test_a_local_change_not_yet_written_wins_over_the_store() -> None:
    store = InMemorySchedulerStore()
    scheduler = TaskScheduler(store=store, namespace="app")
    await scheduler.schedule_job(JobTemplate(name="tick"), EVERY_SECOND, "cli:tick")
    scheduler.disable_job("cli:tick")  # its write is pending
    await store.update_fields(storage_key("app", "cli:tick"), {"enabled": True})
    await scheduler.sync_from_store()
    assert scheduler.scheduled_jobs["cli:tick"].enabled is False


async def test_last_run_and_outcome_are_recorded_for_each_kind_of_fire() -> None:
    store = InMemorySchedulerStore()
    scheduler = TaskScheduler(store=store, namespace="app")
    await scheduler.schedule_job(JobTemplate(name="tick"), EVERY_SECOND, "cli:tick")
    key = storage_key("app", "cli:tick")

    await check(scheduler, lambda job: None)
    saved = (await store.load_jobs())[key]
    assert saved.last_outcome == "enqueued"
    assert saved.last_run is not None
    assert saved.last_job_id is not None

    def refuse(job: Job) -> Err[TaskQueueError]:
        return Err(TaskQueueError("queue is full"))

    await check(scheduler, refuse)
    saved = (await store.load_jobs())[key]
    assert (saved.last_outcome, saved.last_error) == ("failed", "queue is full")

    def explode(job: Job) -> None:
        msg = "broker down"
        raise ConnectionError(msg)

    await check(scheduler, explode)
    saved = (await store.load_jobs())[key]
    assert (saved.last_outcome, saved.last_error) == ("failed", "ConnectionError: broker down")


async def test_an_occurrence_dropped_by_the_skip_policy_is_recorded_as_skipped() -> None:
    store = InMemorySchedulerStore()
    scheduler = TaskScheduler(store=store, namespace="app", misfire_policy="skip")
    await scheduler.schedule_job(JobTemplate(name="hourly"), "0 * * * *", "hourly")
    job = scheduler.scheduled_jobs["hourly"]
    job.next_run = job.cron.latest_at_or_before(time.time() - 7200)
    fired: list[Job] = []
    scheduler._callback = fired.append
    scheduler.running = True
    # Far beyond the 60 s grace: nothing fires, and the store says why.
    await scheduler._fire(job, job.next_run + 7200 + 120)
    assert fired == []
    saved = (await store.load_jobs())[storage_key("app", "hourly")]
    assert saved.last_outcome == "skipped"


async def test_declaring_again_keeps_the_stored_state_and_takes_the_new_cron() -> None:
    store = InMemorySchedulerStore()
    first = TaskScheduler(store=store, namespace="app")
    await first.schedule_job(JobTemplate(name="tick"), "0 * * * *", "cli:tick")
    first.disable_job("cli:tick")
    first.scheduled_jobs["cli:tick"].last_run = 123.0
    await first.stop_scheduler()

    restarted = TaskScheduler(store=store, namespace="app")
    restarted.schedule_job_sync(JobTemplate(name="tick"), "*/5 * * * *", "cli:tick")
    await restarted.restore_from_store()
    job = restarted.scheduled_jobs["cli:tick"]
    assert (job.cron_expression, job.enabled, job.last_run) == ("*/5 * * * *", False, 123.0)
    await restarted.stop_scheduler()  # writes the merged schedule
    saved = (await store.load_jobs())[storage_key("app", "cli:tick")]
    assert (saved.cron_expression, saved.enabled) == ("*/5 * * * *", False)


def test_namespace_must_not_be_empty_and_comes_from_the_config() -> None:
    with pytest.raises(ValueError, match=r"namespace ' ' is empty.*e\.g\. 'myapp\.tasks'"):
        TaskScheduler(namespace=" ")
    config = TaskSchedulerConfig(namespace="billing")
    assert TaskScheduler.from_config(config).namespace == "billing"
    assert TaskScheduler.from_config(TaskSchedulerConfig()).namespace == "default"
    assert TaskScheduler.from_config(config, namespace="cli").namespace == "cli"
    assert TaskScheduler.from_config(TaskSchedulerConfig(adopt_unowned=True)).adopt_unowned


def test_renaming_the_namespace_moves_the_schedules_held() -> None:
    scheduler = TaskScheduler()
    scheduler.schedule_job_sync(JobTemplate(name="tick"), EVERY_SECOND, "tick")
    scheduler.namespace = "queue:jobs"
    assert scheduler.scheduled_jobs["tick"].key == "queue:jobs/tick"


class PlainRecordStore:
    """A third-party dict-record store with only the four protocol methods."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    async def save_job(self, job_id: str, job: Mapping[str, Any]) -> None:
        self.records[job_id] = dict(job)

    async def load_jobs(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.records.items()}

    async def update_next_run(self, job_id: str, next_run: float) -> None:
        if job_id in self.records:
            self.records[job_id]["next_run"] = next_run

    async def delete_job(self, job_id: str) -> None:
        self.records.pop(job_id, None)


async def test_state_fields_reach_a_store_without_update_fields() -> None:
    store = PlainRecordStore()
    await store.save_job("k", {"job_id": "k", "enabled": True, "next_run": 1.0})
    await update_record_fields(store, "k", {"enabled": False, "next_run": 5.0, "other": 1})
    assert store.records["k"] == {"job_id": "k", "enabled": False, "next_run": 5.0}
    await update_record_fields(store, "missing", {"enabled": False})
    assert list(store.records) == ["k"]
