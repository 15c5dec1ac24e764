"""How the idle consumers of one queue object learn there is work again.

A NOTIFY on the queue's channel (a new or requeued job, with the delay of a delayed
one) raises a generation counter and wakes every waiter; a consumer that sees the
counter moved while it queried looks again at once. Delayed jobs and other consumers'
leases send no NOTIFY when they fall due, so an idle consumer also probes for the next
due job once per safety-net interval and sleeps no longer than until then. One LISTEN
connection per process and DSN serves every queue object (`Listener`).
"""

from __future__ import annotations

import asyncio

from lexigram.tasks.backends.postgres._connection import Database, Listener, payload_delay
from lexigram.tasks.backends.postgres._options import PostgresTaskConfig
from lexigram.tasks.backends.postgres._sql import QueueSQL


class Wakeups:
    """LISTEN, the wake-up generation and the next due time of one queue object.

    Args:
        db: The queue's database (for the next-due probe).
        sql: The queue's statements.
        config: The queue's configuration (name, DSN, safety-net poll interval).
        channel: The queue's NOTIFY channel.
        can_listen: False when there is no DSN to LISTEN with (an external pool only).
    """

    def __init__(
        self,
        db: Database,
        sql: QueueSQL,
        config: PostgresTaskConfig,
        channel: str,
        *,
        can_listen: bool,
    ) -> None:
        self._db = db
        self._sql = sql
        self.config = config
        self._channel = channel
        self._can_listen = can_listen
        self._listener: Listener | None = None
        self.closed = False
        # A generation counter and the event the current waiters sleep on.
        self.generation = 0
        self.wake = asyncio.Event()
        self.due_at: float | None = None  # loop time of the next due job we know of
        self.probe_at = 0.0  # loop time of the next "next due job" probe
        self.empty_generation = -1  # wake-up generation at the last take that found nothing

    async def ensure_listening(self) -> None:
        """LISTEN on the queue's channel (once; never after `close`, nor without a DSN)."""
        if self._listener is not None or not self._can_listen or self.closed:
            return
        listener = await Listener.acquire(self.config.dsn, self.config.connect_timeout)
        if self._has_listener() or self.closed:
            await listener.release()
            return
        self._listener = listener
        await listener.subscribe(self._channel, self._on_notify)

    async def idle_wait(self, remaining: float, now: float) -> float:
        """Seconds an idle consumer may sleep before it must look again."""
        # Without LISTEN (no DSN, or the listener is reconnecting) poll at least every second.
        limit = self.config.poll_interval if self.listening else 1.0
        if now >= self.probe_at:
            # Delayed jobs and other consumers' leases announce no NOTIFY when they fall
            # due: one index probe per safety-net interval (or once a due time passed)
            # finds the next one. New delayed jobs announce their due time by NOTIFY.
            due = await self._seconds_until_due()
            self.probe_at = now + limit
            if due is not None:
                self._set_due(now + due)
        wait = min(remaining, limit)
        if self.due_at is not None:
            wait = min(wait, self.due_at - now)
        return wait

    def _set_due(self, due: float) -> None:
        if self.due_at is None or due < self.due_at:
            self.due_at = due

    def _has_listener(self) -> bool:
        return self._listener is not None

    @property
    def listening(self) -> bool:
        """True while NOTIFYs of the queue's channel arrive (the listener is connected)."""
        return self._listener is not None and self._listener.connected

    async def _seconds_until_due(self) -> float | None:
        value = await self._db.run(
            lambda conn: conn.fetchval(self._sql.next_due, self.config.queue_name),
            "look up the next delayed job",
        )
        return None if value is None else max(float(value), 0.0)

    def _on_notify(self, payload: str | None) -> None:
        if payload is None:
            self.probe_at = 0.0  # LISTEN reconnected: notifications may have been lost
        delay = payload_delay(payload)
        if delay is not None and delay > 0:
            # A delayed job: remember when it falls due, and let waiters recompute.
            self._set_due(asyncio.get_running_loop().time() + delay)
        self.notify_waiters()

    def notify_waiters(self) -> None:
        """Wake every consumer waiting now (they look at the queue again)."""
        self.generation += 1
        wake, self.wake = self.wake, asyncio.Event()
        wake.set()

    def close(self) -> None:
        """Wake every waiter and listen no more (the queue is closing)."""
        self.closed = True
        self.notify_waiters()

    async def stop_listening(self) -> None:
        """Give the shared LISTEN connection back."""
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.unsubscribe(self._channel, self._on_notify)
            await listener.release()
