"""Enqueue that answers Ok only once replicas hold the job (``WAIT`` after the script).

Redis replicates asynchronously: the primary answers a write before any replica has it,
so a failover right after an enqueue can promote a replica that never saw the job. With
``wait_for_replicas=N`` the queue sends ``WAIT N <timeout>`` right behind its enqueue
script, on the same connection: WAIT counts the replicas that acknowledged everything
that connection wrote so far, so a reply of at least N covers the job. Both commands
are written together, so a reconnect can never slip between them (a WAIT on a fresh
connection would cover nothing and still answer with every connected replica).

Fewer than N replicas within the timeout raises `BackendConnectionError` (reason
``replication``): the job is on the primary and may well run, but a failover now could
lose it, so the caller hears the same as for any lost reply and may retry (with the
same job id or idempotency key a retry adds nothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from lexigram.contracts.tasks import BackendConnectionError, TaskConfigurationError
from lexigram.tasks.backends.redis._connection import LuaScript, RedisConnector
from lexigram.tasks.backends.redis._mux import MuxClient
from redis import exceptions as rexc


class NotReplicated(Exception):  # noqa: N818 - an outcome, not a failure of the code
    """Fewer replicas than asked confirmed an enqueue.

    Not an OSError, so `RedisConnector.call` does not retry it (a retry would run the
    enqueue script again); the queue raises `ReplicaWait.error` instead.
    """

    def __init__(self, acked: int) -> None:
        super().__init__(acked)
        self.acked = acked


class ReplicaWait:
    """The ``WAIT`` step of a queue's enqueue (see the module doc).

    Args:
        replicas: How many replicas must hold a job before enqueue answers (1 or more).
        timeout: Seconds WAIT may block; keep it well below ``command_timeout``. While it
            blocks, the process's other commands on the shared connection wait too.
        masked_url: The URL to name in errors (password masked).
    """

    __slots__ = ("_masked_url", "replicas", "timeout", "timeout_ms")

    def __init__(self, replicas: int, timeout: float, masked_url: str) -> None:
        if replicas < 1:
            msg = f"Redis wait_for_replicas={replicas!r} is below 1. Use 0 to not wait, or >= 1."
            raise TaskConfigurationError(msg, details={"option": "wait_for_replicas"})
        if not timeout > 0 or not math.isfinite(timeout):
            msg = (
                f"Redis replication_timeout={timeout!r} is not a positive number of seconds. "
                "Use e.g. 1.0."
            )
            raise TaskConfigurationError(msg, details={"option": "replication_timeout"})
        self.replicas = replicas
        self.timeout = float(timeout)
        self.timeout_ms = max(1, math.ceil(timeout * 1000))
        self._masked_url = masked_url

    async def call(
        self, connector: RedisConnector, script: LuaScript, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """`run` through the connector's retry policy (a lost reply runs both again).

        Raises:
            BackendConnectionError: The server is unreachable, or fewer replicas than
                asked confirmed in time (reason ``replication``).
        """
        try:
            return await connector.call(
                script.name, lambda client: self.run(client, script, keys, args), fast=True
            )
        except NotReplicated as exc:
            raise self.error(exc.acked) from None

    async def run(
        self, client: Any, script: LuaScript, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """Run `script`, then WAIT on the same connection; return the script's reply.

        Raises:
            NotReplicated: Fewer replicas than asked confirmed in time (`error` gives
                what to raise to the caller).
        """
        reply, acked = await self._send(client, script, keys, args)
        if isinstance(reply, rexc.NoScriptError):
            # A new primary after a failover has not seen the script yet.
            await client.script_load(script.text)
            reply, acked = await self._send(client, script, keys, args)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(acked, BaseException):
            raise acked
        if int(acked) < self.replicas:
            raise NotReplicated(int(acked))
        return reply

    def error(self, acked: int) -> BackendConnectionError:
        """The error an enqueue that only `acked` replicas confirmed raises."""
        msg = (
            f"Redis at {self._masked_url} stored the enqueued job on the primary, but only "
            f"{acked} of {self.replicas} replicas confirmed it within {self.timeout:g} s "
            "(wait_for_replicas). It may still run; a failover now could lose it. Retry "
            "with the same job id or idempotency key, and check the replicas "
            "(INFO replication)."
        )
        return BackendConnectionError(
            msg, url=self._masked_url, operation="enqueue", transient=True, reason="replication"
        )

    async def _send(
        self, client: Any, script: LuaScript, keys: Sequence[str], args: Sequence[Any]
    ) -> tuple[Any, Any]:
        evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
        wait = ("WAIT", self.replicas, self.timeout_ms)
        if isinstance(client, MuxClient):
            futures = await client.send_many(evalsha, wait)
            replies: list[Any] = []
            for future in futures:
                try:
                    replies.append(await future)
                except rexc.ResponseError as exc:
                    replies.append(exc)
            return replies[0], replies[1]
        # A redis-py pipeline runs on one pooled connection.
        async with client.pipeline(transaction=False) as pipe:
            pipe.execute_command(*evalsha)
            pipe.execute_command(*wait)
            first, second = await pipe.execute(raise_on_error=False)
        return first, second
