"""The scorecard and its parts: code metrics, test counts, saved durability, scratch places.

Code metrics are checked on a fixture module whose numbers were counted by
hand (the comments in FIXTURE say where each one comes from). The
scorecard itself runs fast on memory and SQLite; a server that is not
there gives a row with a reason, never a missing row. The scratch-place
tests use the shared servers (tests/backends.py: skipped without them,
failed in CI) and check that nothing is left behind.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
import pytest

from taskbench.bench.codemetrics import measure_source, metrics_frame
from taskbench.bench.results import save_run
from taskbench.bench.scorecard import (
    COLUMNS,
    CRITERIA,
    REPORT_TABLE,
    Plan,
    saved_durability,
    scorecard,
    scratch_url,
    side_by_side,
    store_of_test,
    with_option,
)
from taskbench.errors import ConfigError
from taskbench.model import Task, TaskStatus
from taskbench.stores import open_store
from tests.backends import server_url

FIXTURE = '''"""Module docstring,
on two lines."""

import os  # a comment


def plain(x):
    """One-line docstring."""
    return x + 1


def branchy(items, flag):
    # a comment line inside
    total = 0
    for item in items:
        if item and flag or not item:
            total += 1
        elif item > 3:
            total -= 1
    while total > 10:
        total //= 2
    try:
        os.stat("x")
    except OSError:
        pass
    except ValueError:
        pass
    return [i for i in items if i if i > 1] if flag else total


class Thing:
    """Class docstring."""

    def method(self):
        def inner(y):
            assert y
            return y
        return inner(1) if self else None


TEXT = """
not a docstring
"""
'''
# Lines of code: 28. Every non-blank line except the docstrings (lines 1-2, 8
# and 32) and the comment line 13; the three lines of TEXT count.
# Complexity, 1 + decisions:
#   plain   1
#   branchy 1 + for + if + (or, and) + elif + while + 2 except + if-expression
#           + comprehension (its for, its two ifs)  = 1+1+1+2+1+1+2+1+3 = 13
#   Thing.method        1 + if-expression = 2 (inner is measured on its own)
#   Thing.method.inner  1 + assert = 2
# Mean (1 + 13 + 2 + 2) / 4 = 4.5, max 13.

SEEDS_TABLE = {
    "TaskExecutor": ["Medium", "High", "High", "High", "High"],
    "SQLiteTaskStore": ["Low-Medium", "High", "High", "High", "Medium"],
    "PostgresTaskStore": ["High", "High", "Medium", "Medium", "High"],
    "RedisTaskStore": ["Very High", "Low-Medium", "Medium", "Medium", "High"],
    "DistributedExecutor": ["Medium", "Medium", "Low", "Low", "Low"],
}
"""Table 1.5 of the report, copied by hand."""

TINY = Plan(
    tasks=60,
    concurrency=(1, 4),
    headline_concurrency=4,
    processes=(1, 2),
    repeats=1,
    backlog=40,
    samples=10,
    resource_tasks=100,
)


# -- code metrics ----------------------------------------------------------------------


def test_code_metrics_of_the_fixture_match_the_hand_count() -> None:
    metrics = measure_source(FIXTURE)
    complexities = {f.name: f.complexity for f in metrics.per_function}
    assert complexities == {"plain": 1, "branchy": 13, "Thing.method": 2, "Thing.method.inner": 2}
    assert metrics.functions == 4
    assert metrics.lines_of_code == 28
    assert metrics.complexity_mean == pytest.approx(4.5)
    assert metrics.complexity_max == 13


def test_a_module_without_functions_has_zero_complexity() -> None:
    metrics = measure_source('"""Only a docstring."""\nX = 1\n')
    assert (metrics.functions, metrics.lines_of_code, metrics.complexity_max) == (0, 1, 0)
    assert metrics.complexity_mean == 0.0


def test_unparseable_source_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot measure"):
        measure_source("def broken(:\n")


def test_every_store_module_is_measured() -> None:
    frame = metrics_frame()
    assert set(frame.index) == {"memory", "sqlite", "postgres", "redis", "mysql"}
    assert (frame["lines_of_code"] > 0).all() and (frame["functions"] > 0).all()


# -- the report's table and the criteria -----------------------------------------------


def test_the_report_table_is_the_seeds_table() -> None:
    assert REPORT_TABLE.to_dict(orient="index") == {
        service: dict(zip(REPORT_TABLE.columns, words, strict=True))
        for service, words in SEEDS_TABLE.items()
    }
    assert list(REPORT_TABLE.columns) == [
        "Performance", "Reliability", "Maintainability", "Operational", "Overall",
    ]  # fmt: skip
    assert REPORT_TABLE.loc["TaskExecutor", "Performance"] == "Medium"


def test_the_criteria_are_the_reports_four_headings() -> None:
    assert list(CRITERIA) == ["Performance", "Reliability", "Maintainability", "Operational"]
    measured = [column for group in CRITERIA.values() for column in group]
    assert len(measured) == len(set(measured))
    assert set(measured) <= set(COLUMNS)


# -- tests per store -------------------------------------------------------------------


BACKENDS = ("memory", "sqlite", "postgres", "redis", "mysql")


@pytest.mark.parametrize(
    ("node_id", "store"),
    [
        ("tests/contract/test_store_contract.py::test_claim[sqlite-legacy]", "sqlite"),
        ("tests/contract/test_store_contract.py::test_claim[memory]", "memory"),
        ("tests/contract/test_fencing_contract.py::test_a[postgres-requeue_expired]", "postgres"),
        ("tests/integration/test_mysql_store.py::test_version_check", "mysql"),
        ("tests/integration/test_sqlite_processes.py::test_processes[legacy]", "sqlite"),
        ("tests/contract/test_coordinator_contract.py::test_lease[redis]", None),
        ("tests/integration/test_etcd_cluster.py::test_failover", None),
        ("tests/integration/test_other.py::test_both[memory-redis]", None),
        ("tests/integration/test_other.py::test_none[7]", None),
    ],
)
def test_a_test_item_is_attributed_to_the_store_it_names(node_id: str, store: str | None) -> None:
    assert store_of_test(node_id, BACKENDS) == store


# -- durability from saved crash runs --------------------------------------------------


def test_durability_is_the_default_setting_of_the_latest_runs(tmp_path: Path) -> None:
    def crash(setting: str, *lost: int, store: str = "sqlite:///x.db") -> None:
        rows = [{"store": store, "setting": setting, "lost": n} for n in lost]
        save_run("crash", rows, directory=tmp_path, env={})

    crash("normal", 50)
    crash("normal", 7, 9, 8)  # the latest "normal" run (SQLite's default): median 8
    crash("full", 0)  # a better setting that is not the default does not count
    crash("off", 900)  # nor a worse one
    crash("aof-always", 0, store="redis://127.0.0.1:6379/0")
    crash("no-persistence", 1930, store="redis://127.0.0.1:6379/0")
    crash("aof-everysec", 3, store="redis://127.0.0.1:6379/0")
    crash("flush-log-0", 384, store="mysql://tb@127.0.0.1/db")
    found = saved_durability(tmp_path)
    assert set(found) == {"sqlite", "redis", "mysql"}
    assert found["sqlite"].lost == 8.0
    assert "full 0, normal 8, off 900" in found["sqlite"].note
    assert "scored: the default setting, normal" in found["sqlite"].note
    assert found["redis"].lost == 3.0
    assert math.isnan(found["mysql"].lost)  # MariaDB's "default" setting has no saved run
    assert "flush-log-0 384" in found["mysql"].note


def test_no_saved_crash_run_means_no_durability_figure(tmp_path: Path) -> None:
    assert saved_durability(tmp_path) == {}


# -- the scorecard ---------------------------------------------------------------------


async def test_a_fast_scorecard_of_memory_and_sqlite_measures_every_criterion(
    tmp_path: Path,
) -> None:
    stores = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'card.db'}"}
    card = scorecard(stores, fast=True, directory=tmp_path / "no-runs")
    assert list(card.index) == ["memory", "sqlite"]
    assert list(card.columns) == list(COLUMNS)
    assert (card["status"] == "measured").all()
    numbers = [
        "throughput_tps", "latency_p50_ms", "latency_p99_ms", "cpu_s_per_1k",
        "code_lines", "code_functions", "complexity_mean", "complexity_max", "tests",
    ]  # fmt: skip
    assert (card[numbers] > 0).all().all()
    assert (card["latency_p50_ms"] <= card["latency_p99_ms"]).all()
    assert card["scalability_slope"].map(math.isfinite).all()
    assert (card["consistency_errors"] == 0).all()
    assert (
        (card[["server_cpu_s_per_1k", "server_rss_mb_per_1k", "setup_services"]] == 0).all().all()
    )
    assert list(card["setup_steps"]) == [1, 2]
    assert list(card["multi_process"]) == [False, True]
    assert card.loc["sqlite", "process_speedup"] > 0
    assert math.isnan(card.loc["memory", "process_speedup"])
    assert "process_speedup: the store lives in one process" in card.loc["memory", "notes"]
    assert card["durability_lost"].isna().all()
    assert card["notes"].str.contains("durability: no saved crash run").all()
    assert not (tmp_path / "card.db").exists()  # measured in a scratch file, not the one named


def test_unreachable_servers_get_a_row_with_the_reason_and_no_password(tmp_path: Path) -> None:
    stores = {
        "postgres": "postgresql://tb:s3cret@127.0.0.1:1/test",
        "redis": "redis://:s3cret@127.0.0.1:1/0",
        "mysql": "mysql://tb:s3cret@127.0.0.1:1/test",
        "redis-unset": None,
    }
    with pytest.raises(ConfigError, match="has no URL"):
        scorecard(stores, plan=TINY, directory=tmp_path)
    del stores["redis-unset"]
    card = scorecard({**stores, "redis": None}, plan=TINY, directory=tmp_path)
    assert list(card.index) == ["postgres", "redis", "mysql"]
    assert card.loc["postgres", "status"] == "unreachable"
    assert card.loc["mysql", "status"] == "unreachable"
    assert card.loc["redis", "status"] == "not configured"
    assert "TASKBENCH_TEST_REDIS_URL is not set" in card.loc["redis", "notes"]
    assert "127.0.0.1:1" in card.loc["postgres", "notes"]
    assert card["throughput_tps"].isna().all()
    assert (card["code_lines"] > 0).all() and (card["setup_steps"] == 4).all()
    assert "s3cret" not in repr(card.to_dict())


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"tasks": 0}, "tasks"),
        ({"concurrency": ()}, "non-empty"),
        ({"headline_concurrency": 3}, "headline_concurrency must be one of"),
        ({"processes": (1, 0)}, "processes"),
        ({"samples": 41}, "samples must not exceed"),
    ],
)
def test_a_plan_with_a_bad_size_is_refused(change: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        dataclasses.replace(TINY, **change)


def test_a_malformed_url_or_unknown_scheme_is_refused_up_front() -> None:
    with pytest.raises(ConfigError, match="unknown store scheme"):
        scorecard({"x": "nosuch://host"}, plan=TINY)
    with pytest.raises(ConfigError, match="malformed URL"):
        scorecard({"x": "not a url"}, plan=TINY)


def test_side_by_side_puts_the_reports_words_beside_the_measures() -> None:
    card = pd.DataFrame(
        {"backend": ["memory", "redis"], "throughput_tps": [1.0, 2.0], "latency_p50_ms": [0.1, 0.2],
         "durability_lost": [math.nan, 0.0], "complexity_mean": [2.0, 3.0], "setup_steps": [1, 4]},
        index=pd.Index(["memory", "redis"], name="store"),
    )  # fmt: skip
    both = side_by_side(card)
    assert list(both.index) == ["redis"]  # the report does not rate the memory store
    assert both.loc["redis", ("report", "Performance")] == "Very High"
    assert both.loc["redis", ("measured", "throughput_tps")] == 2.0


# -- scratch places --------------------------------------------------------------------


def test_with_option_sets_or_replaces_one_option() -> None:
    assert with_option("redis://h:1/0", "prefix", "a:") == "redis://h:1/0?prefix=a%3A"
    replaced = with_option("postgresql://h/db?schema=old&pool_size=3", "schema", "new")
    assert replaced == "postgresql://h/db?pool_size=3&schema=new"


async def test_a_sqlite_scratch_file_keeps_the_options_and_goes_away(tmp_path: Path) -> None:
    named = tmp_path / "mine.db"
    async with scratch_url("sqlite", f"sqlite:///{named}?synchronous=FULL") as url:
        assert url.endswith("/scorecard.db?synchronous=FULL")
        async with open_store(url) as store:
            await store.enqueue([Task.new("x")])
        scratch = Path(url.removeprefix("sqlite://").partition("?")[0])
        assert scratch.exists()
    assert not scratch.exists() and not named.exists()


async def _leftovers(backend: str, base: str, url: str) -> int:
    """What is left of a scratch place on its server: schemas, databases or keys."""
    if backend == "postgres":
        import asyncpg

        schema = dict(p.split("=") for p in url.partition("?")[2].split("&"))["schema"]
        connection = await asyncpg.connect(base.partition("?")[0])
        try:
            found = await connection.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema
            )
        finally:
            await connection.close()
        return int(found)
    if backend == "redis":
        from redis.asyncio import Redis

        prefix = url.partition("prefix=")[2].replace("%3A", ":")
        client = Redis.from_url(base.partition("?")[0])
        try:
            return len([key async for key in client.scan_iter(match=f"{prefix}*")])
        finally:
            await client.aclose()
    import pymysql

    from tests.backends import _mysql_admin

    admin: pymysql.Connection = _mysql_admin(base)  # type: ignore[type-arg]
    try:
        with admin.cursor() as cursor:
            return int(cursor.execute("SHOW DATABASES LIKE %s", (url.rpartition("/")[2],)))
    finally:
        admin.close()


@pytest.mark.parametrize("backend", ["postgres", "redis", "mysql"])
async def test_a_server_scratch_place_is_used_then_removed(backend: str) -> None:
    base = server_url(backend)
    async with scratch_url(backend, base) as url:
        assert "tb_scorecard_" in url
        async with open_store(url) as store:
            await store.enqueue([Task.new("x")])
            assert (await store.counts())[TaskStatus.QUEUED] == 1
        assert await _leftovers(backend, base, url) > 0
    assert await _leftovers(backend, base, url) == 0
