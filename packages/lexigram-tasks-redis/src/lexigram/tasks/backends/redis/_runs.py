"""Queue-driven workflow runs on Redis: one hash per run, joined by Lua scripts.

A run's hash ``{<prefix>:workflows}:run:<id>`` holds ``def`` (the definition as
JSON), ``status``, ``result``, ``error``, ``created``/``updated`` (epoch seconds),
and per step ``s:<stage>:<member>`` (its record as JSON); per stage ``n:<stage>``
counts the recorded steps and ``c:<stage>`` names the member that completed it, and
``j:<stage>`` holds the record of its enqueued jobs (their ids); ``failer`` names the
step that failed the run. Each script reads and writes the one hash, so a join is
atomic whichever worker runs it.

`list_runs` reads the run index: the ZSET ``{<prefix>:workflows}:runs`` of every run's
id scored by its creation time, and one ZSET ``runs:<status>`` per status. The script
that creates a run, fails it, finishes it or deletes it updates them with the hash, so
they never disagree with it; they share the hash tag, so this holds on Redis Cluster.
Runs written before the index existed are indexed once, by the first `list_runs` that
finds no ``runs:indexed`` marker (see `RedisWorkflowRuns.list_runs`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lexigram.contracts.tasks import WorkflowStatus, json_for_storage
from lexigram.tasks.backends.redis._base import RedisStore, loads
from lexigram.tasks.backends.redis._connection import LuaScript

_INDEX_BATCH = 500
"""Run keys the one-time indexing of earlier runs files per script call."""

_RUNNING = WorkflowStatus.RUNNING.value
_FAILED = WorkflowStatus.FAILED.value

_STATUSES = (
    WorkflowStatus.RUNNING.value,
    WorkflowStatus.COMPLETED.value,
    WorkflowStatus.FAILED.value,
)
"""The statuses a run takes, each with its ZSET ``runs:<status>`` (order: `_INDEX` KEYS)."""


def _run_dict(workflow_id: str, raw: dict[bytes, bytes]) -> dict[str, Any] | None:
    """A run as `load_run` returns it, from its hash (None: no run, or one being deleted)."""
    fields = {name.decode(): value for name, value in raw.items()}
    if "def" not in fields:
        return None
    steps = {name[2:]: loads(value) for name, value in fields.items() if name.startswith("s:")}
    jobs = {name[2:]: loads(value) for name, value in fields.items() if name.startswith("j:")}
    result = fields.get("result")
    error = fields.get("error")
    failer = fields.get("failer")  # the step's field, "s:<stage>:<member>"
    return {
        "workflow_id": workflow_id,
        "definition": loads(fields["def"]),
        "status": fields["status"].decode(),
        "steps": steps,
        "jobs": jobs,
        "result": None if result is None else loads(result),
        "error": None if error is None else error.decode(),
        "created_at": float(fields["created"]),
        "updated_at": float(fields["updated"]),
        "failed_step": None if failer is None else failer.decode()[2:],
    }


# KEYS: run, runs, runs:running. ARGV: definition json, now, id. Returns 1 when
# created, 0 when the run exists.
_CREATE = LuaScript(
    "workflow_create",
    """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'def', ARGV[1], 'status', 'running', 'created', ARGV[2],
  'updated', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
return 1
""",
)

# ARGV: stage, member, size, record json, now. Returns the stage's records (in member
# order) to the step that completed the stage and to its repeats, else 0.
_RECORD = LuaScript(
    "workflow_record",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local stage = ARGV[1]
if redis.call('HSETNX', KEYS[1], 's:' .. stage .. ':' .. ARGV[2], ARGV[4]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'n:' .. stage, 1)
  redis.call('HSET', KEYS[1], 'updated', ARGV[5])
end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
local size = tonumber(ARGV[3])
if tonumber(redis.call('HGET', KEYS[1], 'n:' .. stage)) < size then return 0 end
redis.call('HSETNX', KEYS[1], 'c:' .. stage, ARGV[2])
if redis.call('HGET', KEYS[1], 'c:' .. stage) ~= ARGV[2] then return 0 end
local out = {}
for i = 0, size - 1 do
  out[i + 1] = redis.call('HGET', KEYS[1], 's:' .. stage .. ':' .. i)
end
return out
""",
)

# KEYS: run, runs:running, runs:failed. ARGV: stage, member, record json, error, now,
# id. Returns 1 to the step that failed the run.
_FAIL = LuaScript(
    "workflow_fail",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local field = 's:' .. ARGV[1] .. ':' .. ARGV[2]
redis.call('HSETNX', KEYS[1], field, ARGV[3])
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'error', ARGV[4], 'failer', field,
    'updated', ARGV[5])
  redis.call('ZREM', KEYS[2], ARGV[6])
  redis.call('ZADD', KEYS[3], redis.call('HGET', KEYS[1], 'created'), ARGV[6])
