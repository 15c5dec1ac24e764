"""The queue's Lua scripts: every state change of a job is one atomic script.

Every queue script gets the ten keys of `QueueKeys.fixed` as KEYS, in this order:

1. ``jobs``        HASH  id -> encoded job (the payload)
2. ``ready``       ZSET  id scored ``(PRIORITY_MAX - priority) * 2^44 + seq``
3. ``delayed``     ZSET  id scored by the epoch-ms time it becomes ready
4. ``inflight``    ZSET  id scored by its epoch-ms lease deadline
5. ``score``       HASH  id -> the ready score it gets when it is (or becomes) ready;
                         a delivery's lease token is the score it was popped with
6. ``deliveries``  HASH  id -> how many of its deliveries ended without settling it
                         (requeued, retried, lease ran out); a job in flight is on
                         delivery that + 1. Absent for the usual job (delivered once and
                         acked), so a delivery writes nothing here.
7. ``retrying``    SET   ids whose job has retry_count > 0 (for count(RETRYING))
8. ``idem``        HASH  id -> "<expiry-ms>:<idempotency key>"; the key itself is the
                         STRING ``<idem>:<idempotency key>`` holding the first job id
9. ``seq``         STRING counter giving FIFO order within a priority
10. ``notify``     LIST  wake-up tokens; idle consumers BLPOP it

Invariant: a job id in ``jobs`` is in exactly one of ready / delayed / inflight, and a
script moves it between them in one step, so no crash can lose or duplicate it. The
clock is the server's (``TIME``), so consumers on different hosts agree on deadlines.

Scores stay below 2^53 (256 * 2^44 = 2^52), so doubles hold them exactly, and Redis
formats Lua numbers passed to commands with full precision.
"""

from __future__ import annotations

from lexigram.contracts.tasks import PRIORITY_MAX
from lexigram.tasks.backends.redis._connection import LuaScript
from lexigram.tasks.backends.redis._stores import RESULT_LUA

PRIORITY_UNIT = 2**44
"""Ready-score step between two priorities; the sequence fills the space below it."""

NOTIFY_CAP = 8
"""Most wake-up tokens kept in the notify list (each wakes one idle consumer)."""

_HEAD = f"""
local K_JOBS, K_READY, K_DELAYED, K_INFLIGHT = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_SCORE, K_DC, K_RETRYING, K_IDEM = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_SEQ, K_NOTIFY = KEYS[9], KEYS[10]
local PRIO_UNIT = {PRIORITY_UNIT}
local PRIO_MAX = {PRIORITY_MAX}
local NOTIFY_CAP = {NOTIFY_CAP}
"""

