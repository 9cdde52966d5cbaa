"""RedisStore: the TaskStore contract on Redis 7, through redis-py's asyncio client.

Data layout (every key starts with the ``prefix`` option, ``taskbench:`` by default):

``{prefix}task:{id}``
    A hash per task, one field per :class:`~taskbench.model.Task` attribute
    (``id``, ``name``, ``payload``, ``priority``, ``status``, ``attempts``,
    ``max_attempts``, ``run_at``, ``created_at``, ``started_at``,
    ``finished_at``, ``lease_owner``, ``lease_expires_at``, ``last_error``,
    ``result``) plus ``seq``, its arrival number. An attribute that is None
    has no field.
``{prefix}queued:{0..3}``
    The queued tasks, one sorted set per priority band. The score is
    ``run_at``; the member is the 16-digit arrival number followed by the id,
    so members with an equal score sort by arrival. A claim scans the bands
    from 3 (critical) down and takes ``ZRANGEBYSCORE -inf now``: priority,
    then run_at, then arrival, exactly, with no folding of two numbers into
    one double.
``{prefix}running``
    Sorted set of running task ids scored by lease expiry.
``{prefix}dead``
    Sorted set of dead letters scored by ``finished_at``, members as in the
    queue (so equal times list in arrival order).
``{prefix}succeeded``
    Set of succeeded task ids (for counts and purge).
``{prefix}seq``
    The arrival counter (INCRBY once per enqueued batch).
``{prefix}fence``
    The store's fencing record, a hash: ``issued``, the newest epoch
    ``issue_epoch`` handed out, and ``seen``, the newest epoch a fenced write
    carried (see :mod:`taskbench.stores.base`, "Fencing"). Absent fields are 0.
``{prefix}wakeup``
    A short list of wake-up tokens: writes that make work available LPUSH
    one token per task made available (at most ``WAKE_TOKENS`` = 64 are
    kept, see the Lua prelude); ``wait_for_work`` BLPOPs one, on a client
    of its own whose connections are used for nothing else. A claim trims
    the list to the number of tasks still due (none left: no token), so a
    claim of k tasks does not leave k - 1 tokens behind to wake waiters
    for empty claims.

Design rules:

* Every write (enqueue, claim, finish, extend, release, requeue_expired,
  requeue_abandoned, requeue_dead, purge, issue_epoch) is one Lua script run
  with EVALSHA, once per batch, so it is atomic and costs one round trip.
  Reads of several keys are scripts too.
* The fixed keys go in ``KEYS``; everything else (ids, names, payloads,
  owners, the task-hash prefix) goes in ``ARGV``, so a hostile name or payload
  is data, never code. Task hashes are addressed as prefix + id inside the
  scripts because a claim only learns the ids there; on Redis Cluster put a
  hash tag in the prefix (``{tb}:``) so every key lives in one slot.
* A batch travels as one JSON argument (an array of arrays of strings, null
  for None) that the script decodes with ``cjson``; tasks come back as one
  JSON reply. One bulk string each way instead of ~15 per task: redis-py's
  pure-Python packing and parsing was the bottleneck (several-fold slower).
* Floats travel as Python ``repr`` strings (never as JSON numbers) and are
  stored and used as scores verbatim: Lua never does arithmetic on them, so
  every double round-trips exactly.
* A fenced write checks and moves the fence at the start of its script, before
  any other write: a refused epoch leaves everything as it was, and the
  script replies ``{'stale', seen}`` instead of ``{'applied', count}``.
  Epochs are at most ``MAX_EPOCH`` (2**53 - 1), exact as Lua numbers;
  ``issue_epoch`` counts with ``HINCRBY``.
* At most ``max_connections`` script calls run at once; more callers wait
  for a slot (a semaphore) instead of failing.
* No automatic retries: a script whose reply was lost may have run, and
  retrying it (an enqueue, say) would misreport; the caller decides.
* Driver errors become :mod:`taskbench.errors` at the boundary, with the URL
  redacted and the password scrubbed from the server's message.

Durability: the store declares PERSISTENT because tasks outlive every client
process. How much survives a crash of the *server* depends on its
configuration: with ``appendonly yes`` and ``appendfsync always`` an
acknowledged write is on disk; ``everysec`` may lose about a second; with AOF
off only RDB snapshots (or nothing) remain. The reliability study measures it.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from taskbench.errors import (
    ConfigError,
    InvalidTaskError,
    MissingDependencyError,
    StoreError,
    StoreUnavailableError,
    TaskbenchError,
)
from taskbench.model import Lease, Outcome, Task, TaskPriority, TaskStatus
from taskbench.stores.base import (
    ABANDONED,
    EXPIRED,
    BaseStore,
    Capability,
    stale_epoch,
    wait_timeout,
)

try:
    import redis.asyncio as aioredis
    from redis import exceptions as redis_errors
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.commands.core import AsyncScript
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(
        "redis:// needs the redis package: pip install 'taskbench[redis]'"
    ) from None

_MIN_BLOCK_S = 0.001
"""Redis reads a BLPOP timeout that rounds to 0 ms as "forever"; below this we poll once."""

_STRUCTURE_KEYS = (
    "queued:0",
    "queued:1",
    "queued:2",
    "queued:3",
    "running",
    "dead",
    "succeeded",
    "seq",
    "wakeup",
    "fence",
)
_WAKEUP_KEY = _STRUCTURE_KEYS.index("wakeup")
_TASK_KEYS = "task:"
_ALL_STATUSES = [s.value for s in TaskStatus]
_AUTH_REFUSALS = ("NOAUTH", "WRONGPASS", "invalid password")

# -- Lua ------------------------------------------------------------------------------
# LUA_PRELUDE is prepended to every script: the key names and the helpers they share.

LUA_PRELUDE = """
local TASK = ARGV[1]
local QUEUED = {KEYS[1], KEYS[2], KEYS[3], KEYS[4]}
local RUNNING, DEAD, SUCCEEDED, SEQ, WAKEUP = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local FENCE = KEYS[10]
local WAKE_TOKENS = 64

