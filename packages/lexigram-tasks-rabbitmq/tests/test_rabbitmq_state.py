"""Unit tests of the job-state records (in-process store, batched calls) and the ack coalescing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import pytest

from lexigram.contracts.tasks import POISON_JOB_NAME, CacheBackendProtocol, Job, encode_job
from lexigram.tasks.backends.rabbitmq import LocalStateStore
from lexigram.tasks.backends.rabbitmq._delivery import ChannelAcks, Delivery
from lexigram.tasks.backends.rabbitmq._idem_records import idem_value
from lexigram.tasks.backends.rabbitmq._state import (
    Admission,
    BatchCacheProtocol,
    JobStates,
    Write,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_states(clock: Clock | None = None) -> JobStates:
    store = LocalStateStore(clock=clock or Clock())
    return JobStates(store, "ns:", state_ttl=60.0)


def clocked_states(clock: Clock) -> JobStates:
    """States whose store and whose key ends read one clock."""
    return JobStates(LocalStateStore(clock=clock), "ns:", state_ttl=60.0, clock=clock)


async def test_local_store_satisfies_cache_protocol_and_expires() -> None:
    clock = Clock()
    store = LocalStateStore(clock=clock)
    assert isinstance(store, CacheBackendProtocol)
    await store.set("a", "1", ttl=10)
    await store.set("b", "2")
    assert await store.set_if_absent("a", "x") is False
    assert sorted(await store.keys("")) == ["a", "b"]
    clock.now += 11
    assert await store.get("a") is None
    assert await store.exists("a") is False
    assert await store.keys("") == ["b"]
    assert await store.set_if_absent("a", "3", ttl=5) is True
    assert await store.delete("a") is True
    assert await store.delete("a") is False


async def test_local_store_evicts_oldest_beyond_bound(caplog: pytest.LogCaptureFixture) -> None:
    store = LocalStateStore(max_entries=3)
    with caplog.at_level(logging.WARNING):
        for index in range(5):
            await store.set(f"k{index}", "v")
    assert len(store) == 3
    assert await store.get("k0") is None
    assert await store.get("k4") == "v"
    assert caplog.text.count("evicts") == 1


async def test_admit_records_once_and_forget_drops_everything() -> None:
    states = make_states()
    assert await states.admit("j1", '{"v":1}', delay=0) is Admission.NEW
    assert await states.admit("j1", '{"v":1}', delay=0) is Admission.PRESENT
    assert await states.waiting_envelope("j1") == '{"v":1}'
    await states.forget("j1")
    assert await states.waiting_envelope("j1") is None
    assert await states.store.keys("") == []


async def test_delete_leaves_a_tombstone_taken_once() -> None:
    states = make_states()
    await states.admit("j1", "{}", delay=0)
    assert await states.delete("j1") is True
    assert await states.delete("j1") is False
    assert await states.count("del") == 1
    assert await states.is_deleted("j1") is True
    assert await states.waiting_envelope("j1") is None
    assert await states.hand_out([("j1", "{}", False)], lease=30.0) == [False]
    assert await states.hand_out([("j1", "{}", False)], lease=30.0) == [True]
    assert await states.count("del") == 0


async def test_delete_unknown_job_returns_false() -> None:
    assert await make_states().delete("nope") is False


async def test_admit_over_tombstone_revives_the_queued_message() -> None:
    states = make_states()
    await states.admit("j1", "{}", delay=0)
    await states.delete("j1")
    assert await states.admit("j1", '{"new":1}', delay=0) is Admission.REVIVED
    assert await states.is_deleted("j1") is False
    assert await states.count("del") == 0


async def test_idempotency_claim_returns_holder() -> None:
    states = make_states()
    assert await states.claim_idempotency("k", "first", ttl=10) is None
    assert await states.claim_idempotency("k", "second", ttl=10) == "first"
    await states.release_idempotency("k", "second")  # not the holder: nothing changes
    assert await states.claim_idempotency("k", "third", ttl=10) == "first"
    await states.release_idempotency("k", "first")
    assert await states.claim_idempotency("k", "second", ttl=10) is None


async def test_idempotency_claim_expires_with_ttl() -> None:
    clock = Clock()
    states = clocked_states(clock)
    await states.claim_idempotency("k", "first", ttl=10)
    clock.now += 11
    assert await states.claim_idempotency("k", "second", ttl=10) is None


async def test_idempotency_key_held_while_its_job_outlives_the_ttl() -> None:
    clock = Clock()
    states = clocked_states(clock)
    assert await states.claim_idempotency("k", "first", ttl=10) is None
    await states.admit("first", "{}", delay=0)
    clock.now += 30  # the TTL is over, the job still waits
    assert await states.claim_idempotency("k", "second", ttl=10) == "first"
    await states.hand_out([("first", "{}", False)], lease=30.0)
    assert await states.claim_idempotency("k", "second", ttl=10) == "first"  # running
    await states.forget("first")
    assert await states.claim_idempotency("k", "second", ttl=10) is None
    assert await states.claim_idempotency("k", "third", ttl=10) == "second"


async def test_idempotency_key_held_for_its_ttl_after_its_job_left() -> None:
    clock = Clock()
    states = clocked_states(clock)
    await states.claim_idempotency("k", "first", ttl=10)
    await states.admit("first", "{}", delay=0)
    await states.forget("first")
    clock.now += 9
    assert await states.claim_idempotency("k", "second", ttl=10) == "first"
    clock.now += 2
    assert await states.claim_idempotency("k", "second", ttl=10) is None


async def test_deleted_job_no_longer_holds_a_lapsed_key() -> None:
    clock = Clock()
    states = clocked_states(clock)
    await states.claim_idempotency("k", "first", ttl=10)
    await states.admit("first", "{}", delay=0)
    await states.delete("first")  # a tombstone: the job never runs
    clock.now += 11
    assert await states.claim_idempotency("k", "second", ttl=10) is None


async def test_lapsed_key_goes_to_one_of_concurrent_claims() -> None:
    clock = Clock()
    states = clocked_states(clock)
    await states.claim_idempotency("k", "old", ttl=10)
    clock.now += 11
    answers = await asyncio.gather(
        *(states.claim_idempotency("k", f"new{index}", ttl=10) for index in range(5))
    )
    winners = [f"new{index}" for index, answer in enumerate(answers) if answer is None]
    assert len(winners) == 1
    assert {answer for answer in answers if answer is not None} == set(winners)


async def test_requeued_job_keeps_its_key_record_alive() -> None:
    """A retry renews the job's records; its key's record must last as long."""
    clock = Clock()
    states = clocked_states(clock)
    await states.claim_idempotency("k", "first", ttl=10)
    await states.admit("first", "{}", delay=0)
    clock.now += 50
    await states.requeued("first", "{}", retrying=True, delay=0, idempotency_key="k")
    clock.now += 50  # past the first records' lifetime (60 s), within the renewed one
    assert await states.claim_idempotency("k", "second", ttl=10) == "first"


async def test_bare_id_record_of_an_older_version_is_held() -> None:
    clock = Clock()
    states = clocked_states(clock)
    await states.store.set("ns:idem:k", "first", 10)
    assert await states.claim_idempotency("k", "second", ttl=10) == "first"
    await states.release_idempotency("k", "first")
    assert await states.claim_idempotency("k", "second", ttl=10) is None


async def test_requeued_and_started_track_retries() -> None:
    states = make_states()
    await states.admit("j1", "{}", delay=0)
    await states.requeued("j1", '{"r":1}', retrying=True, delay=5)
    assert await states.count("retry") == 1
    assert await states.waiting_envelope("j1") == '{"r":1}'
    await states.hand_out([("j1", '{"r":1}', True)], lease=30.0)
    assert await states.count("retry") == 0
    assert await states.running_envelope("j1") == '{"r":1}'
    assert await states.running_ids() == ["j1"]
    await states.forget("j1")
    assert await states.count("run") == 0


async def test_running_record_lives_as_long_as_the_lease() -> None:
    """A worker that dies stops counting as RUNNING once its lease is over."""
    clock = Clock()
    states = make_states(clock)
    await states.hand_out([("j1", "{}", False)], lease=5.0)
    clock.now += 4
    await states.renewed("j1", "{}", 5.0)  # a heartbeat
    clock.now += 4
    assert await states.count("run") == 1
    clock.now += 2  # no heartbeat for a whole lease: the holder is gone
    assert await states.count("run") == 0
    assert await states.running_envelope("j1") is None
    await states.hand_out([("j2", "{}", False)], lease=5.0)
    await states.lapsed("j2")
    assert await states.count("run") == 0


async def test_clear_forgets_idempotency_keys() -> None:
    states = make_states()
    await states.claim_idempotency("k", "j1", ttl=10)
    await states.admit("j1", "{}", delay=0)
    await states.admit("j2", "{}", delay=0)
    await states.delete("j2")
    await states.clear()
    assert await states.store.keys("ns:job:") == []
    assert await states.count("del") == 0
    assert await states.claim_idempotency("k", "j3", ttl=10) is None


async def test_ttl_covers_the_delay() -> None:
    clock = Clock()
    states = make_states(clock)
    await states.admit("late", "{}", delay=3600)
    clock.now += 3600 + 30
    assert await states.waiting_envelope("late") == "{}"


# -- ack coalescing ----------------------------------------------------------------------


class FakeChannel:
    is_closed = False


def acks_with(unsettled: set[int], pending: set[int], *, in_order: bool = True) -> ChannelAcks:
    acks = ChannelAcks(FakeChannel(), in_order=in_order)  # type: ignore[arg-type]
    acks.unsettled = set(unsettled)
    acks.pending = set(pending)
    return acks


def test_acks_contiguous_run_becomes_one_multiple_ack() -> None:
    acks = acks_with({1, 2, 3, 4}, {1, 2, 3})
    assert acks.frames() == [(3, True)]
    assert acks.unsettled == {4}
    assert acks.pending == set()


def test_acks_above_an_unsettled_tag_are_sent_singly() -> None:
    acks = acks_with({1, 2, 3, 4, 5}, {2, 3, 5})
    assert acks.frames() == [(2, False), (3, False), (5, False)]
    assert acks.unsettled == {1, 4}


def test_acks_mixed_run_and_singles() -> None:
    acks = acks_with({4, 5, 6, 7, 9}, {4, 5, 7, 9})
    assert acks.frames() == [(5, True), (7, False), (9, False)]


def test_acks_single_tag_is_not_multiple() -> None:
    assert acks_with({8}, {8}).frames() == [(8, False)]
    assert acks_with({8}, set()).frames() == []


def test_acks_out_of_order_channel_never_uses_multiple() -> None:
    acks = acks_with({1, 2, 3}, {1, 2, 3}, in_order=False)
    assert acks.frames() == [(1, False), (2, False), (3, False)]


# -- delivery counting -------------------------------------------------------------------


class FakeProperties:
    def __init__(self, headers: dict[str, object] | None, message_id: str | None = None) -> None:
        self.headers = headers
        self.message_id = message_id


class FakeHeader:
    def __init__(self, properties: FakeProperties) -> None:
        self.properties = properties


class FakeMessage:
    def __init__(
        self, body: bytes, *, redelivered: bool = False, headers: dict[str, object] | None = None
    ) -> None:
        self.body = body
        self.delivery_tag = 7
        self.redelivered = redelivered
        self.header = FakeHeader(FakeProperties(headers, message_id="m-1"))


def deliver(message: FakeMessage) -> Delivery:
    return Delivery(message, acks_with(set(), set()), "tasks")  # type: ignore[arg-type]


def test_delivery_counts_first_delivery() -> None:
    body = encode_job(Job(name="x", delivery_count=2))
    delivery = deliver(FakeMessage(body))
    assert delivery.job.delivery_count == 3
    assert delivery.restamp is False


def test_classic_redelivery_is_restamped_with_one_more_delivery() -> None:
    body = encode_job(Job(name="x", delivery_count=2))
    delivery = deliver(FakeMessage(body, redelivered=True))
    assert delivery.job.delivery_count == 4
    assert delivery.restamp is True  # re-published with 3: the delivery that was lost


def test_quorum_redelivery_counts_from_header_without_restamp() -> None:
    body = encode_job(Job(name="x", delivery_count=0))
    delivery = deliver(FakeMessage(body, redelivered=True, headers={"x-delivery-count": 3}))
    assert delivery.job.delivery_count == 4
    assert delivery.restamp is False


def test_poison_delivery_is_handed_out_not_restamped() -> None:
    delivery = deliver(FakeMessage(b"{oops", redelivered=True))
    assert delivery.job.name == POISON_JOB_NAME
    assert delivery.job.id == "m-1"
    assert delivery.job.queue_name == "tasks"
    assert delivery.restamp is False


class CountingStore(LocalStateStore):
    """The in-process store counted call by call, each batch call a round trip away.

    `JobStates` treats it as a shared store (it batches and coalesces for it), and a
    write yields to the loop first, as a network call would.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.fail_writes = False

    async def get(self, key: str) -> str | None:
        self.calls.append("get")
        return await super().get(key)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self.calls.append("set")
        await super().set(key, value, ttl)

    async def delete(self, key: str) -> bool:
        self.calls.append("delete")
        return await super().delete(key)

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        self.calls.append("get_many")
        await asyncio.sleep(0)
        return await super().get_many(keys)

    async def write_many(self, sets: Sequence[Write], deletes: Sequence[str]) -> None:
        self.calls.append("write_many")
        await asyncio.sleep(0)
        if self.fail_writes:
            msg = "store unreachable"
            raise ConnectionError(msg)
        await super().write_many(sets, deletes)


