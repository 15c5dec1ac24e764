"""The read-only commands ask a backend to refuse storage that does not exist, where it can.

`existing_only` sets the option ``must_exist`` only for a backend whose options declare it
(options are checked: any other backend would refuse an unknown one). The SQLite backend's
own tests run the commands against a missing file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from lexigram.contracts.tasks import MUST_EXIST_OPTION, TaskBackendSpec
from lexigram.tasks.cli import _context
from lexigram.tasks.cli._context import existing_only


@dataclass(frozen=True)
class FileOptions:
    busy_timeout: float = 1.0
    must_exist: bool = False


@dataclass(frozen=True)
class ServerOptions:
    connect_timeout: float = 1.0


def spec(type_: str, **options: Any) -> TaskBackendSpec:
    return TaskBackendSpec(name="default", type=type_, queue_name="jobs", options=options)


def declaring(monkeypatch: pytest.MonkeyPatch, options_type: type | None) -> None:
    def attribute(type_: str, name: str, default: Any = None) -> Any:
        assert name == "options_type"
        return options_type

    monkeypatch.setattr(_context, "backend_attribute", attribute)


def test_the_option_is_set_where_the_backend_declares_it(monkeypatch: pytest.MonkeyPatch) -> None:
    declaring(monkeypatch, FileOptions)
    result = existing_only(spec("files", busy_timeout=2.0))
    assert result.options == {"busy_timeout": 2.0, MUST_EXIST_OPTION: True}


def test_a_configured_false_is_overridden_for_a_read_only_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    declaring(monkeypatch, FileOptions)
    assert existing_only(spec("files", must_exist=False)).options[MUST_EXIST_OPTION] is True


@pytest.mark.parametrize("options_type", [ServerOptions, None])
def test_a_backend_that_does_not_declare_it_gets_the_spec_unchanged(
    monkeypatch: pytest.MonkeyPatch, options_type: type | None
) -> None:
    declaring(monkeypatch, options_type)
    original = spec("server", connect_timeout=3.0)
    assert existing_only(original) is original


def test_the_memory_backend_is_left_alone() -> None:
    original = spec("memory")
    assert existing_only(original) == original