-- a queue or dead-letter member: arrival number first, so equal scores keep arrival order
local function entry(seq, id)
  return string.format('%016d', tonumber(seq)) .. id
end

local function entry_id(member)
  return string.sub(member, 17)
end

-- the task hash as a field -> value table, or nil if there is no such task
local function task_of(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  local task = {}
  for i = 1, #flat, 2 do task[flat[i]] = flat[i + 1] end
  return task
end

-- tasks as one JSON array of objects of strings: one bulk reply, parsed in C by the client
local function as_json(tasks)
  if #tasks == 0 then return '[]' end  -- cjson writes an empty table as {}
  return cjson.encode(tasks)
end

-- a batch arrives as ARGV[2]: a JSON array of arrays of strings (null for None)
local function batch()
  return cjson.decode(ARGV[2])
end

local function optional(value)
  if value == cjson.null then return nil end
  return value
end

local function set_or_clear(key, field, value)
  if value == nil then
    redis.call('HDEL', key, field)
  else
    redis.call('HSET', key, field, value)
  end
end

local function is_held(key, attempt, owner)
  local f = redis.call('HMGET', key, 'status', 'attempts', 'lease_owner')
  return f[1] == 'running' and f[2] == attempt and f[3] == owner
end

local function schedule(key, id)
  local f = redis.call('HMGET', key, 'priority', 'run_at', 'seq')
  redis.call('ZADD', QUEUED[tonumber(f[1]) + 1], f[2], entry(f[3], id))
end

-- back to the queue at run_at (attempts are the caller's business)
local function requeue(key, id, run_at)
  redis.call('HSET', key, 'status', 'queued', 'run_at', run_at)
  redis.call('HDEL', key, 'finished_at', 'lease_owner', 'lease_expires_at')
  schedule(key, id)
end

local function bury(key, id, finished_at)
  redis.call('HSET', key, 'status', 'dead', 'finished_at', finished_at)
  redis.call('HDEL', key, 'lease_owner', 'lease_expires_at')
  redis.call('ZADD', DEAD, finished_at, entry(redis.call('HGET', key, 'seq'), id))
end

-- a running task whose lease is lost (expired, abandoned): requeued at now, or dead
-- after its last attempt, with last_error saying why
local function lose_lease(id, now, reason)
  local key = TASK .. id
  local f = redis.call('HMGET', key, 'attempts', 'max_attempts', 'lease_owner')
  redis.call('HSET', key, 'last_error',
    'lease of attempt ' .. f[1] .. ' held by ' .. f[3] .. ' ' .. reason)
  if tonumber(f[1]) >= tonumber(f[2]) then bury(key, id, now) else requeue(key, id, now) end
end

-- the fence, checked before a fenced write ('' for an unfenced one): the newest epoch
-- seen if it refuses this epoch; else false, having made this epoch the newest seen
local function refused_by(epoch)
  if epoch == '' then return false end
  local seen = tonumber(redis.call('HGET', FENCE, 'seen') or '0')
  if tonumber(epoch) < seen then return seen end
  redis.call('HSET', FENCE, 'seen', epoch)
  return false
end

local function wake(count)
  for _ = 1, math.min(count, WAKE_TOKENS) do
    redis.call('LPUSH', WAKEUP, '1')
  end
  redis.call('LTRIM', WAKEUP, 0, WAKE_TOKENS - 1)
end

-- after a claim: keep at most one wake-up token per task still due. The tokens of the
-- tasks just claimed are spent; left behind, each would wake a waiter for an empty claim.
local function drop_spent_tokens(now)
  local due = 0
  for band = 1, 4 do due = due + redis.call('ZCOUNT', QUEUED[band], '-inf', now) end
  if due == 0 then
    redis.call('DEL', WAKEUP)
  else
    redis.call('LTRIM', WAKEUP, 0, due - 1)
  end
end
"""

LUA_ENQUEUE = """
-- batch: per task {id, name, payload, priority, max_attempts, run_at, created_at}.
-- Returns the first id already stored (having written nothing), or nil.
local tasks = batch()
for _, t in ipairs(tasks) do
  if redis.call('EXISTS', TASK .. t[1]) == 1 then return t[1] end
end
local seq = redis.call('INCRBY', SEQ, #tasks) - #tasks
for _, t in ipairs(tasks) do
  local id, priority, run_at = t[1], t[4], t[6]
  seq = seq + 1
  redis.call('HSET', TASK .. id, 'id', id, 'name', t[2], 'payload', t[3],
    'priority', priority, 'max_attempts', t[5], 'run_at', run_at,
    'created_at', t[7], 'status', 'queued', 'attempts', 0, 'seq', seq)
  redis.call('ZADD', QUEUED[tonumber(priority) + 1], run_at, entry(seq, id))
end
wake(#tasks)
return false
"""

LUA_CLAIM = """
-- ARGV[2] limit, ARGV[3] now, ARGV[4] worker, ARGV[5] lease expiry.
-- Highest band first; within a band the due prefix of the sorted set.
local limit, now, worker, expires = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local claimed = {}

local function lease(id)
  local key = TASK .. id
  local task = task_of(key)
  task.attempts = tostring(tonumber(task.attempts) + 1)
  task.status, task.started_at = 'running', now
  task.lease_owner, task.lease_expires_at = worker, expires
  redis.call('HSET', key, 'status', 'running', 'attempts', task.attempts, 'started_at', now,
    'lease_owner', worker, 'lease_expires_at', expires)
  redis.call('ZADD', RUNNING, expires, id)
  claimed[#claimed + 1] = task
end

for band = 4, 1, -1 do
  local room = limit - #claimed
  if room <= 0 then break end
  local due = redis.call('ZRANGEBYSCORE', QUEUED[band], '-inf', now, 'LIMIT', 0, room)
  if #due > 0 then
    redis.call('ZREMRANGEBYRANK', QUEUED[band], 0, #due - 1)
    for _, member in ipairs(due) do lease(entry_id(member)) end
  end
end
drop_spent_tokens(now)
return as_json(claimed)
"""

LUA_FINISH = """
-- batch: per outcome {id, attempt, owner, status, finished_at, result, error, run_at}
-- (the last three may be null). Applies only outcomes whose lease is current.
local applied, retried = 0, 0

local function succeed(key, id, finished_at)
  redis.call('HSET', key, 'status', 'succeeded', 'finished_at', finished_at)
  redis.call('HDEL', key, 'lease_owner', 'lease_expires_at')
  redis.call('SADD', SUCCEEDED, id)
end

local function apply(key, id, status, finished_at, result, err, run_at)
  if status == 'queued' then
    set_or_clear(key, 'last_error', err)
    requeue(key, id, run_at)
    retried = retried + 1
    return
  end
  set_or_clear(key, 'result', result)
  if err ~= nil then redis.call('HSET', key, 'last_error', err) end
  if status == 'dead' then bury(key, id, finished_at) else succeed(key, id, finished_at) end
end

for _, o in ipairs(batch()) do
  local id = o[1]
  local key = TASK .. id
  if is_held(key, o[2], o[3]) then
    redis.call('ZREM', RUNNING, id)
    apply(key, id, o[4], o[5], optional(o[6]), optional(o[7]), optional(o[8]))
    applied = applied + 1
  end
end
if retried > 0 then wake(retried) end
return applied
"""

LUA_EXTEND = """
-- ARGV[3] the new expiry; batch: per lease {id, attempt, owner}.
local expires, extended = ARGV[3], 0
for _, lease in ipairs(batch()) do
  local key = TASK .. lease[1]
  if is_held(key, lease[2], lease[3]) then
    redis.call('HSET', key, 'lease_expires_at', expires)
    redis.call('ZADD', RUNNING, expires, lease[1])
    extended = extended + 1
  end
end
return extended
"""

LUA_RELEASE = """
-- batch: per lease {id, attempt, owner}. Requeued at the same run_at, attempt given back.
local released = 0
for _, lease in ipairs(batch()) do
  local id = lease[1]
  local key = TASK .. id
  if is_held(key, lease[2], lease[3]) then
    redis.call('ZREM', RUNNING, id)
    redis.call('HINCRBY', key, 'attempts', -1)
    requeue(key, id, redis.call('HGET', key, 'run_at'))
    released = released + 1
  end
end
if released > 0 then wake(released) end
return released
"""

LUA_REQUEUE_EXPIRED = """
-- ARGV[2] now, ARGV[3] the reason, ARGV[4] the epoch ('' unfenced).
-- Leases that expired before now: requeued at now, or dead after the last attempt.
local now, reason = ARGV[2], ARGV[3]
local seen = refused_by(ARGV[4])
if seen then return {'stale', seen} end
local expired = redis.call('ZRANGEBYSCORE', RUNNING, '-inf', '(' .. now)
for _, id in ipairs(expired) do lose_lease(id, now, reason) end
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', RUNNING, '-inf', '(' .. now)
  wake(#expired)
end
return {'applied', #expired}
"""

LUA_REQUEUE_ABANDONED = """
-- batch: the live workers' names; ARGV[3] now, ARGV[4] the reason, ARGV[5] the epoch.
-- Running tasks whose owner is not live: requeued at now, or dead after the last attempt.
local now, reason = ARGV[3], ARGV[4]
local seen = refused_by(ARGV[5])
if seen then return {'stale', seen} end
local live = {}
for _, worker in ipairs(batch()) do live[worker] = true end
local lost = {}
for _, id in ipairs(redis.call('ZRANGE', RUNNING, 0, -1)) do
  if not live[redis.call('HGET', TASK .. id, 'lease_owner')] then lost[#lost + 1] = id end
end
for _, id in ipairs(lost) do
  redis.call('ZREM', RUNNING, id)
  lose_lease(id, now, reason)
end
if #lost > 0 then wake(#lost) end
return {'applied', #lost}
"""

LUA_ISSUE_EPOCH = """
-- A new epoch, above every epoch issued or seen here.
local f = redis.call('HMGET', FENCE, 'issued', 'seen')
if f[2] and tonumber(f[2]) > tonumber(f[1] or '0') then
  redis.call('HSET', FENCE, 'issued', f[2])
end
return redis.call('HINCRBY', FENCE, 'issued', 1)
"""

LUA_REQUEUE_DEAD = """
-- batch: the ids to requeue, or null for every dead task; ARGV[3] now.
-- Dead tasks get a fresh set of attempts and are due at now.
local now, ids = ARGV[3], batch()
if ids == cjson.null then
  ids = {}
  for _, member in ipairs(redis.call('ZRANGE', DEAD, 0, -1)) do ids[#ids + 1] = entry_id(member) end
end
local count = 0
for _, id in ipairs(ids) do
  local key = TASK .. id
  local f = redis.call('HMGET', key, 'status', 'seq')
  if f[1] == 'dead' then
    redis.call('ZREM', DEAD, entry(f[2], id))
    redis.call('HSET', key, 'attempts', 0)
    requeue(key, id, now)
    count = count + 1
  end
end
if count > 0 then wake(count) end
return count
"""

LUA_PURGE = """
-- ARGV[2..]: the statuses whose tasks are deleted. Returns how many were.
local function ids_in(index, is_entry)
  local members = redis.call('ZRANGE', index, 0, -1)
  if is_entry then
    for i, member in ipairs(members) do members[i] = entry_id(member) end
  end
  return members
end

local function doomed(status)
  if status == 'running' then return {{RUNNING, ids_in(RUNNING, false)}} end
  if status == 'dead' then return {{DEAD, ids_in(DEAD, true)}} end
  if status == 'succeeded' then return {{SUCCEEDED, redis.call('SMEMBERS', SUCCEEDED)}} end
  local bands = {}
  for band = 1, 4 do bands[band] = {QUEUED[band], ids_in(QUEUED[band], true)} end
  return bands
end

local purged = 0
for at = 2, #ARGV do
  for _, group in ipairs(doomed(ARGV[at])) do
    for _, id in ipairs(group[2]) do redis.call('DEL', TASK .. id) end
    purged = purged + #group[2]
    redis.call('DEL', group[1])
  end
end
return purged
"""

LUA_GET_MANY = """
-- batch: ids. Returns those that exist.
local found = {}
for _, id in ipairs(batch()) do
  local task = task_of(TASK .. id)
  if task then found[#found + 1] = task end
end
return as_json(found)
"""

LUA_LIST_DEAD = """
-- ARGV[2] limit. The oldest dead letters, oldest first.
local found = {}
for _, member in ipairs(redis.call('ZRANGE', DEAD, 0, tonumber(ARGV[2]) - 1)) do
  found[#found + 1] = task_of(TASK .. entry_id(member))
end
return as_json(found)
"""

LUA_COUNTS = """
-- Returns the queued, running, succeeded and dead counts, in one snapshot.
local queued = 0
for band = 1, 4 do queued = queued + redis.call('ZCARD', QUEUED[band]) end
return {queued, redis.call('ZCARD', RUNNING), redis.call('SCARD', SUCCEEDED),
  redis.call('ZCARD', DEAD)}
"""

_SCRIPTS = {
    "enqueue": LUA_ENQUEUE,
    "claim": LUA_CLAIM,
    "finish": LUA_FINISH,
    "extend": LUA_EXTEND,
    "release": LUA_RELEASE,
    "requeue_expired": LUA_REQUEUE_EXPIRED,
    "requeue_abandoned": LUA_REQUEUE_ABANDONED,
    "issue_epoch": LUA_ISSUE_EPOCH,
    "requeue_dead": LUA_REQUEUE_DEAD,
    "purge": LUA_PURGE,
    "get_many": LUA_GET_MANY,
    "list_dead": LUA_LIST_DEAD,
    "counts": LUA_COUNTS,
}


# -- conversions ----------------------------------------------------------------------


def _number(value: float) -> str:
    """A double as text that parses back to exactly the same double."""
    return repr(float(value))


def _float_or_none(text: str | None) -> float | None:
    return None if text is None else float(text)


def _task_from(fields: dict[str, str]) -> Task:
    """A Task from its hash's fields (absent fields are None)."""
    get = fields.get
    return Task(
        id=fields["id"],
        name=fields["name"],
        payload_json=fields["payload"],
        priority=TaskPriority(int(fields["priority"])),
        status=TaskStatus(fields["status"]),
        attempts=int(fields["attempts"]),
        max_attempts=int(fields["max_attempts"]),
        run_at=float(fields["run_at"]),
        created_at=float(fields["created_at"]),
        started_at=_float_or_none(get("started_at")),
        finished_at=_float_or_none(get("finished_at")),
        lease_owner=get("lease_owner"),
        lease_expires_at=_float_or_none(get("lease_expires_at")),
        last_error=get("last_error"),
        result_json=get("result"),
    )


def _tasks_from(reply: str) -> list[Task]:
    """Tasks from a script's JSON reply (an array of field -> value objects)."""
    return [_task_from(fields) for fields in json.loads(reply)]


def _batch(rows: object) -> str:
    """A script's batch argument: JSON, raw UTF-8 (which Lua's cjson passes through)."""
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def _task_row(task: Task) -> list[str]:
    return [
        task.id,
        task.name,
        task.payload_json,
        str(int(task.priority)),
        str(task.max_attempts),
        _number(task.run_at),
        _number(task.created_at),
    ]


def _lease_row(lease: Lease) -> list[str]:
    return [lease.task_id, str(lease.attempt), lease.owner]


def _outcome_row(outcome: Outcome) -> list[str | None]:
    return [
        *_lease_row(outcome.lease),
        outcome.status.value,
        _number(outcome.finished_at),
        outcome.result_json,
        outcome.error,
        None if outcome.run_at is None else _number(outcome.run_at),
    ]


def _epoch_arg(epoch: int | None) -> str:
    return "" if epoch is None else str(epoch)


def _fenced_count(reply: list[Any], epoch: int | None) -> int:
    """The count of a fenced script's ``{'applied', count}``, or StaleEpochError for
    ``{'stale', seen}``."""
    outcome, number = reply
    if outcome == "stale" and epoch is not None:
        raise stale_epoch(epoch, int(number))
    return int(number)


# -- options --------------------------------------------------------------------------


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str) or not prefix or len(prefix) > 200:
        raise ConfigError(
            f"prefix must be a non-empty string of at most 200 characters: {prefix!r}"
        )
    return prefix


def _check_timeout(seconds: object) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ConfigError(f"socket_timeout must be a number of seconds, got {seconds!r}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"socket_timeout must be a positive number of seconds, got {seconds!r}")
    return float(seconds)


def _check_connections(count: object) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10_000:
        raise ConfigError(f"max_connections must be an integer from 1 to 10000, got {count!r}")
    return count


def _check_database(url: str, shown: str) -> None:
    """The URL path names the database: empty, ``/`` or ``/<number>``."""
    database = urlsplit(url).path.strip("/")
    if database and not (database.isdigit() and database.isascii()):
        raise ConfigError(
            f"Redis URL {shown!r}: the path must be a database number, not {database!r}"
        )


class RedisStore(BaseStore):
    """A store on a Redis 7 server: one hash per task, sorted sets as indexes, Lua writes."""

    capabilities = (
        Capability.PERSISTENT
        | Capability.MULTI_PROCESS
        | Capability.MULTI_HOST
        | Capability.PRIORITY_ORDER
        | Capability.WAKEUP
        | Capability.TRANSACTIONAL
    )
    driver_errors = (redis_errors.RedisError, OSError)

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "taskbench:",
        socket_timeout: float = 10.0,
        max_connections: int = 50,
    ) -> None:
        super().__init__(url)
        self.prefix = _check_prefix(prefix)
        self._socket_timeout = _check_timeout(socket_timeout)
        self._max_connections = _check_connections(max_connections)
        _check_database(url, self.url)
        # Encoded once: redis-py passes bytes through instead of encoding them per call.
        self._keys = [(self.prefix + name).encode() for name in _STRUCTURE_KEYS]
        self._task_prefix = (self.prefix + _TASK_KEYS).encode()
        self._client = self._connect(socket_timeout=self._socket_timeout, pool_size=None)
        self._slots = asyncio.Semaphore(self._max_connections)
        # Each waiter holds a connection of its own while it blocks, outside the slots.
        self._blocking = self._connect(socket_timeout=None, pool_size=None)
        self._scripts = {
            name: self._client.register_script(LUA_PRELUDE + body)
            for name, body in _SCRIPTS.items()
        }

    def _connect(self, *, socket_timeout: float | None, pool_size: int | None) -> aioredis.Redis:
        """A client (not yet connected) owning a pool of at most ``pool_size`` connections."""
        try:
            pool = aioredis.ConnectionPool.from_url(
                self._url.partition("?")[0],
                decode_responses=True,
                socket_timeout=socket_timeout,
                socket_connect_timeout=self._socket_timeout,
                max_connections=pool_size,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise ConfigError(f"malformed Redis URL {self.url!r}: {self._scrub(exc)}") from None
        return aioredis.Redis.from_pool(pool)

    # -- errors -----------------------------------------------------------------------

    def _scrub(self, error: BaseException | str) -> str:
        """The text of ``error`` with the URL's password, if any, replaced by ``***``."""
        text = str(error)
        password = urlsplit(self._url).password
        for secret in {password, unquote(password or "")} - {None, ""}:
            text = text.replace(str(secret), "***")
        return text

    def translate(self, error: BaseException) -> TaskbenchError:
        message = self._scrub(error)
        if isinstance(error, redis_errors.AuthenticationError) or (
            isinstance(error, redis_errors.ResponseError)
            and any(word in message for word in _AUTH_REFUSALS)
        ):
            return StoreUnavailableError(f"Redis at {self.url} refused the credentials: {message}")
        if isinstance(error, redis_errors.ConnectionError | redis_errors.TimeoutError | OSError):
            return StoreUnavailableError(f"cannot reach Redis at {self.url}: {message}")
        return StoreError(f"Redis at {self.url} failed ({type(error).__name__}): {message}")

    # -- plumbing ---------------------------------------------------------------------

    async def _run(self, script: str, *args: str | bytes) -> Any:
        """Run one script: the fixed keys, then the task-hash prefix and ``args``."""
        call: AsyncScript = self._scripts[script]
        async with self._slots:  # callers beyond max_connections queue here, not fail
            return await call(keys=self._keys, args=[self._task_prefix, *args])

    async def _open(self) -> None:
        await self._client.ping()
        for script in self._scripts.values():
            await self._client.script_load(script.script)

    async def _close(self) -> None:
        await self._client.aclose()
        await self._blocking.aclose()

    # -- storage calls ----------------------------------------------------------------

    async def _enqueue(self, tasks: Sequence[Task]) -> None:
        clash = await self._run("enqueue", _batch([_task_row(t) for t in tasks]))
        if clash is not None:
            raise InvalidTaskError(f"task id already stored: {clash!r}")

    async def _claim(self, worker: str, limit: int, lease_s: float, now: float) -> list[Task]:
        expires = _number(now + lease_s)
        return _tasks_from(await self._run("claim", str(limit), _number(now), worker, expires))

    async def _finish(self, outcomes: Sequence[Outcome]) -> int:
        applied: int = await self._run("finish", _batch([_outcome_row(o) for o in outcomes]))
        return applied

    async def _extend(self, leases: Sequence[Lease], expires_at: float) -> int:
        rows = _batch([_lease_row(lease) for lease in leases])
        extended: int = await self._run("extend", rows, _number(expires_at))
        return extended

    async def _release(self, leases: Sequence[Lease]) -> int:
        released: int = await self._run("release", _batch([_lease_row(x) for x in leases]))
        return released

    async def _issue_epoch(self) -> int:
        epoch: int = await self._run("issue_epoch")
        return epoch

    async def _requeue_expired(self, now: float, epoch: int | None) -> int:
        reply = await self._run("requeue_expired", _number(now), EXPIRED, _epoch_arg(epoch))
        return _fenced_count(reply, epoch)

    async def _requeue_abandoned(self, live: list[str], now: float, epoch: int | None) -> int:
        args = (_batch(live), _number(now), ABANDONED, _epoch_arg(epoch))
        return _fenced_count(await self._run("requeue_abandoned", *args), epoch)

    async def _get_many(self, ids: list[str]) -> list[Task]:
        return _tasks_from(await self._run("get_many", _batch(ids)))

    async def _counts(self) -> dict[TaskStatus, int]:
        queued, running, succeeded, dead = await self._run("counts")
        return {
            TaskStatus.QUEUED: queued,
            TaskStatus.RUNNING: running,
            TaskStatus.SUCCEEDED: succeeded,
            TaskStatus.DEAD: dead,
        }

    async def _list_dead(self, limit: int) -> list[Task]:
        return _tasks_from(await self._run("list_dead", str(limit)))

    async def _requeue_dead(self, ids: list[str] | None, now: float) -> int:
        requeued: int = await self._run("requeue_dead", _batch(ids), _number(now))
        return requeued

    async def _purge(self, statuses: list[TaskStatus] | None) -> int:
        wanted = _ALL_STATUSES if statuses is None else [s.value for s in set(statuses)]
        purged: int = await self._run("purge", *wanted)
        return purged

    async def wait_for_work(self, timeout: float) -> None:
        """Block on the wake-up list (BLPOP) until a token arrives or ``timeout`` passes.

        Runs on the blocking pool, so a waiter never holds a connection that
        claims and finishes need. A token left by an earlier write returns at
        once: a wake-up is a hint that work *may* be there, never lost.
        """
        wakeup, timeout = self._keys[_WAKEUP_KEY], wait_timeout(timeout)
        if timeout < _MIN_BLOCK_S:
            await self._call(self._blocking.lpop(wakeup))
            return
        blocked = self._blocking.blpop([wakeup], timeout=timeout)
        try:
            await self._call(asyncio.wait_for(blocked, timeout + self._socket_timeout))
        except TimeoutError:
            raise StoreUnavailableError(
                f"Redis at {self.url} did not answer a {timeout:g} s BLPOP within "
                f"{self._socket_timeout:g} s more"
            ) from None