def shared_states() -> tuple[JobStates, CountingStore]:
    store = CountingStore()
    states = JobStates(store, "ns:", state_ttl=60.0)
    states.local = False  # as for a store other processes share
    return states, store


async def test_a_batch_of_deliveries_is_looked_up_once_and_recorded_once() -> None:
    states, store = shared_states()
    for index in range(100):
        await states.admit(f"j{index}", "{}", delay=0)
    await states.requeued("j1", '{"r":1}', retrying=True, delay=0)
    store.calls.clear()
    batch = [(f"j{index}", f'{{"n":{index}}}', index == 1) for index in range(100)]
    verdicts = await states.hand_out(batch, lease=30.0)
    assert verdicts == [True] * 100
    assert store.calls == ["get_many", "write_many"]
    assert await states.count("run") == 100
    assert await states.running_envelope("j7") == '{"n":7}'
    assert await states.count("retry") == 0


async def test_hand_out_drops_deleted_jobs_and_later_copies_as_one_by_one_would() -> None:
    states, _ = shared_states()
    for job_id in ("gone", "twice", "dup"):
        await states.admit(job_id, "{}", delay=0)
    await states.delete("gone")
    await states.delete("twice")
    verdicts = await states.hand_out(
        [
            ("gone", "{}", False),
            ("dup", "{}", False),
            ("twice", "{}", False),  # its tombstone is taken here...
            ("dup", "{}", False),  # a second copy of a job this batch runs
            ("twice", "{}", False),  # ...so this later copy runs
        ],
        lease=30.0,
    )
    assert verdicts == [False, True, False, False, True]
    assert await states.count("del") == 0
    assert await states.is_deleted("gone") is False
    assert sorted(await states.running_ids()) == ["dup", "twice"]