end
if redis.call('HGET', KEYS[1], 'failer') == field then return 1 end
return 0
""",
)

# ARGV: stage, record json. Only into an existing run: a run deleted meanwhile must not
# come back as a hash without a definition.
_JOBS = LuaScript(
    "workflow_jobs",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'j:' .. ARGV[1], ARGV[2])
return 1
""",
)

# KEYS: run, runs:running, runs:completed. ARGV: result json, now, id.
_FINISH = LuaScript(
    "workflow_finish",
    """
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'completed', 'result', ARGV[1], 'updated', ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZADD', KEYS[3], redis.call('HGET', KEYS[1], 'created'), ARGV[3])
end
return 1
""",
)

# KEYS: run, then the index ZSETs. ARGV: id.
_DELETE = LuaScript(
    "workflow_delete",
    """
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
""",
)

# Files runs in the index as their hashes say, or takes them out when the hash is gone:
# the one-time indexing of earlier runs, and the repair of the entries `list_runs` found
# stale. KEYS: runs, runs:running, runs:completed, runs:failed (as `_STATUSES`), then
# the run keys. ARGV: the three statuses, then the ids of those runs.
_INDEX = LuaScript(
    "workflow_index",
    """
for i = 5, #KEYS do
  local id = ARGV[i - 1]
  local created = redis.call('HGET', KEYS[i], 'created')
  if created and redis.call('HEXISTS', KEYS[i], 'def') == 1 then
    local state = redis.call('HGET', KEYS[i], 'status')
    redis.call('ZADD', KEYS[1], created, id)
    for j = 2, 4 do
      if ARGV[j - 1] == state then
        redis.call('ZADD', KEYS[j], created, id)
      else
        redis.call('ZREM', KEYS[j], id)
      end
    end
  else
    for j = 1, 4 do redis.call('ZREM', KEYS[j], id) end
  end
end
return 1
""",
)


