"""Backup and restore drills: back a store up with its server's own tool, restore it
elsewhere, and compare every task.

What this module owns: :func:`drill` (``python -m taskbench.faults.backup
--store URL``), which fills a store with a mix of queued, running,
succeeded, dead and retried tasks, backs it up, restores the backup into a
fresh place, and checks that every task came back with its full state; and
one :class:`BackupMethod` per persistent backend:

* **SQLite**: the online backup API (``sqlite3.Connection.backup``), which
  copies a consistent snapshot while the store stays open; the restore is the
  same API from the copy into a fresh file.
* **PostgreSQL**: ``pg_dump --format=custom`` of the store's schema (its
  ``?schema=``, else ``public``), restored with ``pg_restore`` into a fresh
  database ``tb_restore_<hex>`` on the same server (the user needs CREATEDB),
  dropped afterwards.
* **Redis**: DUMP of every key under the store's prefix, taken in one
  MULTI/EXEC so the keys form one consistent snapshot, written to a file and
  RESTOREd into a throwaway ``redis-server`` on a free port. Not BGSAVE and a
  copy of the RDB file: on a shared server the snapshot holds every tenant's
  keys (the backup copies other users' data and is as big as the server), it
  needs the server's directory (``CONFIG GET dir``, refused by managed
  Redis), and BGSAVE forks the whole dataset. DUMP/RESTORE needs only the
  protocol and copies exactly one store. Its limits: RESTORE wants the same
  or a newer RDB version, and a key created while SCAN lists the prefix can
  be missed (the drill backs up a quiescent store).
* **MariaDB/MySQL**: ``mariadb-dump``/``mysqldump --single-transaction`` of the
  store's database, loaded with the ``mariadb``/``mysql`` client into a fresh
  database ``tb_restore_<hex>`` (the user needs CREATE and DROP on it),
  dropped afterwards.

Design rules:

* **Passwords never go on a command line** (``ps`` shows it to every user):
  PGPASSWORD in the tool's environment, a 0600 option file for the MySQL
  tools, removed afterwards; a tool's error message is scrubbed of the
  password and the URL is redacted.
* **What is timed**: ``backup_s`` is the dump alone; ``restore_s`` is loading
  the backup into an empty target (making the empty database or starting the
  throwaway server is not counted).
* **What is checked**: every task's full state (``get_many`` before and after,
  field by field), the order in which the restored store hands out the due
  tasks (claimed with the same ``now`` from both stores), and that the
  restored store takes and hands out a new task (its arrival counter came
  back too).
* **The store is PURGED**, before and after: give the drill a store of its
  own. What the restore made is dropped after the comparison, also on error.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from taskbench.errors import BenchmarkError, ConfigError, StoreError, TaskbenchError
from taskbench.model import Outcome, Task
from taskbench.stores import TaskStore, open_store
from taskbench.urls import redact, split_url

ENQUEUE_BATCH = 500
CLAIM_BATCH = 500
LEASE_S = 3_600.0
RETRY_IN_S = 3_600.0
TOOL_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupResult:
    """One drill: how the store was backed up, how long it took, what came back."""

    store: str
    """The store's URL, password redacted."""
    method: str
    tasks: int
    backup_bytes: int
    backup_s: float
    restore_s: float
    mismatches: int
    """Tasks missing after the restore, or differing in any field."""
    order_mismatches: int
    """Positions at which the restored store hands out due tasks in another order."""
    writable: bool
    """Whether the restored store took a new task and handed it out."""

    def to_json_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- running the servers' tools --------------------------------------------------------


