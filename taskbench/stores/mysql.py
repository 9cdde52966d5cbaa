"""MySQLStore: the task table on MariaDB >= 10.6 or MySQL >= 8.0.1, through PyMySQL.

Design rules:

* **PyMySQL is synchronous, the store is not.** Every storage call runs on a
  small thread pool owned by the store (``pool_size`` threads, one connection
  per thread, made lazily and kept in a ``threading.local``) through
  ``loop.run_in_executor``; the event loop never waits on a socket.
* **One call, one transaction.** A storage call is a function of a cursor;
  :meth:`MySQLStore._transaction` runs it and commits, or rolls back on any
  error. A deadlock (1213) rolls the whole transaction back, so it is run
  again, a few times at most; a lock wait timeout (1205) is not, having
  waited long enough. A broken connection is dropped: that call raises
  StoreUnavailableError and the thread's next call connects afresh.
* **READ COMMITTED.** Under InnoDB's default REPEATABLE READ, a locking read
  or an UPDATE takes next-key (gap) locks on every index range it scans, so
  claimers, enqueuers and finishers block each other and deadlock on the
  claim index's head. READ COMMITTED locks only the rows actually matched,
  and every statement sees the latest committed rows, which is what a queue
  wants: ``FOR UPDATE SKIP LOCKED`` then hands each claimer distinct rows.
* **Claims without RETURNING.** MariaDB has no ``UPDATE ... RETURNING``: a
  claim locks the best due rows with ``FOR UPDATE SKIP LOCKED``, updates them
  by primary key, and builds the running tasks from the rows it read, since
  it holds their locks and knows exactly what it wrote (3 round trips).
* **SQL is constant.** Statements are the named constants below; values are
  always bound (``%s``), and a list of values binds as one ``IN %s`` tuple.
  A batch of outcomes is one UPDATE joined with a derived table holding one
  ``SELECT %s, ...`` per outcome: the text repeats a constant, never a value.
  ``CLIENT.FOUND_ROWS`` makes a row count mean rows matched, not rows changed.
* **Errors are ours.** PyMySQL and socket errors become :mod:`taskbench.errors`
  (unreachable server -> StoreUnavailableError, wrong credentials or database
  -> ConfigError) with the URL redacted; a password never reaches a message.
* **Fenced writes are one transaction.** With an epoch, a requeue first
  moves the fence row (``UPDATE ... WHERE seen <= epoch``, which keeps the
  row locked until commit) and then makes its change; a refused epoch rolls
  the transaction back with StaleEpochError.
* **One schema.** The DDL is ``schema.create_statements("mariadb")`` or
  ``("mysql")`` (they differ only in the no-pad binary collation); MySQL,
  which has no ``CREATE INDEX IF NOT EXISTS``, runs it without the clause
  and takes "duplicate key name" (1061) as "already there".
* **No server push.** ``wait_for_work`` wakes on this store's own writes at
  once, and polls the table every ``POLL_INTERVAL_S`` for other processes'.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import unquote

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
from taskbench.stores.schema import FENCE, TABLES, TASKS_TABLE, create_statements
from taskbench.urls import split_url

try:
    import pymysql
    from pymysql.constants import CLIENT
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("mysql:// needs PyMySQL: pip install 'taskbench[mysql]'") from None

T = TypeVar("T")
Cursor = Any  # pymysql.cursors.Cursor (PyMySQL ships no type hints)
Row = tuple[Any, ...]

POLL_INTERVAL_S = 0.05
"""How often ``wait_for_work`` looks for work that another process enqueued."""

MAX_TRANSACTION_RUNS = 5
"""How many times a transaction is run when the server reports a deadlock."""

MINIMUM_MARIADB = (10, 6)
MINIMUM_MYSQL = (8, 0, 1)

_UNREACHABLE = {2002, 2003, 2005, 2006, 2013, 2055}
_BAD_CREDENTIALS = {1044, 1045, 1698}
_UNKNOWN_DATABASE = 1049
_DUPLICATE_KEY = 1062
_DUPLICATE_INDEX = 1061
_DEADLOCK = 1213
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")

# -- SQL ---------------------------------------------------------------------------------

_COLUMNS = (
    "seq, id, name, payload, priority, status, attempts, max_attempts, run_at, created_at,"
    " started_at, finished_at, lease_owner, lease_expires_at, last_error, result"
)

SET_SESSION = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"

INSERT_TASK = (
    "INSERT INTO taskbench_tasks (id, name, payload, priority, status, attempts, max_attempts,"
    " run_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)

FIRST_EXISTING_ID = "SELECT id FROM taskbench_tasks WHERE id IN %s ORDER BY seq LIMIT 1"

LOCK_DUE = (
    f"SELECT {_COLUMNS} FROM taskbench_tasks"
    " WHERE status = 'queued' AND run_at <= %s"
    " ORDER BY priority DESC, run_at, seq LIMIT %s FOR UPDATE SKIP LOCKED"
)

MARK_RUNNING = (
    "UPDATE taskbench_tasks SET status = 'running', attempts = attempts + 1, started_at = %s,"
    " lease_owner = %s, lease_expires_at = %s WHERE seq IN %s"
)

# By id, through its unique index: with few running rows the optimizer may
# otherwise pick a status index and lock (then release) rows it does not update.
_UPDATE_BY_ID = "UPDATE taskbench_tasks FORCE INDEX (uq_taskbench_tasks_id) SET"
_HELD = "id = %s AND status = 'running' AND attempts = %s AND lease_owner = %s"

# A batch of outcomes is one UPDATE joined with a derived table of their
# values, one ``SELECT %s, ...`` per outcome (see _finish_statement): one
# round trip whatever the batch size. A retry (status 'queued') keeps the
# result and takes the error as is; a final outcome keeps an earlier error
# when it brings none.
FINISH_HEAD = "UPDATE taskbench_tasks AS t JOIN ("
FINISH_FIRST_OUTCOME = (
    "SELECT %s AS id, %s AS attempt, %s AS owner, %s AS status, %s AS finished_at,"
    " %s AS result, %s AS error, %s AS run_at"
)
FINISH_NEXT_OUTCOME = " UNION ALL SELECT %s, %s, %s, %s, %s, %s, %s, %s"
FINISH_TAIL = (
    ") AS o ON t.id = o.id AND t.attempts = o.attempt AND t.lease_owner = o.owner"
    " SET t.last_error = IF(o.status = 'queued', o.error, COALESCE(o.error, t.last_error)),"
    " t.result = IF(o.status = 'queued', t.result, o.result),"
    " t.run_at = IF(o.status = 'queued', o.run_at, t.run_at),"
    " t.finished_at = IF(o.status = 'queued', NULL, o.finished_at),"
    " t.status = o.status, t.lease_owner = NULL, t.lease_expires_at = NULL"
    " WHERE t.status = 'running'"
)

EXTEND_LEASE = f"{_UPDATE_BY_ID} lease_expires_at = %s WHERE {_HELD}"

RELEASE_LEASE = (
    f"{_UPDATE_BY_ID} status = 'queued', attempts = attempts - 1, finished_at = NULL,"
    f" lease_owner = NULL, lease_expires_at = NULL WHERE {_HELD}"
)

# MySQL assigns left to right, each assignment seeing the ones before it:
# last_error reads lease_owner before it is cleared, status changes last.
# Parameters: the reason (base.EXPIRED or base.ABANDONED), now, now, then the
# condition's (see _lose_leases).
_LOSE_LEASES = (
    "UPDATE taskbench_tasks FORCE INDEX (ix_taskbench_tasks_lease) SET"
    " last_error = CONCAT('lease of attempt ', attempts, ' held by ',"
    " IFNULL(lease_owner, 'None'), ' ', %s),"
    " finished_at = IF(attempts >= max_attempts, %s, NULL),"
    " run_at = IF(attempts >= max_attempts, run_at, %s),"
    " status = IF(attempts >= max_attempts, 'dead', 'queued'),"
    " lease_owner = NULL, lease_expires_at = NULL"
    " WHERE status = 'running'"
)
REQUEUE_EXPIRED = _LOSE_LEASES + " AND lease_expires_at < %s"
REQUEUE_ABANDONED = _LOSE_LEASES + " AND lease_owner NOT IN %s"
REQUEUE_ALL_RUNNING = _LOSE_LEASES
"""REQUEUE_ABANDONED when no worker is live (``IN ()`` is not valid SQL)."""

# With CLIENT.FOUND_ROWS the count is 1 when the fence moved (or stayed), 0 when
# it refused the epoch. Under READ COMMITTED the UPDATE waits for a concurrent
# fenced write's row lock, then re-reads the committed row before deciding.
ADVANCE_FENCE = "UPDATE taskbench_fences SET seen = %s WHERE name = %s AND seen <= %s"
READ_FENCE = "SELECT seen FROM taskbench_fences WHERE name = %s"
ISSUE_EPOCH = "UPDATE taskbench_fences SET issued = GREATEST(issued, seen) + 1 WHERE name = %s"
READ_ISSUED = "SELECT issued FROM taskbench_fences WHERE name = %s"

SELECT_BY_IDS = f"SELECT {_COLUMNS} FROM taskbench_tasks WHERE id IN %s"

COUNT_BY_STATUS = "SELECT status, COUNT(*) FROM taskbench_tasks GROUP BY status"

LIST_DEAD = (
    f"SELECT {_COLUMNS} FROM taskbench_tasks WHERE status = 'dead'"
    " ORDER BY finished_at, seq LIMIT %s"
)

_REQUEUE_DEAD = (
    "UPDATE taskbench_tasks SET status = 'queued', attempts = 0, run_at = %s,"
    " finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL WHERE status = 'dead'"
)
REQUEUE_ALL_DEAD = _REQUEUE_DEAD
REQUEUE_DEAD_BY_IDS = _REQUEUE_DEAD + " AND id IN %s"

PURGE_ALL = "DELETE FROM taskbench_tasks"
PURGE_STATUSES = "DELETE FROM taskbench_tasks WHERE status IN %s"

ANY_DUE = "SELECT 1 FROM taskbench_tasks WHERE status = 'queued' AND run_at <= %s LIMIT 1"

TABLE_COLUMNS = (
    "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS"
    " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN %s"
    " ORDER BY TABLE_NAME, ORDINAL_POSITION"
)

LIST_INDEXES = (
    "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS"
    " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND INDEX_NAME <> 'PRIMARY'"
    " ORDER BY INDEX_NAME, SEQ_IN_INDEX"
)


# -- the server version --------------------------------------------------------------------


def parse_version(version: str) -> tuple[bool, tuple[int, int, int]]:
    """(is MariaDB, (major, minor, patch)) from a server version string.

    Accepts ``SELECT VERSION()`` output ("10.11.19-MariaDB-0+deb12u1",
    "8.0.36") and the handshake form of MariaDB < 11 ("5.5.5-10.11.19-MariaDB").
    """
    is_mariadb = "mariadb" in version.lower()
    if is_mariadb and version.startswith("5.5.5-"):
        version = version.removeprefix("5.5.5-")
    match = _VERSION.match(version.strip())
    if match is None:
        raise ConfigError(f"cannot read the server version {version!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return is_mariadb, (major, minor, patch)


def supports_skip_locked(version: str) -> bool:
    """Whether the server has ``FOR UPDATE SKIP LOCKED`` (MariaDB 10.6, MySQL 8.0.1)."""
    is_mariadb, number = parse_version(version)
    return number >= MINIMUM_MARIADB if is_mariadb else number >= MINIMUM_MYSQL


def require_skip_locked(version: str) -> None:
    if not supports_skip_locked(version):
        raise ConfigError(
            f"the server runs {version}; MySQLStore needs FOR UPDATE SKIP LOCKED, "
            "which came in MariaDB 10.6 and MySQL 8.0.1"
        )


# -- rows and parameters ---------------------------------------------------------------------


def _task(row: Row) -> Task:
    return Task(
        id=row[1],
        name=row[2],
        payload_json=row[3],
        priority=TaskPriority(row[4]),
        status=TaskStatus(row[5]),
        attempts=row[6],
        max_attempts=row[7],
        run_at=row[8],
        created_at=row[9],
        started_at=row[10],
        finished_at=row[11],
        lease_owner=row[12],
        lease_expires_at=row[13],
        last_error=row[14],
        result_json=row[15],
    )


def _running(row: Row, worker: str, now: float, expires_at: float) -> Task:
    """The task that MARK_RUNNING made of ``row`` (read, and locked, before it)."""
    claimed = (*row[:5], "running", row[6] + 1, *row[7:10], now, row[11], worker, expires_at)
    return _task(claimed + row[14:])


def _insert_params(task: Task) -> Row:
    return (
        task.id,
        task.name,
        task.payload_json,
        int(task.priority),
        str(TaskStatus.QUEUED),
        0,
        task.max_attempts,
        task.run_at,
        task.created_at,
    )


def _held(lease: Lease) -> Row:
    return (lease.task_id, lease.attempt, lease.owner)


def _finish_statement(count: int) -> str:
    """FINISH_* for ``count`` outcomes (placeholders only: every value is bound)."""
    return FINISH_HEAD + FINISH_FIRST_OUTCOME + FINISH_NEXT_OUTCOME * (count - 1) + FINISH_TAIL


def _outcome_params(outcome: Outcome) -> Row:
    return (
        *_held(outcome.lease),
        str(outcome.status),
        outcome.finished_at,
        outcome.result_json,
        outcome.error,
        outcome.run_at,
    )


# -- connections and options -----------------------------------------------------------------


def _close_quietly(connection: Any) -> None:
    """Close a connection that may already be closed or broken."""
    with contextlib.suppress(pymysql.err.Error, OSError):
        connection.close()


def _connect_kwargs(url: str, connect_timeout: float) -> dict[str, Any]:
    parts = split_url(url)
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ConfigError("a MySQL URL names one database: mysql://user:password@host:3306/db")
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else "",
        "database": database,
        "charset": "utf8mb4",
        "autocommit": False,
        "connect_timeout": connect_timeout,
        "client_flag": CLIENT.FOUND_ROWS,
        "init_command": SET_SESSION,
    }


def _check_options(pool_size: int, connect_timeout: float) -> None:
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or not 1 <= pool_size <= 256:
        raise ConfigError(f"pool_size must be an integer from 1 to 256, got {pool_size!r}")
    if (
        isinstance(connect_timeout, bool)
        or not isinstance(connect_timeout, int | float)
        or not 0 < connect_timeout <= 3600
    ):
        raise ConfigError(f"connect_timeout must be seconds in (0, 3600], got {connect_timeout!r}")


# -- the store -------------------------------------------------------------------------------


class MySQLStore(BaseStore):
    """Tasks in a MariaDB/MySQL table, claimed with ``FOR UPDATE SKIP LOCKED``."""

    capabilities = (
        Capability.PERSISTENT
        | Capability.MULTI_PROCESS
        | Capability.MULTI_HOST
        | Capability.PRIORITY_ORDER
        | Capability.TRANSACTIONAL
    )
    driver_errors = (pymysql.err.Error, OSError)

    def __init__(self, url: str, *, pool_size: int = 8, connect_timeout: float = 10.0) -> None:
        super().__init__(url)
        _check_options(pool_size, connect_timeout)
        self._connect_kwargs = _connect_kwargs(url, float(connect_timeout))
        self._pool_size = pool_size
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._connections: list[Any] = []
        self._connections_lock = threading.Lock()

    # -- errors --------------------------------------------------------------------------

    def translate(self, error: BaseException) -> TaskbenchError:
        code = error.args[0] if error.args and isinstance(error.args[0], int) else None
        detail = self._scrub(str(error.args[1]) if len(error.args) > 1 else str(error))
        if isinstance(error, pymysql.err.InterfaceError | OSError) or code in _UNREACHABLE:
            return StoreUnavailableError(f"cannot reach MySQL at {self.url}: {detail}")
        if code in _BAD_CREDENTIALS:
            return ConfigError(f"MySQL at {self.url} refused the credentials: {detail}")
        if code == _UNKNOWN_DATABASE:
            return ConfigError(f"MySQL at {self.url}: {detail}")
        return StoreError(f"MySQL error {code} at {self.url}: {detail}")

    def _scrub(self, message: str) -> str:
        password = self._connect_kwargs["password"]
        return message.replace(password, "***") if password else message

    # -- threads, connections, transactions ----------------------------------------------------

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = pymysql.connect(**self._connect_kwargs)
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def _forget(self, connection: Any) -> None:
        self._local.connection = None
        with self._connections_lock:
            if connection in self._connections:
                self._connections.remove(connection)
        _close_quietly(connection)

    def _transaction(self, work: Callable[[Cursor], T]) -> T:
        """Run ``work`` in one transaction on this thread's connection (in a pool thread)."""
        for run in range(1, MAX_TRANSACTION_RUNS + 1):
            connection = self._connection()
            try:
                with connection.cursor() as cursor:
                    result = work(cursor)
                connection.commit()
                return result
            except pymysql.err.OperationalError as exc:
                self._abandon(connection, exc)
                if exc.args[0] != _DEADLOCK or run == MAX_TRANSACTION_RUNS:
                    raise
            except BaseException as exc:
                self._abandon(connection, exc)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _abandon(self, connection: Any, error: BaseException) -> None:
        """Roll back; drop the connection if it is broken."""
        code = error.args[0] if error.args else None
        if isinstance(error, pymysql.err.InterfaceError | OSError) or code in _UNREACHABLE:
            self._forget(connection)
            return
        try:
            connection.rollback()
        except (pymysql.err.Error, OSError):
            self._forget(connection)

    async def _run(self, work: Callable[[Cursor], T]) -> T:
        if self._executor is None:
            raise StoreError(f"{self!r} is not open: await store.open() first")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transaction, work)

    # -- open and close ------------------------------------------------------------------

    async def _open(self) -> None:
        self._executor = ThreadPoolExecutor(self._pool_size, thread_name_prefix="taskbench-mysql")
        try:
            await self._run(_create_schema)
        except BaseException:
            await self._close()
            raise

    async def _close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, True)
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            _close_quietly(connection)

    async def indexes(self) -> dict[str, tuple[str, ...]]:
        """Index name -> its columns, as the server's catalog reports them (no PRIMARY)."""
        rows: list[Row] = await self._call(self._run(_read_indexes))
        found: dict[str, tuple[str, ...]] = {}
        for index_name, column in rows:
            found[index_name] = (*found.get(index_name, ()), column)
        return found

    async def tables(self) -> dict[str, tuple[str, ...]]:
        """Table name -> its columns in order, from the catalog (the declared tables only)."""
        rows: list[Row] = await self._call(self._run(_read_tables))
        found: dict[str, tuple[str, ...]] = {}
        for table, column in rows:
            found[table] = (*found.get(table, ()), column)
        return found

    async def wait_for_work(self, timeout: float) -> None:
        """Wake on this store's own writes at once, on other processes' within a poll."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_timeout(timeout)
        while (remaining := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(self._work.wait(), min(POLL_INTERVAL_S, remaining))
                break
            except TimeoutError:
                pass
            if await self._call(self._run(_any_due)):
                break
        self._work.clear()

    # -- storage calls -------------------------------------------------------------------

    async def _enqueue(self, tasks: Sequence[Task]) -> None:
        rows = [_insert_params(task) for task in tasks]
        try:
            await self._run(lambda cursor: cursor.executemany(INSERT_TASK, rows))
        except pymysql.err.IntegrityError as exc:
            if exc.args[0] != _DUPLICATE_KEY:
                raise
            clash = await self._run(lambda cursor: _first_existing(cursor, tasks))
            raise InvalidTaskError(f"task id already stored: {clash!r}") from None

    async def _claim(self, worker: str, limit: int, lease_s: float, now: float) -> list[Task]:
        expires_at = now + lease_s

        def claim(cursor: Cursor) -> list[Task]:
            cursor.execute(LOCK_DUE, (now, limit))
            rows = cursor.fetchall()
            if not rows:
                return []
            cursor.execute(MARK_RUNNING, (now, worker, expires_at, [row[0] for row in rows]))
            return [_running(row, worker, now, expires_at) for row in rows]

        return await self._run(claim)

    async def _finish(self, outcomes: Sequence[Outcome]) -> int:
        sql = _finish_statement(len(outcomes))
        params = [value for outcome in outcomes for value in _outcome_params(outcome)]
        return await self._run(lambda cursor: _execute(cursor, sql, params))

    async def _extend(self, leases: Sequence[Lease], expires_at: float) -> int:
        rows = [(expires_at, *_held(lease)) for lease in leases]
        return await self._run(lambda cursor: _update_each(cursor, EXTEND_LEASE, rows))

    async def _release(self, leases: Sequence[Lease]) -> int:
        rows = [_held(lease) for lease in leases]
        return await self._run(lambda cursor: _update_each(cursor, RELEASE_LEASE, rows))

    async def _issue_epoch(self) -> int:
        return await self._run(_issue_epoch)

    async def _requeue_expired(self, now: float, epoch: int | None) -> int:
        return await self._run(_fenced(epoch, REQUEUE_EXPIRED, (EXPIRED, now, now, now)))

    async def _requeue_abandoned(self, live: list[str], now: float, epoch: int | None) -> int:
        if not live:
            return await self._run(_fenced(epoch, REQUEUE_ALL_RUNNING, (ABANDONED, now, now)))
        params = (ABANDONED, now, now, live)
        return await self._run(_fenced(epoch, REQUEUE_ABANDONED, params))

    async def _get_many(self, ids: list[str]) -> list[Task]:
        return await self._run(lambda cursor: _select_tasks(cursor, SELECT_BY_IDS, (ids,)))

    async def _counts(self) -> dict[TaskStatus, int]:
        rows: list[Row] = await self._run(lambda cursor: _fetch(cursor, COUNT_BY_STATUS, ()))
        return {TaskStatus(status): count for status, count in rows}

    async def _list_dead(self, limit: int) -> list[Task]:
        return await self._run(lambda cursor: _select_tasks(cursor, LIST_DEAD, (limit,)))

    async def _requeue_dead(self, ids: list[str] | None, now: float) -> int:
        if ids is None:
            return await self._run(lambda cursor: _execute(cursor, REQUEUE_ALL_DEAD, (now,)))
        return await self._run(lambda cursor: _execute(cursor, REQUEUE_DEAD_BY_IDS, (now, ids)))

    async def _purge(self, statuses: list[TaskStatus] | None) -> int:
        if statuses is None:
            return await self._run(lambda cursor: _execute(cursor, PURGE_ALL, ()))
        if not statuses:
            return 0
        wanted = [str(status) for status in statuses]
        return await self._run(lambda cursor: _execute(cursor, PURGE_STATUSES, (wanted,)))


# -- work run inside a transaction (in a pool thread) --------------------------------------


def _execute(cursor: Cursor, sql: str, params: Sequence[Any]) -> int:
    count: int = cursor.execute(sql, params)
    return count


def _fetch(cursor: Cursor, sql: str, params: Sequence[Any]) -> list[Row]:
    cursor.execute(sql, params)
    return list(cursor.fetchall())


def _select_tasks(cursor: Cursor, sql: str, params: Sequence[Any]) -> list[Task]:
    return [_task(row) for row in _fetch(cursor, sql, params)]


def _update_each(cursor: Cursor, sql: str, rows: list[Row]) -> int:
    """Run one UPDATE per row; returns the rows matched in all."""
    return sum(_execute(cursor, sql, row) for row in rows)


def _first_existing(cursor: Cursor, tasks: Sequence[Task]) -> str:
    rows = _fetch(cursor, FIRST_EXISTING_ID, ([task.id for task in tasks],))
    return str(rows[0][0]) if rows else "(another writer's, since removed)"


def _fence_value(rows: list[Row]) -> int:
    if not rows:
        raise StoreError("the fence row is missing from taskbench_fences; reopen the store")
    return int(rows[0][0])


def _pass_fence(cursor: Cursor, epoch: int | None) -> None:
    """Refuse an epoch older than the fence, or move the fence (in the caller's transaction)."""
    if epoch is None or _execute(cursor, ADVANCE_FENCE, (epoch, FENCE, epoch)):
        return
    raise stale_epoch(epoch, _fence_value(_fetch(cursor, READ_FENCE, (FENCE,))))


def _fenced(epoch: int | None, sql: str, params: Sequence[Any]) -> Callable[[Cursor], int]:
    """The work of a fenced write: the fence check and ``sql``, in one transaction."""

    def work(cursor: Cursor) -> int:
        _pass_fence(cursor, epoch)
        return _execute(cursor, sql, params)

    return work


def _issue_epoch(cursor: Cursor) -> int:
    _execute(cursor, ISSUE_EPOCH, (FENCE,))
    return _fence_value(_fetch(cursor, READ_ISSUED, (FENCE,)))


def _read_tables(cursor: Cursor) -> list[Row]:
    return _fetch(cursor, TABLE_COLUMNS, (list(TABLES),))


def _any_due(cursor: Cursor) -> bool:
    return bool(_fetch(cursor, ANY_DUE, (time.time(),)))


def _read_indexes(cursor: Cursor) -> list[Row]:
    return _fetch(cursor, LIST_INDEXES, (TASKS_TABLE,))


def _create_schema(cursor: Cursor) -> None:
    """Check the server, then create the table and its indexes (idempotent)."""
    version = cursor.connection.get_server_info()
    require_skip_locked(version)
    is_mariadb, _ = parse_version(version)
    for statement in create_statements("mariadb" if is_mariadb else "mysql"):
        _create(cursor, statement if is_mariadb else _without_if_not_exists(statement))


def _without_if_not_exists(statement: str) -> str:
    """MySQL has no CREATE INDEX IF NOT EXISTS; an existing index is then error 1061."""
    if statement.startswith(("CREATE INDEX", "CREATE UNIQUE INDEX")):
        return statement.replace(" IF NOT EXISTS", "", 1)
    return statement


def _create(cursor: Cursor, statement: str) -> None:
    try:
        cursor.execute(statement)
    except pymysql.err.OperationalError as exc:
        if exc.args[0] != _DUPLICATE_INDEX:
            raise
