"""Fixtures for the command-line tests against real servers.

Each Redis test gets a config file whose backend has a key prefix and queue of its own
(deleted afterwards), an importable APP module in a temporary directory, and a way to
run ``lexigram-tasks`` as a real process and wait for its log lines.
"""

from __future__ import annotations

import asyncio
import os
import queue as queue_module
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from lexigram.tasks.backends.postgres import migrate


@pytest.fixture
def redis_config(
    tmp_path: Path, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A YAML config for the test's Redis backend (its own key prefix and queue).

    `redis_prefix` (the top conftest's) deletes the prefix's keys afterwards.
    """
    path = tmp_path / "tasks.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            tasks:
              backend:
                type: redis
                url: "${{LEXIGRAM_CLI_TEST_REDIS_URL}}"
                queue_name: jobs
                options:
                  key_prefix: {redis_prefix}
              worker:
                poll_interval: 0.05
            """
        )
    )
    # The URL comes in through ${...} interpolation, as a real deployment's secret would.
    monkeypatch.setenv("LEXIGRAM_CLI_TEST_REDIS_URL", redis_url)
    return path


@pytest.fixture
def rabbitmq_config(
    tmp_path: Path,
    amqp_url: str,
    redis_url: str,
    redis_prefix: str,
    delete_rabbitmq_family: Callable[[str, str], Coroutine[Any, Any, None]],
) -> Iterator[Path]:
    """A RabbitMQ queue of the test's own, its stores (the workflow run store too) on Redis."""
    path = tmp_path / "tasks.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            tasks:
              backend:
                type: rabbitmq
                url: "{amqp_url}"
                queue_name: {redis_prefix}
                options:
                  stores:
                    type: redis
                    url: "{redis_url}"
                    options:
                      key_prefix: {redis_prefix}
              worker:
                poll_interval: 0.05
            """
        )
    )
    yield path
    asyncio.run(delete_rabbitmq_family(amqp_url, redis_prefix))


@pytest.fixture
def write_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Write an APP module into a temporary directory on sys.path; return its name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))

    def write(source: str) -> str:
        name = f"cli_app_{uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


class CliProcess:
    """``python -m lexigram.tasks.cli ...`` with its stderr read on a thread."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "lexigram.tasks.cli", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )
        self.seen: list[str] = []
        self._lines: queue_module.Queue[str] = queue_module.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Block until a stderr line matches `pattern` (lines before it are kept in seen)."""
        regex = re.compile(pattern)
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue_module.Empty:
                msg = f"no line matched {pattern!r} within {timeout} s; saw:\n{''.join(self.seen)}"
                raise AssertionError(msg) from None
            self.seen.append(line)
            match = regex.search(line)
            if match is not None:
                return match

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._thread.join(timeout=10)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def cli_process(tmp_path: Path) -> Iterator[Callable[..., CliProcess]]:
    """Start ``lexigram-tasks`` processes; each is killed (if still running) afterwards."""
    started: list[CliProcess] = []

    def start(*args: str) -> CliProcess:
        process = CliProcess(list(args), tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


@pytest.fixture
def sqlite_config(tmp_path: Path) -> Path:
    """A YAML config for a SQLite database file of this test's own."""
    path = tmp_path / "tasks.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            tasks:
              backend:
                url: "sqlite:///{tmp_path / "tasks.db"}"
                queue_name: jobs
              worker:
                poll_interval: 0.05
            """
        )
    )
    return path


@pytest.fixture
def pg_config(
    tmp_path: Path,
    postgres_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    drop_pg_schema: Callable[[str, str], Coroutine[Any, Any, None]],
) -> Iterator[Path]:
    """A YAML config on a schema of this test's own (migrated here, dropped afterwards)."""
    schema = f"lexigram_jh_{uuid4().hex[:8]}"
    asyncio.run(migrate(postgres_dsn, schema))
    path = tmp_path / "tasks.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            tasks:
              backend:
                type: postgres
                url: "${{LEXIGRAM_JOB_HANDLES_PG_DSN}}"
                queue_name: jobs
                options:
                  schema: {schema}
              worker:
                poll_interval: 0.05
            """
        )
    )
    monkeypatch.setenv("LEXIGRAM_JOB_HANDLES_PG_DSN", postgres_dsn)
    yield path
    asyncio.run(drop_pg_schema(postgres_dsn, schema))
