"""Core behaviour checked with the first-party backends installed (their URL schemes, config
fields and type names); core's own unit session installs core alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lexigram.app import Application, ApplicationStartError
from lexigram.contracts.tasks import (
    BackendNotFoundError,
)
from lexigram.tasks import (
    TaskConfig,
    TaskProvider,
)


def _other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def _until(predicate, *, limit: int = 10_000) -> None:
    """Yield to the loop until `predicate()` holds (a condition wait, not a timed sleep)."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    msg = "condition never became true"
    raise AssertionError(msg)


class Greeter:
    def greet(self, name: str) -> str:
        return f"hello {name}"


async def test_provider_unknown_backend_type_fails_at_start_naming_field_value_and_fix():
    provider = TaskProvider(config=TaskConfig.from_dict({"backend": {"type": "rediss"}}))
    app = Application().use(provider)
    with pytest.raises(ApplicationStartError) as info:
        await app.start()
    cause = info.value.__cause__
    assert isinstance(cause, BackendNotFoundError)
    assert cause.message.startswith(
        "tasks.backend.type = 'rediss': No task backend named 'rediss' is installed (installed: "
    )
    assert cause.message.endswith("Did you mean 'redis'?")
    assert _other_tasks() == set()
