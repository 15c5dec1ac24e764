"""Lease renewal for a worker's lease keeper: one script call renews every held lease.

The renewer runs on the keeper's thread and event loop with a connector of its own (a
`RedisConnector.detached` copy), so neither a blocked worker loop nor the queue's
multiplexed connection stands between the leases and Redis.
"""

from __future__ import annotations

from collections.abc import Sequence

from lexigram.tasks.backends.redis._connection import LuaScript, RedisConnector
from lexigram.tasks.backends.redis._scripts import _prelude

# ARGV: lease ms, then per lease: id, token. Returns per lease 1 (extended) or 0 (not
# held under that token: settled, deleted, delivered again, or its lease ran out).
EXTEND_MANY = LuaScript(
    "extend_leases",
    _prelude("now_ms", "holds")
    + """
local now = now_ms()
local ms = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if ARGV[i + 1] ~= '' and holds(id, ARGV[i + 1], now) then
    redis.call('ZADD', K_INFLIGHT, now + ms, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
""",
)


class RedisLeaseRenewer:
    """`LeaseRenewerProtocol` for one Redis queue: its own connector, one script per batch.

    Args:
        connector: A connector of its own (see `RedisConnector.detached`).
        keys: The queue's fixed keys (`QueueKeys.fixed`).
    """

    def __init__(self, connector: RedisConnector, keys: Sequence[str]) -> None:
        self._connector = connector
        self._keys = list(keys)

    async def renew(self, leases: Sequence[tuple[str, str]], seconds: float) -> list[str]:
        """Extend every lease still held under its token; return the ids of the others."""
        if not leases:
            return []
        args: list[str | int] = [max(1, round(seconds * 1000))]
        for job_id, token in leases:
            args += (job_id, token)
        keys = self._keys
        answers = await self._connector.call(
            "renew leases", lambda client: EXTEND_MANY(client, keys, args), fast=True
        )
        return [job_id for (job_id, _), kept in zip(leases, answers, strict=True) if not kept]

    async def close(self) -> None:
        """Close the renewer's connections."""
        await self._connector.close()
