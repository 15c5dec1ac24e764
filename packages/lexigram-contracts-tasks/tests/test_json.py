"""`json_encoder` writes and refuses exactly what `json.JSONEncoder.encode` does."""

from __future__ import annotations

import enum
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import pytest

from lexigram.contracts.tasks import json_encoder, json_for_storage


class Colour(enum.IntEnum):
    RED = 1


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    leaves: list[Callable[[], Any]] = [
        lambda: None,
        lambda: rng.random() > 0.5,
        lambda: rng.randint(-(2**70), 2**70),
        lambda: rng.uniform(-1e300, 1e300),
        lambda: rng.choice([0.1, -0.0, 1e-320, 5e-324, 1.7976931348623157e308]),
        lambda: "".join(rng.choice('aé\x00\n"\\€😀<') for _ in range(rng.randint(0, 6))),
        lambda: Colour.RED,
    ]
    if depth < 3 and rng.random() < 0.4:
        if rng.random() < 0.5:
            return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        return {
            rng.choice(["k", "é", "", "x\x00", 1, 2.5, True, None]): _random_value(rng, depth + 1)
            for _ in range(rng.randint(0, 4))
        }
    return rng.choice(leaves)()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"ensure_ascii": True},
        {"allow_nan": True},
        {"default": repr, "allow_nan": True},
        {"default": str, "ensure_ascii": True, "allow_nan": True},
    ],
    ids=["strict", "ascii", "nan", "lenient", "postgres"],
)
def test_the_text_is_the_json_modules_for_500_random_values(options: dict[str, Any]) -> None:
    settings = {"ensure_ascii": False, "allow_nan": False, **options}  # json_encoder's defaults
    reference = json.JSONEncoder(separators=(",", ":"), **settings)
    encode = json_encoder(**options)
    rng = random.Random(20261204)
    for _ in range(500):
        value = _random_value(rng)
        assert encode(value) == reference.encode(value), value


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), ValueError),
        ([1, float("inf")], ValueError),
        ({"a": Opaque()}, TypeError),
        ({("tuple", "key"): 1}, TypeError),
    ],
    ids=["nan", "inf-in-list", "object", "tuple-key"],
)
def test_a_value_json_cannot_carry_is_refused_as_the_json_module_refuses_it(
    value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode(value)
    with pytest.raises(error):
        json_encoder()(value)


def test_a_cycle_is_a_value_error_and_the_next_value_encodes() -> None:
    looped: list[Any] = []
    looped.append(looped)
    encode = json_encoder()
    with pytest.raises(ValueError, match="Circular reference"):
        encode({"a": looped})
    shared = [1]
    assert encode([shared, shared]) == "[[1],[1]]"  # a repeated value is not a cycle


def test_a_stored_value_keeps_a_non_json_leaf_as_its_repr_and_names_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert json_for_storage({"n": 1}) == '{"n":1}'
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        text = json_for_storage({"n": Opaque(), "x": float("nan")}, what="result of job", of="j1")
    # NaN as null: a `NaN` token is no JSON (PostgreSQL's json columns refused the record,
    # so its job's ack failed until the job was dead-lettered as a crash loop).
    assert text == '{"n":"<opaque>","x":null}'
    assert "result of job j1 is not JSON-serializable" in caplog.text


def test_a_stored_value_holds_no_nan_or_infinity_token() -> None:
    value = {"ratio": float("nan"), "bounds": (float("-inf"), 1.5, [float("inf")]), "n": 2}
    text = json_for_storage(value)

    def refuse(token: str) -> None:
        raise AssertionError(token)

    assert json.loads(text, parse_constant=refuse) == {
        "ratio": None,
        "bounds": [None, 1.5, [None]],
        "n": 2,
    }
