"""Unit tests of the job-state records (in-process store) and the ack coalescing."""

from __future__ import annotations

import logging

import pytest

from lexigram.contracts.tasks import POISON_JOB_NAME, CacheBackendProtocol, Job, encode_job
from lexigram.tasks.backends.rabbitmq import LocalStateStore
from lexigram.tasks.backends.rabbitmq._consumer import ChannelAcks, Delivery
from lexigram.tasks.backends.rabbitmq._state import Admission, JobStates


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_states(clock: Clock | None = None) -> JobStates:
    store = LocalStateStore(clock=clock or Clock())
    return JobStates(store, "ns:", state_ttl=60.0)


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
    assert await states.take_if_deleted("j1") is True
    assert await states.take_if_deleted("j1") is False
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
    states = make_states(clock)
    await states.claim_idempotency("k", "first", ttl=10)
    clock.now += 11
    assert await states.claim_idempotency("k", "second", ttl=10) is None


async def test_requeued_and_started_track_retries() -> None:
    states = make_states()
    await states.admit("j1", "{}", delay=0)
    await states.requeued("j1", '{"r":1}', retrying=True, delay=5)
    assert await states.count("retry") == 1
    assert await states.waiting_envelope("j1") == '{"r":1}'
    await states.started("j1", '{"r":1}', retried=True, lease=30.0)
    assert await states.count("retry") == 0
    assert await states.running_envelope("j1") == '{"r":1}'
    assert await states.running_ids() == ["j1"]
    await states.forget("j1")
    assert await states.count("run") == 0


async def test_running_record_lives_as_long_as_the_lease() -> None:
    """A worker that dies stops counting as RUNNING once its lease is over."""
    clock = Clock()
    states = make_states(clock)
    await states.started("j1", "{}", retried=False, lease=5.0)
    clock.now += 4
    await states.renewed("j1", "{}", 5.0)  # a heartbeat
    clock.now += 4
    assert await states.count("run") == 1
    clock.now += 2  # no heartbeat for a whole lease: the holder is gone
    assert await states.count("run") == 0
    assert await states.running_envelope("j1") is None
    await states.started("j2", "{}", retried=False, lease=5.0)
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
    return Delivery(message, acks_with(set(), set()))  # type: ignore[arg-type]


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
    assert delivery.restamp is False
