"""Backup and restore drills on every persistent store (issue 7, item 6).

Each drill fills an isolated store with queued, running, succeeded, dead and
retried tasks, backs it up with the server's own tool, restores it into a
fresh place (a new database, a throwaway redis-server, a new file) and
compares every task, the claim order and a new task. The comparison itself is
shown to catch a changed task and a reordered queue, and a failing tool's
message to hide the password.
"""

from __future__ import annotations

import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from taskbench.errors import ConfigError, StoreError
from taskbench.faults.backup import (
    MySQLDump,
    compare,
    copy_database,
    drill,
    order_mismatches,
    populate,
    run_tool,
    snapshot,
)
from taskbench.stores import open_store
from tests.backends import isolated_store_url, server_url

TASKS = 300


async def _restore_databases(backend: str) -> list[str]:
    """The tb_restore_* databases on the shared server (a drill must leave none)."""
    if backend == "postgres":
        import asyncpg

        connection = await asyncpg.connect(server_url("postgres").partition("?")[0])
        try:
            rows = await connection.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'tb\\_restore\\_%'"
            )
        finally:
            await connection.close()
        return sorted(row["datname"] for row in rows)
    if backend == "mysql":
        from tests.backends import _mysql_admin

        admin = _mysql_admin(server_url("mysql"))
        try:
            with admin.cursor() as cursor:
                cursor.execute("SHOW DATABASES LIKE 'tb\\_restore\\_%'")
                return sorted(row[0] for row in cursor.fetchall())
        finally:
            admin.close()
    return []


@pytest.fixture(params=["sqlite", "postgres", "redis", "mysql"])
async def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with isolated_store_url(request.param, tmp_path) as url:
        yield url


async def test_a_restored_store_has_every_task_in_full(
    backend_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    backend = request.node.callspec.params["backend_url"]
    left_before = await _restore_databases(backend)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = await drill(backend_url, TASKS, scratch=str(scratch))
    assert result.tasks == TASKS and result.backup_bytes > 0, result
    assert (result.mismatches, result.order_mismatches, result.writable) == (0, 0, True), result
    assert result.backup_s > 0 and result.restore_s > 0
    assert await _restore_databases(backend) == left_before, "the restored database is left over"
    assert list(scratch.iterdir()) == [], "the drill left files in its scratch directory"
    async with open_store(backend_url) as store:
        assert sum((await store.counts()).values()) == 0, "the drill must purge its store"


async def test_a_memory_store_has_nothing_to_back_up() -> None:
    with pytest.raises(ConfigError, match="memory"):
        await drill("memory://", TASKS)


async def test_the_comparison_catches_a_changed_task_and_a_reordered_queue(
    tmp_path: Path,
) -> None:
    now = time.time()
    original_url, copy_path = f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "b.db"
    async with open_store(original_url) as original:
        before = await snapshot(original, await populate(original, 60, now))
        copy_database(tmp_path / "a.db", copy_path)
        async with open_store(f"sqlite:///{copy_path}") as copy:
            assert await copy.requeue_dead() > 0  # the copy now differs from the original
        checks = await compare(original, f"sqlite:///{copy_path}", before, now)
    assert checks.mismatches > 0
    assert order_mismatches(["a", "b", "c"], ["b", "a", "c"]) == 2
    assert order_mismatches(["a", "b"], ["a"]) == 1


async def test_a_failing_tool_never_shows_the_password() -> None:
    secret = "Tb!s3cret@p:w/d%"
    complain = f"import sys; sys.stderr.write('login failed for {secret}'); sys.exit(3)"
    with pytest.raises(StoreError) as caught:
        await run_tool([sys.executable, "-c", complain], secret=secret)
    assert secret not in str(caught.value) and "***" in str(caught.value)


def test_the_mysql_password_goes_in_a_private_file_never_on_argv(tmp_path: Path) -> None:
    url = "mysql://user:Tb!s3cret%40x@127.0.0.1:3306/tb_db"
    method = MySQLDump(url, store=None, scratch=tmp_path)  # type: ignore[arg-type]
    command = method.tool(["sh"])
    assert not any("Tb!s3cret" in part for part in command)
    assert stat.S_IMODE(method.options.stat().st_mode) == 0o600
    assert 'password="Tb!s3cret@x"' in method.options.read_text()
