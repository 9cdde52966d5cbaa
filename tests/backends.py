"""Where the tests find each store backend, and how each test isolates itself.

Server URLs come from environment variables (``.ci/run`` exports them):

    TASKBENCH_TEST_POSTGRES_URL   e.g. postgresql://postgres@127.0.0.1:5432/test
    TASKBENCH_TEST_REDIS_URL      e.g. redis://127.0.0.1:6379/0
    TASKBENCH_TEST_MYSQL_URL      e.g. mysql://taskbench:taskbench@127.0.0.1:3306/test

A backend whose variable is unset is skipped with a reason saying so, except
when ``CI`` or ``TASKBENCH_REQUIRE_ALL_BACKENDS`` is set: there a missing
backend fails, because a backend silently skipped in CI is a failure.

Each test gets its own place on a shared server (a PostgreSQL schema, a
MySQL database, a Redis key prefix) and it is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

STORE_BACKENDS = ["memory", "sqlite", "sqlite-legacy", "postgres", "redis", "mysql"]
SERVER_ENV = {
    "postgres": "TASKBENCH_TEST_POSTGRES_URL",
    "redis": "TASKBENCH_TEST_REDIS_URL",
    "mysql": "TASKBENCH_TEST_MYSQL_URL",
}


def all_backends_required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("TASKBENCH_REQUIRE_ALL_BACKENDS"))


def server_url(backend: str) -> str:
    """The base URL of a server backend, or skip (fail in CI) if it is not configured."""
    variable = SERVER_ENV[backend]
    url = os.environ.get(variable)
    if not url:
        message = f"{backend} tests need {variable} (see tests/backends.py)"
        if all_backends_required():
            pytest.fail(f"{message}; in CI every backend must run")
        pytest.skip(message)
    return url


def _with_query(url: str, **options: str) -> str:
    parts = urlsplit(url)
    extra = "&".join(f"{k}={v}" for k, v in options.items())
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


@asynccontextmanager
async def _postgres(base: str) -> AsyncIterator[str]:
    import asyncpg

    schema = f"tb_{uuid.uuid4().hex[:12]}"
    plain = base.split("?", 1)[0]
    admin = await asyncpg.connect(plain)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        yield _with_query(base, schema=schema)
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


def _mysql_admin(base: str):  # type: ignore[no-untyped-def]
    import pymysql

    parts = urlsplit(base)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        autocommit=True,
    )


@asynccontextmanager
async def _mysql(base: str) -> AsyncIterator[str]:
    database = f"tb_{uuid.uuid4().hex[:12]}"
    admin = _mysql_admin(base)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        yield _with_database(base, database)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()


@asynccontextmanager
async def _redis(base: str) -> AsyncIterator[str]:
    import redis.asyncio as aioredis

    prefix = f"tbtest:{uuid.uuid4().hex[:12]}:"
    client = aioredis.from_url(base.split("?", 1)[0])
    try:
        yield _with_query(base, prefix=prefix)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@asynccontextmanager
async def isolated_store_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A store URL that this test alone uses, dropped when the block ends."""
    if backend == "memory":
        yield "memory://"
    elif backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'tasks.db'}"
    elif backend == "sqlite-legacy":
        yield f"sqlite:///{tmp_path / 'tasks.db'}?profile=legacy"
    elif backend == "postgres":
        async with _postgres(server_url("postgres")) as url:
            yield url
    elif backend == "mysql":
        async with _mysql(server_url("mysql")) as url:
            yield url
    elif backend == "redis":
        async with _redis(server_url("redis")) as url:
            yield url
    else:
        raise ValueError(backend)
