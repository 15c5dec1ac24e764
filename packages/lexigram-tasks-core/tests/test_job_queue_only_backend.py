"""``job status|cancel`` and the dashboard's job page on a backend that is a queue alone.

A queue alone is a complete backend (writing-a-backend.md): status and cancel need only
the queue (`get_job`, `delete_job`), so they show and act on what it holds; only
``job result|wait`` read stored results and refuse, saying why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from lexigram.contracts.tasks import Job, JobLookupProtocol, TaskBackendSpec
from lexigram.tasks import _backends
from lexigram.tasks.admin import OperationError
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cli import cli
from lexigram.tasks.dashboard._backend import DashboardBackend


class _NoLookupQueue(MemoryTaskQueue):
    """A queue that cannot search job ids by prefix (no `JobLookupProtocol`)."""

    find_job_ids = None  # type: ignore[assignment]


class _QueueOnly:
    """A shared backend offering `create_queue` and nothing else.

    One queue per name, as a service keeps it: every queue object a command builds sees
    the same jobs.
    """

    url_schemes = ()
    url_field = None

    def __init__(self, queue_type: type[MemoryTaskQueue] = MemoryTaskQueue) -> None:
        self.queue_type = queue_type
        self.queues: dict[str, MemoryTaskQueue] = {}

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        queue = self.queues.get(spec.queue_name)
        if queue is None:
            queue = self.queues[spec.queue_name] = self.queue_type(queue_name=spec.queue_name)
        return queue


@pytest.fixture
def backend() -> Iterator[_QueueOnly]:
    _backends.clear_backend_cache()
    yield _QueueOnly()
    _backends.clear_backend_cache()


def _job(backend: _QueueOnly, *args: str, type_: str = "qonly") -> Result:
    # Each command releases the backend when it ends: load it again, as an entry point would.
    _backends._cache[type_] = backend
    return CliRunner().invoke(cli, ["job", *args, "--backend", type_])


async def _put(backend: _QueueOnly, name: str = "w") -> Job:
    job = Job(name=name)
    queue = backend.create_queue(TaskBackendSpec(type="qonly", queue_name="tasks"))
    (await queue.enqueue(job)).unwrap()
    return job


def _enqueued(backend: _QueueOnly, name: str = "w") -> Job:
    # The commands run their own event loop, so the tests around them are not async.
    return asyncio.run(_put(backend, name))


def test_status_shows_a_waiting_and_a_running_job(backend: _QueueOnly) -> None:
    waiting = _enqueued(backend)
    result = _job(backend, "status", waiting.id)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [waiting.id, "pending"]

    running = _enqueued(backend, "r")
    queue = backend.queues["tasks"]
    taken = [asyncio.run(queue.dequeue()), asyncio.run(queue.dequeue())]
    assert running.id in [j.id for j in taken if j is not None]
    result = _job(backend, "status", running.id[:20], "--json")
    assert result.exit_code == 0, result.output
    assert '"status": "running"' in result.stdout


def test_status_of_an_unknown_job_says_finished_jobs_are_not_known(
    backend: _QueueOnly,
) -> None:
    _enqueued(backend)
    result = _job(backend, "status", "0193a2b4-7c1d-7e2f-9a3b-4c5d6e7f8091")
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert "The qonly backend has no shared result store, so only the jobs its queue holds" in line


def test_cancel_removes_a_waiting_job(backend: _QueueOnly) -> None:
    job = _enqueued(backend)
    result = _job(backend, "cancel", job.id)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Job {job.id} was waiting and is cancelled: it will not run."
    assert asyncio.run(backend.queues["tasks"].get_job(job.id)) is None

    again = _job(backend, "cancel", job.id)
    assert again.exit_code == 2, again.output
    assert "No job of the qonly backend has the id" in again.stderr
    assert "has no shared result store" in again.stderr


def test_a_queue_without_prefix_search_takes_the_whole_id() -> None:
    backend = _QueueOnly(_NoLookupQueue)
    _backends.clear_backend_cache()
    try:
        job = _enqueued(backend)
        queue: object = backend.queues["tasks"]
        assert not isinstance(queue, JobLookupProtocol)
        assert _job(backend, "status", job.id).exit_code == 0
        result = _job(backend, "status", job.id[:20])
        assert result.exit_code == 2, result.output
        assert "cannot search job ids by prefix, so give the whole id" in result.stderr
        assert "has no shared result store" in result.stderr
    finally:
        _backends.clear_backend_cache()


@pytest.mark.parametrize("command", ["result", "wait"])
def test_result_and_wait_refuse_and_point_to_status(backend: _QueueOnly, command: str) -> None:
    job = _enqueued(backend)
    result = _job(backend, command, job.id)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert f"The qonly backend has no shared result store, so `job {command}` has no" in line
    assert "`job status` and `job cancel` work from its queue alone" in line


async def test_dashboard_job_page_shows_what_the_queue_knows(backend: _QueueOnly) -> None:
    _backends._cache["qonly"] = backend
    job = await _put(backend, "send_email")
    dashboard = DashboardBackend(TaskBackendSpec(type="qonly", queue_name="tasks"))
    try:
        view = await dashboard.job(job.id[:20])
        assert (view["id"], view["status"], view["task"]) == (job.id, "pending", "send_email")
        assert "result" not in view
        with pytest.raises(OperationError, match="has no shared result store"):
            await dashboard.job("0193a2b4-7c1d-7e2f-9a3b-4c5d6e7f8091")
    finally:
        await dashboard.close()
