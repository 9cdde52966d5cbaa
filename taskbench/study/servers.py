"""The server backends a chapter may use: found, probed, and given scratch namespaces.

What this module owns: the server backends and the environment variable that
gives each one's URL (:data:`SERVER_VARIABLES`), probing a server
(:func:`probe`, :func:`find_backends`), and **scratch namespaces**
(:func:`scratch_url`): a PostgreSQL schema, a MySQL database, a Redis key
prefix of the study's own, dropped afterwards; nothing else on the server is
touched. Driver failures become StoreUnavailableError with the URL redacted;
the drivers are imported inside the functions that use them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import (
    AsyncIterator,
    Mapping,
)
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from taskbench.bench.environment import scrub
from taskbench.errors import ConfigError, StoreUnavailableError
from taskbench.urls import redact

SERVER_VARIABLES = {
    "postgres": "TASKBENCH_TEST_POSTGRES_URL",
    "redis": "TASKBENCH_TEST_REDIS_URL",
    "mysql": "TASKBENCH_TEST_MYSQL_URL",
}
"""Server backends, and the environment variable that gives each one's URL."""


PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """One store backend a chapter may measure, and whether it runs live."""

    name: str
    url: str | None
    """The URL to measure on (embedded) or the server's base URL; None when not set."""
    live: bool
    note: str
    """Why it is (not) live, with any URL redacted."""


def _with_query(url: str, **options: str) -> str:
    parts = urlsplit(url)
    extra = "&".join(f"{key}={value}" for key, value in options.items())
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def _without_query(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query="", fragment=""))


def _server_failure(backend: str, url: str, error: BaseException) -> StoreUnavailableError:
    reason = scrub(f"{type(error).__name__}: {error}")
    return StoreUnavailableError(f"{backend} at {redact(url)} is not usable: {reason}")


async def _drop_postgres_schema(base: str, schema: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_without_query(base), timeout=PROBE_TIMEOUT_S)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


async def _delete_redis_prefix(base: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(_without_query(base), socket_timeout=PROBE_TIMEOUT_S)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def _mysql_admin(base: str, statement: str) -> None:
    import pymysql

    parts = urlsplit(base)
    connection = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        connect_timeout=int(PROBE_TIMEOUT_S),
        autocommit=True,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


@contextlib.asynccontextmanager
async def scratch_url(backend: str, base: str) -> AsyncIterator[str]:
    """A URL on the server at ``base`` that only this block uses, dropped when it ends.

    PostgreSQL: a new schema (``?schema=``); Redis: a new key prefix; MySQL: a
    new database named ``tb_study_*`` (the server user must be allowed to
    create it). Driver failures become StoreUnavailableError (URL redacted).
    """
    token = f"tb_study_{uuid.uuid4().hex[:10]}"
    try:
        if backend == "mysql":
            await asyncio.to_thread(_mysql_admin, base, f"CREATE DATABASE `{token}`")
    except Exception as exc:
        raise _server_failure(backend, base, exc) from None
    try:
        yield _scratch_of(backend, base, token)
    finally:
        await _drop_scratch(backend, base, token)


def _scratch_of(backend: str, base: str, token: str) -> str:
    if backend == "postgres":
        return _with_query(base, schema=token)
    if backend == "redis":
        return _with_query(base, prefix=f"{token}:")
    if backend == "mysql":
        return urlunsplit(urlsplit(base)._replace(path=f"/{token}"))
    raise ConfigError(f"no scratch namespace for {backend!r}; known: {', '.join(SERVER_VARIABLES)}")


async def _drop_scratch(backend: str, base: str, token: str) -> None:
    try:
        if backend == "postgres":
            await _drop_postgres_schema(base, token)
        elif backend == "redis":
            await _delete_redis_prefix(base, f"{token}:")
        elif backend == "mysql":
            await asyncio.to_thread(_mysql_admin, base, f"DROP DATABASE IF EXISTS `{token}`")
    except Exception as exc:
        raise _server_failure(backend, base, exc) from None


async def _ping(backend: str, base: str) -> None:
    """One round trip to the server with its admin connection (driver errors propagate)."""
    if backend == "postgres":
        import asyncpg

        connection = await asyncpg.connect(_without_query(base), timeout=PROBE_TIMEOUT_S)
        await connection.close()
    elif backend == "redis":
        import redis.asyncio as aioredis

        client = aioredis.from_url(_without_query(base), socket_timeout=PROBE_TIMEOUT_S)
        try:
            await client.ping()
        finally:
            await client.aclose()
    elif backend == "mysql":
        await asyncio.to_thread(_mysql_admin, base, "SELECT 1")


async def probe(backend: str, base: str) -> str | None:
    """None if the server at ``base`` answers within the timeout; else why not (redacted)."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await _ping(backend, base)
    except Exception as exc:  # any failure means "not usable": report it, never raise
        return scrub(f"{type(exc).__name__}: {exc}")
    return None


async def find_backends(
    servers: Mapping[str, str | None] | None, scratch_dir: Path
) -> dict[str, Backend]:
    """The embedded backends (always live) and each server backend, probed."""
    found = {
        "memory": Backend(name="memory", url="memory://", live=True, note="embedded"),
        "sqlite": Backend(name="sqlite", url=None, live=True, note=f"embedded, in {scratch_dir}"),
        "sqlite-legacy": Backend(
            name="sqlite-legacy", url=None, live=True, note="embedded, profile=legacy"
        ),
    }
    for backend, variable in SERVER_VARIABLES.items():
        url = (servers or {}).get(backend) or os.environ.get(variable)
        if not url:
            found[backend] = Backend(name=backend, url=None, live=False, note=f"{variable} not set")
            continue
        problem = await probe(backend, url)
        note = redact(url) if problem is None else f"{redact(url)} not reachable: {problem}"
        found[backend] = Backend(name=backend, url=url, live=problem is None, note=note)
    return found
