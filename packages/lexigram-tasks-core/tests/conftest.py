"""Fixtures shared by the core's unit tests."""

from __future__ import annotations

from typing import Any

import pytest

from lexigram.tasks.events import JobEvent, new_job_event
from lexigram.tasks.execution import _settle


@pytest.fixture
def built_event_kinds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kinds of the job events the worker builds from now on, in order."""
    built: list[str] = []

    def counting(*fields: Any) -> JobEvent:
        built.append(fields[0])  # the worker passes the fields positionally, kind first
        return new_job_event(*fields)

    monkeypatch.setattr(_settle, "new_job_event", counting)
    return built