class OverlapStore(CountingStore):
    """Notes when each batch call ends too, to show which calls were in flight together."""

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        values = await super().get_many(keys)
        self.calls.append("get_many done")
        return values

    async def write_many(self, sets: Sequence[Write], deletes: Sequence[str]) -> None:
        await super().write_many(sets, deletes)
        self.calls.append("write_many done")


async def test_the_lookup_and_the_record_of_a_hand_out_travel_together() -> None:
    store = OverlapStore()
    states = JobStates(store, "ns:", state_ttl=60.0)
    states.local = False
    await states.admit("a", "{}", delay=0)
    store.calls.clear()
    assert await states.hand_out([("a", "{}", False)], lease=30.0) == [True]
    # Both were sent before either answered: one round trip before the job starts.
    assert store.calls[:2] == ["get_many", "write_many"]
    assert sorted(store.calls[2:]) == ["get_many done", "write_many done"]


async def test_a_tombstone_met_by_a_hand_out_costs_one_correcting_write() -> None:
    states, store = shared_states()
    for job_id in ("gone", "back", "kept"):
        await states.admit(job_id, "{}", delay=0)
    await states.requeued("back", '{"try":2}', retrying=True, delay=0)
    await states.delete("gone")
    await states.delete("back")
    await states.requeued("back", '{"try":2}', retrying=True, delay=0)  # revived, retrying
    await states.delete("back")
    store.calls.clear()
    verdicts = await states.hand_out(
        [
            ("gone", '{"first":1}', False),
            ("back", '{"try":1}', False),  # tombstoned: dropped, its tombstone taken
            ("kept", "{}", True),
            ("back", '{"try":2}', True),  # the later copy runs, recorded as itself
        ],
        lease=30.0,
    )
    assert verdicts == [False, False, True, True]
    assert store.calls == ["get_many", "write_many", "write_many"]
    assert sorted(await states.running_ids()) == ["back", "kept"]
    assert await states.running_envelope("back") == '{"try":2}'
    assert await states.running_envelope("gone") is None
    assert await states.count("del") == 0
    assert await states.count("retry") == 0


