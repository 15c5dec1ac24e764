from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lexigram.contracts.tasks import (
    MUST_EXIST_OPTION,
    OPTIONAL_BACKEND_FLAGS,
    OPTIONAL_BACKEND_METHODS,
    ClosableBackendProtocol,
    FieldUpdatingSchedulerStoreProtocol,
    SchedulerStoreProtocol,
    TaskBackendProtocol,
    TaskBackendSpec,
    backend_problems,
)


@dataclass(frozen=True)
class _Options:
    timeout: float = 1.0


class _Good:
    url_schemes = ("acme", "acmes")
    url_field = None
    options_type = _Options
    url_required = False
    process_local = False

    def create_queue(self, spec: TaskBackendSpec, /) -> Any:
        return None

    def create_result_store(self, spec: TaskBackendSpec, /) -> Any:
        return None

    async def close(self) -> None:
        return None


class _Minimal:
    def create_queue(self, spec: TaskBackendSpec, /) -> Any:
        return None


def test_flags_and_methods_are_declared_with_defaults() -> None:
    assert dict(OPTIONAL_BACKEND_FLAGS) == {"url_required": True, "process_local": False}
    assert OPTIONAL_BACKEND_METHODS == ("close",)


def test_a_correct_or_minimal_backend_has_no_problems() -> None:
    assert backend_problems(_Good()) == []
    assert backend_problems(_Minimal()) == []


def test_close_is_an_optional_capability() -> None:
    assert isinstance(_Good(), ClosableBackendProtocol)
    assert isinstance(_Minimal(), TaskBackendProtocol)
    assert not isinstance(_Minimal(), ClosableBackendProtocol)


def test_wrong_declarations_are_each_named() -> None:
    class Bad(_Minimal):
        url_schemes = ("ACME", "acme://")
        url_field = 3
        options_type = _Options()
        process_local = "yes"

    problems = backend_problems(Bad())
    assert len(problems) == 5, problems
    assert "not a lower-case scheme" in problems[0]
    assert "without '://'" in problems[1]
    assert backend_problems(object()) == ["create_queue is missing or not callable."]


class _Records:
    async def save_job(self, job_id: str, job: Mapping[str, Any]) -> None: ...

    async def load_jobs(self) -> dict[str, dict[str, Any]]:
        return {}

    async def update_next_run(self, job_id: str, next_run: float) -> None: ...

    async def delete_job(self, job_id: str) -> None: ...


class _FieldRecords(_Records):
    async def update_fields(self, job_id: str, fields: Mapping[str, Any]) -> None: ...


def test_update_fields_is_an_optional_scheduler_store_capability() -> None:
    assert isinstance(_Records(), SchedulerStoreProtocol)
    assert not isinstance(_Records(), FieldUpdatingSchedulerStoreProtocol)
    assert isinstance(_FieldRecords(), FieldUpdatingSchedulerStoreProtocol)


def test_first_answer_options_name_fields_of_the_options_type() -> None:
    class Declares(_Good):
        first_answer_options = ("timeout",)

    class NamesAnUnknownOption(_Good):
        first_answer_options = ("connect_timeout",)

    class HasNoOptionsType(_Minimal):
        first_answer_options = ("timeout",)

    class IsNotATuple(_Good):
        first_answer_options = "timeout"

    assert backend_problems(Declares()) == []
    assert backend_problems(NamesAnUnknownOption()) == [
        "first_answer_options names ['connect_timeout'], which options_type does not have."
    ]
    assert backend_problems(HasNoOptionsType()) == [
        "first_answer_options names options, but there is no options_type to hold them."
    ]
    assert backend_problems(IsNotATuple()) == [
        "first_answer_options is 'timeout', not a tuple of option names."
    ]


def test_must_exist_defaults_to_false_when_declared() -> None:
    @dataclass(frozen=True)
    class Creates:
        must_exist: bool = False

    @dataclass(frozen=True)
    class NeverCreates:
        must_exist: bool = True

    class Declares(_Minimal):
        options_type = Creates

    class DefaultsToTrue(_Minimal):
        options_type = NeverCreates

    assert MUST_EXIST_OPTION == "must_exist"
    assert backend_problems(Declares()) == []
    expected = (
        "options_type's must_exist defaults to True: it must default to False (only the "
        "read-only commands set it to True)."
    )
    assert backend_problems(DefaultsToTrue()) == [expected]
