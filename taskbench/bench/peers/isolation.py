"""Where each side of a comparison runs on the shared servers, and the cleanup after it.

Design rules:

* **A place of its own.** Every run gets a fresh name (``tb_peers_<hex>``):
  our PostgreSQL store gets it as ``?schema=``, our Redis store as
  ``?prefix=``, our SQLite store a file in a temporary folder. The peers
  isolate themselves inside their scripts; Redis peers get database
  :data:`PEER_REDIS_DB`, never the one our store uses.
* **Clean up only what we made.** The schema is dropped by its exact name and
  Redis keys are deleted by their exact prefix (``SCAN`` + ``DEL``, never
  ``FLUSHDB``). Cleanup failures are reported, not raised: the figures are
  already measured by then.
"""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit, urlunsplit

from taskbench.errors import ConfigError

PEER_REDIS_DB = 13
NAME_PREFIX = "tb_peers_"
DROP_SCHEMA = "DROP SCHEMA IF EXISTS {schema} CASCADE"  # schema: NAME_PREFIX + hex, made here
SCAN_BATCH = 1000


def fresh_name() -> str:
    """A name no other run uses: ``tb_peers_`` and 12 hex digits."""
    return f"{NAME_PREFIX}{uuid.uuid4().hex[:12]}"


def with_query(url: str, options: str) -> str:
    """``url`` with ``options`` (``a=1&b=2``) appended to its query string."""
    if not options:
        return url
    parts = urlsplit(url)
    query = f"{parts.query}&{options}" if parts.query else options
    return urlunsplit(parts._replace(query=query))


def with_redis_db(url: str, database: int) -> str:
    """A ``redis://`` URL pointing at another database number."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError(f"expected a redis:// URL, got scheme {parts.scheme!r}")
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _drop_schema(url: str, schema: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(DROP_SCHEMA.format(schema=schema))
    finally:
        await connection.close()


async def _delete_prefix(url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=SCAN_BATCH)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def drop_schema(url: str, schema: str) -> None:
    """Drop our store's PostgreSQL ``schema`` (one this module named)."""
    if not schema.startswith(NAME_PREFIX) or not schema.replace("_", "").isalnum():
        raise ConfigError(f"refusing to drop schema {schema!r}: not one of ours")
    asyncio.run(_drop_schema(url, schema))


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every Redis key under our store's ``prefix`` (one this module named)."""
    if not prefix.startswith(NAME_PREFIX):
        raise ConfigError(f"refusing to delete keys under {prefix!r}: not one of ours")
    asyncio.run(_delete_prefix(url, prefix))
