"""A bad config file fails when the application starts, naming the field, the value and the fix."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lexigram.app import Application, ApplicationStartError
from lexigram.contracts.tasks import TaskQueueError
from lexigram.di import Module, module
from lexigram.tasks import TaskConfig, TasksModule


async def start_from_file(path: Path) -> None:
    """What an application's main does: load the config, then boot with it."""
    config = TaskConfig.from_yaml(path, strict=True, environ={})

    @module(imports=[TasksModule.configure(config=config)])
    class AppModule(Module): ...

    async with Application.boot(modules=[AppModule]):
        pass


def _error_text(exc: BaseException) -> str:
    parts = [str(exc)]
    if isinstance(exc, ApplicationStartError) and exc.__cause__ is not None:
        parts.append(str(exc.__cause__))
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        pytest.param(
            "tasks:\n  backends:\n    - name: main\n    - name: mail\n      type: rediss\n",
            [
                "tasks.backends[1].type = 'rediss'",
                "No task backend named 'rediss' is installed (installed: ",
                "Did you mean 'redis'?",
            ],
            id="typo-in-backend-type",
        ),
        pytest.param(
            "tasks:\n  worker:\n    worker_count: -1\n",
            ["tasks.worker.worker_count = -1: must be ≥ 0. Set a non-negative number of workers."],
            id="negative-worker-count",
        ),
        pytest.param(
            "tasks:\n  scheduler:\n    check_intervall: 5\n",
            [
                (
                    "tasks.scheduler.check_intervall = 5: unknown key. Did you mean "
                    "'check_interval'? Fix the spelling or remove the key."
                )
            ],
            id="unknown-key-in-strict-mode",
        ),
    ],
)
async def test_bad_config_file_fails_at_start_with_field_value_and_fix(
    tmp_path, yaml_text: str, expected: list[str]
):
    path = tmp_path / "application.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises((TaskQueueError, ApplicationStartError)) as info:
        await start_from_file(path)
    text = _error_text(info.value)
    for fragment in expected:
        assert fragment in text
    leftover: set[asyncio.Task[Any]] = {
        t for t in asyncio.all_tasks() if t is not asyncio.current_task()
    }
    assert leftover == set()
