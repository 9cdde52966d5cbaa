"""Task stores, opened by URL: ``open_store("sqlite:///tasks.db?synchronous=NORMAL")``.

The scheme picks the backend (imported only when used); query-string options
become the backend's keyword arguments. See :mod:`taskbench.urls` for the
rules and :mod:`taskbench.stores.base` for the contract every store keeps.
"""

from __future__ import annotations

from typing import Any

from taskbench.stores.base import BaseStore, Capability, TaskStore
from taskbench.urls import Backend, Registry

STORES = Registry(
    "store",
    {
        "memory": Backend("taskbench.stores.memory", "MemoryStore"),
        "sqlite": Backend("taskbench.stores.sqlite", "SQLiteStore", file_path=True),
        "postgresql": Backend("taskbench.stores.postgres", "PostgresStore", "postgres"),
        "postgres": Backend("taskbench.stores.postgres", "PostgresStore", "postgres"),
        "redis": Backend("taskbench.stores.redis", "RedisStore", "redis"),
        "rediss": Backend("taskbench.stores.redis", "RedisStore", "redis"),
        "mysql": Backend("taskbench.stores.mysql", "MySQLStore", "mysql"),
        "mysql+pymysql": Backend("taskbench.stores.mysql", "MySQLStore", "mysql"),
        "mariadb": Backend("taskbench.stores.mysql", "MySQLStore", "mysql"),
    },
)


def open_store(url: str, **options: Any) -> TaskStore:
    """A store for ``url`` (not yet connected: ``await store.open()`` or ``async with``).

    Keyword ``options`` override the URL's query-string options.
    Raises ConfigError for a malformed URL, an unknown scheme or an unknown
    option, and MissingDependencyError (with the pip line) for a missing driver.
    """
    store: TaskStore = STORES.open(url, **options)
    return store


__all__ = ["STORES", "BaseStore", "Capability", "TaskStore", "open_store"]
