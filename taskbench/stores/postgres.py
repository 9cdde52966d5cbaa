"""PostgresStore: the task store on PostgreSQL, through asyncpg.

What this module owns: the connection pool, the schema (created at open from
:mod:`taskbench.stores.schema`), the SQL of every storage call, the
LISTEN/NOTIFY wake-up, and the translation of asyncpg errors.

Design rules:

* **One statement per call.** Every storage call is a single SQL statement,
  so it is atomic without an explicit transaction and costs one round trip.
  Batches travel as arrays and are joined with ``unnest``.
* **Claims skip locks.** ``claim`` picks the best due rows with ``FOR UPDATE
  SKIP LOCKED`` through the partial claim index, so concurrent workers never
  wait for each other nor take the same task.
* **Plans do not depend on statistics.** A queue is filled faster than
  autovacuum analyses it, so every query is written (and the connections are
  set, see ``PLANNER_SETTINGS``) so that its cost follows the batch, not the
  backlog: claims walk the claim index, lease writes look rows up by id.
* **Fenced writes are one transaction.** With an epoch, a requeue first moves
  the fence row (``UPDATE ... WHERE seen <= epoch``, which locks it until
  commit), then runs its statement; a refused epoch rolls both back. Fenced
  writes queue on that one row lock, which is fine for a leader's duties.
* **Wake-ups ride in the write.** A write that makes work due (enqueue, a due
  retry, release, requeue) calls ``pg_notify`` on the store's channel inside
  the same statement, at most once per batch; a NOTIFY is delivered only if
  the write commits. Each store LISTENs on one dedicated connection.
* **Isolation by schema.** The ``schema`` option names a schema that is created
  if missing and put first on every connection's ``search_path``; the SQL
  never names a schema, and the notification channel is derived from it.
* **SQL is constant text.** Values are always bind parameters. The only
  identifier ever spliced in is the schema name, which is validated against a
  strict pattern and quoted.
* **Errors are ours.** asyncpg, OSError and timeouts become
  :mod:`taskbench.errors` at the boundary, with the URL redacted and any
  password scrubbed from the driver's message.

The SQL lives here as named constants rather than in a ``.sql`` file: the
package data of the distribution is ``py.typed`` only.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar
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
from taskbench.stores.base import ABANDONED, EXPIRED, BaseStore, Capability, stale_epoch
from taskbench.stores.schema import FENCE, TABLES, create_statements

try:
    import asyncpg
    import asyncpg.exceptions as pg_errors
except ImportError:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(
        "postgresql:// needs asyncpg: pip install 'taskbench[postgres]'"
    ) from None

# -- SQL ---------------------------------------------------------------------------------

TASK_COLUMNS = (
    "seq, id, name, payload, priority, status, attempts, max_attempts, run_at, created_at, "
    "started_at, finished_at, lease_owner, lease_expires_at, last_error, result"
)

CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {schema}"
"""The one statement with an identifier spliced in (validated by SCHEMA_NAME, then quoted)."""

LOCK_SCHEMA_CREATION = "SELECT pg_advisory_xact_lock(hashtext($1))"

CURRENT_SCHEMA = "SELECT current_schema()"

ENQUEUE = """
WITH inserted AS (
    INSERT INTO taskbench_tasks
        (id, name, payload, priority, status, attempts, max_attempts, run_at, created_at)
    SELECT t.id, t.name, t.payload, t.priority, 'queued', 0, t.max_attempts, t.run_at,
           t.created_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int2[], $5::int4[], $6::float8[],
                $7::float8[])
         WITH ORDINALITY
         AS t(id, name, payload, priority, max_attempts, run_at, created_at, arrival)
    ORDER BY t.arrival
    RETURNING 1
)
SELECT pg_notify($8, '') FROM (SELECT count(*) AS n FROM inserted) AS batch WHERE batch.n > 0
"""

FIND_STORED_IDS = "SELECT id FROM taskbench_tasks WHERE id = ANY($1::text[]) LIMIT 1"

# The subquery is an array (= ANY(ARRAY(...))), not IN (...): the planner may turn
# IN into a semi-join that scans the whole table for the outer UPDATE; an array
# is computed once, then the rows are fetched by primary key. The subquery walks
# the partial claim index in its order and stops after $2 unlocked rows.
CLAIM = f"""
UPDATE taskbench_tasks AS t
SET status = 'running', attempts = t.attempts + 1, started_at = $1,
    lease_owner = $3, lease_expires_at = $4