def find_tool(names: Sequence[str], install: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BenchmarkError(f"{names[0]} is not installed: {install}")


def scrubbed(text: str, secret: str | None) -> str:
    if not secret:
        return text
    for form in {secret, quote(secret, safe="")}:
        text = text.replace(form, "***")
    return text


async def run_tool(
    command: Sequence[str],
    *,
    secret: str | None = None,
    env: dict[str, str] | None = None,
    stdin: Path | None = None,
) -> None:
    """Run a server tool; StoreError with its (scrubbed) stderr if it fails."""
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(stdin.open("rb")) if stdin is not None else None
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=source or asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        _, error = await asyncio.wait_for(process.communicate(), TOOL_TIMEOUT_S)
    if process.returncode != 0:
        message = scrubbed(error.decode(errors="replace").strip()[-2_000:], secret)
        raise StoreError(f"{Path(command[0]).name} failed ({process.returncode}): {message}")


def with_database(url: str, database: str) -> str:
    """``url`` naming ``database`` instead (its options kept)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{quote(database)}"))


def restore_name() -> str:
    return f"tb_restore_{uuid.uuid4().hex[:12]}"


# -- one method per backend ----------------------------------------------------------------


class BackupMethod(abc.ABC):
    """How one backend is backed up and restored; ``discard`` drops what restore made."""

    summary: ClassVar[str]

    def __init__(self, url: str, store: TaskStore, scratch: Path) -> None:
        self.url = url
        self.store = store
        self.scratch = scratch

    @abc.abstractmethod
    async def backup(self, target: Path) -> None:
        """Write a backup of the store to ``target``."""

    @abc.abstractmethod
    async def prepare(self) -> None:
        """Make the empty place a restore loads into (not timed)."""

    @abc.abstractmethod
    async def restore(self, source: Path) -> str:
        """Load ``source`` into the prepared place; the URL of the restored store."""

    @abc.abstractmethod
    async def discard(self) -> None:
        """Drop what prepare and restore made (never raises)."""


def copy_database(source: str | Path, target: str | Path) -> None:
    """SQLite's online backup: a consistent copy of ``source`` into ``target``."""
    with (
        contextlib.closing(sqlite3.connect(source)) as origin,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        origin.backup(copy)


class SQLiteBackup(BackupMethod):
    summary = "SQLite online backup API (sqlite3.Connection.backup), restored the same way"

    def __init__(self, url: str, store: TaskStore, scratch: Path) -> None:
        from taskbench.stores.sqlite import IN_MEMORY, database_path

        super().__init__(url, store, scratch)
        self.path = database_path(url.partition("?")[0])
        if self.path == IN_MEMORY:
            raise ConfigError("an in-memory SQLite store lives in one process: nothing to back up")
        self.restored = scratch / "restored.db"

    async def backup(self, target: Path) -> None:
        await asyncio.to_thread(copy_database, self.path, target)

    async def prepare(self) -> None:
        return None

    async def restore(self, source: Path) -> str:
        await asyncio.to_thread(copy_database, source, self.restored)
        query = urlsplit(self.url).query
        return f"sqlite:///{self.restored}" + (f"?{query}" if query else "")

    async def discard(self) -> None:
        for path in self.scratch.glob(f"{self.restored.name}*"):  # with its -wal and -shm
            path.unlink(missing_ok=True)


class PostgresDump(BackupMethod):
    summary = "pg_dump --format=custom of the store's schema, pg_restore into a fresh database"

    def __init__(self, url: str, store: TaskStore, scratch: Path) -> None:
        super().__init__(url, store, scratch)
        parts = split_url(url)
        self.schema = dict(parse_qsl(parts.query)).get("schema") or "public"
        self.password = unquote(parts.password) if parts.password else None
        self.database = unquote(parts.path.lstrip("/"))
        self.restored: str | None = None

    def libpq(self, database: str) -> str:
        """A libpq URI for the tools: no password (PGPASSWORD carries it), no options."""
        parts = urlsplit(self.url)
        location = parts.netloc.rpartition("@")[2]
        user = f"{parts.username}@" if parts.username else ""
        return f"postgresql://{user}{location}/{quote(database)}"

    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password} if self.password else {}

    def tool(self, name: str) -> str:
        return find_tool([name], "apt-get install -y postgresql-client")

    async def backup(self, target: Path) -> None:
        command = [self.tool("pg_dump"), "--format=custom", "--no-owner", f"--file={target}"]
        command += [f"--schema={self.schema}", f"--dbname={self.libpq(self.database)}"]
        await run_tool(command, secret=self.password, env=self.env())

    async def admin(self, statement: str) -> None:
        import asyncpg

        connection = await asyncpg.connect(self.url.partition("?")[0])
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    async def prepare(self) -> None:
        self.restored = restore_name()
        await self.admin(f'CREATE DATABASE "{self.restored}"')

    async def restore(self, source: Path) -> str:
        assert self.restored is not None
        command = [self.tool("pg_restore"), "--no-owner", "--clean", "--if-exists"]
        command += ["--exit-on-error", f"--dbname={self.libpq(self.restored)}", str(source)]
        await run_tool(command, secret=self.password, env=self.env())
        return with_database(self.url, self.restored)

    async def discard(self) -> None:
        if self.restored is not None:
            with contextlib.suppress(Exception):
                await self.admin(f'DROP DATABASE IF EXISTS "{self.restored}" WITH (FORCE)')


def escape_glob(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisDumpRestore(BackupMethod):
    summary = "DUMP of the prefix's keys in one MULTI/EXEC, RESTOREd into a throwaway redis-server"

    def __init__(self, url: str, store: TaskStore, scratch: Path) -> None:
        super().__init__(url, store, scratch)
        self.prefix: str = getattr(store, "prefix", "taskbench:")
        self.server: Any = None

    async def backup(self, target: Path) -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(self.url.partition("?")[0])
        try:
            keys = [k async for k in client.scan_iter(match=escape_glob(self.prefix) + "*")]
            async with client.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.dump(key)
                    pipe.pttl(key)
                replies = await pipe.execute()
        finally:
            await client.aclose()
        await asyncio.to_thread(write_dumps, target, keys, replies)

    async def prepare(self) -> None:
        from taskbench.faults.servers import RedisServer, find_setting

        server = RedisServer(find_setting("redis", "no-persistence"), root=self.scratch)
        self.server = await asyncio.to_thread(server.__enter__)

    async def restore(self, source: Path) -> str:
        import redis.asyncio as aioredis

        client = aioredis.from_url(self.server.url)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for key, ttl, payload in await asyncio.to_thread(read_dumps, source):
                    pipe.restore(key, max(ttl, 0), payload, replace=True)
                await pipe.execute()
        finally:
            await client.aclose()
        query = urlsplit(self.url).query
        return str(self.server.url) + (f"?{query}" if query else "")

    async def discard(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.server.close)


def write_dumps(target: Path, keys: Sequence[bytes], replies: Sequence[Any]) -> None:
    """One JSON line per key: its name, its TTL in ms (-1: none) and its DUMP payload."""
    with target.open("w") as out:
        for key, payload, ttl in zip(keys, replies[0::2], replies[1::2], strict=True):
            if payload is None:  # deleted between SCAN and MULTI
                continue
            line = {"k": _b64(key), "t": ttl, "v": _b64(payload)}
            out.write(json.dumps(line) + "\n")


def read_dumps(source: Path) -> list[tuple[bytes, int, bytes]]:
    rows = (json.loads(line) for line in source.read_text().splitlines())
    return [(base64.b64decode(r["k"]), int(r["t"]), base64.b64decode(r["v"])) for r in rows]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class MySQLDump(BackupMethod):
    summary = "mariadb-dump --single-transaction of the database, loaded into a fresh database"

    def __init__(self, url: str, store: TaskStore, scratch: Path) -> None:
        super().__init__(url, store, scratch)
        parts = split_url(url)
        self.password = unquote(parts.password) if parts.password else None
        self.database = unquote(parts.path.lstrip("/"))
        self.options = scratch / "client.cnf"
        self.restored: str | None = None
        self._write_options(parts.hostname or "127.0.0.1", parts.port or 3306, parts.username)

    def _write_options(self, host: str, port: int, user: str | None) -> None:
        """The connection settings in a 0600 option file (the password stays off argv)."""
        lines = ["[client]", f"host={host}", f"port={port}"]
        lines += [f"user={_option(unquote(user))}"] if user else []
        lines += [f"password={_option(self.password)}"] if self.password else []
        self.options.touch(mode=0o600)
        self.options.write_text("\n".join(lines) + "\n")

    def tool(self, names: Sequence[str]) -> list[str]:
        found = find_tool(names, "apt-get install -y mariadb-client")
        return [found, f"--defaults-extra-file={self.options}", "--default-character-set=utf8mb4"]

    async def backup(self, target: Path) -> None:
        command = self.tool(["mariadb-dump", "mysqldump"])
        command += ["--single-transaction", "--no-tablespaces", f"--result-file={target}"]
        await run_tool([*command, self.database], secret=self.password)

    async def admin(self, statement: str) -> None:
        await run_tool([*self.tool(["mariadb", "mysql"]), "-e", statement], secret=self.password)

    async def prepare(self) -> None:
        self.restored = restore_name()
        await self.admin(f"CREATE DATABASE `{self.restored}` CHARACTER SET utf8mb4")

    async def restore(self, source: Path) -> str:
        assert self.restored is not None
        command = [*self.tool(["mariadb", "mysql"]), self.restored]
        await run_tool(command, secret=self.password, stdin=source)
        return with_database(self.url, self.restored)

    async def discard(self) -> None:
        if self.restored is not None:
            with contextlib.suppress(Exception):
                await self.admin(f"DROP DATABASE IF EXISTS `{self.restored}`")
        self.options.unlink(missing_ok=True)


def _option(value: str) -> str:
    """A value for a MySQL option file, quoted so that any character survives."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


METHODS: dict[str, type[BackupMethod]] = {
    "sqlite": SQLiteBackup,
    "postgresql": PostgresDump,
    "postgres": PostgresDump,
    "redis": RedisDumpRestore,
    "rediss": RedisDumpRestore,
    "mysql": MySQLDump,
    "mysql+pymysql": MySQLDump,
    "mariadb": MySQLDump,
}


def method_for(url: str, store: TaskStore, scratch: Path) -> BackupMethod:
    scheme = split_url(url).scheme.lower()
    if scheme not in METHODS:
        raise ConfigError(
            f"no backup method for {scheme}:// (a memory store lives in one process); "
            f"backed up: {', '.join(f'{s}://' for s in sorted(METHODS))}"
        )
    return METHODS[scheme](url, store, scratch)


# -- the drill -------------------------------------------------------------------------------


def drill_tasks(count: int, now: float) -> list[Task]:
    """Tasks of every priority and several sizes, due within the last minute."""
    return [
        Task.new(
            f"drill.{i % 7}",
            {"i": i, "text": "é😀'\"" * (i % 5), "blob": "x" * (i % 3 * 500)},
            priority=i % 4,
            max_attempts=1 + i % 3,
            run_at=now - 60 + i % 10,
            now=now - 120,
        )
        for i in range(count)
    ]


def outcomes_for(held: Sequence[Task], now: float) -> list[Outcome]:
    """Of the claimed tasks: a third succeed, a sixth die, a sixth retry; the rest run on."""
    outcomes = []
    for i, task in enumerate(held):
        if i % 6 in (0, 1):
            outcomes.append(Outcome.succeeded(task.lease, {"done": i, "note": "ü"}, now=now))
        elif i % 6 == 2:
            outcomes.append(Outcome.dead(task.lease, f"boom {i} 'é'", now=now))
        elif i % 6 == 3:
            outcomes.append(Outcome.retry(task.lease, "again", run_at=now + RETRY_IN_S, now=now))
    return outcomes


async def populate(store: TaskStore, count: int, now: float) -> list[str]:
    """Fill ``store``: all queued, then 60% claimed, and of those most finished."""
    tasks = drill_tasks(count, now)
    for start in range(0, count, ENQUEUE_BATCH):
        await store.enqueue(tasks[start : start + ENQUEUE_BATCH])
    held: list[Task] = []
    while len(held) < count * 0.6:
        batch = min(CLAIM_BATCH, int(count * 0.6) - len(held)) or 1
        held += await store.claim("drill-worker", batch, lease_s=LEASE_S, now=now)
    await store.finish(outcomes_for(held, now))
    return [task.id for task in tasks]


async def snapshot(store: TaskStore, ids: Sequence[str]) -> dict[str, Task]:
    found: dict[str, Task] = {}
    for start in range(0, len(ids), ENQUEUE_BATCH):
        found.update((t.id, t) for t in await store.get_many(ids[start : start + ENQUEUE_BATCH]))
    return found


async def claim_order(store: TaskStore, now: float) -> list[str]:
    """The ids of every due task, in the order the store hands them out."""
    order: list[str] = []
    while batch := await store.claim("drill-order", CLAIM_BATCH, lease_s=LEASE_S, now=now):
        order += [task.id for task in batch]
    return order


def order_mismatches(expected: Sequence[str], got: Sequence[str]) -> int:
    differing = sum(1 for a, b in zip(expected, got, strict=False) if a != b)
    return differing + abs(len(expected) - len(got))


async def takes_new_task(store: TaskStore, now: float) -> bool:
    """Whether a new task can be enqueued in ``store`` and is then handed out."""
    task = Task.new("drill.after-restore", run_at=now, now=now)
    try:
        await store.enqueue([task])
        claimed = await store.claim("drill-after", 10, lease_s=LEASE_S, now=now + 1)
    except StoreError:
        return False
    return [t.id for t in claimed] == [task.id]


async def timed(step: Awaitable[Any]) -> float:
    started = time.perf_counter()
    await step
    return time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class _Checks:
    mismatches: int
    order_mismatches: int
    writable: bool


async def compare(
    original: TaskStore, restored_url: str, before: dict[str, Task], now: float
) -> _Checks:
    """Every task's state, the claim order, and a new task, against the restored store."""
    async with open_store(restored_url) as restored:
        after = await snapshot(restored, list(before))
        mismatches = sum(1 for task_id, task in before.items() if after.get(task_id) != task)
        later = now + 2 * RETRY_IN_S
        order = order_mismatches(
            await claim_order(original, later), await claim_order(restored, later)
        )
        writable = await takes_new_task(restored, later)
    return _Checks(mismatches, order, writable)


MIN_TASKS = 6
"""A drill's smallest fill: one task of each kind."""


def check_tasks(tasks: object) -> int:
    """``tasks`` if it is a whole number of at least :data:`MIN_TASKS`; else ConfigError."""
    if isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < MIN_TASKS:
        raise ConfigError(
            f"a drill needs at least {MIN_TASKS} tasks (one of each kind), got {tasks!r}"
        )
    return tasks


async def drill(store_url: str, tasks: int = 1_000, *, scratch: str | None = None) -> BackupResult:
    """Fill ``store_url`` with ``tasks`` tasks, back it up, restore it elsewhere, compare.

    The store is PURGED before and after: give the drill a store of its own.
    ``scratch`` is where the backup file goes (a temporary directory by default).
    """
    check_tasks(tasks)
    with tempfile.TemporaryDirectory(prefix="taskbench-backup-", dir=scratch) as work:
        async with open_store(store_url) as store:
            method = method_for(store_url, store, Path(work))
            try:
                return await _drill(store_url, store, method, tasks, Path(work))
            finally:
                await method.discard()
                await store.purge()


async def _drill(
    url: str, store: TaskStore, method: BackupMethod, tasks: int, work: Path
) -> BackupResult:
    now = time.time()
    await store.purge()
    before = await snapshot(store, await populate(store, tasks, now))
    target = work / "backup"
    backup_s = await timed(method.backup(target))
    await method.prepare()
    started = time.perf_counter()
    restored_url = await method.restore(target)
    restore_s = time.perf_counter() - started
    checks = await compare(store, restored_url, before, now)
    return BackupResult(
        store=redact(url),
        method=method.summary,
        tasks=len(before),
        backup_bytes=target.stat().st_size,
        backup_s=backup_s,
        restore_s=restore_s,
        mismatches=checks.mismatches,
        order_mismatches=checks.order_mismatches,
        writable=checks.writable,
    )


def summary(result: BackupResult) -> str:
    return (
        f"{result.store}: {result.tasks:,} tasks, {result.method}\n"
        f"  backup {result.backup_s:.3f} s ({result.backup_bytes:,} bytes), "
        f"restore {result.restore_s:.3f} s\n"
        f"  mismatches {result.mismatches}, claim-order mismatches {result.order_mismatches}, "
        f"restored store {'takes' if result.writable else 'REFUSES'} new tasks"
    )


def _task_count(raw: str) -> int:
    try:
        tasks = int(raw)
    except ValueError:
        raise ConfigError(f"expected a whole number, got {raw!r}") from None
    return check_tasks(tasks)


def configure(parser: argparse.ArgumentParser) -> None:
    """The drill's arguments (for ``python -m`` here, and a ``taskbench faults`` entry)."""
    from taskbench.cli.common import add_store_option, argument

    add_store_option(parser, "a store of its own: PURGED")
    parser.add_argument(
        "--tasks",
        type=argument(_task_count),
        default=1_000,
        metavar="N",
        help=f"tasks to fill it with, at least {MIN_TASKS} (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Run the drill and print it; exit 1 unless every task came back."""
    result = asyncio.run(drill(args.store, args.tasks))
    print(json.dumps(result.to_json_dict()) if args.json else summary(result))
    clean = not (result.mismatches or result.order_mismatches) and result.writable
    return 0 if clean else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taskbench.faults.backup",
        description="Back a store up, restore it elsewhere, compare every task (PURGES it).",
    )
    configure(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except TaskbenchError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
