"""MySQLStore against the real MariaDB/MySQL server: failures, hostile input, catalog, recovery.

The contract suite (tests/contract) checks the semantics every store shares;
this file checks what only this store has: how a bad URL, bad credentials or
an unreachable server are reported (a clear TaskbenchError, never the
password), that values reach the table verbatim, that the indexes the server
really has are the declared ones, and that a connection the server drops is
replaced.

Each test isolates itself in its own database (tests/backends.py). A bound
such as ``asyncio.wait_for(..., BOUND)`` only turns a hang into a failure; no
test asserts on durations.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from taskbench.errors import (
    ConfigError,
    InvalidTaskError,
    StoreUnavailableError,
    TaskbenchError,
)
from taskbench.model import Outcome, Task, TaskStatus
from taskbench.stores import open_store
from taskbench.stores.schema import declared_indexes
from tests.backends import isolated_store_url, server_url

pymysql = pytest.importorskip("pymysql")
from taskbench.stores.mysql import MySQLStore  # noqa: E402

WRONG_PASSWORD = "hunter2-Secret"
BOUND = 30.0
OTHER_CONNECTIONS = (
    "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()"
)
T0 = 1_700_000_000.0


def _with(
    url: str, *, password: str | None = None, port: int | None = None, db: str | None = None
) -> str:
    """``url`` with another password, port or database."""
    parts = urlsplit(url.split("?", 1)[0])
    user = parts.username or "root"
    secret = parts.password if password is None else password
    credentials = f"{user}:{secret}" if secret else user
    netloc = f"{credentials}@{parts.hostname or '127.0.0.1'}:{port or parts.port or 3306}"
    path = f"/{db}" if db else parts.path
    return urlunsplit(parts._replace(netloc=netloc, path=path, query=""))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _admin(url: str) -> Any:
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username,
        password=parts.password or "",
        database=parts.path.lstrip("/"),
        autocommit=True,
    )


async def _open_error(url: str, **options: Any) -> TaskbenchError:
    store = open_store(url, **options)
    with pytest.raises(TaskbenchError) as caught:
        await asyncio.wait_for(store.open(), BOUND)
    await store.close()
    return caught.value


def _assert_secret_free(error: BaseException, *secrets: str | None) -> None:
    for secret in filter(None, secrets):
        assert secret not in str(error)
        assert secret not in repr(error)


@pytest.fixture
def base_url() -> Iterator[str]:
    yield server_url("mysql")


@pytest.fixture
async def store_url(tmp_path: Path) -> AsyncIterator[str]:
    async with isolated_store_url("mysql", tmp_path) as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Any]:
    opened = open_store(store_url)
    async with opened:
        yield opened


# -- failures are clear, bounded and never show the password ------------------------------


async def test_a_wrong_password_is_a_config_error_without_the_password(base_url: str) -> None:
    error = await _open_error(_with(base_url, password=WRONG_PASSWORD))
    assert isinstance(error, ConfigError)
    assert "credentials" in str(error)
    _assert_secret_free(error, WRONG_PASSWORD)


async def test_an_unknown_database_is_a_config_error_naming_it(base_url: str) -> None:
    missing = f"tb_missing_{uuid.uuid4().hex[:8]}"
    error = await _open_error(_with(base_url, db=missing))
    assert isinstance(error, ConfigError)
    assert missing in str(error)
    _assert_secret_free(error, urlsplit(base_url).password)


async def test_a_closed_port_is_store_unavailable(base_url: str) -> None:
    url = _with(base_url, password=WRONG_PASSWORD, port=_free_port())
    error = await _open_error(url, connect_timeout=5.0)
    assert isinstance(error, StoreUnavailableError)
    assert ":***@" in str(error)
    _assert_secret_free(error, WRONG_PASSWORD)


def test_the_url_shown_is_redacted(base_url: str) -> None:
    store = open_store(_with(base_url, password=WRONG_PASSWORD))
    assert WRONG_PASSWORD not in store.url
    assert WRONG_PASSWORD not in repr(store)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("pool_size=0", "pool_size"),
        ("pool_size=many", "pool_size"),
        ("connect_timeout=-1", "connect_timeout"),
        ("connect_timeout=nan", "connect_timeout"),
        ("poolsize=4", "poolsize"),
    ],
)
def test_bad_options_are_config_errors_naming_them(base_url: str, query: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        open_store(f"{_with(base_url)}?{query}")


def test_a_url_without_a_database_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="database"):
        MySQLStore("mysql://someone:pw@127.0.0.1:3306")


async def test_a_call_before_open_is_a_store_error(store_url: str) -> None:
    with pytest.raises(TaskbenchError, match="not open"):
        await open_store(store_url).counts()


# -- what is stored is what was given -----------------------------------------------------

HOSTILE = [
    "x'); DROP TABLE taskbench_tasks; --",
    "' OR '1'='1",
    "\\'; SELECT SLEEP(10); -- ",
    "%s %(x)s {0} $1 ?",
    '`backtick` "double" \\ backslash',
]


async def test_hostile_ids_names_and_payloads_reach_the_table_verbatim(
    store: Any, store_url: str
) -> None:
    tasks = [
        Task.new(text, {"text": text}, id=f"{i}:{text}"[:64], now=T0)
        for i, text in enumerate(HOSTILE)
    ]
    await store.enqueue(tasks)
    admin = _admin(store_url)
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT id, name, payload FROM taskbench_tasks ORDER BY seq")
            stored = list(cursor.fetchall())
    finally:
        admin.close()
    assert stored == [(t.id, t.name, t.payload_json) for t in tasks]
    assert await store.get("' OR '1'='1") is None
    assert sorted(t.id for t in await store.get_many([t.id for t in tasks])) == sorted(
        t.id for t in tasks
    )


async def test_a_duplicate_id_is_named_and_nothing_is_inserted(store: Any) -> None:
    await store.enqueue([Task.new("job", id="taken", now=T0)])
    with pytest.raises(InvalidTaskError, match="'taken'"):
        await store.enqueue(
            [Task.new("job", id=f"new-{i}", now=T0) for i in range(50)]
            + [Task.new("job", id="taken", now=T0)]
        )
    assert (await store.counts())[TaskStatus.QUEUED] == 1


async def test_a_mixed_batch_of_outcomes_is_applied_in_one_call(store: Any) -> None:
    await store.enqueue([Task.new("job", id=f"t{i}", now=T0) for i in range(3)])
    ok, retry, dead = await store.claim("w1", 3, lease_s=30, now=T0)
    applied = await store.finish(
        [
            Outcome.succeeded(ok.lease, {"big": "r" * 70_000}, now=T0 + 1),
            Outcome.retry(retry.lease, "try again", run_at=T0 + 9, now=T0 + 1),
            Outcome.dead(dead.lease, "fatal", now=T0 + 2),
        ]
    )
    assert applied == 3
    by_id = {t.id: t for t in await store.get_many([ok.id, retry.id, dead.id])}
    assert by_id[ok.id].result == {"big": "r" * 70_000}
    assert (by_id[retry.id].status, by_id[retry.id].run_at) == (TaskStatus.QUEUED, T0 + 9)
    assert (by_id[dead.id].status, by_id[dead.id].finished_at) == (TaskStatus.DEAD, T0 + 2)


# -- the server's catalog, and connections it drops ---------------------------------------


async def test_the_indexes_on_the_server_are_the_declared_ones(store: Any, store_url: str) -> None:
    assert await store.indexes() == declared_indexes()
    again = open_store(store_url)
    async with again:  # a second open finds the schema and leaves it as it is
        assert await again.indexes() == declared_indexes()


async def _kill_connections(store_url: str) -> None:
    """KILL every connection to the test's database, and wait until they are gone."""
    database = urlsplit(store_url).path.lstrip("/")
    admin = _admin(store_url)
    try:
        with admin.cursor() as cursor:
            cursor.execute(OTHER_CONNECTIONS, (database,))
            for (connection_id,) in cursor.fetchall():
                cursor.execute("KILL CONNECTION %s", (connection_id,))
            while cursor.execute(OTHER_CONNECTIONS, (database,)):
                await asyncio.sleep(0.05)
    finally:
        admin.close()


async def test_a_dropped_connection_is_reported_then_replaced(store_url: str) -> None:
    store = open_store(f"{store_url}?pool_size=1")
    async with store:
        await store.enqueue([Task.new("job", now=T0)])
        await asyncio.wait_for(_kill_connections(store_url), BOUND)
        with pytest.raises(StoreUnavailableError) as caught:
            await store.counts()
        _assert_secret_free(caught.value, urlsplit(store_url).password)
        assert (await store.counts())[TaskStatus.QUEUED] == 1