WHERE t.seq = ANY(ARRAY(
    SELECT seq FROM taskbench_tasks
    WHERE status = 'queued' AND run_at <= $1
    ORDER BY priority DESC, run_at, seq
    LIMIT $2
    FOR UPDATE SKIP LOCKED
))
RETURNING {TASK_COLUMNS}
"""

# Lease writes find their rows by id, through the id index, one lookup per id: the
# scalar subquery cannot be turned into a join, so no plan can scan the table (a
# hash join against a sequential scan is what an unanalysed table otherwise gets:
# O(table) per batch). The rows are then fetched by primary key. The lease check is
# attempt and owner: lease_owner is set by a claim and cleared by every write that
# takes a task out of running, so it matches only a running task. The status is not
# tested here on purpose: "status = 'running'" makes the partial lease index look
# cheap to an unanalysed planner, and walking it (and its dead entries) costs
# O(running x batch), measured at 150 ms per finish of 400 in a 20,000-task drain.
_LEASED_ROWS = """t.seq = ANY(ARRAY(
    SELECT (SELECT seq FROM taskbench_tasks WHERE id = wanted.id)
    FROM unnest($1::text[]) AS wanted(id)
))"""

FINISH = f"""
WITH applied AS (
    UPDATE taskbench_tasks AS t
    SET status = o.status,
        run_at = CASE WHEN o.status = 'queued' THEN o.run_at ELSE t.run_at END,
        finished_at = CASE WHEN o.status = 'queued' THEN NULL ELSE o.finished_at END,
        result = CASE WHEN o.status = 'queued' THEN t.result ELSE o.result END,
        last_error = CASE WHEN o.status = 'queued' THEN o.error
                          ELSE coalesce(o.error, t.last_error) END,
        lease_owner = NULL, lease_expires_at = NULL
    FROM unnest($1::text[], $2::int4[], $3::text[], $4::text[], $5::float8[], $6::text[],
                $7::text[], $8::float8[])
         AS o(id, attempt, owner, status, finished_at, result, error, run_at)
    WHERE {_LEASED_ROWS}
      AND t.id = o.id AND t.attempts = o.attempt AND t.lease_owner = o.owner
    RETURNING t.status, t.run_at <= o.finished_at AS due
), wake AS (
    SELECT pg_notify($9, '') FROM applied WHERE status = 'queued' AND due LIMIT 1
)
SELECT (SELECT count(*) FROM applied) AS changed, (SELECT count(*) FROM wake) AS woken
"""

EXTEND = f"""
UPDATE taskbench_tasks AS t
SET lease_expires_at = $4
FROM unnest($1::text[], $2::int4[], $3::text[]) AS l(id, attempt, owner)
WHERE {_LEASED_ROWS}
  AND t.id = l.id AND t.attempts = l.attempt AND t.lease_owner = l.owner
