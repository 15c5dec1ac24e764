"""``lexigram-tasks job ...`` takes a unique prefix of a job id (memory queue and results)."""

from __future__ import annotations

from typing import Any

import pytest

from lexigram.contracts.tasks import Job, JobLookupProtocol, JobResult
from lexigram.tasks import MemoryTaskQueue
from lexigram.tasks.cli._errors import CLIError
from lexigram.tasks.cli._lookup import resolve_job_id
from lexigram.tasks.results._memory import InMemoryResultStore


class _Plain:
    """Forwards what `resolve_job_id` reads, without `find_job_ids` (a third-party store)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def get_job(self, job_id: str) -> Job | None:
        return await self._inner.get_job(job_id)  # type: ignore[no-any-return]

    async def get(self, job_id: str) -> JobResult | None:
        return await self._inner.get(job_id)  # type: ignore[no-any-return]


@pytest.fixture
async def stores() -> tuple[MemoryTaskQueue, InMemoryResultStore]:
    queue = MemoryTaskQueue()
    results = InMemoryResultStore()
    await queue.enqueue(Job(id="abcd1111-waiting", name="t"))
    await queue.enqueue(Job(id="abcd2222-waiting", name="t"))
    await results.store("beef0000-finished", JobResult.ok(1))
    await results.store("abcd3333-finished", JobResult.ok(2))
    return queue, results


def test_memory_queue_and_results_implement_the_lookup() -> None:
    assert isinstance(MemoryTaskQueue(), JobLookupProtocol)
    assert isinstance(InMemoryResultStore(), JobLookupProtocol)
    assert not isinstance(_Plain(None), JobLookupProtocol)


async def test_find_job_ids_stops_at_limit(stores: tuple[Any, Any]) -> None:
    queue, results = stores
    assert sorted(await queue.find_job_ids("abcd", 5)) == ["abcd1111-waiting", "abcd2222-waiting"]
    assert len(await queue.find_job_ids("abcd", 1)) == 1
    assert await results.find_job_ids("beef", 5) == ["beef0000-finished"]


async def test_resolve_exact_id_wins(stores: tuple[Any, Any]) -> None:
    assert await resolve_job_id(*stores, "abcd1111-waiting", "memory") == ("abcd1111-waiting", "")


async def test_resolve_unique_prefix_of_waiting_and_finished_job(stores: tuple[Any, Any]) -> None:
    assert await resolve_job_id(*stores, "abcd1", "memory") == ("abcd1111-waiting", "")
    assert await resolve_job_id(*stores, "beef", "memory") == ("beef0000-finished", "")


async def test_resolve_ambiguous_prefix_lists_candidates(stores: tuple[Any, Any]) -> None:
    with pytest.raises(CLIError) as info:
        await resolve_job_id(*stores, "abcd", "memory")
    assert info.value.message == (
        "Several jobs have ids starting with 'abcd' (abcd1111-waiting, abcd2222-waiting, "
        "abcd3333-finished). Give more characters of the id."
    )


async def test_resolve_unknown_prefix_says_what_to_check(stores: tuple[Any, Any]) -> None:
    with pytest.raises(
        CLIError,
        match=r"No job of the memory backend has the id 'ffff' or an id starting with "
        r"it.*Check the id and the --backend, and give --queue NAME for a job of "
        r"another queue than the configured one\.$",
    ):
        await resolve_job_id(*stores, "ffff", "memory")


async def test_resolve_ignores_the_spaces_a_copied_id_brings(stores: tuple[Any, Any]) -> None:
    assert await resolve_job_id(*stores, " abcd1111-waiting\n", "memory") == (
        "abcd1111-waiting",
        "",
    )
    assert (await resolve_job_id(*stores, "  abcd3\t", "memory"))[0] == "abcd3333-finished"


async def test_resolve_too_short_prefix_names_the_minimum(stores: tuple[Any, Any]) -> None:
    with pytest.raises(CLIError, match=r"needs at least 4 characters\. Give more characters"):
        await resolve_job_id(*stores, "abc", "memory")


async def test_resolve_without_the_capability_takes_exact_ids_only(
    stores: tuple[Any, Any],
) -> None:
    # Any: _Plain carries only the two reads, not the whole protocols.
    queue: Any = _Plain(stores[0])
    results: Any = _Plain(stores[1])
    assert await resolve_job_id(queue, results, "beef0000-finished", "acme") == (
        "beef0000-finished",
        "",
    )
    job_id, note = await resolve_job_id(queue, results, "beef", "acme")
    assert job_id == "beef"
    assert note == " The acme backend cannot search job ids by prefix, so give the whole id."


async def test_resolve_with_only_the_result_store_searching_says_so(
    stores: tuple[Any, Any],
) -> None:
    queue: Any = _Plain(stores[0])
    assert await resolve_job_id(queue, stores[1], "beef", "rabbitmq") == ("beef0000-finished", "")
    with pytest.raises(
        CLIError,
        match=r"Its queue cannot search by prefix: give the whole id "
        r"of a waiting job\.$",
    ):
        await resolve_job_id(queue, stores[1], "abcd1", "rabbitmq")
