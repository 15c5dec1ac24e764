"""aiormq's own "closing" flag, read on a real channel: the one a paused broker leaves behind.

When an RPC on a channel times out, aiormq sends Channel.Close and refuses acks at once,
while ``is_closed`` waits for the broker's CloseOk. The backend reads aiormq's flag for
that state (`closing_started`); this checks on a real broker, reached through a proxy
that stops passing the broker's frames (as a paused broker sends none), that the flag is
still where the backend looks: an aiormq upgrade that moves it fails here instead of
silently bringing back duplicate runs after a broker pause.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import aiormq
import pytest

from lexigram.tasks.backends.rabbitmq._delivery import ChannelAcks, closing_started

pytestmark = pytest.mark.rabbitmq


class MutedProxy:
    """A TCP proxy to the broker whose broker-to-client direction can be held."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.replies = asyncio.Event()  # set: the broker's bytes pass
        self.replies.set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, gated: bool
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if gated:
                    await self.replies.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection(*self._target)
        for pipe in (
            self._pipe(client_r, broker_w, gated=False),
            self._pipe(broker_r, client_w, gated=True),
        ):
            task = asyncio.ensure_future(pipe)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            self.replies.set()
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_a_timed_out_rpc_marks_the_channel_closing_before_it_is_closed(
    amqp_url: str,
) -> None:
    parts = urlsplit(amqp_url)
    proxy = MutedProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    async with proxy.running() as port:
        netloc = parts.netloc.rsplit("@", 1)
        address = f"127.0.0.1:{port}"
        via = f"{netloc[0]}@{address}" if len(netloc) == 2 else address
        connection = await aiormq.connect(urlunsplit(parts._replace(netloc=via)))
        try:
            channel = await connection.channel()
            acks = ChannelAcks(channel, in_order=True)
            assert not closing_started(channel)
            assert acks.alive

            proxy.replies.clear()  # the broker "pauses": nothing it sends arrives
            with pytest.raises(asyncio.TimeoutError):
                await channel.basic_qos(prefetch_count=5, timeout=0.2)
            await asyncio.sleep(0.05)  # aiormq sends its Channel.Close in the failure path

            assert not channel.is_closed  # no CloseOk read: aiormq still calls it open
            assert closing_started(channel)
            assert not acks.alive
            with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
                await channel.basic_ack(1)
        finally:
            proxy.replies.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5.0)
