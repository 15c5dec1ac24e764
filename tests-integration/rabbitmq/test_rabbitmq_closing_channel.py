"""aiormq's own "closing" flag, read on a real channel: the one a paused broker leaves behind.

When an RPC on a channel times out, aiormq sends Channel.Close and refuses acks at once,
while ``is_closed`` waits for the broker's CloseOk. The backend reads aiormq's flag for
that state (`closing_started`); this checks on a real broker, reached through a proxy
that holds back every frame (as a paused broker answers none), that the flag is still
where the backend looks: an aiormq upgrade that moves it fails here instead of silently
bringing back duplicate runs after a broker pause.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiormq
import pytest

from lexigram.tasks.backends.rabbitmq._delivery import ChannelAcks, closing_started

pytestmark = pytest.mark.rabbitmq

TcpProxy = Any  # the `broker_proxy` fixture's type lives in the top conftest.py


async def test_a_timed_out_rpc_marks_the_channel_closing_before_it_is_closed(
    amqp_url: str, broker_proxy: TcpProxy
) -> None:
    connection = await aiormq.connect(broker_proxy.url(amqp_url))
    try:
        channel = await connection.channel()
        acks = ChannelAcks(channel, in_order=True)
        assert not closing_started(channel)
        assert acks.alive

        broker_proxy.pause()  # the broker "pauses": no frame passes either way
        with pytest.raises(asyncio.TimeoutError):
            await channel.basic_qos(prefetch_count=5, timeout=0.2)
        await asyncio.sleep(0.05)  # aiormq sends its Channel.Close in the failure path

        assert not channel.is_closed  # no CloseOk read: aiormq still calls it open
        assert closing_started(channel)
        assert not acks.alive
        with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
            await channel.basic_ack(1)
    finally:
        broker_proxy.resume()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), 5.0)
