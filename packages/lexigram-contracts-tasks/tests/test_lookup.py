"""`JobLookupProtocol` is an optional, structural capability; the range bound helper."""

from __future__ import annotations

from lexigram.contracts.tasks import JobLookupProtocol, id_prefix_upper_bound


class _Lookup:
    async def find_job_ids(self, prefix: str, limit: int) -> list[str]:
        return [f"{prefix}-1"][:limit]


def test_job_lookup_is_recognised_by_its_method_alone() -> None:
    found: JobLookupProtocol = _Lookup()
    assert isinstance(found, JobLookupProtocol)
    assert not isinstance(object(), JobLookupProtocol)


def test_id_prefix_upper_bound_bounds_exactly_the_prefixed_strings() -> None:
    bound = id_prefix_upper_bound("5f0c")
    assert bound == "5f0d"
    inside = ["5f0c", "5f0c-2a9b", "5f0c\U0010ffff"]
    outside = ["5f0b\U0010ffff", "5f0d", "5f1"]
    assert all("5f0c" <= s < bound for s in inside)
    assert not any("5f0c" <= s < bound for s in outside)
    assert id_prefix_upper_bound("a\U0010ffff") == "b"