# Helper functions, in dependency order; each script includes only those it calls
# (defining unused Lua closures on every call costs measurable server time).
_HELPERS: dict[str, str] = {
    "now_ms": """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
""",
    "make_waiting": """
-- Put id into ready (or delayed when at is in the future) with a fresh sequence
-- number, so it goes behind the jobs of its priority that are already waiting.
-- Returns 1 when an idle consumer should look again: the job is ready, or it is now
-- the next delayed job to fall due (a blocked consumer must shorten its wait).
local function make_waiting(id, prio_part, at, now)
  local score = prio_part * PRIO_UNIT + redis.call('INCR', K_SEQ)
  redis.call('HSET', K_SCORE, id, score)
  if at > now then
    redis.call('ZADD', K_DELAYED, at, id)
    if redis.call('ZRANGE', K_DELAYED, 0, 0)[1] == id then return 1 end
    return 0
  end
  redis.call('ZADD', K_READY, score, id)
  return 1
end
""",
    "prio_part_of": """
local function prio_part_of(id)
  local s = redis.call('HGET', K_SCORE, id)
  if not s then return PRIO_MAX end
  return math.floor(tonumber(s) / PRIO_UNIT)
end
""",
    "notify": """
local function notify(n)
  local have = redis.call('LLEN', K_NOTIFY)
  local want = math.min(n, NOTIFY_CAP)
  for _ = have + 1, want do redis.call('RPUSH', K_NOTIFY, 1) end
end
""",
    "holds": """
-- Does `tok` hold the lease of id? A token is the ready score the delivery was popped
-- with: every placement (enqueue, requeue, retry, reclaim) gets a fresh one from the
-- sequence, so a token names exactly one delivery. With a token, a lease that ran out
-- (even if nobody took the job yet) no longer holds; without one ('') the job's
-- current delivery is acted on, whoever holds it.
local function holds(id, tok, now)
  local deadline = redis.call('ZSCORE', K_INFLIGHT, id)
  if not deadline then return false end
  if tok == '' then return true end
  if tonumber(deadline) <= now then return false end
  local s = tonumber(redis.call('HGET', K_SCORE, id) or '')
  local t = tonumber(tok)
  return s ~= nil and t ~= nil and s == t
end
""",
    "release_idem": """
-- An idempotency key is held without expiry while its job exists; when the job leaves,
-- it keeps its original TTL (from enqueue), or goes now if that already ran out.
local function release_idem(id, now)
  local v = redis.call('HGET', K_IDEM, id)
  if not v then return end
  redis.call('HDEL', K_IDEM, id)
  local sep = string.find(v, ':', 1, true)
  local exp = tonumber(string.sub(v, 1, sep - 1))
  local ik = K_IDEM .. ':' .. string.sub(v, sep + 1)
  if redis.call('GET', ik) == id then
    if exp <= now then
      redis.call('DEL', ik)
    else
      redis.call('PEXPIREAT', ik, math.ceil(exp))
    end
  end
end
""",
    "forget": """
local function forget(id, now)
  local existed = redis.call('HDEL', K_JOBS, id)
  redis.call('ZREM', K_READY, id)
  redis.call('ZREM', K_DELAYED, id)
  redis.call('ZREM', K_INFLIGHT, id)
  redis.call('HDEL', K_SCORE, id)
  redis.call('HDEL', K_DC, id)
  redis.call('SREM', K_RETRYING, id)
  release_idem(id, now)
  return existed
end
""",
}


def _prelude(*names: str) -> str:
    """The key/constant header plus the named helpers (in their dependency order)."""
    return _HEAD + "".join(_HELPERS[name] for name in _HELPERS if name in names)


# ARGV: max_size (0 = none), then per job 8 fields: id, payload, priority, ready-at ms
# (0 = now), idempotency key ('' = none), idempotency ttl ms, delivery count, retrying.
# Returns per job: status (1 added, 0 existing id or held key, -1 queue full), job id.
ENQUEUE = LuaScript(
    "enqueue",
    _prelude("now_ms", "make_waiting", "notify")
    + """
-- The clock is read only if a job needs it (a delay or an idempotency key).
local now = 0
local function clock()
  if now == 0 then now = now_ms() end
  return now
end
local max_size = tonumber(ARGV[1])
local waiting = -1
if max_size > 0 then
  waiting = redis.call('HLEN', K_JOBS) - redis.call('ZCARD', K_INFLIGHT)
end
local out = {}
local woke = 0

local function place(b, id)
  local dc = tonumber(ARGV[b + 6])
  if dc > 0 then redis.call('HSET', K_DC, id, dc) end
  if ARGV[b + 7] == '1' then redis.call('SADD', K_RETRYING, id) end
  local at = tonumber(ARGV[b + 3])
  local t = 0
  if at > 0 then t = clock() end
  woke = woke + make_waiting(id, PRIO_MAX - tonumber(ARGV[b + 2]), at, t)
  if waiting >= 0 then waiting = waiting + 1 end
end

for b = 2, #ARGV, 8 do
  local id = ARGV[b]
  local status, result = 0, id
  local ikey = ARGV[b + 4]
  if ikey == '' and max_size == 0 then
    -- The common case: one write both checks the id and stores the payload.
    if redis.call('HSETNX', K_JOBS, id, ARGV[b + 1]) == 1 then
      place(b, id)
      status = 1
    end
  elseif redis.call('HEXISTS', K_JOBS, id) == 0 then
    local ik = nil
    if ikey ~= '' then
      ik = K_IDEM .. ':' .. ikey
      local first = redis.call('GET', ik)
      -- A key held by this very id (the job left and is submitted again, e.g. a
      -- dead-lettered job retried) lets it in: it is that job, not a duplicate.
      if first and first ~= id
          and (redis.call('HEXISTS', K_JOBS, first) == 1 or redis.call('PTTL', ik) > 0) then
        result = first
        ik = false
      end
    end
    if ik ~= false then
      if max_size > 0 and waiting >= max_size then
        status = -1
      else
        if ik then
          redis.call('SET', ik, id)
          local exp = math.floor(clock() + tonumber(ARGV[b + 5]))
          redis.call('HSET', K_IDEM, id, string.format('%d', exp) .. ':' .. ikey)
        end
        redis.call('HSET', K_JOBS, id, ARGV[b + 1])
        place(b, id)
        status = 1
      end
    end
  end
  out[#out + 1] = status
  out[#out + 1] = result
end
if woke > 0 then notify(woke) end
return out
""",
)