class RedisWorkflowRuns(RedisStore):
    """`JobRecordingWorkflowRunStoreProtocol` on Redis: the base of `RedisWorkflowStateStore`.

    It is a `ListingWorkflowRunStoreProtocol` too.
    """

    def _run_key(self, workflow_id: str) -> str:
        return self.namespace.key("run", workflow_id)

    def _index_key(self, status: str | None = None) -> str:
        """The run index: every run (`status` None), or the runs in `status`."""
        return self.namespace.key("runs") if status is None else self.namespace.key("runs", status)

    @property
    def _indexed_key(self) -> str:
        """The marker set once the runs written before the index existed are in it."""
        return self.namespace.key("runs", "indexed")

    @property
    def _index_keys(self) -> tuple[str, ...]:
        """Every index ZSET, in the order `_INDEX` takes them."""
        return (self._index_key(), *(self._index_key(status) for status in _STATUSES))

    async def create_run(self, workflow_id: str, definition: Mapping[str, Any]) -> bool:
        """Store a new RUNNING run (and index it, in the same script); False when the id exists."""
        keys = (self._run_key(workflow_id), self._index_key(), self._index_key(_RUNNING))
        args = (
            json_for_storage(dict(definition), what=f"workflow {workflow_id}"),
            repr(time.time()),
            workflow_id,
        )
        created = await self._call("create_run", lambda c: _CREATE(c, keys, args))
        return bool(created)

    async def record_step(
        self,
        workflow_id: str,
        stage: int,
        member: int,
        *,
        size: int,
        record: Mapping[str, Any],
    ) -> list[dict[str, Any]] | None:
        """Record a success; the stage's records to the step that completed the stage."""
        keys = (self._run_key(workflow_id),)
        data = json_for_storage(
            dict(record), what=f"step {stage}:{member} of workflow {workflow_id}"
        )
        args = (stage, member, size, data, repr(time.time()))
        answer = await self._call("record_step", lambda c: _RECORD(c, keys, args))
        if not isinstance(answer, list):
            return None
        return [loads(raw) for raw in answer]

    async def record_jobs(self, workflow_id: str, stage: int, record: Mapping[str, Any]) -> None:
        """Keep (or replace) the record of a stage's jobs; no-op when the run is absent."""
        keys = (self._run_key(workflow_id),)
        data = json_for_storage(
            dict(record), what=f"jobs of stage {stage} of workflow {workflow_id}"
        )
        args = (stage, data)
        await self._call("record_jobs", lambda c: _JOBS(c, keys, args))

    async def fail_step(
        self, workflow_id: str, stage: int, member: int, *, record: Mapping[str, Any]
    ) -> bool:
        """Record a failed step; True to the step that failed the run."""
        keys = (self._run_key(workflow_id), self._index_key(_RUNNING), self._index_key(_FAILED))
        data = json_for_storage(
            dict(record), what=f"step {stage}:{member} of workflow {workflow_id}"
        )
        error = str(record.get("error") or "")
        args = (stage, member, data, error, repr(time.time()), workflow_id)
        return bool(await self._call("fail_step", lambda c: _FAIL(c, keys, args)))

    async def finish_run(self, workflow_id: str, result: Any) -> None:
        """Mark a RUNNING run COMPLETED with its result."""
        keys = (
            self._run_key(workflow_id),
            self._index_key(_RUNNING),
            self._index_key(WorkflowStatus.COMPLETED.value),
        )
        args = (
            json_for_storage(result, what=f"result of workflow {workflow_id}"),
            repr(time.time()),
            workflow_id,
        )
        await self._call("finish_run", lambda c: _FINISH(c, keys, args))

    async def load_run(self, workflow_id: str) -> dict[str, Any] | None:
        """Return a run, or None; ``failed_step`` names the step that failed it."""
        key = self._run_key(workflow_id)
        raw: dict[bytes, bytes] = await self._call("load_run", lambda c: c.hgetall(key))
        return _run_dict(workflow_id, raw) if raw else None

    async def list_runs(
        self, *, status: WorkflowStatus | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Return at most `limit` runs, newest first, each as `load_run` returns it.

        The page comes from the run index (``runs``, or ``runs:<status>``), newest
        first, the id breaking ties (highest first): one read of `limit` entries and
        one pipeline of their hashes, however many keys the database holds. An entry
        whose run is gone (its hash expired, or was deleted by hand or by a version
        without the index) is left out and removed, and the index read on past it.

        The first call on a namespace without the ``runs:indexed`` marker first indexes
        the runs already there, which an earlier version wrote unindexed: one SCAN of
        the database, then the marker is set. Delete the marker to index them again
        (after a rolling upgrade during which earlier versions still created runs).
        """
        if limit < 1:
            return []
        wanted = None if status is None else WorkflowStatus(status).value
        index = self._index_key(wanted)

        async def read(client: Any) -> list[dict[str, Any]]:
            runs: list[dict[str, Any]] = []
            seen: dict[bytes, float] = {}
            top: float | str = "+inf"
            while len(runs) < limit:
                # Read on from the score of the last entry seen, inclusive (entries of
                # equal score may follow it): entries removed or added meanwhile shift
                # nothing, and the ones seen already come back first and are skipped.
                count = limit - len(runs) + sum(1 for score in seen.values() if score == top)
                async with client.pipeline(transaction=False) as pipe:
                    pipe.exists(self._indexed_key)
                    pipe.zrevrangebyscore(index, top, "-inf", 0, count, withscores=True)
                    indexed, page = await pipe.execute()
                if not indexed:
                    await self._index_earlier_runs(client)
                    continue
                fresh = [(member, score) for member, score in page if member not in seen]
                # Entries removed by the last repair let more through than are missing.
                fresh = fresh[: limit - len(runs)]
                if not fresh:
                    break
                seen.update(fresh)
                runs.extend(await self._load_listed(client, [m for m, _ in fresh], wanted))
                if len(page) < count:
                    break  # the index holds no more
                top = fresh[-1][1]
            return runs

        return await self._call("list_runs", read)

    async def _load_listed(
        self, client: Any, members: list[bytes], wanted: str | None
    ) -> list[dict[str, Any]]:
        """The runs of index entries `members` (in `wanted`, if given), in their order.

        An entry whose run is gone, or no longer in `wanted`, is filed again as its hash
        says now: removed when the hash is gone, left where it is when the run changed
        status after the index was read (its script filed it already).
        """
        prefix = self._run_key("").encode()
        async with client.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.hgetall(prefix + member)
            hashes = await pipe.execute()
        runs: list[dict[str, Any]] = []
        misfiled: list[str] = []
        for member, raw in zip(members, hashes, strict=True):
            workflow_id = member.decode()
            run = _run_dict(workflow_id, raw) if raw else None
            if run is not None and wanted in (None, run["status"]):
                runs.append(run)
            else:
                misfiled.append(self._run_key(workflow_id))
        if misfiled:
            await self._index(client, misfiled)
        return runs

    async def _index(self, client: Any, run_keys: list[str]) -> None:
        """File the runs of `run_keys` in the index as their hashes say (out, if gone)."""
        start = len(self._run_key(""))
        keys = (*self._index_keys, *run_keys)
        await _INDEX(client, keys, (*_STATUSES, *(key[start:] for key in run_keys)))

    async def _index_earlier_runs(self, client: Any) -> None:
        """Index every run of the namespace (found by SCAN), then set the marker.

        Indexing is idempotent and each batch one script, so processes doing it at once
        (or one that dies half-way and a later call that starts over) agree.
        """
        batch: list[str] = []
        async for key in client.scan_iter(match=self.namespace.pattern("run", ""), count=1000):
            batch.append(key.decode())
            if len(batch) == _INDEX_BATCH:
                await self._index(client, batch)
                batch = []
        if batch:
            await self._index(client, batch)
        await client.set(self._indexed_key, b"1")

    async def delete_run(self, workflow_id: str) -> None:
        """Delete a run and its index entries (no-op when absent)."""
        keys = (self._run_key(workflow_id), *self._index_keys)
        await self._call("delete_run", lambda c: _DELETE(c, keys, (workflow_id,)))