async def test_run_records_of_a_batch_expire_with_the_lease() -> None:
    clock = Clock()
    states = JobStates(LocalStateStore(clock=clock), "ns:", state_ttl=60.0)
    await states.hand_out([("a", "{}", False), ("b", "{}", False)], lease=5.0)
    clock.now += 4
    assert await states.count("run") == 2
    clock.now += 2
    assert await states.count("run") == 0


async def test_concurrent_forgets_share_writes_and_all_land() -> None:
    states, store = shared_states()
    ids = [f"j{index}" for index in range(200)]
    await states.hand_out([(job_id, "{}", False) for job_id in ids], lease=30.0)
    for job_id in ids[:50]:
        await states.requeued(job_id, "{}", retrying=True, delay=0)
    await states.delete(ids[60])
    store.calls.clear()
    await asyncio.gather(*(states.forget(job_id) for job_id in ids))
    # The first call goes alone; everything that queued meanwhile goes in one more.
    assert store.calls == ["write_many", "write_many"]
    assert await store.keys("") == []


async def test_a_failed_coalesced_forget_reaches_every_caller_of_its_batch() -> None:
    states, store = shared_states()
    store.fail_writes = True
    outcomes = await asyncio.gather(
        *(states.forget(f"j{index}") for index in range(10)), return_exceptions=True
    )
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    store.fail_writes = False
    await states.admit("later", "{}", delay=0)
    await states.forget("later")  # the coalescer is idle again, not stuck
    assert await store.keys("") == []