# ARGV: max jobs, lease ms, max promotions/reclaims per call.
# Returns: {next_due, id1, payload1, deliveries1, token1, ...}; next_due is the ms until the
# next delayed job is due or lease expires (-1: none), so an idle consumer knows how
# long it may block.
DEQUEUE = LuaScript(
    "dequeue",
    _prelude("now_ms", "make_waiting", "prio_part_of")
    + """
local now = now_ms()
local limit = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  redis.call('ZREM', K_DELAYED, id)
  local s = redis.call('HGET', K_SCORE, id)
  if s then redis.call('ZADD', K_READY, s, id) end
end
local expired = redis.call('ZRANGEBYSCORE', K_INFLIGHT, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(expired) do
  redis.call('ZREM', K_INFLIGHT, id)
  redis.call('HINCRBY', K_DC, id, 1)
  make_waiting(id, prio_part_of(id), 0, now)
end
local out = {-1}
local max = tonumber(ARGV[1])
if max > 0 then
  local popped = redis.call('ZPOPMIN', K_READY, max)
  local deadline = now + tonumber(ARGV[2])
  for i = 1, #popped, 2 do
    local id = popped[i]
    local payload = redis.call('HGET', K_JOBS, id)
    if payload then
      redis.call('ZADD', K_INFLIGHT, deadline, id)
      out[#out + 1] = id
      out[#out + 1] = payload
      out[#out + 1] = tonumber(redis.call('HGET', K_DC, id) or '0') + 1
      out[#out + 1] = popped[i + 1]
    end
  end
end
if redis.call('ZCARD', K_READY) > 0 then
  if redis.call('LLEN', K_NOTIFY) == 0 then redis.call('RPUSH', K_NOTIFY, 1) end
else
  redis.call('DEL', K_NOTIFY)
end
local next_due = -1
local d = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
if #d > 0 then next_due = tonumber(d[2]) - now end
local f = redis.call('ZRANGE', K_INFLIGHT, 0, 0, 'WITHSCORES')
if #f > 0 then
  local x = tonumber(f[2]) - now
  if next_due < 0 or x < next_due then next_due = x end
end
if next_due >= 0 then next_due = math.ceil(next_due) end
out[1] = next_due
return out
""",
)

# ARGV: pairs of (id, token). Acks only in-flight jobs whose token holds the lease.
# Returns one 1 (acked) or 0 (refused: stale token, not in flight) per pair.
ACK = LuaScript(
    "ack",
    _prelude("now_ms", "holds", "release_idem", "forget")
    + """
local now = now_ms()
local out = {}
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if holds(id, ARGV[i + 1], now) then
    forget(id, now)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
""",
)