"""

RELEASE = f"""
WITH released AS (
    UPDATE taskbench_tasks AS t
    SET status = 'queued', attempts = t.attempts - 1, finished_at = NULL,
        lease_owner = NULL, lease_expires_at = NULL
    FROM unnest($1::text[], $2::int4[], $3::text[]) AS l(id, attempt, owner)
    WHERE {_LEASED_ROWS}
      AND t.id = l.id AND t.attempts = l.attempt AND t.lease_owner = l.owner
    RETURNING 1
), wake AS (
    SELECT pg_notify($4, '') FROM released LIMIT 1
)
SELECT (SELECT count(*) FROM released) AS changed, (SELECT count(*) FROM wake) AS woken
"""

# $1 now, $2 the channel, $3 the reason (base.EXPIRED or base.ABANDONED); {lost} is
# the condition, beside status = 'running', that picks the leases lost.
_LOSE_LEASES = """
WITH lost AS (
    UPDATE taskbench_tasks
    SET status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
        finished_at = CASE WHEN attempts >= max_attempts THEN $1::float8 ELSE NULL END,
        run_at = CASE WHEN attempts >= max_attempts THEN run_at ELSE $1::float8 END,
        last_error = 'lease of attempt ' || attempts || ' held by '
                     || coalesce(lease_owner, 'None') || ' ' || $3::text,
        lease_owner = NULL, lease_expires_at = NULL
    WHERE status = 'running' AND {lost}
    RETURNING status
), wake AS (
    SELECT pg_notify($2, '') FROM lost WHERE status = 'queued' LIMIT 1
)
SELECT (SELECT count(*) FROM lost) AS changed, (SELECT count(*) FROM wake) AS woken
"""

REQUEUE_EXPIRED = _LOSE_LEASES.format(lost="lease_expires_at < $1")

# $4 the live workers' names
REQUEUE_ABANDONED = _LOSE_LEASES.format(lost="lease_owner <> ALL($4::text[])")

# $1 the fence's name, $2 the epoch. The UPDATE waits for the row lock of a
# concurrent fenced write and then re-reads the row, so the check sees the newest
# committed fence, and holds the lock until this write commits.
ADVANCE_FENCE = "UPDATE taskbench_fences SET seen = $2 WHERE name = $1 AND seen <= $2 RETURNING 1"

READ_FENCE = "SELECT seen FROM taskbench_fences WHERE name = $1"

ISSUE_EPOCH = """
UPDATE taskbench_fences SET issued = greatest(issued, seen) + 1 WHERE name = $1 RETURNING issued
"""

GET_MANY = f"SELECT {TASK_COLUMNS} FROM taskbench_tasks WHERE id = ANY($1::text[])"

COUNTS = "SELECT status, count(*) AS n FROM taskbench_tasks GROUP BY status"

LIST_DEAD = f"""
SELECT {TASK_COLUMNS} FROM taskbench_tasks
WHERE status = 'dead'
ORDER BY finished_at, seq
LIMIT $1
"""

REQUEUE_DEAD = """
WITH revived AS (
    UPDATE taskbench_tasks
    SET status = 'queued', attempts = 0, run_at = $2, finished_at = NULL,
        lease_owner = NULL, lease_expires_at = NULL
    WHERE status = 'dead' AND ($1::text[] IS NULL OR id = ANY($1::text[]))
    RETURNING 1
), wake AS (
    SELECT pg_notify($3, '') FROM revived LIMIT 1
)
SELECT (SELECT count(*) FROM revived) AS changed, (SELECT count(*) FROM wake) AS woken
"""

PURGE = "DELETE FROM taskbench_tasks WHERE $1::text[] IS NULL OR status = ANY($1::text[])"

INDEXES = """
SELECT index_class.relname AS name,
       array_agg(attribute.attname ORDER BY key.position) AS columns
FROM pg_catalog.pg_index AS ix
JOIN pg_catalog.pg_class AS table_class ON table_class.oid = ix.indrelid
JOIN pg_catalog.pg_namespace AS namespace ON namespace.oid = table_class.relnamespace
JOIN pg_catalog.pg_class AS index_class ON index_class.oid = ix.indexrelid
CROSS JOIN LATERAL unnest(ix.indkey::int2[]) WITH ORDINALITY AS key(attnum, position)
JOIN pg_catalog.pg_attribute AS attribute
  ON attribute.attrelid = table_class.oid AND attribute.attnum = key.attnum
WHERE table_class.relname = 'taskbench_tasks' AND namespace.nspname = $1
  AND NOT ix.indisprimary
GROUP BY index_class.relname
"""

TABLE_COLUMNS = """
SELECT table_name::text AS name,
       array_agg(column_name::text ORDER BY ordinal_position) AS columns
FROM information_schema.columns
WHERE table_schema = $1 AND table_name = ANY($2::text[])
GROUP BY table_name
"""

PLANNER_SETTINGS = {"enable_bitmapscan": "off", "enable_seqscan": "off"}
"""Settings of every connection, so that each query walks its index, whatever the table held.

