"""A consumer's background AMQP call outlives the cancellation of its caller.

Closing a queue cancels the consumer's background work (going idle, resizing the
prefetch), often in the middle of a ``basic.cancel`` or ``basic.qos``. aiormq answers a
cancelled call by closing the channel with a WARNING of its own, which showed up on
shutdowns under load. `whole_rpc` lets the call finish instead. Both halves run on a real
broker behind a proxy that holds back the reply until the caller has been cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiormq
import pytest
import pytest_asyncio
from aiormq.abc import AbstractChannel, DeliveredMessage

from lexigram.tasks.backends.rabbitmq._delivery import closing_started
from lexigram.tasks.backends.rabbitmq._whole_rpc import whole_rpc

pytestmark = pytest.mark.rabbitmq

TcpProxy = Any  # the `broker_proxy` fixture's type lives in the top conftest.py


async def ignore(_message: DeliveredMessage) -> None:
    return None


@pytest_asyncio.fixture
async def consuming(
    amqp_url: str, broker_proxy: TcpProxy, queue_name: str
) -> AsyncIterator[tuple[AbstractChannel, str]]:
    """A channel through the proxy consuming a queue of this test, and its consumer tag."""
    connection = await aiormq.connect(broker_proxy.url(amqp_url))
    try:
        channel = await connection.channel()
        await channel.queue_declare(queue_name)
        ok = await channel.basic_consume(queue_name, ignore)
        assert ok.consumer_tag is not None
        yield channel, ok.consumer_tag
    finally:
        broker_proxy.resume()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), 5.0)
        direct = await aiormq.connect(amqp_url)
        try:
            await (await direct.channel()).queue_delete(queue_name)
        finally:
            await direct.close()


async def cancel_while_the_reply_is_held(
    broker_proxy: TcpProxy, call: Any, *, resume: bool = True
) -> None:
    """Start `call`, hold the broker's reply, cancel the caller, then let the reply through."""
    broker_proxy.pause()
    caller = asyncio.ensure_future(call)
    await asyncio.sleep(0.2)  # the frame is written; its reply waits in the proxy
    assert not caller.done()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    if resume:
        broker_proxy.resume()


def aiormq_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("aiormq") and record.levelno >= logging.WARNING
    ]


async def test_a_cancelled_caller_leaves_the_call_to_finish_and_the_channel_open(
    consuming: tuple[AbstractChannel, str],
    broker_proxy: TcpProxy,
    queue_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel, tag = consuming
    caplog.set_level(logging.WARNING)

    await cancel_while_the_reply_is_held(broker_proxy, whole_rpc(channel.basic_cancel(tag)))

    # The channel is open and usable, and the cancel reached the broker.
    await asyncio.wait_for(channel.basic_qos(prefetch_count=3), 5.0)
    declared = await asyncio.wait_for(channel.queue_declare(queue_name, passive=True), 5.0)
    assert declared.consumer_count == 0
    assert not channel.is_closed
    assert aiormq_warnings(caplog) == []


async def test_a_cancelled_bare_call_closes_the_channel_with_a_warning(
    consuming: tuple[AbstractChannel, str],
    broker_proxy: TcpProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What `whole_rpc` prevents, checked on the aiormq in use (an upgrade may change it)."""
    channel, tag = consuming
    caplog.set_level(logging.WARNING)

    await cancel_while_the_reply_is_held(broker_proxy, channel.basic_cancel(tag))

    with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
        await asyncio.wait_for(channel.basic_qos(prefetch_count=3), 5.0)
    assert any("because RPC call" in line for line in aiormq_warnings(caplog))


async def test_a_call_the_broker_never_answers_is_given_up_so_the_close_does_not_wait(
    consuming: tuple[AbstractChannel, str], broker_proxy: TcpProxy
) -> None:
    """A paused broker: the abandoned call is cancelled after its grace, and the channel's
    close (queued behind it) returns then instead of waiting for the reply."""
    channel, tag = consuming
    await cancel_while_the_reply_is_held(
        broker_proxy, whole_rpc(channel.basic_cancel(tag), finish_within=0.3), resume=False
    )
    assert not closing_started(channel)  # still within the grace
    await asyncio.sleep(0.5)
    assert closing_started(channel)  # given up: aiormq sent Channel.Close
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(channel.close(), 5.0)
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_a_call_that_fails_after_its_caller_left_is_not_reported_as_unretrieved(
    consuming: tuple[AbstractChannel, str], broker_proxy: TcpProxy
) -> None:
    """The connection drops while the abandoned call waits: its failure is read, not leaked."""
    channel, tag = consuming
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        await cancel_while_the_reply_is_held(broker_proxy, whole_rpc(channel.basic_cancel(tag)))
        abandoned = whole_rpc(channel.basic_qos(prefetch_count=4))
        await cancel_while_the_reply_is_held(broker_proxy, abandoned, resume=False)
        await broker_proxy.cut()  # the reply never comes: the call fails on the dead link
        with contextlib.suppress(Exception):
            await asyncio.wait_for(channel.connection.closing, 5.0)
        await asyncio.sleep(0.1)
        gc.collect()  # a never-retrieved exception is reported when its future is collected
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert [context.get("message") for context in unhandled] == []