# KEYS: the ten queue keys, a result store's completed, failed and waiting indexes, then
# a result key and a notify key per job. ARGV: the results' ttl ms, then per job id,
# token, result json, success ('1' or '0'). Acks each delivery as ACK does and stores the
# result (as the store's own script does) of each one whose lease held. Returns 1 or 0
# per job.
ACK_AND_STORE = LuaScript(
    "ack_and_store",
    _prelude("now_ms", "holds", "release_idem", "forget")
    + RESULT_LUA
    + """
local now = now_ms()
local ttl = tonumber(ARGV[1])
local done, failed, waiting = KEYS[11], KEYS[12], KEYS[13]
local out = {}
local stored = false
for i = 0, (#ARGV - 1) / 4 - 1 do
  local id = ARGV[2 + 4 * i]
  if holds(id, ARGV[3 + 4 * i], now) then
    forget(id, now)
    store_result(done, failed, waiting, KEYS[14 + 2 * i], KEYS[15 + 2 * i], id,
      ARGV[4 + 4 * i], ARGV[5 + 4 * i], now, ttl)
    out[#out + 1] = 1
    stored = true
  else
    out[#out + 1] = 0
  end
end
if stored then trim_results(done, failed, waiting, now, ttl) end
return out
""",
)

# ARGV: id, token, requeue ('1' or '0').
NACK = LuaScript(
    "nack",
    _prelude("now_ms", "make_waiting", "prio_part_of", "notify", "holds", "release_idem", "forget")
    + """
local id = ARGV[1]
local now = now_ms()
if not holds(id, ARGV[2], now) then return 0 end
if ARGV[3] == '1' then
  redis.call('ZREM', K_INFLIGHT, id)
  redis.call('HINCRBY', K_DC, id, 1)
  make_waiting(id, prio_part_of(id), 0, now)
  notify(1)
else
  forget(id, now)
end
return 1
""",
)

# ARGV: id, token, payload, priority, delay ms, retrying ('1' or '0').
RETRY_LATER = LuaScript(
    "retry_later",
    _prelude("now_ms", "make_waiting", "notify", "holds")
    + """
local id = ARGV[1]
local now = now_ms()
if not holds(id, ARGV[2], now) then return 0 end
redis.call('ZREM', K_INFLIGHT, id)
redis.call('HINCRBY', K_DC, id, 1)
redis.call('HSET', K_JOBS, id, ARGV[3])
if ARGV[6] == '1' then
  redis.call('SADD', K_RETRYING, id)
else
  redis.call('SREM', K_RETRYING, id)
end
local delay = tonumber(ARGV[5])
local at = 0
if delay > 0 then at = now + delay end
if make_waiting(id, PRIO_MAX - tonumber(ARGV[4]), at, now) == 1 then notify(1) end
return 1
""",
)

# ARGV: id, token, lease ms. 1 = extended; 0 = not held (acked, deleted, stale token,
# or the lease already ran out: the job is then waiting for its next delivery).
EXTEND = LuaScript(
    "extend_lease",
    _prelude("now_ms", "holds")
    + """
local id = ARGV[1]
local now = now_ms()
if not holds(id, ARGV[2], now) then return 0 end
if tonumber(redis.call('ZSCORE', K_INFLIGHT, id)) <= now then return 0 end
redis.call('ZADD', K_INFLIGHT, now + tonumber(ARGV[3]), id)
return 1
""",
)

# ARGV: id. Removes the job wherever it is; 1 if it existed.
DELETE = LuaScript(
    "delete_job",
    _prelude("now_ms", "release_idem", "forget")
    + """
return forget(ARGV[1], now_ms())
""",
)

# ARGV: id, cancel channel. Removes the job wherever it is, as DELETE does, and
# announces it when a live lease held it. 0 = absent; 1 = it waited (or its lease had
# run out); 2 = it was in flight, and its id was published on the channel.
CANCEL = LuaScript(
    "cancel",
    _prelude("now_ms", "release_idem", "forget")
    + """
local id = ARGV[1]
local now = now_ms()
local deadline = redis.call('ZSCORE', K_INFLIGHT, id)
if forget(id, now) == 0 then return 0 end
if deadline and tonumber(deadline) > now then
  redis.call('PUBLISH', ARGV[2], id)
  return 2
end
return 1
""",
)

