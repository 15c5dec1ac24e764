"""A succeeded job's ack and its stored result in one script call.

A worker settles a succeeded job with an ack, then a write to its result store: two
scripts, and two awaits in the worker for every job. When the worker's result store is
a `RedisResultStore` on the queue's own connection, `RedisTaskQueue.result_acker` gives
it an `AckAndStore` instead: ``ACK_AND_STORE`` acks each delivery exactly as ``ACK`` does
and, only for the deliveries whose lease held, writes the result exactly as the store's
own script does, in the same atomic step. Calls made while one is in flight go together
(group commit), like acks.

Only for a connection the queue's connector built: an injected client may be a Redis
Cluster's, where the queue's keys and the store's live in different slots that no one
script may touch together; such a worker acks, then stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from lexigram.contracts.tasks import JobResult
from lexigram.tasks.backends.redis import _scripts as lua
from lexigram.tasks.backends.redis._batch import GroupCommit
from lexigram.tasks.backends.redis._connection import LuaScript
from lexigram.tasks.backends.redis._stores import ResultKeys

# Most deliveries one script call settles (as many as the acks' own batches).
_BATCH = 200

Runner = Callable[..., Awaitable[Any]]
"""The queue's script runner: ``run(script, args, keys=...)``."""


class AckAndStore:
    """Acks deliveries and stores their jobs' results together (a `ResultAcker`).

    Args:
        run: The queue's script runner (its connection, retries and error messages).
        fixed: The queue's ten keys, in the order its scripts expect them.
        keys: Where the result store writes.
    """

    def __init__(self, run: Runner, fixed: Sequence[str], keys: ResultKeys) -> None:
        self.keys = keys
        self._run = run
        self._fixed = list(fixed)
        self._commit: GroupCommit[tuple[str, str, str, str], bool] = GroupCommit(
            self._settle, _BATCH
        )
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, job_id: str, result: JobResult, lease_token: str | None) -> bool:
        """Ack the delivery of `job_id` and store `result` if its lease held.

        Returns:
            What `RedisTaskQueue.ack` returns: True if the delivery held its lease (the job
            is gone and its result stored), False (nothing changed) otherwise.
        """
        data = result.to_json(of=job_id)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a batch in flight belongs to the loop that sent it
            self._commit.reset()
            self._loop = loop
        return await self._commit.submit(
            (job_id, lease_token or "", data, "1" if result.success else "0")
        )

    def reset(self) -> None:
        """Forget a batch in flight (the queue closed, or moved to another loop)."""
        self._commit.reset()
        self._loop = None

    async def _settle(self, items: list[tuple[str, str, str, str]]) -> list[bool]:
        keys = self.keys
        script_keys = [*self._fixed, keys.completed, keys.failed, keys.waiting]
        args: list[Any] = [keys.ttl_ms]
        result_prefix, notify_prefix = keys.result_prefix, keys.notify_prefix
        for job_id, token, data, success in items:
            script_keys += (result_prefix + job_id, notify_prefix + job_id)
            args += (job_id, token, data, success)
        script: LuaScript = lua.ACK_AND_STORE
        return [bool(held) for held in await self._run(script, args, keys=script_keys)]
