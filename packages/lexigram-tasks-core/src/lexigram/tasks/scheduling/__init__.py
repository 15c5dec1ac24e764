"""Cron scheduling: `TaskScheduler`, `CronExpression`, `ScheduledJob` and schedule stores.

See ``docs/scheduling.md`` for exactly-once firing across processes and the misfire policy.
"""

from __future__ import annotations

from lexigram.contracts.tasks import JobTemplate, SchedulerStoreProtocol
from lexigram.tasks.scheduling._cron import CronExpression, NoOccurrenceError
from lexigram.tasks.scheduling._handle import ScheduleHandle
from lexigram.tasks.scheduling._job import ScheduledJob, ScheduleOutcome, storage_key
from lexigram.tasks.scheduling._misfire import MisfirePolicy, fire_key
from lexigram.tasks.scheduling._owners import DEFAULT_NAMESPACE
from lexigram.tasks.scheduling._scheduler import EnqueueCallback, TaskScheduler
from lexigram.tasks.scheduling._store import (
    InMemorySchedulerStore,
    SchedulerStore,
    SchedulerStoreAdapter,
    as_scheduler_store,
    update_record_fields,
)

JobTemplateProtocol = JobTemplate
"""The published name of the job template (a concrete dataclass with create_job/from_job)."""

__all__ = [
    "DEFAULT_NAMESPACE",
    "CronExpression",
    "EnqueueCallback",
    "InMemorySchedulerStore",
    "JobTemplateProtocol",
    "MisfirePolicy",
    "NoOccurrenceError",
    "ScheduleHandle",
    "ScheduleOutcome",
    "ScheduledJob",
    "SchedulerStore",
    "SchedulerStoreAdapter",
    "SchedulerStoreProtocol",
    "TaskScheduler",
    "as_scheduler_store",
    "fire_key",
    "storage_key",
    "update_record_fields",
]
