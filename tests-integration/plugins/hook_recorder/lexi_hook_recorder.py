"""A lexigram-tasks plugin that appends every hook call to the file ``$LEXI_HOOK_LOG``.

One line per call: ``<hook> <task name> <job id>``.
"""

from __future__ import annotations

import os
from typing import Any

from lexigram.tasks.hookspecs import hookimpl


def _record(hook: str, payload: Any) -> None:
    path = os.environ.get("LEXI_HOOK_LOG")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as log:  # noqa: PTH123 - a plain append
        log.write(f"{hook} {payload.task_name} {payload.task_id}\n")


@hookimpl
def lexigram_tasks_after_enqueue(payload: Any) -> None:
    """Record ``after_enqueue``."""
    _record("after_enqueue", payload)


@hookimpl
def lexigram_tasks_before_execute(payload: Any) -> None:
    """Record ``before_execute``."""
    _record("before_execute", payload)


@hookimpl
def lexigram_tasks_after_execute(payload: Any) -> None:
    """Record ``after_execute``."""
    _record("after_execute", payload)


@hookimpl
def lexigram_tasks_after_failure(payload: Any) -> None:
    """Record ``after_failure``."""
    _record("after_failure", payload)
