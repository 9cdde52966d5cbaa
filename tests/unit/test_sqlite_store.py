"""SQLiteStore beyond the contract: URLs, options, bad files, the two profiles.

Read-only conditions: the tests run as root, and root ignores permission
bits (``chmod 0444`` does not stop its writes). The immutable attribute
(``chattr +i``) stops root too: the kernel refuses to open an immutable
file for writing and to create files in an immutable directory, whatever
the caller's capabilities (short of clearing the flag). Those tests skip,
saying why, where ``chattr`` is missing or the file system has no such
attribute.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskbench.bench.backlog import claim_latency
from taskbench.errors import BenchmarkError, ConfigError, StoreError, StoreUnavailableError
from taskbench.model import Task, TaskStatus
from taskbench.stores import Capability, open_store
from taskbench.stores.schema import declared_indexes
from taskbench.stores.sqlite import IN_MEMORY, SQLiteStore, database_path

T0 = 1_700_000_000.0
Flag = Callable[[Path], None]


def url_of(path: Path, query: str = "") -> str:
    return f"sqlite:///{path}{query}"


def journal_mode(path: Path) -> str:
    """The journal mode stored in the file, read by a connection of our own."""
    connection = sqlite3.connect(path)
    try:
        mode: str = connection.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        connection.close()
    return mode


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite://", IN_MEMORY),
        ("sqlite:///:memory:", IN_MEMORY),
        ("sqlite:///relative/tasks.db", "relative/tasks.db"),
        ("sqlite:////absolute/tasks.db", "/absolute/tasks.db"),
    ],
)
def test_urls_follow_sqlalchemy(url: str, expected: str) -> None:
    assert database_path(url) == expected


@pytest.mark.parametrize("url", ["sqlite://host/tasks.db", "sqlite:///x.db?profile=legacy"])
def test_a_url_with_a_host_or_a_query_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="sqlite:///"):
        SQLiteStore(url)


async def test_a_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///relative.db")
    await store.open()
    await store.close()
    assert (tmp_path / "relative.db").is_file()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:?profile=legacy"])
async def test_in_memory_keeps_tasks_but_claims_no_persistence(url: str) -> None:
    store = open_store(url)
    assert Capability.PERSISTENT not in store.capabilities
    assert Capability.MULTI_PROCESS not in store.capabilities
    assert Capability.PRIORITY_ORDER in store.capabilities
    task = Task.new("job", {"n": 1}, now=T0)
    await store.open()
    try:
        await store.enqueue([task])
        assert await store.get(task.id) == task
    finally:
        await store.close()


def test_a_file_store_is_persistent_and_shared(tmp_path: Path) -> None:
    store = open_store(url_of(tmp_path / "tasks.db"))
    wanted = Capability.PERSISTENT | Capability.MULTI_PROCESS | Capability.TRANSACTIONAL
    assert wanted in store.capabilities


@pytest.mark.parametrize(
    ("query", "accepted"),
    [
        ("?synchronous=SOMETIMES", "OFF, NORMAL, FULL, EXTRA"),
        ("?profile=fastest", "improved, legacy"),
        ("?busy_timeout_ms=-1", "busy_timeout_ms"),
    ],
)
async def test_bad_option_values_are_refused_at_open(
    tmp_path: Path, query: str, accepted: str
) -> None:
    store = open_store(url_of(tmp_path / "tasks.db", query))
    with pytest.raises(ConfigError, match=accepted):
        await store.open()
    assert not (tmp_path / "tasks.db").exists()


def test_an_unknown_option_lists_the_accepted_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="synchronous, profile, busy_timeout_ms"):
        open_store(url_of(tmp_path / "tasks.db", "?journal=wal"))


@pytest.mark.parametrize("value", ["off", "normal", "FULL", "Extra"])
async def test_synchronous_accepts_any_case(tmp_path: Path, value: str) -> None:
    store = open_store(url_of(tmp_path / "tasks.db", f"?synchronous={value}"))
    await store.open()
    await store.close()


async def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    store = open_store(url_of(missing / "tasks.db"))
    with pytest.raises(ConfigError, match=str(missing)):
        await store.open()


async def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 100)
    before = path.read_bytes()
    store = open_store(url_of(path))
    with pytest.raises(StoreError, match="not a SQLite database"):
        await store.open()
    assert path.read_bytes() == before


@pytest.fixture
def make_immutable() -> Iterator[Flag]:
    """chattr +i a path for the test, and always clear the flag afterwards."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed: no read-only condition that root honours")
    flagged: list[Path] = []

    def flag(path: Path) -> None:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"chattr +i is not supported here: {done.stderr.decode().strip()}")
        flagged.append(path)

    yield flag
    for path in flagged:
        subprocess.run(["chattr", "-i", str(path)], check=True)


