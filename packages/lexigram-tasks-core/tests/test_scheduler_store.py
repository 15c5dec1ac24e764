from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import pytest

from lexigram.contracts.tasks import Job, JobTemplate, SchedulerStoreProtocol
from lexigram.tasks.scheduling import (
    CronExpression,
    InMemorySchedulerStore,
    MisfirePolicy,
    ScheduledJob,
    SchedulerStore,
    SchedulerStoreAdapter,
    TaskScheduler,
    as_scheduler_store,
    storage_key,
)
from lexigram.tasks.scheduling._misfire import occurrences_to_fire


def key(schedule_id: str) -> str:
    """The store key of a schedule of a scheduler built without a namespace."""
    return storage_key("default", schedule_id)


class DictRecordStore:
    """A dict-record store as a backend implements it (contracts' SchedulerStoreProtocol)."""

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


class FailingStore(InMemorySchedulerStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail = True

    async def save_job(self, job_id: str, job: ScheduledJob) -> None:
        if self.fail:
            msg = "store offline"
            raise ConnectionError(msg)
        await super().save_job(job_id, job)


async def test_schedule_job_awaited_persists_to_the_store() -> None:
    store = InMemorySchedulerStore()
    scheduler = TaskScheduler(store=store)
    job_id = await scheduler.schedule_job(JobTemplate(name="a"), "0 * * * *")
    saved = await store.load_jobs()
    assert list(saved) == [key(job_id)]
    assert saved[key(job_id)].job_id == job_id
    assert saved[key(job_id)].namespace == "default"
    assert saved[key(job_id)].job_template == JobTemplate(name="a")
    assert saved[key(job_id)].next_run == scheduler.scheduled_jobs[job_id].next_run
    assert saved[key(job_id)] is not scheduler.scheduled_jobs[job_id]


async def test_schedule_job_not_awaited_still_persists_on_the_running_loop() -> None:
    store = InMemorySchedulerStore()
    scheduler = TaskScheduler(store=store)
    scheduler.schedule_job(JobTemplate(name="a"), "0 * * * *", "fire-and-forget")
    # The write runs as a task on the loop; wait for the tasks the scheduler started.
    await asyncio.gather(*scheduler._writes)
    assert list(await store.load_jobs()) == [key("fire-and-forget")]


def test_schedule_job_without_a_loop_persists_at_start_scheduler() -> None:
    store = InMemorySchedulerStore()
    scheduler = TaskScheduler(store=store)
    scheduler.schedule_job(JobTemplate(name="a"), "0 * * * *", "early")

    async def main() -> dict[str, ScheduledJob]:
        assert await store.load_jobs() == {}  # nothing written without a loop
        await scheduler.start_scheduler(lambda job: None)
        saved = await store.load_jobs()
        await scheduler.stop_scheduler()
        return saved

    assert list(asyncio.run(main())) == [key("early")]


def test_schedule_job_without_a_loop_persists_when_awaited_later() -> None:
    store = InMemorySchedulerStore()
    scheduler = TaskScheduler(store=store)
    handle = scheduler.schedule_job(JobTemplate(name="a"), "0 * * * *", "later")

    async def main() -> list[str]:
        assert await handle == "later"
        return list(await store.load_jobs())

    assert asyncio.run(main()) == [key("later")]


async def test_sync_variants_do_not_touch_the_store() -> None:
    store = InMemorySchedulerStore()
    scheduler = TaskScheduler(store=store)
    kept = await scheduler.schedule_job(JobTemplate(name="kept"), "0 * * * *")
    scheduler.schedule_job_sync(JobTemplate(name="memory-only"), "0 * * * *", "mem")
    assert scheduler.unschedule_job_sync(kept) is True
    await asyncio.gather(*scheduler._writes)
    assert list(await store.load_jobs()) == [key(kept)]


async def test_unschedule_job_deletes_from_the_store() -> None:
    store = InMemorySchedulerStore()
    scheduler = TaskScheduler(store=store)
    job_id = await scheduler.schedule_job(JobTemplate(name="a"), "0 * * * *")
    assert await scheduler.unschedule_job(job_id) is True
    assert await store.load_jobs() == {}


async def test_unschedule_job_deletes_a_stored_schedule_this_scheduler_lacks() -> None:
    store = InMemorySchedulerStore()
    other = TaskScheduler(store=store)
    job_id = await other.schedule_job(JobTemplate(name="a"), "0 * * * *")
    scheduler = TaskScheduler(store=store)
    assert await scheduler.unschedule_job(job_id) is False
    assert await store.load_jobs() == {}


async def test_schedule_then_unschedule_without_await_leaves_no_record() -> None:
    store = InMemorySchedulerStore()
    scheduler = TaskScheduler(store=store)
    scheduler.schedule_job(JobTemplate(name="a"), "0 * * * *", "ghost")
    scheduler.unschedule_job("ghost")
    await asyncio.gather(*scheduler._writes)
    assert await store.load_jobs() == {}


async def test_enable_disable_persist_for_stored_schedules() -> None:
    store = InMemorySchedulerStore()
    scheduler = TaskScheduler(store=store)
    job_id = await scheduler.schedule_job(JobTemplate(name="a"), "0 * * * *")
    scheduler.disable_job(job_id)
    await asyncio.gather(*scheduler._writes)
    assert (await store.load_jobs())[key(job_id)].enabled is False
    scheduler.enable_job(job_id)
    await asyncio.gather(*scheduler._writes)
    assert (await store.load_jobs())[key(job_id)].enabled is True


async def test_store_write_failure_is_logged_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FailingStore()
    scheduler = TaskScheduler(store=store)
    with caplog.at_level(logging.WARNING, logger="lexigram.tasks.scheduling"):
        scheduler.schedule_job(JobTemplate(name="a"), "0 * * * *", "retry-me")
        await asyncio.gather(*scheduler._writes, return_exceptions=True)
        assert (
            "Scheduler could not write changes to its store (ConnectionError: store offline)"
            in caplog.text
        )
        assert await store.load_jobs() == {}
        store.fail = False
        await scheduler.start_scheduler(lambda job: None)  # flushes pending writes
        await scheduler.stop_scheduler()
    assert list(await store.load_jobs()) == [key("retry-me")]
    assert "Scheduler can write changes to its store again after" in caplog.text
    assert all(record.exc_info is None for record in caplog.records)  # an outage, no bug


async def test_awaited_handle_raises_the_store_error() -> None:
    scheduler = TaskScheduler(store=FailingStore())
    with pytest.raises(ConnectionError, match="store offline"):
        await scheduler.schedule_job(JobTemplate(name="a"), "0 * * * *")


async def test_restore_from_store_without_store_raises() -> None:
    with pytest.raises(RuntimeError, match=r"needs a scheduler store.*Pass store="):
        await TaskScheduler().restore_from_store()


async def test_restore_from_store_brings_back_every_schedule() -> None:
    store = InMemorySchedulerStore()
    first = TaskScheduler(store=store)
    a = await first.schedule_job(JobTemplate(name="a", args=(1,)), "0 9 * * *")
    b = await first.schedule_job(JobTemplate(name="b"), "*/5 * * * *", timezone="Asia/Tokyo")
    first.disable_job(b)
    await asyncio.gather(*first._writes)

    restarted = TaskScheduler(store=store)
    assert await restarted.restore_from_store() == 2
    assert restarted.scheduled_jobs[a].job_template == JobTemplate(name="a", args=(1,))
    assert restarted.scheduled_jobs[a].job_id == a
    assert restarted.scheduled_jobs[b].timezone == "Asia/Tokyo"
    assert restarted.scheduled_jobs[b].enabled is False
    assert restarted.get_next_run_times() == {a: first.scheduled_jobs[a].next_run}


async def test_scheduler_wraps_a_dict_record_store() -> None:
    records = DictRecordStore()
    assert isinstance(records, SchedulerStoreProtocol)
    scheduler = TaskScheduler(store=records)
    assert isinstance(scheduler.store, SchedulerStoreAdapter)
    job_id = await scheduler.schedule_job(JobTemplate(name="a"), "0 9 * * *")
    record = records.records[key(job_id)]
    assert record["namespace"] == "default"
    assert record["job_template"]["name"] == "a"
    assert record["cron_expression"] == "0 9 * * *"
    assert record["job_id"] == job_id

    restarted = TaskScheduler(store=records)
    assert await restarted.restore_from_store() == 1
    assert restarted.scheduled_jobs[job_id].next_run == record["next_run"]
    assert await restarted.unschedule_job(job_id) is True
    assert records.records == {}


async def test_adapter_skips_unreadable_records(caplog: pytest.LogCaptureFixture) -> None:
    records = DictRecordStore()
    records.records["bad-cron"] = {
        "job_template": {"name": "a"},
        "cron_expression": "99 * * * *",
        "next_run": 1.0,
    }
    records.records["no-template"] = {"cron_expression": "* * * * *", "next_run": 1.0}
    good = ScheduledJob(JobTemplate(name="ok"), "* * * * *", 5.0).to_dict()
    records.records["good"] = good
    with caplog.at_level(logging.ERROR, logger="lexigram.tasks.scheduling"):
        loaded = await SchedulerStoreAdapter(records).load_jobs()
    assert list(loaded) == ["good"]
    assert loaded["good"].job_id == "good"
    assert "Skipping stored schedule 'bad-cron'" in caplog.text
    assert "Skipping stored schedule 'no-template'" in caplog.text


def test_as_scheduler_store_keeps_typed_stores_and_rejects_junk() -> None:
    typed = InMemorySchedulerStore()
    assert as_scheduler_store(typed) is typed
    assert isinstance(typed, SchedulerStore)
    with pytest.raises(TypeError, match="object is not a scheduler store"):
        as_scheduler_store(object())  # type: ignore[arg-type]


async def test_in_memory_store_ignores_unknown_ids() -> None:
    store = InMemorySchedulerStore()
    await store.update_next_run("missing", 5.0)
    await store.delete_job("missing")
    assert await store.load_jobs() == {}


async def test_update_next_run_only_for_stored_schedules() -> None:
    store = InMemorySchedulerStore()
    scheduler = TaskScheduler(store=store)
    stored = await scheduler.schedule_job(JobTemplate(name="stored"), "0 * * * *")
    scheduler.schedule_job_sync(JobTemplate(name="memory"), "0 * * * *", "memory")
    received: list[Job] = []
    both = asyncio.Event()

    def collect(job: Job) -> None:
        received.append(job)
        if len(received) == 2:
            both.set()

    for job_id in (stored, "memory"):
        job = scheduler.scheduled_jobs[job_id]
        job.next_run = job.cron.latest_at_or_before(time.time())
    await scheduler.start_scheduler(collect)
    try:
        await asyncio.wait_for(both.wait(), timeout=3.0)
    finally:
        await scheduler.stop_scheduler()
    saved = await store.load_jobs()
    assert list(saved) == [key(stored)]  # no partial record for the memory-only schedule
    held = scheduler.scheduled_jobs[stored]
    assert saved[key(stored)].next_run == held.next_run > time.time()
    assert saved[key(stored)].last_run == held.last_run is not None
    assert saved[key(stored)].last_outcome == "enqueued"


# --------------------------------------------------------------------------- misfires

HOUR = 3600.0
T0 = 1_704_067_200.0  # 2024-01-01 00:00 UTC, an occurrence of "0 * * * *"


def _fire(policy: MisfirePolicy, now: float, *, grace: float = 60.0, cap: int = 100) -> list[float]:
    cron = CronExpression("0 * * * *")
    return occurrences_to_fire(
        cron, T0, now, policy=policy, grace_time=grace, max_catch_up=cap, schedule_id="s"
    )


@pytest.mark.parametrize("policy", list(MisfirePolicy))
def test_misfire_on_time_occurrence_fires_under_every_policy(policy: MisfirePolicy) -> None:
    assert _fire(policy, T0 + 0.2) == [T0]


@pytest.mark.parametrize("policy", list(MisfirePolicy))
def test_misfire_nothing_due_fires_nothing(policy: MisfirePolicy) -> None:
    assert _fire(policy, T0 - 1) == []


def test_misfire_latest_fires_only_the_latest_missed_occurrence() -> None:
    assert _fire(MisfirePolicy.LATEST, T0 + 5 * HOUR + 120) == [T0 + 5 * HOUR]


def test_misfire_skip_fires_nothing_late_beyond_grace() -> None:
    assert _fire(MisfirePolicy.SKIP, T0 + 5 * HOUR + 120) == []
    assert _fire(MisfirePolicy.SKIP, T0 + 5 * HOUR + 30) == [T0 + 5 * HOUR]
    assert _fire(MisfirePolicy.SKIP, T0 + 5 * HOUR + 30, grace=10) == []


def test_misfire_all_fires_every_missed_occurrence_in_order() -> None:
    assert _fire(MisfirePolicy.ALL, T0 + 3 * HOUR + 5) == [T0 + i * HOUR for i in range(4)]


def test_misfire_all_is_capped_to_the_most_recent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lexigram.tasks.scheduling"):
        fired = _fire(MisfirePolicy.ALL, T0 + 10 * HOUR + 5, cap=3)
    assert fired == [T0 + 8 * HOUR, T0 + 9 * HOUR, T0 + 10 * HOUR]
    assert "missed more than max_catch_up=3" in caplog.text
    caplog.clear()
    assert len(_fire(MisfirePolicy.ALL, T0 + 2 * HOUR + 5, cap=3)) == 3
    assert "max_catch_up" not in caplog.text  # exactly the cap: nothing was dropped


async def test_restored_scheduler_that_was_down_fires_latest_missed_once() -> None:
    store = InMemorySchedulerStore()
    first = TaskScheduler(store=store)
    job_id = await first.schedule_job(JobTemplate(name="hourly"), "0 * * * *")
    now = time.time()
    five_hours_ago = first.scheduled_jobs[job_id].cron.latest_at_or_before(now - 5 * HOUR)
    await store.update_next_run(key(job_id), five_hours_ago)  # left by a scheduler that died

    restarted = TaskScheduler(store=store, check_interval=60.0)
    await restarted.restore_from_store()
    received: list[Job] = []
    arrived = asyncio.Event()

    def collect(job: Job) -> None:
        received.append(job)
        arrived.set()

    await restarted.start_scheduler(collect)
    try:
        await asyncio.wait_for(arrived.wait(), timeout=3.0)
    finally:
        await restarted.stop_scheduler()
    latest = restarted.scheduled_jobs[job_id].cron.latest_at_or_before(now)
    assert [job.metadata["fire_time"] for job in received] == [latest]
    saved = (await store.load_jobs())[key(job_id)]
    assert saved.next_run == latest + HOUR  # the store moved on past the misfire


class FlakyNextRunStore(InMemorySchedulerStore):
    async def update_fields(self, job_id: str, fields: Mapping[str, Any]) -> None:
        msg = "store offline"
        raise ConnectionError(msg)


async def test_failed_next_run_write_is_logged_and_firing_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = TaskScheduler(store=FlakyNextRunStore())
    job_id = await scheduler.schedule_job(JobTemplate(name="a"), "0 * * * *")
    job = scheduler.scheduled_jobs[job_id]
    job.next_run = job.cron.latest_at_or_before(time.time())
    fired = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="lexigram.tasks.scheduling"):
        await scheduler.start_scheduler(lambda _: fired.set())
        try:
            await asyncio.wait_for(fired.wait(), timeout=3.0)
        finally:
            await scheduler.stop_scheduler()
    assert f"Could not record the last run of schedule {job_id!r}" in caplog.text
    assert job.next_run > time.time()


