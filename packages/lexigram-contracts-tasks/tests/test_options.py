"""`parse_options`: the one reader of `TaskBackendSpec.options` every backend uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from lexigram.contracts.tasks import TaskConfigurationError, option_names, parse_options


@dataclass(frozen=True, slots=True)
class _Options:
    visibility_timeout: float = 30.0
    max_size: int | None = None
    key_prefix: str = "lexigram"
    durable: bool = True
    mode: Literal["fast", "safe"] = "fast"


def test_defaults_when_nothing_is_set() -> None:
    assert parse_options("demo", "default", {}, _Options) == _Options()


def test_strings_from_yaml_or_environment_convert_to_the_declared_type() -> None:
    options = parse_options(
        "demo",
        "default",
        {"visibility_timeout": "2.5", "max_size": "10", "durable": "off", "mode": "safe"},
        _Options,
    )
    assert options == _Options(visibility_timeout=2.5, max_size=10, durable=False, mode="safe")


def test_none_means_the_default() -> None:
    assert parse_options("demo", "x", {"key_prefix": None}, _Options).key_prefix == "lexigram"


def test_unknown_option_names_the_nearest_valid_one() -> None:
    with pytest.raises(TaskConfigurationError) as caught:
        parse_options("demo", "jobs", {"visibility_timeot": 3}, _Options)
    message = str(caught.value)
    assert "'visibility_timeot'" in message
    assert "Did you mean 'visibility_timeout'?" in message
    assert "'jobs'" in message


@pytest.mark.parametrize(
    ("name", "value", "wanted"),
    [
        ("visibility_timeout", "soon", "a number"),
        ("visibility_timeout", True, "a number"),
        ("visibility_timeout", float("inf"), "a number"),
        ("max_size", 1.5, "a whole number"),
        ("durable", "maybe", "true or false"),
        ("mode", "slow", "one of 'fast', 'safe'"),
        ("key_prefix", 3, "a string"),
    ],
)
def test_a_bad_value_names_the_option_and_what_it_takes(
    name: str, value: object, wanted: str
) -> None:
    with pytest.raises(TaskConfigurationError) as caught:
        parse_options("demo", "default", {name: value}, _Options)
    assert f"option {name}=" in str(caught.value)
    assert wanted in str(caught.value)


def test_option_names_in_field_order() -> None:
    assert option_names(_Options) == (
        "visibility_timeout",
        "max_size",
        "key_prefix",
        "durable",
        "mode",
    )
