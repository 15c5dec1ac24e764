"""A worker's registration lists the jobs it runs (inspect --json and the dashboard show it)."""

from __future__ import annotations

import asyncio

from lexigram.contracts.tasks import Job
from lexigram.tasks import TaskConfig
from lexigram.tasks.cli._app import LoadedApp
from lexigram.tasks.cli._context import resolve_spec
from lexigram.tasks.cli._runtime import WorkerRuntime


async def test_running_jobs_names_each_job_while_it_runs_and_forgets_it_after() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def hold(n: int) -> int:
        started.set()
        await release.wait()
        return n

    app = LoadedApp(source="test")
    app.handlers.register("hold", hold)
    config = TaskConfig()
    spec = resolve_spec(config, "memory")
    runtime = WorkerRuntime(
        app, config, spec, [spec.queue_name], worker_config=config.effective_worker()
    )
    await runtime.start(connect_timeout=2)
    try:
        assert runtime.running_jobs() == []
        job = Job(name="hold", args=(1,))
        await runtime.queues[0].enqueue(job)
        await asyncio.wait_for(started.wait(), 10)
        [running] = runtime.running_jobs()
        assert running["id"] == job.id
        assert running["task"] == "hold"
        assert isinstance(running["started_at"], float)
        release.set()
        await runtime.drain(timeout=10)  # lets the job finish
        assert runtime.running_jobs() == []
    finally:
        release.set()
        await runtime.close()