class KeyByKeyStore:
    """A `CacheBackendProtocol` store without the batch calls (the in-process one inside)."""

    def __init__(self) -> None:
        self.inner = LocalStateStore()
        self.calls: list[str] = []

    async def get(self, key: str) -> str | None:
        self.calls.append("get")
        return await self.inner.get(key)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self.calls.append("set")
        await self.inner.set(key, value, ttl)

    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        return await self.inner.set_if_absent(key, value, ttl)

    async def delete(self, key: str) -> bool:
        self.calls.append("delete")
        return await self.inner.delete(key)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def keys(self, prefix: str) -> list[str]:
        return await self.inner.keys(prefix)


async def test_a_store_without_batch_calls_gets_the_same_records_key_by_key() -> None:
    store = KeyByKeyStore()
    assert isinstance(store, CacheBackendProtocol)
    assert not isinstance(store, BatchCacheProtocol)
    states = JobStates(store, "ns:", state_ttl=60.0)
    await states.admit("a", "{}", delay=0)
    await states.admit("b", "{}", delay=0)
    await states.delete("b")
    verdicts = await states.hand_out([("a", "{}", True), ("b", "{}", False)], lease=30.0)
    assert verdicts == [True, False]
    assert store.calls.count("get") >= 2
    assert await states.running_ids() == ["a"]
    await asyncio.gather(states.forget("a"), states.forget("b"))
    assert await store.keys("") == []