# ARGV: id. Returns {} when absent, else {payload, deliveries, leased (1/0)}.
GET = LuaScript(
    "get_job",
    _prelude("now_ms")
    + """
local id = ARGV[1]
local payload = redis.call('HGET', K_JOBS, id)
if not payload then return {} end
local dc = tonumber(redis.call('HGET', K_DC, id) or '0')
local deadline = redis.call('ZSCORE', K_INFLIGHT, id)
local leased = 0
if deadline then
  dc = dc + 1  -- delivered and not settled, even if its lease ran out
  if tonumber(deadline) > now_ms() then leased = 1 end
end
return {payload, dc, leased}
""",
)

# ARGV: mode: 'all', 'waiting', 'running' or 'retrying'. An in-flight job whose lease
# has expired counts as waiting: the next dequeue hands it out again.
COUNT = LuaScript(
    "count",
    _prelude("now_ms")
    + """
local mode = ARGV[1]
local now = now_ms()
local inflight = redis.call('ZCARD', K_INFLIGHT)
local expired = 0
if inflight > 0 then expired = redis.call('ZCOUNT', K_INFLIGHT, '-inf', now) end
if mode == 'running' then return inflight - expired end
local waiting = redis.call('ZCARD', K_READY) + redis.call('ZCARD', K_DELAYED) + expired
if mode == 'waiting' then return waiting end
if mode == 'all' then return waiting + inflight - expired end
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', K_RETRYING)) do
  local deadline = redis.call('ZSCORE', K_INFLIGHT, id)
  if not deadline or tonumber(deadline) <= now then n = n + 1 end
end
return n
""",
)

# ARGV: pairs of (id, new id). Gives a job in flight a new id, moving every record of
# it, unless the new id is taken; one 1 (renamed) or 0 per pair. For a job whose id is not
# UTF-8 text (only a foreign writer can store one), which no client could name again to
# settle it: the dequeue renames it to a printable id before handing it out as poison.
RENAME = LuaScript(
    "rename",
    _prelude()
    + """
local out = {}
for i = 1, #ARGV, 2 do
  local old, new = ARGV[i], ARGV[i + 1]
  local payload = redis.call('HGET', K_JOBS, old)
  local deadline = redis.call('ZSCORE', K_INFLIGHT, old)
  if payload and deadline and redis.call('HEXISTS', K_JOBS, new) == 0 then
    redis.call('HDEL', K_JOBS, old)
    redis.call('HSET', K_JOBS, new, payload)
    redis.call('ZREM', K_INFLIGHT, old)
    redis.call('ZADD', K_INFLIGHT, deadline, new)
    for _, hash in ipairs({K_SCORE, K_DC, K_IDEM}) do
      local v = redis.call('HGET', hash, old)
      if v then
        redis.call('HDEL', hash, old)
        redis.call('HSET', hash, new, v)
      end
    end
    if redis.call('SREM', K_RETRYING, old) == 1 then redis.call('SADD', K_RETRYING, new) end
    local v = redis.call('HGET', K_IDEM, new)
    if v then
      -- The idempotency key names its job: held without expiry while the job exists.
      local ik = K_IDEM .. ':' .. string.sub(v, string.find(v, ':', 1, true) + 1)
      if redis.call('GET', ik) == old then redis.call('SET', ik, new) end
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
""",
)

QUEUE_SCRIPTS = (
    ENQUEUE,
    DEQUEUE,
    ACK,
    ACK_AND_STORE,
    NACK,
    RETRY_LATER,
    EXTEND,
    DELETE,
    CANCEL,
    GET,
    COUNT,
)
"""Every queue script (loaded up front by `RedisTaskQueue.connect`)."""
