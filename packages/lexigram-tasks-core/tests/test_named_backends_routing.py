"""The commands pick configured backends by name as the application's routing does."""

from __future__ import annotations

import pytest

from lexigram.contracts.tasks import Job, JobTemplate
from lexigram.tasks._producer import route_job, routing_table
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cli._context import resolve_spec
from lexigram.tasks.cli._errors import CLIError
from lexigram.tasks.cli._named import spec_serving
from lexigram.tasks.cli._opener import QueueOpener
from lexigram.tasks.config import TaskConfig
from lexigram.tasks.scheduling import TaskScheduler


def _config() -> TaskConfig:
    return TaskConfig.from_dict(
        {
            "backends": [
                {"name": "main", "type": "memory", "queue_name": "app-main", "primary": True},
                {"name": "reports", "type": "memory", "queue_name": "app-reports"},
            ]
        }
    )


def test_backend_option_naming_a_configured_backend_selects_that_entry() -> None:
    spec = resolve_spec(_config(), "reports")
    assert (spec.name, spec.queue_name) == ("reports", "app-reports")
    # Its queue's name selects it too, and so does --queue with the backend's name.
    assert resolve_spec(_config(), None, "app-reports").name == "reports"
    spec = resolve_spec(_config(), None, "reports")
    assert (spec.name, spec.queue_name) == ("reports", "app-reports")
    # Another queue name stays a queue of the primary backend, as before.
    spec = resolve_spec(_config(), None, "emails")
    assert (spec.name, spec.queue_name) == ("main", "emails")


def test_an_unknown_backend_word_lists_the_configured_backends() -> None:
    with pytest.raises(CLIError, match=r"'nope' is neither a configured backend \(main, reports\)"):
        resolve_spec(_config(), "nope")


def test_spec_serving_sends_a_named_queue_to_its_backend() -> None:
    config = _config()
    own = resolve_spec(config)
    assert spec_serving(config, own, "reports").name == "reports"
    assert spec_serving(config, own, "app-reports").queue_name == "app-reports"
    unknown = spec_serving(config, own, "emails")
    assert (unknown.name, unknown.queue_name) == ("main", "emails")
    assert spec_serving(None, own, "emails").queue_name == "emails"


async def test_queue_opener_routes_a_job_naming_a_backend_onto_that_backends_queue() -> None:
    config = _config()
    own_spec = resolve_spec(config)
    own = MemoryTaskQueue(queue_name="app-main")
    opener = QueueOpener(config, own_spec, own)
    try:
        job = Job(name="build_report", queue_name="reports")
        queue = opener.route(job)
        assert queue.queue_name == "app-reports"
        assert job.queue_name == "app-reports"  # recorded under the queue it is on
        assert opener(None) is own
        assert opener("app-main") is own
    finally:
        await opener.close()


def test_route_job_gives_a_job_its_backends_queue_name() -> None:
    main = MemoryTaskQueue(queue_name="app-main")
    reports = MemoryTaskQueue(queue_name="app-reports")
    table = routing_table({"main": main, "reports": reports})
    assert table["app-reports"] is reports
    job = Job(name="x", queue_name="reports")
    assert route_job(job, table, main) is reports
    assert job.queue_name == "app-reports"
    stray = Job(name="x", queue_name="elsewhere")
    assert route_job(stray, table, main) is main
    assert stray.queue_name == "elsewhere"  # the documented fallback keeps its name


def test_routing_table_leaves_out_a_queue_name_two_backends_share() -> None:
    first = MemoryTaskQueue(queue_name="tasks")
    second = MemoryTaskQueue(queue_name="tasks")
    table = routing_table({"a": first, "b": second})
    assert set(table) == {"a", "b"}


def test_a_non_primary_backend_named_default_is_refused() -> None:
    with pytest.raises(ValueError, match="is named 'default', the word @task"):
        TaskConfig.from_dict(
            {
                "backends": [
                    {"name": "main", "type": "memory", "primary": True},
                    {"name": "default", "type": "memory"},
                ]
            }
        )
    # As the primary, the name means the same backend everywhere.
    TaskConfig.from_dict({"backends": [{"name": "default", "type": "memory"}]})


def test_a_schedule_records_its_tasks_queue() -> None:
    scheduler = TaskScheduler(queue_name="app-main")
    template = JobTemplate(name="build_report", queue_name="reports")
    schedule_id = scheduler.schedule_job_sync(template, "* * * * *")
    assert scheduler.scheduled_jobs[schedule_id].queue_name == "reports"
    plain = scheduler.schedule_job_sync(JobTemplate(name="tick"), "* * * * *")
    assert scheduler.scheduled_jobs[plain].queue_name == "app-main"
