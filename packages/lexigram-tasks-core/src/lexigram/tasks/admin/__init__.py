"""Reading and acting on a backend from outside its workers.

The ``lexigram-tasks`` commands (``inspect``, ``dlq``, ``schedule``, ``job``,
``workflow``) and the web dashboard both go through these functions, so a queue's
counts, a dead letter's retry or a schedule's pause mean the same thing wherever they
are asked for. Each function takes the objects it works on (a queue, a store), built
by the caller with the same builders `TaskProvider` uses; none of them prints.
"""

from __future__ import annotations

from lexigram.tasks.admin._dlq import (
    dead_letter_row,
    dead_letter_worker,
    delete_dead_letter,
    find_dead_letter,
    requeued_line,
    retry_dead_letter,
    retry_dead_letters,
    retry_dead_letters_reported,
)
from lexigram.tasks.admin._errors import OperationError
from lexigram.tasks.admin._queues import (
    job_status,
    queue_counts,
    registered_workers,
    watched_queues,
)
from lexigram.tasks.admin._schedules import (
    UNOWNED,
    find_schedule,
    list_schedules,
    outcome_text,
    pause_schedule,
    resume_schedule,
    run_schedule_now,
    schedule_name,
    schedule_row,
)
from lexigram.tasks.admin._workflows import load_workflow, workflow_dict
from lexigram.tasks.constants import WORKER_KEY_PREFIX

__all__ = [
    "UNOWNED",
    "WORKER_KEY_PREFIX",
    "OperationError",
    "dead_letter_row",
    "dead_letter_worker",
    "delete_dead_letter",
    "find_dead_letter",
    "find_schedule",
    "job_status",
    "list_schedules",
    "load_workflow",
    "outcome_text",
    "pause_schedule",
    "queue_counts",
    "registered_workers",
    "requeued_line",
    "resume_schedule",
    "retry_dead_letter",
    "retry_dead_letters",
    "retry_dead_letters_reported",
    "run_schedule_now",
    "schedule_name",
    "schedule_row",
    "watched_queues",
    "workflow_dict",
]