class SignallingStore(InMemorySchedulerStore):
    """Fails saves while `fail` is set; signals each attempt and each success."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = True
        self.attempted = asyncio.Event()
        self.saved = asyncio.Event()

    async def save_job(self, job_id: str, job: ScheduledJob) -> None:
        self.attempted.set()
        if self.fail:
            msg = "store offline"
            raise ConnectionError(msg)
        await super().save_job(job_id, job)
        self.saved.set()


async def test_failing_store_during_a_check_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = SignallingStore()
    scheduler = TaskScheduler(store=store)
    await scheduler.start_scheduler(lambda _: None)
    try:
        with caplog.at_level(logging.WARNING, logger="lexigram.tasks.scheduling"):
            # A pending write with no task of its own: the loop's check performs it.
            scheduler.schedule_job_sync(JobTemplate(name="a"), "0 * * * *", "x")
            scheduler._dirty.add("x")
            scheduler._wakeup.set()
            await asyncio.wait_for(store.attempted.wait(), timeout=3.0)
            # The loop logged the failure before it next yielded, so it is in the log now.
            assert (
                "Scheduler could not check its schedules (ConnectionError: store offline)"
                in caplog.text
            )
            store.fail = False
            scheduler._wakeup.set()
            await asyncio.wait_for(store.saved.wait(), timeout=3.0)
    finally:
        await scheduler.stop_scheduler()
    assert list(await store.load_jobs()) == [key("x")]
    assert "Scheduler can check its schedules again after" in caplog.text
