"""The worker and scheduler commands check every configured backend, as `TaskProvider` does.

A worker of ``tasks.backends``' primary entry used to check only the queues it consumes: a
second entry with a wrong login (the backend its handlers' ``.delay()`` reach) was found
only when a handler first enqueued there, while an application's `TaskProvider.boot`
failed at once on it. With ``--workers N`` the supervisor checked nothing, so each of its
children printed the same error line. The scheduler command checked only its own backend
too, while its fires reach the others. Now the commands, the supervisor and the provider make
the same check (``probe_all`` over every configured backend): one error line, exit code 2,
nothing started.

PostgreSQL here trusts local connections, so a login is refused by naming a role the
server does not know (see ``postgres/test_postgres_connect_errors.py``).
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from lexigram.app import Application, ApplicationStartError
from lexigram.contracts.tasks import TaskQueueError
from lexigram.tasks import TaskConfig, TaskProvider

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

RunCli = Callable[..., subprocess.CompletedProcess[str]]

APP = """
from lexigram.tasks import scheduled, task


@task
async def noop() -> None:
    return None


@scheduled("0 0 1 1 *")
async def yearly() -> None:
    return None
"""


def _unknown_role(dsn: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    role = f"lexigram_nobody_{uuid.uuid4().hex[:8]}"
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


def _backends(primary_url: str, reports_url: str) -> dict[str, object]:
    return {
        "backends": [
            {"name": "main", "primary": True, "type": "redis", "url": primary_url},
            {"name": "reports", "type": "postgres", "url": reports_url},
        ]
    }


def _write(tmp_path: Path, backends: dict[str, object]) -> Path:
    entries = backends["backends"]
    assert isinstance(entries, list)
    lines = ["tasks:", "  backends:"]
    for entry in entries:
        lines.append(f"    - name: {entry['name']}")
        lines.extend(f"      {key}: {value!r}" for key, value in entry.items() if key != "name")
    (tmp_path / "start_check_app.py").write_text(APP)
    config = tmp_path / "tasks.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _one_error(run_cli: RunCli, tmp_path: Path, *args: str, expected: str) -> str:
    """Run the command in `tmp_path`; it must exit 2 with one ``error:`` line naming `expected`."""
    done = run_cli(*args, app_dir=tmp_path, cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert expected in errors[0]
    # Nothing started: no child process, no consumer, no scheduler.
    for started in ("Started worker process", "consuming", "Scheduler running"):
        assert started not in done.stderr
    return errors[0]


@pytest.mark.parametrize("processes", ["1", "3"])
def test_a_second_backend_that_refuses_the_login_stops_the_worker_with_one_line(
    processes: str, tmp_path: Path, run_cli: RunCli, redis_url: str, postgres_dsn: str
) -> None:
    reports = _unknown_role(postgres_dsn)
    config = _write(tmp_path, _backends(redis_url, reports))
    error = _one_error(
        run_cli,
        tmp_path,
        *("worker", "start_check_app", "--config", str(config), "--workers", processes),
        *("--queue", f"start-check-{uuid.uuid4().hex[:8]}"),
        expected="refused the login",
    )

    # One way through: an application's boot on the same configuration fails on the same line.
    async def boot() -> ApplicationStartError:
        provider = TaskProvider(config=TaskConfig.from_dict(_backends(redis_url, reports)))
        with pytest.raises(ApplicationStartError) as raised:
            async with Application.boot(providers=[provider]):
                pytest.fail("the application booted with a second backend refusing its login")
        return raised.value

    cause = asyncio.run(boot()).__cause__
    assert isinstance(cause, TaskQueueError), repr(cause)
    assert error == f"error: {cause.message}"


def test_a_supervisor_reports_an_unreachable_backend_once_and_starts_no_child(
    tmp_path: Path, run_cli: RunCli, postgres_dsn: str, free_port: Callable[..., int]
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    config = _write(tmp_path, _backends(closed, postgres_dsn))
    _one_error(
        run_cli,
        tmp_path,
        *("worker", "start_check_app", "--config", str(config), "--workers", "3"),
        expected="refused the connection",
    )


def test_the_scheduler_command_checks_every_configured_backend(
    tmp_path: Path, run_cli: RunCli, redis_url: str, postgres_dsn: str
) -> None:
    config = _write(tmp_path, _backends(redis_url, _unknown_role(postgres_dsn)))
    _one_error(
        run_cli,
        tmp_path,
        *("scheduler", "start_check_app", "--config", str(config)),
        expected="refused the login",
    )
