"""PostgresStore against the real server: failures, hostile input, plans and wake-ups.

The contract suite (tests/contract) checks the semantics every store shares;
this file checks what only PostgreSQL has: how a bad URL or an unreachable
server is reported, that concurrent opens of one schema do not race, that the
claim query walks the claim index, and that LISTEN/NOTIFY wakes a waiter.

Each test isolates itself in its own schema (tests/backends.py). A bound such
as ``asyncio.wait_for(..., BOUND)`` only turns a hang into a failure; no test
asserts on durations.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from taskbench.errors import ConfigError, StoreError, StoreUnavailableError, TaskbenchError
from taskbench.model import Lease, Outcome, Task, TaskStatus
from taskbench.stores import open_store
from taskbench.stores.schema import declared_indexes
from tests.backends import isolated_store_url, server_url

asyncpg = pytest.importorskip("asyncpg")
from taskbench.stores.postgres import (  # noqa: E402
    CLAIM,
    EXTEND,
    FINISH,
    PLANNER_SETTINGS,
    RELEASE,
    PostgresStore,
    _lease_columns,
)

PASSWORD = "hunter2-Secret"
BOUND = 30.0
T0 = 1_700_000_000.0
CLAIM_INDEX = "ix_taskbench_tasks_claim"
LEASE_INDEX = "ix_taskbench_tasks_lease"
ID_INDEX = "uq_taskbench_tasks_id"


def _with(
    url: str, *, user: str | None = None, port: int | None = None, db: str | None = None
) -> str:
    """``url`` with a password and, optionally, another user, port or database."""
    parts = urlsplit(url.split("?", 1)[0])
    host = parts.hostname or "127.0.0.1"
    netloc = (
        f"{user or parts.username or 'postgres'}:{PASSWORD}@{host}:{port or parts.port or 5432}"
    )
    path = f"/{db}" if db else parts.path
    return urlunsplit(parts._replace(netloc=netloc, path=path, query=""))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _open_error(url: str, **options: Any) -> TaskbenchError:
    store = open_store(url, **options)
    with pytest.raises(TaskbenchError) as caught:
        await asyncio.wait_for(store.open(), BOUND)
    return caught.value


@pytest.fixture
def base_url() -> Iterator[str]:
    yield server_url("postgres")


@pytest.fixture
async def store_url(tmp_path: Path) -> AsyncIterator[str]:
    async with isolated_store_url("postgres", tmp_path) as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Any]:
    opened = open_store(store_url)
    async with opened:
        yield opened


# -- connection failures -----------------------------------------------------------------


async def test_unknown_role_is_a_config_error_without_the_password(base_url: str) -> None:
    error = await _open_error(_with(base_url, user=f"tb_nobody_{uuid.uuid4().hex[:8]}"))
    assert isinstance(error, ConfigError)
    assert "role" in str(error)
    assert PASSWORD not in str(error) and ":***@" in str(error)


async def test_missing_database_is_a_config_error_without_the_password(base_url: str) -> None:
    error = await _open_error(_with(base_url, db=f"tb_missing_{uuid.uuid4().hex[:8]}"))
    assert isinstance(error, ConfigError)
    assert "does not exist" in str(error)
    assert PASSWORD not in str(error)


async def test_a_closed_port_is_unavailable_without_the_password(base_url: str) -> None:
    error = await _open_error(_with(base_url, port=_free_port()), connect_timeout=2.0)
    assert isinstance(error, StoreUnavailableError)
    assert PASSWORD not in str(error) and ":***@" in str(error)


def test_a_password_in_a_driver_message_is_scrubbed() -> None:
    store = PostgresStore(f"postgresql://u:{PASSWORD}@127.0.0.1:1/x")
    error = store.translate(OSError(f"cannot reach u:{PASSWORD}@127.0.0.1"))
    assert isinstance(error, StoreUnavailableError)
    assert PASSWORD not in str(error)


@pytest.mark.parametrize(
    "query",
    [
        'schema=x";DROP SCHEMA public CASCADE;--',
        "schema=",
        "schema=" + "s" * 64,
        "pool_size=0",
        "connect_timeout=0",
        "connect_timeout=nan",
        "synchronous_commit=sometimes",
    ],
)
def test_bad_options_are_config_errors(query: str) -> None:
    with pytest.raises(ConfigError):
        open_store(f"postgresql://postgres@127.0.0.1/test?{query}")


# -- schema ------------------------------------------------------------------------------


async def test_concurrent_opens_of_a_new_schema_do_not_race(base_url: str) -> None:
    schema = f"tb_{uuid.uuid4().hex[:12]}"
    stores = [open_store(f"{base_url}?schema={schema}&pool_size=1") for _ in range(6)]
    try:
        await asyncio.wait_for(asyncio.gather(*(s.open() for s in stores)), BOUND)
        assert await stores[0].indexes() == declared_indexes()  # type: ignore[attr-defined]
    finally:
        for store in stores:
            await store.close()
        admin = await asyncpg.connect(base_url)
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


# -- hostile input -----------------------------------------------------------------------

HOSTILE = [
    "x'); DROP TABLE taskbench_tasks; --",
    "'; SELECT pg_sleep(10); --",
    "$1 $2 ::text[] %s {0}",
    "E'\\x00' \"quoted\" \\\\ backslash",
    "$$ dollar $$ quoted $$",
]


async def test_hostile_results_and_errors_are_stored_verbatim(store: Any) -> None:
    tasks = [Task.new(text, {"text": text}, now=T0) for text in HOSTILE]
    await store.enqueue(tasks)
    claimed = await store.claim("w'; --", len(tasks), lease_s=30, now=T0)
    outcomes = [
        Outcome.succeeded(t.lease, {"echo": t.name}, now=T0)
        if i % 2
        else Outcome.dead(t.lease, t.name, now=T0)
        for i, t in enumerate(claimed)
    ]
    assert await store.finish(outcomes) == len(tasks)
    for task in await store.get_many([t.id for t in tasks]):
        assert task.lease_owner is None
        if task.status is TaskStatus.DEAD:
            assert task.last_error == task.name
        else:
            assert task.result == {"echo": task.name}
    assert (await store.counts())[TaskStatus.SUCCEEDED] == len(tasks) // 2


# -- the claim plan ----------------------------------------------------------------------


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


async def _plan(store_url: str, statement: str, *args: Any) -> list[dict[str, Any]]:
    """The nodes of ``statement``'s plan, on a connection set up as the store's are."""
    schema = urlsplit(store_url).query.partition("schema=")[2].partition("&")[0]
    settings = {**PLANNER_SETTINGS, "search_path": schema}
    connection = await asyncpg.connect(store_url.split("?", 1)[0], server_settings=settings)
    try:
        explained = await connection.fetchval("EXPLAIN (FORMAT JSON) " + statement, *args)
    finally:
        await connection.close()
    return list(_plan_nodes(json.loads(explained)[0]["Plan"]))


async def _claim_plan(store_url: str) -> list[dict[str, Any]]:
    return await _plan(store_url, CLAIM, T0, 100, "w1", T0 + 30)


async def _analyse(store_url: str) -> None:
    admin = await asyncpg.connect(store_url.split("?", 1)[0])
    schema = urlsplit(store_url).query.partition("schema=")[2].partition("&")[0]
    await admin.execute(f'ANALYZE "{schema}".taskbench_tasks')
    await admin.close()


@pytest.mark.parametrize("analysed", [False, True])
async def test_the_claim_walks_the_claim_index_in_order(
    store_url: str, store: Any, analysed: bool
) -> None:
    await store.enqueue([Task.new("job", i, now=T0, priority=i % 4) for i in range(20_000)])
    if analysed:
        await _analyse(store_url)
    nodes = await _claim_plan(store_url)
    scans = [n for n in nodes if n.get("Index Name") == CLAIM_INDEX]
    assert [n["Node Type"] for n in scans] == ["Index Scan"]
    assert not [n for n in nodes if n["Node Type"] == "Sort"]


def _lease_writes(leases: list[Lease], channel: str) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """FINISH, EXTEND and RELEASE with the arguments the store would send for ``leases``."""
    columns = _lease_columns(leases)
    n = len(leases)
    outcome = (["succeeded"] * n, [T0 + 1] * n, ["null"] * n, [None] * n, [None] * n)
    return {
        "finish": (FINISH, (*columns, *outcome, channel)),
        "extend": (EXTEND, (*columns, T0 + 60)),
        "release": (RELEASE, (*columns, channel)),
    }


@pytest.mark.parametrize("analysed", [False, True])
async def test_lease_writes_look_their_rows_up_by_id_whatever_the_backlog(
    store_url: str, store: Any, analysed: bool
) -> None:
    """No full scan, and not the lease index either: with 20,000 tasks queued and 400
    running, a finish of 400 must cost O(400), not O(backlog) nor O(running x batch).
    (Measured before this plan: 150 ms per finish of 400 in a 20,000-task drain.)"""
    await store.enqueue([Task.new("job", i, now=T0) for i in range(20_000)])
    claimed = await store.claim("w1", 400, lease_s=30, now=T0)
    if analysed:
        await _analyse(store_url)
    leases = [task.lease for task in claimed]
    for name, (statement, args) in _lease_writes(leases, store._channel).items():
        nodes = await _plan(store_url, statement, *args)
        kinds = {(n["Node Type"], n.get("Index Name")) for n in nodes if "Relation Name" in n}
        assert ("Seq Scan", None) not in kinds, f"{name} scans the whole table: {kinds}"
        assert all(index != LEASE_INDEX for _, index in kinds), f"{name} walks {LEASE_INDEX}"
        assert ("Index Scan", ID_INDEX) in kinds, f"{name} does not look ids up: {kinds}"


async def _generic_plan(store_url: str, statement: str, *args: Any) -> list[dict[str, Any]]:
    """The nodes of the plan PostgreSQL would cache for ``statement`` (a generic plan,
    made without the values), on a connection set up as the store's are."""
    schema = urlsplit(store_url).query.partition("schema=")[2].partition("&")[0]
    settings = {**PLANNER_SETTINGS, "search_path": schema, "plan_cache_mode": "force_generic_plan"}
    connection = await asyncpg.connect(store_url.split("?", 1)[0], server_settings=settings)
    try:
        types = [kind.name for kind in (await connection.prepare(statement)).get_parameters()]
        literals = [  # EXPLAIN EXECUTE takes no bind parameters: the values go in as literals
            await connection.fetchval(f"SELECT quote_nullable($1::{kind})", value) + f"::{kind}"
            for kind, value in zip(types, args, strict=True)
        ]
        await connection.execute(f"PREPARE cached AS {statement}")
        explained = await connection.fetchval(
            f"EXPLAIN (FORMAT JSON) EXECUTE cached({', '.join(literals)})"
        )
    finally:
        await connection.close()
    return list(_plan_nodes(json.loads(explained)[0]["Plan"]))


