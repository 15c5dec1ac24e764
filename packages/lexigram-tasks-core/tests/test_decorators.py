"""@task, @scheduled and @delay: direct calls, job building, real enqueueing, typing."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from lexigram.contracts.tasks import Job, Priority, TaskQueueError, TaskValidationError
from lexigram.tasks._producer import install_task_queues, route_job
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.decorators import (
    TaskFunction,
    get_default_queue,
    get_task_queues,
    queue_for,
    scheduled,
    set_default_queue,
    set_task_queues,
    task,
)
from lexigram.tasks.dispatch import delay, pending_count
from lexigram.tasks.execution import HandlerRegistry, TaskOptions, TaskWorker, TaskWorkerServices
from lexigram.tasks.results import InMemoryResultStore


@pytest.fixture(autouse=True)
def no_default_queue() -> Iterator[None]:
    set_default_queue(None)
    set_task_queues({})
    yield
    set_default_queue(None)
    set_task_queues({})


@task(name="send_email", priority=Priority.HIGH, max_retries=5, timeout=30.0, queue="mail")
async def send_email(to: str, subject: str = "hi") -> str:
    return f"{to}:{subject}"


@task(name="send_report")
async def send_report(to: str, subject: str = "hi") -> str:
    return f"{to}:{subject}"


async def test_task_keeps_the_function_callable_and_records_options() -> None:
    assert isinstance(send_email, TaskFunction)
    assert await send_email("a@b.c") == "a@b.c:hi"
    assert send_email.name == "send_email"
    assert send_email.options == TaskOptions(
        priority=Priority.HIGH, max_retries=5, timeout=30.0, queue="mail"
    )
    assert send_email.idempotency_key is None
    assert send_email.cron is None
    with pytest.raises(AttributeError):
        send_email.options.max_retries = 1  # type: ignore[misc]  # frozen
    # The older underscored spellings still read the same values.
    assert (send_email._task_name, send_email._max_retries, send_email._timeout) == (
        "send_email",
        5,
        30.0,
    )
    assert send_email.__name__ == "send_email"
    assert "send_email" in repr(send_email)


async def test_task_signature_builds_a_job_without_enqueueing() -> None:
    job = send_email.signature("a@b.c", subject="yo")
    assert isinstance(job, Job)
    assert (job.name, job.args, job.kwargs) == ("send_email", ("a@b.c",), {"subject": "yo"})
    # Only the priority is copied into the job: the worker applies the task's options.
    assert (job.priority, job.max_retries, job.timeout) == (10, None, None)
    assert send_email.s("x").args == ("x",)


async def test_task_rejects_arguments_that_do_not_fit() -> None:
    with pytest.raises(TaskValidationError, match="cannot be called with these arguments"):
        send_email.signature("a", "b", "c")  # type: ignore[call-arg]
    with pytest.raises(TaskValidationError, match="send_email"):
        send_email.s(to="a", bogus=1)  # type: ignore[call-overload]


async def test_delay_without_a_default_queue_says_how_to_configure_one() -> None:
    with pytest.raises(TaskQueueError) as info:
        await send_report.delay("a@b.c")
    message = info.value.message
    assert "No default task queue is configured" in message
    assert "set_default_queue" in message
    assert "apply_async" in message
    with pytest.raises(TaskQueueError):
        get_default_queue()


async def test_delay_enqueues_on_the_default_queue_and_a_worker_runs_it() -> None:
    """Regression: `task(...).delay()` must really enqueue, not raise."""
    queue = MemoryTaskQueue()
    set_default_queue(queue)
    assert get_default_queue() is queue
    registry = HandlerRegistry()
    registry.register(send_report.name, send_report)
    store = InMemoryResultStore()
    worker = TaskWorker("w1", queue, registry, services=TaskWorkerServices(result_store=store))

    job = await send_report.delay("a@b.c", subject="report")
    stored = await queue.get_job(job.id)
    assert stored is not None
    assert stored.name == "send_report"
    await worker.start()
    result = await store.wait(job.id, timeout=5)
    await worker.stop()
    assert result is not None
    assert result.success
    assert result.data == "a@b.c:report"


async def test_delay_goes_to_the_queue_the_task_is_declared_for() -> None:
    default, mail = MemoryTaskQueue(), MemoryTaskQueue(queue_name="outbox")
    set_default_queue(default)
    set_task_queues({"mail": mail})
    job = await send_email.delay("a@b.c")
    assert await mail.get_job(job.id) is not None
    assert await default.count("tasks") == 0
    assert get_task_queues() == {"mail": mail}
    set_task_queues({})
    assert get_task_queues() == {}


async def test_delay_to_an_unconfigured_queue_fails_and_enqueues_nothing() -> None:
    default = MemoryTaskQueue()
    set_default_queue(default)
    set_task_queues({"reports": MemoryTaskQueue()})
    with pytest.raises(TaskQueueError) as info:
        await send_email.delay("a@b.c")
    message = info.value.message
    assert "No task queue named 'mail'" in message
    assert "reports" in message  # what is configured
    assert "apply_async" in message  # and what to do instead
    assert info.value.details["queue_name"] == "mail"
    assert await default.count("tasks") == 0


async def test_delay_to_an_unset_name_asks_the_runtimes_opener_until_it_is_taken_back() -> None:
    default, opened = MemoryTaskQueue(), MemoryTaskQueue(queue_name="mail")
    asked: list[str] = []

    def open_other(name: str) -> MemoryTaskQueue:
        asked.append(name)
        return opened

    uninstall = install_task_queues(default, {}, open_other=open_other)
    job = await send_email.delay("a@b.c")
    assert asked == ["mail"]
    assert await opened.get_job(job.id) is not None
    # A job naming no queue, or the default one, stays on the default queue.
    assert route_job(Job(name="x"), {}, default, open_other) is default
    assert route_job(Job(name="x", queue_name="default"), {}, default, open_other) is default
    assert route_job(Job(name="x", queue_name="mail"), {}, default, open_other) is opened
    uninstall()
    with pytest.raises(TaskQueueError, match="No task queue named 'mail' is set"):
        await send_email.delay("a@b.c")
    assert asked == ["mail", "mail"]


async def test_delay_uses_the_default_queue_when_it_serves_the_declared_name() -> None:
    default = MemoryTaskQueue(queue_name="mail")
    set_default_queue(default)
    job = await send_email.delay("a@b.c")
    assert queue_for("mail") is default
    assert queue_for("default") is default
    assert await default.get_job(job.id) is not None


async def test_apply_async_overrides_options_on_a_given_queue() -> None:
    queue = MemoryTaskQueue()
    job = await send_email.apply_async(
        queue,
        "x@y.z",
        priority=Priority.CRITICAL,
        max_retries=1,
        timeout=2.0,
        idempotency_key="once",
        subject="s",
    )
    stored = await queue.get_job(job.id)
    assert stored is not None
    assert (stored.priority, stored.max_retries, stored.timeout, stored.idempotency_key) == (
        20,
        1,
        2.0,
        "once",
    )
    assert job.kwargs == {"subject": "s"}
    again = await send_email.apply_async(queue, "other", idempotency_key="once")
    assert again.id == job.id  # a duplicate key returns the first job's id
    assert await queue.count("tasks") == 1


async def test_apply_async_raises_when_the_queue_refuses_the_job() -> None:
    @task
    async def takes_anything(value: object) -> None:
        return None

    with pytest.raises(TaskValidationError, match="not JSON-serializable"):
        await takes_anything.apply_async(MemoryTaskQueue(), object())


async def test_bare_task_decorator_and_name_default() -> None:
    @task
    def plain(x: int) -> int:
        return x + 1

    assert plain(1) == 2
    assert plain.name == "plain"
    assert plain.options == TaskOptions()
    assert plain.options.priority == Priority.NORMAL
    assert plain.options.max_retries is None  # the worker then allows DEFAULT_MAX_RETRIES


async def test_idempotency_key_template_and_function() -> None:
    @task(idempotency_key="sync-{user_id}")
    async def sync_user(user_id: int, full: bool = False) -> None:
        return None

    @task(idempotency_key=lambda user_id: f"u{user_id}")
    async def other(user_id: int) -> None:
        return None

    @task(idempotency_key="{missing}")
    async def broken(user_id: int) -> None:
        return None

    assert sync_user.s(7).idempotency_key == "sync-7"
    assert sync_user.s(user_id=8, full=True).idempotency_key == "sync-8"
    assert other.s(9).idempotency_key == "u9"
    with pytest.raises(TaskValidationError, match="idempotency_key"):
        broken.s(1)


async def test_scheduled_sets_cron_metadata() -> None:
    @scheduled(cron="0 9 * * *", name="daily_report", priority=Priority.LOW, max_retries=1)
    async def daily_report() -> None:
        return None

    assert daily_report.cron == "0 9 * * *"
    assert daily_report.name == "daily_report"
    assert daily_report.options.priority == Priority.LOW
    assert daily_report.options.max_retries == 1
    with pytest.raises(TaskValidationError, match="cron expression"):
        scheduled(cron="  ")


@pytest.mark.parametrize(
    ("cron", "named"),
    [
        ("61 * * * *", "minute field '61' is out of range 0-59"),
        ("0 9 * *", "it has 4 field(s)"),
        ("0 25 * * *", "hour field '25' is out of range 0-23"),
        ("*/0 * * * *", "a step is a whole number >= 1"),
    ],
)
def test_a_malformed_cron_fails_when_the_task_is_decorated(cron: str, named: str) -> None:
    with pytest.raises(TaskValidationError) as raised:

        @scheduled(cron, name="nightly_report")
        async def nightly_report() -> None:
            return None

    message = str(raised.value)
    assert message.startswith("@scheduled task 'nightly_report': Cron expression")
    assert named in message
    assert "Use five fields" in message


async def test_delay_dispatch_runs_in_the_background() -> None:
    done = asyncio.Event()
    calls: list[int] = []

    @delay
    async def flush(batch: list[int]) -> int:
        calls.extend(batch)
        done.set()
        return len(batch)

    assert await flush([1]) == 1
    background = flush.delay(batch=[2, 3])
    assert isinstance(background, asyncio.Task)
    assert pending_count() >= 1
    assert await background == 2
    assert calls == [1, 2, 3]
    await asyncio.sleep(0)  # let the done-callback drop the strong reference
    assert pending_count() == 0


async def test_delay_dispatch_logs_failures(caplog: pytest.LogCaptureFixture) -> None:
    @delay
    async def explode() -> None:
        msg = "background boom"
        raise RuntimeError(msg)

    with caplog.at_level(logging.ERROR, logger="lexigram.tasks.dispatch"):
        background = explode.delay()
        await asyncio.wait({background})
        await asyncio.sleep(0)
    assert any("failed" in r.getMessage() for r in caplog.records)
    assert pending_count() == 0


async def test_delay_rejects_sync_functions_and_needs_a_loop() -> None:
    def sync() -> None:
        return None

    with pytest.raises(TypeError, match="async function"):
        delay(sync)  # type: ignore[arg-type]

    @delay
    async def later() -> None:
        return None

    def outside_loop() -> None:
        later.delay()

    with pytest.raises(RuntimeError, match="running event loop"):
        await asyncio.to_thread(outside_loop)


@pytest.mark.slow
def test_task_delay_arguments_are_type_checked(tmp_path: Path) -> None:
    from mypy import api as mypy_api

    sample = tmp_path / "sample.py"
    sample.write_text(
        textwrap.dedent(
            """
            from lexigram.tasks import INJECTED, Job, ProgressTracker
            from lexigram.tasks.decorators import task

            @task(name="add")
            async def add(a: int, b: int) -> int:
                return a + b

            class Database:
                pass

            @task
            async def resize(
                name: str,
                progress: ProgressTracker = INJECTED,
                db: Database = INJECTED,
                *,
                job: Job = INJECTED,
            ) -> str:
                await progress.update(1, 1)
                return name

            async def main() -> None:
                await add.delay(1, 2)
                await add.delay("one", 2)
                add.si(1)
                add.s(1)  # a chain step: the previous result is its first argument
                add.s("one")
                await resize.delay("cat.png")  # the injected parameters are not asked for
                await resize.delay()
            """
        )
    )
    out, _, status = mypy_api.run([str(sample), "--strict", "--no-error-summary"])
    assert status == 1
    assert 'Argument 1 to "delay" of "TaskFunction" has incompatible type "str"' in out
    assert 'Missing positional argument "b" in call to "si" of "TaskFunction"' in out
    assert 'No overload variant of "s" of "TaskFunction" matches argument type "str"' in out
    assert 'Missing positional argument "name" in call to "delay" of "TaskFunction"' in out
    assert out.count("error:") == 4, out


class _Sync:
    """A handler class: its @task methods run bound to an instance."""

    @task(idempotency_key="sync-{user_id}")
    async def sync(self, user_id: int) -> int:
        return user_id

    @task
    async def one(self, a: int) -> int:
        return a


def test_a_method_task_is_called_with_the_arguments_after_self() -> None:
    job = _Sync.sync.s(7)
    assert (job.args, job.idempotency_key) == ((7,), "sync-7")
    assert _Sync.one.s(a=3).kwargs == {"a": 3}
    with pytest.raises(TaskValidationError, match="cannot be called with these arguments"):
        _Sync.one.s(1, 2)  # type: ignore[call-overload] # instance.one(1, 2): one too many


def test_a_method_task_runs_bound_with_the_arguments_its_producer_checked() -> None:
    from lexigram.tasks.di._handlers import handler_specs

    async def scenario() -> list[object]:
        queue = MemoryTaskQueue()
        handlers = {spec.task_name: spec.handler for spec in handler_specs(_Sync())}
        results = InMemoryResultStore()
        worker = TaskWorker("w", queue, handlers, services=TaskWorkerServices(result_store=results))
        job = (await _Sync.sync.apply_async(queue, 7)).job
        await worker.start()
        try:
            for _ in range(100):
                stored = await results.get(job.id)
                if stored is not None:
                    return [stored.success, stored.data]
                await asyncio.sleep(0.01)
        finally:
            await worker.stop()
        return []

    assert asyncio.run(scenario()) == [True, 7]
