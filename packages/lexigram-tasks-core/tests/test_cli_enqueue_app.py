"""``lexigram-tasks enqueue NAME --app APP`` sends the job the task's own ``.delay()`` builds.

Without ``--app`` the command knows only the task's name. With it, the job comes from the
task (`TaskFunction.signature`, the builder of ``.delay()``): its queue (and the configured
backend serving that queue), its priority and its idempotency key, with the arguments
checked against the function; an option given on the command line wins, as
``apply_async``'s options do.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from uuid import uuid4

import pytest
from click.testing import CliRunner, Result

from lexigram.contracts.tasks import Job, Priority, TaskBackendSpec
from lexigram.tasks import TaskFunction
from lexigram.tasks.cli import _enqueue, cli
from lexigram.tasks.cli._app import load_app

MODULE = """
    from lexigram.tasks import HandlerRegistry, Priority, TaskOptions, task

    @task(queue="reports", priority=Priority.HIGH, idempotency_key="build-{month}")
    def build(month: int, *, final: bool = False) -> int:
        return month

    @task
    def plain() -> None:
        return None

    registry = HandlerRegistry()

    def archive() -> None:
        return None

    registry.register(
        "archive", archive, options=TaskOptions(priority=Priority.CRITICAL, queue="cold")
    )

    renamed = HandlerRegistry()
    renamed.register("reports.build_v2", build, options=TaskOptions(priority=1, queue="bulk"))
"""

MEMORY = {"LEX_TASKS__BACKEND__TYPE": "memory"}

Sent = list[tuple[TaskBackendSpec, Job]]


@pytest.fixture
def app_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"enqueue_app_{uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    """What the command would enqueue, and on which backend (nothing is sent)."""
    captured: Sent = []

    async def capture(spec: TaskBackendSpec, job: Job, connect_timeout: float) -> str:
        captured.append((spec, job))
        return job.id

    monkeypatch.setattr(_enqueue, "_enqueue", capture)
    return captured


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["enqueue", *args], env=env if env is not None else MEMORY)


def test_the_job_is_the_one_the_tasks_delay_builds(app_name: str, sent: Sent) -> None:
    result = _run("build", "--app", app_name, "--args", "[5]", "--kwargs", '{"final": true}')
    assert result.exit_code == 0, result.output
    [(spec, job)] = sent
    built = load_app(app_name).handlers.lookup("build")
    assert built is not None
    assert isinstance(built[0], TaskFunction)
    expected = built[0].signature(5, final=True)
    assert (job.name, job.args, job.kwargs) == ("build", (5,), {"final": True})
    assert job.priority == expected.priority == Priority.HIGH
    assert job.idempotency_key == expected.idempotency_key == "build-5"
    assert job.queue_name == spec.queue_name == expected.queue_name == "reports"
    # Retries and timeout stay the worker's to decide, as for .delay().
    assert (job.max_retries, job.timeout) == (None, None)


def test_options_win_over_the_tasks_definition(app_name: str, sent: Sent) -> None:
    result = _run(
        "build",
        *("--app", app_name, "--args", "[5]"),
        *("--priority", "low", "--queue", "adhoc", "--idempotency-key", "mine"),
        *("--max-retries", "2", "--timeout", "9", "--delay", "60"),
    )
    assert result.exit_code == 0, result.output
    [(spec, job)] = sent
    assert (job.priority, job.queue_name, spec.queue_name) == (Priority.LOW, "adhoc", "adhoc")
    assert (job.idempotency_key, job.max_retries, job.timeout) == ("mine", 2, 9.0)
    assert job.scheduled_at is not None


def test_a_handler_registered_with_options_gets_its_queue_and_priority(
    app_name: str, sent: Sent
) -> None:
    result = _run("archive", "--app", f"{app_name}:registry")
    assert result.exit_code == 0, result.output
    [(_, job)] = sent
    assert (job.priority, job.queue_name) == (Priority.CRITICAL, "cold")


def test_a_task_registered_under_another_name_is_sent_as_registered(
    app_name: str, sent: Sent
) -> None:
    """The worker knows the job by the name it was registered under, with those options."""
    result = _run("reports.build_v2", "--app", f"{app_name}:renamed", "--args", "[7]")
    assert result.exit_code == 0, result.output
    [(_, job)] = sent
    assert (job.name, job.priority, job.queue_name) == ("reports.build_v2", 1, "bulk")
    # The arguments are still checked against the function, whose key template it keeps.
    assert job.idempotency_key == "build-7"
    refused = _run("reports.build_v2", "--app", f"{app_name}:renamed", "--args", "[7, 8]")
    assert refused.exit_code == 2


def test_the_tasks_queue_reaches_the_configured_backend_serving_it(
    app_name: str, sent: Sent, tmp_path: Path
) -> None:
    config = tmp_path / "tasks.yaml"
    config.write_text(
        "tasks:\n  backends:\n"
        "    - {name: main, primary: true, type: memory}\n"
        "    - {name: reports, type: memory, queue_name: monthly}\n",
        encoding="utf-8",
    )
    result = _run("build", "--app", app_name, "--args", "[5]", "--config", str(config), env={})
    assert result.exit_code == 0, result.output
    [(spec, job)] = sent
    assert (spec.name, spec.queue_name, job.queue_name) == ("reports", "monthly", "monthly")


def test_a_name_the_app_does_not_define_is_refused_with_the_nearest(
    app_name: str, sent: Sent
) -> None:
    result = _run("bild", "--app", app_name)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: APP {app_name!r} defines no task 'bild' (its tasks: archive, build, plain, "
        "reports.build_v2). "
        "Did you mean 'build'? Pass the name the task is registered under, or leave --app "
        "out to enqueue a task that only the workers know."
    )
    assert sent == []


def test_arguments_that_do_not_fit_the_function_are_refused(app_name: str, sent: Sent) -> None:
    result = _run("build", "--app", app_name, "--args", "[5, 6]")
    assert result.exit_code == 2
    assert "Task 'build' cannot be called with these arguments: too many positional" in (
        result.stderr
    )
    assert sent == []


def test_without_app_the_job_has_the_normal_priority_and_the_configured_queue(
    sent: Sent,
) -> None:
    result = _run("build", "--args", "[5]")
    assert result.exit_code == 0, result.output
    [(spec, job)] = sent
    assert (job.priority, job.idempotency_key) == (Priority.NORMAL, None)
    assert job.queue_name == spec.queue_name == "tasks"


def test_help_names_the_option() -> None:
    result = _run("--help")
    assert "--app APP" in result.stdout
    assert "Default: the task's with --app, else normal." in " ".join(result.stdout.split())