async def test_a_read_only_file_is_refused(tmp_path: Path, make_immutable: Flag) -> None:
    path = tmp_path / "tasks.db"
    store = open_store(url_of(path))
    await store.open()
    await store.enqueue([Task.new("job", now=T0, id="kept")])
    await store.close()
    make_immutable(path)
    with pytest.raises(StoreError, match="read-only") as raised:
        await open_store(url_of(path)).open()
    assert not isinstance(raised.value, sqlite3.Error)


async def test_a_read_only_directory_is_refused(tmp_path: Path, make_immutable: Flag) -> None:
    directory = tmp_path / "locked"
    directory.mkdir()
    make_immutable(directory)
    with pytest.raises(StoreError, match="cannot open or create"):
        await open_store(url_of(directory / "tasks.db")).open()
    assert not (directory / "tasks.db").exists()


async def test_improved_profile_has_the_declared_indexes_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SQLiteStore(url_of(path))
    await store.open()
    try:
        assert await store.indexes() == declared_indexes()
    finally:
        await store.close()
    assert journal_mode(path) == "wal"


async def test_legacy_profile_has_no_indexes_and_a_rollback_journal(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SQLiteStore(url_of(path), profile="legacy")
    await store.open()
    try:
        assert await store.indexes() == {}
    finally:
        await store.close()
    assert journal_mode(path) == "delete"


async def test_a_legacy_file_reopened_improved_gains_the_indexes_and_keeps_its_tasks(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    task = Task.new("job", [1, 2], now=T0)
    async with SQLiteStore(url_of(path), profile="legacy") as legacy:
        await legacy.enqueue([task])
    async with SQLiteStore(url_of(path)) as improved:
        assert await improved.indexes() == declared_indexes()
        assert await improved.get(task.id) == task
    assert journal_mode(path) == "wal"


async def test_a_lock_held_past_busy_timeout_is_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SQLiteStore(url_of(path), busy_timeout_ms=0)
    await store.open()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailableError, match="busy_timeout_ms"):
            await store.enqueue([Task.new("job", now=T0)])
        holder.execute("ROLLBACK")
        assert (await store.counts())[TaskStatus.QUEUED] == 0
    finally:
        holder.close()
        await store.close()


async def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SQLiteStore(url_of(tmp_path / "tasks.db"))
    await store.open()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.counts()


async def test_claim_latency_measures_and_leaves_the_store_empty(tmp_path: Path) -> None:
    url = url_of(tmp_path / "backlog.db")
    latency = await claim_latency(url, 60, samples=25)
    assert (latency.backlog, latency.samples) == (60, 25)
    assert 0 < latency.p50_ms <= latency.p95_ms
    async with SQLiteStore(url) as store:
        assert await store.counts() == dict.fromkeys(TaskStatus, 0)


async def test_claim_latency_needs_a_backlog_of_at_least_the_samples(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="samples <= backlog"):
        await claim_latency(url_of(tmp_path / "backlog.db"), 10, samples=11)
