"""No schema drift: each SQL backend's catalog holds exactly the declared tables and indexes.

The report's first finding was that its SQLite store had none of the indexes
its PostgreSQL store had. Here every SQL backend builds its schema from
taskbench/stores/schema.py, and this test reads back, from each server's own
catalog, the tables (the task table and the fence table, with their columns)
and the indexes that really exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from taskbench.stores import open_store
from taskbench.stores.schema import declared_indexes, declared_tables
from tests.backends import isolated_store_url

SQL_BACKENDS = ["sqlite", "postgres", "mysql"]


@pytest.mark.parametrize("backend", SQL_BACKENDS)
async def test_catalog_indexes_equal_the_declaration(backend: str, tmp_path: Path) -> None:
    async with isolated_store_url(backend, tmp_path) as url:
        store: Any = open_store(url)
        async with store:
            assert await store.indexes() == declared_indexes()


@pytest.mark.parametrize("backend", SQL_BACKENDS)
async def test_catalog_tables_equal_the_declaration(backend: str, tmp_path: Path) -> None:
    async with isolated_store_url(backend, tmp_path) as url:
        store: Any = open_store(url)
        async with store:
            assert await store.tables() == declared_tables()


async def test_the_legacy_sqlite_profile_is_the_reports_before_state(tmp_path: Path) -> None:
    store: Any = open_store(f"sqlite:///{tmp_path / 'legacy.db'}?profile=legacy")
    async with store:
        assert await store.indexes() == {}
        assert await store.tables() == declared_tables()