async def test_plans_cached_on_a_nearly_empty_table_still_find_rows_by_index(
    store_url: str, store: Any
) -> None:
    """An open loop starts on an empty table, so the plans asyncpg's prepared statements
    settle on are made for a handful of rows; a plan that scans the table then costs
    O(table) per claim and finish as the table grows (measured: a p99 wait of 0.7-1.7 s
    at 5,300 tasks/s on a fresh schema)."""
    await store.enqueue([Task.new("job", i, now=T0) for i in range(3)])
    claimed = await store.claim("w1", 3, lease_s=30, now=T0)
    statements = {"claim": (CLAIM, (T0, 100, "w1", T0 + 30))}
    statements |= _lease_writes([task.lease for task in claimed], store._channel)
    for name, (statement, args) in statements.items():
        nodes = await _generic_plan(store_url, statement, *args)
        scans = [n["Node Type"] for n in nodes if "Relation Name" in n]
        assert "Seq Scan" not in scans, f"the cached {name} plan scans the table: {scans}"
        assert "Index Scan" in scans, f"the cached {name} plan uses no index: {scans}"


# -- LISTEN/NOTIFY -----------------------------------------------------------------------


async def test_a_due_retry_wakes_another_client(store_url: str, store: Any) -> None:
    waiter = open_store(store_url)
    async with waiter:
        await store.enqueue([Task.new("job", now=T0)])
        await asyncio.wait_for(waiter.wait_for_work(BOUND * 2), BOUND)  # the enqueue's NOTIFY
        (running,) = await store.claim("w1", 1, lease_s=30, now=T0)
        waiting = asyncio.create_task(waiter.wait_for_work(BOUND * 2))
        await asyncio.sleep(0.05)
        await store.finish([Outcome.retry(running.lease, "again", run_at=T0, now=T0 + 1)])
        await asyncio.wait_for(waiting, BOUND)
        assert [t.id for t in await waiter.claim("w2", 1, lease_s=30, now=T0 + 2)] == [running.id]


async def test_requeue_dead_wakes_another_client(store_url: str, store: Any) -> None:
    waiter = open_store(store_url)
    async with waiter:
        await store.enqueue([Task.new("job", now=T0, max_attempts=1)])
        await asyncio.wait_for(waiter.wait_for_work(BOUND * 2), BOUND)
        (running,) = await store.claim("w1", 1, lease_s=30, now=T0)
        await store.finish([Outcome.dead(running.lease, "boom", now=T0)])
        waiting = asyncio.create_task(waiter.wait_for_work(BOUND * 2))
        await asyncio.sleep(0.05)
        assert await store.requeue_dead(now=T0) == 1
        await asyncio.wait_for(waiting, BOUND)


async def test_a_closed_store_says_so(store_url: str) -> None:
    store = open_store(store_url)
    async with store:
        pass
    with pytest.raises(StoreError, match="not open"):
        await store.counts()