Before the table has statistics (a queue filled faster than autovacuum's first
ANALYZE) or when they are stale (analysed while the queue was short), the
planner guesses a handful of queued rows and prefers a bitmap scan plus a sort
of the *whole* queue: O(backlog) per claim, measured at 20-38 ms per claim of
100 from 20,000 queued rows against 2-3 ms for the ordered index scan that
stops after LIMIT rows. And a plan is cached: asyncpg prepares each statement,
and after five executions PostgreSQL may keep a generic plan made for the
table as it was then. Made on a nearly empty table (an open loop's start),
that plan scans the table to find the claimed and finished rows by key (a
"Seq Scan ... Filter: seq = ANY($1)"), and keeps doing so as the table grows:
measured, an open loop at 5,300 tasks/s on a fresh schema fell behind from
the fifth second and ended with a p99 wait of 0.7-1.7 s (0.009 s with this
setting). No query of this store gains from a bitmap or a sequential scan
where an index path exists: each is a key lookup or a range of one index
(a query with no index path, such as the purge, still gets its scan).
"""

SYNCHRONOUS_COMMIT = frozenset({"on", "off", "local", "remote_write", "remote_apply"})
"""Values of the ``synchronous_commit`` option (None keeps the server's setting).

``off`` acknowledges a commit before its WAL reaches the disk: a server crash
may lose the last moments of acknowledged writes (never corrupt them). That
trade is the durability study's to measure, so it is opt-in.
"""

# -- options and errors -----------------------------------------------------------------

SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
CHANNEL_PREFIX = "taskbench."
MAX_IDENTIFIER_LENGTH = 63

UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    pg_errors.PostgresConnectionError,
    pg_errors.CannotConnectNowError,
    pg_errors.TooManyConnectionsError,
    pg_errors.AdminShutdownError,
    pg_errors.CrashShutdownError,
)
"""The server cannot be reached, or the connection was lost: worth retrying later."""

LOST_CONNECTION_MESSAGE = "connection is closed"
"""asyncpg raises a plain InterfaceError with this text for a connection found dead."""

CONFIG_ERRORS: dict[type[BaseException], str] = {
    pg_errors.InvalidCatalogNameError: "the database does not exist",
    pg_errors.InvalidAuthorizationSpecificationError: "the role is not allowed to log in",
    pg_errors.InvalidPasswordError: "the password was refused",
    pg_errors.ClientConfigurationError: "the connection options are not valid",
}
"""Connection refusals that retrying will not cure, with what the user should check."""


def _check_schema(schema: str | None) -> None:
    if schema is not None and not (isinstance(schema, str) and SCHEMA_NAME.match(schema)):
        raise ConfigError(
            f"schema must be a plain identifier (letters, digits, _; at most 63), got {schema!r}"
        )


def _check_pool_size(pool_size: int) -> None:
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ConfigError(f"pool_size must be a positive integer, got {pool_size!r}")


def _check_connect_timeout(seconds: float) -> None:
    number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    if not (number and seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(f"connect_timeout must be a positive number of seconds, got {seconds!r}")


def _check_synchronous_commit(value: str | None) -> None:
    if value is not None and value not in SYNCHRONOUS_COMMIT:
        raise ConfigError(
            f"synchronous_commit must be one of {sorted(SYNCHRONOUS_COMMIT)}, got {value!r}"
        )


def _connection_lost(error: BaseException) -> bool:
    if isinstance(error, UNAVAILABLE_ERRORS):
        return True
    return isinstance(error, asyncpg.InterfaceError) and LOST_CONNECTION_MESSAGE in str(error)


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _changed(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 3``."""
    return int(status.rpartition(" ")[2] or 0)


PRIORITIES = {int(priority): priority for priority in TaskPriority}
STATUSES = {str(status): status for status in TaskStatus}
"""Column value -> enum member: a dict lookup is several times cheaper than the Enum call."""


def _task(row: Any) -> Task:
    return Task(
        id=row["id"],
        name=row["name"],
        payload_json=row["payload"],
        priority=PRIORITIES[row["priority"]],
        status=STATUSES[row["status"]],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_at=row["run_at"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        last_error=row["last_error"],
        result_json=row["result"],
    )


def _fence_value(value: int | None) -> int:
    if value is None:
        raise StoreError("the fence row is missing from taskbench_fences; reopen the store")
    return value


def _lease_columns(leases: Sequence[Lease]) -> tuple[list[str], list[int], list[str]]:
    return [x.task_id for x in leases], [x.attempt for x in leases], [x.owner for x in leases]


class PostgresStore(BaseStore):
    """Tasks in a PostgreSQL table, shared by any number of processes and hosts."""

    capabilities = (
        Capability.PERSISTENT
        | Capability.MULTI_PROCESS
        | Capability.MULTI_HOST
        | Capability.PRIORITY_ORDER
        | Capability.WAKEUP
        | Capability.TRANSACTIONAL
    )
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        pg_errors.InternalClientError,
        OSError,
        TimeoutError,
    )

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        synchronous_commit: str | None = None,
    ) -> None:
        super().__init__(url)
        _check_schema(schema)
        _check_pool_size(pool_size)
        _check_connect_timeout(connect_timeout)
        _check_synchronous_commit(synchronous_commit)
        self.synchronous_commit = synchronous_commit
        self.schema = schema
        self.pool_size = pool_size
        self.connect_timeout = float(connect_timeout)
        self._pool: Any = None
        self._listener: Any = None
        self._schema_name = schema or ""
        self._channel = ""

    # -- errors ----------------------------------------------------------------------

    def _scrubbed(self, error: BaseException) -> str:
        """The driver's message, with the URL's password (if any) masked."""
        message = str(error) or type(error).__name__
        try:
            password = urlsplit(self._url).password
        except ValueError:
            password = None
        for secret in {password, unquote(password)} if password else ():
            message = message.replace(secret, "***")
        return message

    def translate(self, error: BaseException) -> TaskbenchError:
        detail = self._scrubbed(error)
        for kind, hint in CONFIG_ERRORS.items():
            if isinstance(error, kind):
                return ConfigError(f"cannot use {self.url}: {hint} ({detail})")
        if _connection_lost(error):
            return StoreUnavailableError(
                f"PostgreSQL at {self.url} is unavailable: {type(error).__name__}: {detail}"
            )
        return StoreError(f"{type(error).__name__} from {self.url}: {detail}")

    @property
    def _db(self) -> Any:
        """The pool, or StoreError if the store is not open."""
        if self._pool is None:
            raise StoreError(f"{self!r} is not open: await store.open() or use 'async with'")
        return self._pool

    # -- connections -----------------------------------------------------------------

    def _server_settings(self) -> dict[str, str]:
        settings = dict(PLANNER_SETTINGS)
        if self.schema is not None:
            settings["search_path"] = _quote_identifier(self.schema)
        if self.synchronous_commit is not None:
            settings["synchronous_commit"] = self.synchronous_commit
        return settings

    async def _open(self) -> None:
        async with asyncio.timeout(self.connect_timeout):
            pool = await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                server_settings=self._server_settings(),
            )
        self._pool = pool
        try:
            await self._create_schema()
            await self._listen()
        except BaseException:
            await self._close()
            raise

    async def _create_schema(self) -> None:
        """Create the schema, serialised across processes by an advisory lock."""
        async with self._db.acquire() as connection, connection.transaction():
            await connection.execute(LOCK_SCHEMA_CREATION, "taskbench:" + (self.schema or ""))
            if self.schema is not None:
                await connection.execute(
                    CREATE_SCHEMA.format(schema=_quote_identifier(self.schema))
                )
            for statement in create_statements("postgresql"):
                await connection.execute(statement)
            self._schema_name = await connection.fetchval(CURRENT_SCHEMA)
        self._channel = (CHANNEL_PREFIX + self._schema_name)[:MAX_IDENTIFIER_LENGTH]

    async def _listen(self) -> None:
        """LISTEN on a dedicated connection; a notification wakes ``wait_for_work``."""
        async with asyncio.timeout(self.connect_timeout):
            listener = await asyncpg.connect(
                self._url, timeout=self.connect_timeout, server_settings=self._server_settings()
            )
        self._listener = listener
        listener.add_termination_listener(self._on_listener_lost)
        await listener.add_listener(self._channel, self._on_notify)

    def _on_notify(self, *_: object) -> None:
        self._work.set()

    def _on_listener_lost(self, *_: object) -> None:
        self._work.set()  # waiters claim (or see the error) instead of sleeping on

    async def _close(self) -> None:
        listener, pool = self._listener, self._pool
        self._listener = self._pool = None
        if listener is not None and not listener.is_closed():
            await listener.close()
        if pool is not None:
            await pool.close()

    async def wait_for_work(self, timeout: float) -> None:
        """Return on a NOTIFY from any client of this store, or after ``timeout``."""
        if self._opened and (self._listener is None or self._listener.is_closed()):
            self._listener = None
            await self._call(self._listen())
        await super().wait_for_work(timeout)

    # -- storage calls ---------------------------------------------------------------

    async def _enqueue(self, tasks: Sequence[Task]) -> None:
        ids = [t.id for t in tasks]
        try:
            await self._db.execute(
                ENQUEUE,
                ids,
                [t.name for t in tasks],
                [t.payload_json for t in tasks],
                [int(t.priority) for t in tasks],
                [t.max_attempts for t in tasks],
                [t.run_at for t in tasks],
                [t.created_at for t in tasks],
                self._channel,
            )
        except pg_errors.UniqueViolationError:
            stored = await self._db.fetchval(FIND_STORED_IDS, ids)
            raise InvalidTaskError(f"task id already stored: {stored!r}") from None

    async def _claim(self, worker: str, limit: int, lease_s: float, now: float) -> list[Task]:
        rows = await self._db.fetch(CLAIM, now, limit, worker, now + lease_s)
        rows.sort(key=lambda row: (-row["priority"], row["run_at"], row["seq"]))
        return [_task(row) for row in rows]

    async def _finish(self, outcomes: Sequence[Outcome]) -> int:
        ids, attempts, owners = _lease_columns([o.lease for o in outcomes])
        changed: int = await self._db.fetchval(
            FINISH,
            ids,
            attempts,
            owners,
            [str(o.status) for o in outcomes],
            [o.finished_at for o in outcomes],
            [o.result_json for o in outcomes],
            [o.error for o in outcomes],
            [o.run_at for o in outcomes],
            self._channel,
        )
        return changed

    async def _extend(self, leases: Sequence[Lease], expires_at: float) -> int:
        status = await self._db.execute(EXTEND, *_lease_columns(leases), expires_at)
        return _changed(status)

    async def _release(self, leases: Sequence[Lease]) -> int:
        changed: int = await self._db.fetchval(RELEASE, *_lease_columns(leases), self._channel)
        return changed

    async def _issue_epoch(self) -> int:
        return _fence_value(await self._db.fetchval(ISSUE_EPOCH, FENCE))

    async def _requeue_expired(self, now: float, epoch: int | None) -> int:
        return await self._fenced(epoch, REQUEUE_EXPIRED, now, self._channel, EXPIRED)

    async def _requeue_abandoned(self, live: list[str], now: float, epoch: int | None) -> int:
        return await self._fenced(epoch, REQUEUE_ABANDONED, now, self._channel, ABANDONED, live)

    async def _fenced(self, epoch: int | None, query: str, *args: Any) -> int:
        """``query``'s count; with an epoch, the fence check and the query in one transaction."""
        if epoch is None:
            changed: int = await self._db.fetchval(query, *args)
            return changed
        async with self._db.acquire() as connection, connection.transaction():
            if await connection.fetchval(ADVANCE_FENCE, FENCE, epoch) is None:
                seen = _fence_value(await connection.fetchval(READ_FENCE, FENCE))
                raise stale_epoch(epoch, seen)
            fenced: int = await connection.fetchval(query, *args)
            return fenced

    async def _get_many(self, ids: list[str]) -> list[Task]:
        return [_task(row) for row in await self._db.fetch(GET_MANY, ids)]

    async def _counts(self) -> dict[TaskStatus, int]:
        rows = await self._db.fetch(COUNTS)
        return {TaskStatus(row["status"]): row["n"] for row in rows}

    async def _list_dead(self, limit: int) -> list[Task]:
        return [_task(row) for row in await self._db.fetch(LIST_DEAD, limit)]

    async def _requeue_dead(self, ids: list[str] | None, now: float) -> int:
        changed: int = await self._db.fetchval(REQUEUE_DEAD, ids, now, self._channel)
        return changed

    async def _purge(self, statuses: list[TaskStatus] | None) -> int:
        wanted = None if statuses is None else [str(s) for s in statuses]
        return _changed(await self._db.execute(PURGE, wanted))

    # -- introspection ---------------------------------------------------------------

    async def indexes(self) -> dict[str, tuple[str, ...]]:
        """Index name -> columns in order, as pg_catalog reports them (primary key excluded)."""
        rows = await self._call(self._db.fetch(INDEXES, self._schema_name))
        return {row["name"]: tuple(row["columns"]) for row in rows}

    async def tables(self) -> dict[str, tuple[str, ...]]:
        """Table name -> columns in order, as the catalog reports them (our tables only)."""
        rows = await self._call(self._db.fetch(TABLE_COLUMNS, self._schema_name, list(TABLES)))
        return {row["name"]: tuple(row["columns"]) for row in rows}
