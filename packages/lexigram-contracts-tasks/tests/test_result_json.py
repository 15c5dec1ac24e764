"""`JobResult.to_json`: the record stores keep, written without a general encoder."""

from __future__ import annotations

import json
import logging
import math
import random

import pytest

from lexigram.contracts.tasks import (
    JobResult,
    json_for_storage,
)
from lexigram.contracts.tasks import _json as json_module
from lexigram.contracts.tasks._json import json_number


def _random_text(rng: random.Random) -> str:
    alphabet = ['"', "\\", "\n", "\t", "\x00", "\x1f", "é", "€", "😀", "a", " ", "/"]
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))


def test_the_record_reads_back_as_json_for_storage_writes_it_and_exactly() -> None:
    rng = random.Random(7)
    for _ in range(500):
        result = JobResult(
            success=rng.random() < 0.5,
            data=rng.choice([None, 1, "x", [1, 2.5], {"k": _random_text(rng)}, True]),
            error=rng.choice([None, _random_text(rng)]),
            duration=rng.choice([0.0, 1, rng.random() * 10 ** rng.randrange(-9, 4)]),
            retry_count=rng.randrange(0, 5),
            id=rng.choice([None, _random_text(rng)]),
            name=rng.choice([None, _random_text(rng)]),
            completed_at=rng.choice([None, 1.7e9 + rng.random() * 1e8]),
            failed_at=rng.choice([None, 1.7e9 + rng.random()]),
            cancelled=rng.random() < 0.2,
        )
        text = result.to_json()
        assert json.loads(text) == json.loads(json_for_storage(result.to_dict()))
        assert JobResult.from_dict(json.loads(text)) == result


def test_non_finite_numbers_are_stored_as_null() -> None:
    text = JobResult(success=False, duration=math.inf, failed_at=math.nan).to_json()
    stored = json.loads(text)  # strict JSON: no NaN or Infinity tokens
    assert stored["duration"] is None
    assert stored["failed_at"] is None
    assert JobResult.from_dict(stored).duration == 0.0


def test_data_is_written_as_json_for_storage_writes_it(caplog: pytest.LogCaptureFixture) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    data = {"n": Opaque(), "é": [1, None]}
    with caplog.at_level(logging.WARNING):
        stored = json.loads(JobResult(success=True, data=data).to_json(of="job-7"))
    assert stored["data"] == json.loads(json_for_storage(data))
    assert "result of job job-7" in caplog.text


@pytest.mark.parametrize("writer", ["orjson", "json module"])
def test_numbers_are_exact_whichever_writes_them(
    writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if writer == "json module":
        monkeypatch.setattr(json_module, "orjson_dumps", None)
    elif json_module.orjson_dumps is None:
        pytest.fail("orjson is a test dependency of the contracts and must be installed")
    rng = random.Random(11)
    for _ in range(2000):
        value = rng.random() * 10 ** rng.randrange(-12, 20)
        assert float(json_number(value)) == value
    assert json_number(2) == "2"
    assert json_number(None) == "null"


def test_numbers_orjson_does_not_write_are_written_by_repr() -> None:
    class Seconds(float):  # as numpy's float64 is: a float subclass orjson refuses
        def __repr__(self) -> str:
            return "Seconds(...)"

    assert json_number(2**70) == str(2**70)
    assert float(json_number(Seconds(0.25))) == 0.25
