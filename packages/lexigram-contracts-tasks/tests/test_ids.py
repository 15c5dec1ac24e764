"""`new_job_id`: canonical UUID text, version 7 layout, ordered by creation time."""

from __future__ import annotations

import time
import uuid

from lexigram.contracts.tasks import Job, new_job_id


def test_ids_are_canonical_version_7_uuids() -> None:
    for _ in range(1000):
        text = new_job_id()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122


def test_the_first_48_bits_are_the_unix_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    text = new_job_id()
    after = time.time_ns() // 1_000_000
    assert before <= uuid.UUID(text).int >> 80 <= after


def test_ids_of_later_milliseconds_sort_after_earlier_ones() -> None:
    # Backends index jobs by id: consecutive jobs must land next to each other.
    first = new_job_id()
    time.sleep(0.002)
    second = new_job_id()
    assert first < second


def test_the_random_bits_vary() -> None:
    ids = {new_job_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    # 74 random bits: the part after the timestamp is not constant within a millisecond.
    assert len({i[14:] for i in ids}) == 10_000


def test_jobs_without_an_id_get_one_and_decoded_jobs_without_one_too() -> None:
    assert uuid.UUID(Job(name="t").id).version == 7
    assert uuid.UUID(Job.from_dict({"name": "t"}).id).version == 7
    assert Job(id="mine", name="t").id == "mine"
