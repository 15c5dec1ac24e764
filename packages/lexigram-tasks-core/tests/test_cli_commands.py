"""enqueue, inspect and dlq on the memory backend (shared backends: tests-integration/cli)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import BackendNotFoundError, Job, TaskBackendSpec
from lexigram.tasks import _backends
from lexigram.tasks._backends import _entry_points
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cli import _enqueue as enqueue_command
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._context import resolve_spec
from lexigram.tasks.config import TaskConfig

# These tests run on the memory backend: configured through the environment, so the
# default SQLite database (used when nothing is configured) stays out of them.
MEMORY = {"LEX_TASKS__BACKEND__TYPE": "memory"}


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    return CliRunner().invoke(cli, list(args), env={**MEMORY, **(env or {})}, input=stdin)


def test_enqueue_prints_the_job_id_and_warns_about_memory() -> None:
    result = run("enqueue", "send_email", "--args", '["ada@example.com"]', "-p", "high")
    assert result.exit_code == 0, result.output
    uuid.UUID(result.stdout.strip())
    assert "memory backend keeps jobs inside this process" in result.stderr


def test_enqueue_json_output_describes_the_job() -> None:
    result = run("enqueue", "report", "--kwargs", '{"day": 3}', "-q", "reports", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "report"
    assert data["queue"] == "reports"
    assert data["backend"] == "memory"


def test_enqueue_idempotency_key_is_accepted() -> None:
    result = run("enqueue", "sync_user", "--idempotency-key", "sync-7", "--delay", "30")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("value", ["urgent", "256", "-1"])
def test_enqueue_bad_priority_is_one_line(value: str) -> None:
    result = run("enqueue", "x", "--priority", value)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "low, normal, high, critical" in result.stderr


def test_enqueue_arguments_that_are_not_json_serializable_cannot_happen() -> None:
    # --args is JSON already; a non-list JSON value is refused before reaching the queue.
    result = run("enqueue", "x", "--args", '{"a": 1}')
    assert result.exit_code == 2
    assert "not a JSON array" in result.stderr


def test_inspect_memory_shows_empty_queue_and_explains() -> None:
    result = run("inspect", "-q", "emails")
    assert result.exit_code == 0, result.output
    assert "emails" in result.stdout
    assert "memory backend keeps jobs inside each process" in result.stdout
    assert "Workers: not recorded by the memory backend." in result.stdout


def test_inspect_json_has_queues_workers_schedules() -> None:
    result = run("inspect", "--json", "-q", "a", "-q", "b")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [q["queue"] for q in data["queues"]] == ["a", "b"]
    assert data["queues"][0] == {
        "queue": "a",
        "waiting": 0,
        "retrying": 0,
        "in_flight": 0,
        "total": 0,
    }
    assert data["workers"] is None
    assert data["schedules"] is None
    assert data["dead_letters"] is None


def test_inspect_reads_the_queue_name_from_the_environment() -> None:
    result = run("inspect", "--json", env={"LEX_TASKS__BACKEND__QUEUE_NAME": "billing"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["queues"][0]["queue"] == "billing"


def test_inspect_reads_the_config_file(tmp_path) -> None:
    config = tmp_path / "app.yaml"
    config.write_text("tasks:\n  backend:\n    type: memory\n    queue_name: from-file\n")
    result = run("inspect", "--json", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["queues"][0]["queue"] == "from-file"


def test_inspect_environment_overrides_the_config_file(tmp_path) -> None:
    config = tmp_path / "app.yaml"
    config.write_text("tasks:\n  backend:\n    queue_name: from-file\n")
    env = {"LEX_TASKS__BACKEND__QUEUE_NAME": "from-env"}
    result = run("inspect", "--json", "--config", str(config), env=env)
    assert json.loads(result.stdout)["queues"][0]["queue"] == "from-env"


@pytest.mark.parametrize(
    "command",
    [["list"], ["show", "abc"], ["retry", "abc"], ["retry-all", "--yes"], ["purge", "--yes"]],
    ids=lambda c: c[0],
)
def test_dlq_on_memory_says_there_is_no_shared_dlq(command: list[str]) -> None:
    result = run("dlq", *command)
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "memory backend keeps no dead letters outside its worker processes" in line
    assert "--backend redis://" in line


def test_dlq_purge_rejects_all_with_age() -> None:
    result = run("dlq", "purge", "--all", "--older-than-hours", "3", "--yes")
    assert result.exit_code == 2
    assert "either --all or --older-than-hours" in result.stderr


def test_dlq_retry_all_asks_before_acting() -> None:
    result = run("dlq", "retry-all", stdin="n\n")
    assert result.exit_code == 130
    assert "Requeue every dead-lettered job?" in result.output
    assert result.stderr.strip() == "error: interrupted."


@pytest.mark.parametrize("command", ["retry-all", "purge"])
def test_a_confirmation_standard_input_cannot_answer_is_a_usage_error(command: str) -> None:
    # stdin at its end (a script, `< /dev/null`): not "interrupted", but what to do.
    result = run("dlq", command, stdin="")
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line == (
        "error: Could not read an answer to the confirmation (standard input ended). "
        "Pass --yes to go ahead without being asked."
    )
    assert result.stdout.endswith("[y/N]: \n")  # the prompt's line is ended


def test_resolve_spec_keeps_options_only_for_the_same_type() -> None:
    config = TaskConfig.from_dict(
        {"backend": {"type": "memory", "queue_name": "q", "options": {"max_size": 5}}}
    )
    assert dict(resolve_spec(config).options) == {"max_size": 5}
    assert dict(resolve_spec(config, "memory").options) == {"max_size": 5}
    assert resolve_spec(config, None, "other").queue_name == "other"


class _Acme:
    """A third-party backend installed beside the memory one (see `install_acme`)."""

    url_schemes = ("acme",)

    def create_queue(self, spec: TaskBackendSpec) -> MemoryTaskQueue:
        return MemoryTaskQueue(queue_name=spec.queue_name)


@pytest.fixture
def install_acme(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[_Acme], None]]:
    """Make `backend` the installed ``acme`` backend (entry point), the cache cleared around."""

    def install(backend: _Acme) -> None:
        class AcmeEntryPoint:
            name, value, dist = "acme", "acme_tasks:backend", None

            def load(self) -> _Acme:
                return backend

        (memory,) = entry_points(group=_backends.BACKENDS_GROUP, name="memory")
        monkeypatch.setattr(
            _entry_points,  # the module that looks it up
            "installed_entry_points",
            lambda group: [memory, AcmeEntryPoint()] if group == _backends.BACKENDS_GROUP else [],
        )
        _backends.clear_backend_cache()

    yield install
    _backends.clear_backend_cache()


def test_resolve_spec_of_another_type_imports_only_that_backend(
    install_acme: Callable[[_Acme], None],
) -> None:
    install_acme(_Acme())
    config = TaskConfig.from_dict({"backend": {"queue_name": "q", "options": {"max_size": 5}}})
    spec = resolve_spec(config, "acme://host/0")
    # The config's memory backend is not imported to read a URL the option replaces.
    assert sorted(_backends._cache) == ["acme"]
    assert _backends.create_queue(spec).queue_name == "q"  # the spec reaches its backend
    assert (spec.type, spec.url, spec.queue_name, dict(spec.options)) == (
        "acme",
        "acme://host/0",
        "q",
        {},
    )


def test_a_bare_backend_type_takes_the_configs_url_for_that_type(
    install_acme: Callable[[_Acme], None],
) -> None:
    class Acme(_Acme):
        url_field = "redis_url"  # reads a per-type field of the backend section

    install_acme(Acme())
    # No type in the file, only the per-type URL: `--backend acme` names the type.
    config = TaskConfig.from_dict({"backend": {"redis_url": "acme://legacy:1/13"}})
    spec = resolve_spec(config, "acme")
    assert (spec.type, spec.url) == ("acme", "acme://legacy:1/13")
    # Also when the config's own `url` is another type's: that URL is not the bare type's.
    config = TaskConfig.from_dict(
        {"backend": {"type": "memory", "url": "memory://x", "redis_url": "acme://legacy:1/13"}}
    )
    spec = resolve_spec(config, "acme")
    assert (spec.type, spec.url) == ("acme", "acme://legacy:1/13")


def test_connect_timeout_sets_the_options_a_backend_declares_for_its_first_answer(
    install_acme: Callable[[_Acme], None],
) -> None:
    @dataclass(frozen=True)
    class AcmeOptions:
        handshake_timeout: float | None = None
        connect_timeout: float | None = None

    class Acme(_Acme):
        options_type = AcmeOptions
        # Its own name for the deadline; `connect_timeout` is not one it wants set.
        first_answer_options = ("handshake_timeout",)

    install_acme(Acme())
    spec = resolve_spec(TaskConfig(), "acme://host/0", connect_timeout=3.0)
    assert dict(spec.options) == {"handshake_timeout": 3.0}


def test_resolve_spec_rejects_an_uninstalled_type() -> None:
    with pytest.raises(BackendNotFoundError, match="No task backend named 'nosuch'"):
        resolve_spec(TaskConfig(), "nosuch")


def test_a_typed_type_suggests_the_installed_one_and_exits_2() -> None:
    result = run("inspect", "--backend", "memroy")
    assert result.exit_code == 2, result.output
    assert "Did you mean 'memory'?" in result.output
    assert "pip install" not in result.output


def _backend_with(monkeypatch: pytest.MonkeyPatch, options_type: type | None) -> None:
    from lexigram.tasks._backends import _probe

    monkeypatch.setattr(_probe, "backend_attribute", lambda _type, _name: options_type)


def test_connect_timeout_becomes_the_backends_own_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dataclasses import dataclass

    from lexigram.contracts.tasks import TaskBackendSpec
    from lexigram.tasks._backends import outer_deadline, with_connect_timeout

    @dataclass(frozen=True)
    class ServerOptions:  # as PostgreSQL and RabbitMQ
        connect_timeout: float = 10.0
        command_timeout: float = 60.0

    @dataclass(frozen=True)
    class RedisLike:  # no connect_timeout: a silent server is caught by command_timeout
        socket_connect_timeout: float = 5.0
        command_timeout: float = 10.0

    spec = TaskBackendSpec(type="srv", url="srv://h")
    _backend_with(monkeypatch, ServerOptions)
    tuned = with_connect_timeout(spec, 0.5)
    assert tuned.options == {"connect_timeout": 0.5}  # command_timeout left alone
    assert outer_deadline(tuned, 0.5) == 1.5  # a margin past the backend's own
    # Left unset (as a TaskProvider leaves it), the option's default is the backend's own.
    assert outer_deadline(spec, 0.5) == 11.0
    configured = with_connect_timeout(
        TaskBackendSpec(type="srv", url="srv://h", options={"connect_timeout": "8"}), 0.5
    )
    assert configured.options == {"connect_timeout": "8"}  # the deployment's choice wins
    assert outer_deadline(configured, 0.5) == 9.0

    _backend_with(monkeypatch, RedisLike)
    assert with_connect_timeout(spec, 2.0).options == {
        "socket_connect_timeout": 2.0,
        "command_timeout": 2.0,
    }

    _backend_with(monkeypatch, None)  # a backend that describes no options
    assert with_connect_timeout(spec, 2.0) is spec
    assert outer_deadline(spec, 2.0) == 3.0


def test_resolve_spec_sets_no_connect_option_the_memory_backend_lacks() -> None:
    spec = resolve_spec(TaskConfig(), "memory", connect_timeout=0.5)
    assert spec.options == {}


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[Job]:
    """The jobs the enqueue command hands to its queue (captured instead of sent)."""
    jobs: list[Job] = []

    async def capture(spec: object, job: Job, connect_timeout: float) -> str:
        jobs.append(job)
        return job.id

    monkeypatch.setattr(enqueue_command, "_enqueue", capture)
    return jobs


def test_enqueue_reads_arguments_from_a_file(tmp_path: Path, enqueued: list[Job]) -> None:
    rows = [{"row": index} for index in range(5000)]  # far beyond a comfortable command line
    (tmp_path / "rows.json").write_text(json.dumps([rows]))
    (tmp_path / "options.json").write_text('{"dry_run": true}')
    result = run(
        "enqueue",
        "import_rows",
        "--args",
        f"@{tmp_path / 'rows.json'}",
        "--kwargs",
        f"@{tmp_path / 'options.json'}",
    )
    assert result.exit_code == 0, result.output
    (job,) = enqueued
    assert job.args == (rows,)
    assert job.kwargs == {"dry_run": True}


def test_enqueue_reads_arguments_from_standard_input(enqueued: list[Job]) -> None:
    result = run("enqueue", "import_rows", "--args", "-", stdin='[1, "two", {"three": 3}]')
    assert result.exit_code == 0, result.output
    (job,) = enqueued
    assert job.args == (1, "two", {"three": 3})


def test_enqueue_argument_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = run("enqueue", "x", "--args", f"@{tmp_path / 'nope.json'}")
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr
    assert "nope.json" in missing.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2")
    result = run("enqueue", "x", "--args", f"@{broken}")
    assert result.exit_code == 2
    assert f"file {str(broken)!r} is not valid JSON" in result.stderr
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'["caf\xe9"]')
    result = run("enqueue", "x", "--args", f"@{latin1}")
    assert result.exit_code == 2
    assert f"file {str(latin1)!r} is not UTF-8 text (byte 0xe9 at offset 5)" in result.stderr


@pytest.mark.parametrize("value", ["rediss//:hunter2@127.0.0.1:6379/8", "redis:/:hunter2@h/0"])
def test_a_backend_url_with_a_mistyped_separator_is_refused_without_its_password(
    value: str,
) -> None:
    result = run("inspect", "--backend", value)
    assert result.exit_code == 2, result.output
    assert "is neither a URL (scheme://...; its '://' is missing or mistyped)" in result.stderr
    assert "hunter2" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["enqueue", "x", "--delay", "nan"],
        ["enqueue", "x", "--timeout", "inf"],
        ["job", "wait", "abcd1234", "--timeout", "nan"],
        ["worker", "app", "--connect-timeout", "1e400"],
    ],
)
def test_seconds_options_refuse_nan_and_infinity(args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert "is not a finite number" in result.stderr


def test_standard_input_is_read_by_one_option_only() -> None:
    result = run("enqueue", "x", "--args", "-", "--kwargs", "-", stdin="[1]")
    assert result.exit_code == 2
    assert "standard input is read once, and --args reads it already" in result.stderr


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[NaN]", "NaN is not a JSON number"),
        ('{"x": -Infinity}', "-Infinity is not a JSON number"),
        ("[1e400]", "1e400 is out of a number's range"),
    ],
)
def test_enqueue_refuses_numbers_json_has_not_as_invalid_json(text: str, words: str) -> None:
    # Python's json reads them; the job's envelope then refused them as arguments, with
    # a message about serializing, not about the JSON given.
    option = "--kwargs" if text.startswith("{") else "--args"
    result = run("enqueue", "x", option, text)
    assert result.exit_code == 2
    assert f"is not valid JSON ({words})" in result.stderr