class SharedStore:
    """A store other processes would share: not the in-process kind, so claims can pend."""

    def __init__(self) -> None:
        self._inner = LocalStateStore()

    async def get(self, key: str) -> str | None:
        return await self._inner.get(key)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        await self._inner.set(key, value, ttl)

    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        return await self._inner.set_if_absent(key, value, ttl)

    async def delete(self, key: str) -> bool:
        return await self._inner.delete(key)

    async def exists(self, key: str) -> bool:
        return await self._inner.exists(key)

    async def keys(self, prefix: str) -> list[str]:
        return await self._inner.keys(prefix)


async def _claimed_elsewhere(store: SharedStore, key: str, job_id: str, life: float) -> None:
    """Write the pending claim another process's enqueue of `job_id` would write."""
    value = idem_value(time.time() + 60, job_id, pending=True)
    await store.set(f"ns:idem:{key}", value, life)


async def test_a_pending_claim_of_another_process_is_waited_for_until_confirmed() -> None:
    store = SharedStore()
    states = JobStates(store, "ns:", state_ttl=60.0, claim_window=5.0)
    await _claimed_elsewhere(store, "k", "first", life=5.0)
    claim = asyncio.ensure_future(states.claim_idempotency("k", "second", ttl=60))
    await asyncio.sleep(0.1)
    assert not claim.done()  # the first job may still reach the broker
    await states.confirm_idempotency([("k", "first", 60.0, 0.0)])
    assert await asyncio.wait_for(claim, 2.0) == "first"


async def test_a_pending_claim_whose_producer_died_is_taken_once_it_lapses() -> None:
    store = SharedStore()
    states = JobStates(store, "ns:", state_ttl=60.0, claim_window=5.0)
    await _claimed_elsewhere(store, "k", "ghost", life=0.3)
    assert await asyncio.wait_for(states.claim_idempotency("k", "second", ttl=60), 3.0) is None
    await states.confirm_idempotency([("k", "second", 60.0, 0.0)])
    assert await states.claim_idempotency("k", "third", ttl=60) == "second"


async def test_a_pending_claim_released_by_its_failed_publish_is_taken() -> None:
    store = SharedStore()
    states = JobStates(store, "ns:", state_ttl=60.0, claim_window=5.0)
    await _claimed_elsewhere(store, "k", "refused", life=5.0)
    claim = asyncio.ensure_future(states.claim_idempotency("k", "second", ttl=60))
    await asyncio.sleep(0.1)
    await states.release_idempotency("k", "refused")
    assert await asyncio.wait_for(claim, 2.0) is None
