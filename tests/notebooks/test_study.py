"""The study's machinery, piece by piece: sizes, live-or-reference, scratch namespaces on the
real servers, the measurements' accounting, the recommendation, and the browser check.

The whole study is run end to end by test_notebooks.py; these tests pin the
rules each piece keeps, including the failures it must report.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from taskbench import Task, study
from taskbench.errors import BenchmarkError, ConfigError
from taskbench.stores import open_store
from tests.backends import _mysql_admin, all_backends_required, server_url

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- sizes and sessions ------------------------------------------------------------------------


def test_size_follows_the_flags() -> None:
    assert study.pick_size(False, False) == "default"
    assert study.pick_size(True, False) == "fast"
    assert study.pick_size(False, True) == "full"
    with pytest.raises(ConfigError, match="FAST or FULL"):
        study.pick_size(True, True)


async def test_an_unreachable_server_falls_back_to_its_reference(tmp_path: Path) -> None:
    references = study.References(tmp_path / "reference")
    references.save("99_test", "answer", "postgres", {"value": 42}, "full")
    session = await study.start(
        "99_test",
        fast=True,
        output_dir=tmp_path / "out",
        servers={"postgres": f"postgresql://u:hunter2@127.0.0.1:{_closed_port()}/db"},
        reference_dir=references.directory,
    )
    postgres = session.backends["postgres"]
    assert not postgres.live and "hunter2" not in postgres.note and "***" in postgres.note

    async def must_not_run(url: str) -> Any:
        raise AssertionError("a server that is not live must not be measured")

    found = await session.measure("answer", "postgres", must_not_run)
    assert found is not None and found.source == "reference" and found.value == {"value": 42}
    assert found.label == "postgres (reference)" and "full size" in found.recorded
    assert await session.measure("no-such-reference", "postgres", must_not_run) is None
    path = session.write_summary({"x": 1})
    written = json.loads(path.read_text())
    assert written["sources"] == {"answer": {"postgres": "reference"}} and written["x"] == 1


async def test_embedded_backends_always_run_live_on_fresh_stores(tmp_path: Path) -> None:
    session = await study.start("99_test", fast=True, output_dir=tmp_path)
    seen: list[str] = []

    async def remember(url: str) -> int:
        seen.append(url)
        async with open_store(url) as store:
            return sum((await store.counts()).values())

    for backend in ("memory", "sqlite", "sqlite-legacy"):
        found = await session.measure("empty", backend, remember)
        assert found is not None and found.source == "live" and found.value == 0
    assert seen[0] == "memory://" and seen[2].endswith("?profile=legacy")
    assert seen[1] != seen[2].partition("?")[0], "each call gets a new SQLite file"


def test_reference_files_are_labelled_and_scrubbed(tmp_path: Path) -> None:
    references = study.References(tmp_path)
    path = references.save("c", "n", "mysql", {"url": "mysql://u:secret@h/db"}, "full")
    stored = json.loads(path.read_text())
    assert "secret" not in path.read_text()
    assert {"recorded_at", "machine", "git", "size"} <= set(stored["meta"])
    loaded = references.load("c", "n", "mysql")
    assert loaded is not None and loaded.recorded.startswith(stored["meta"]["recorded_at"][:10])


def test_committed_references_are_labelled_with_machine_and_date() -> None:
    files = sorted(study.REFERENCE_DIR.glob("*/*.json"))
    assert files, "data/reference/ holds no reference result: run taskbench study --full"
    for path in files:
        if path.parent.name == "summaries":
            continue
        meta = json.loads(path.read_text())["meta"]
        assert meta["recorded_at"] and meta["machine"]["cpu_model"], path


# -- scratch namespaces on the real servers ----------------------------------------------------


async def _postgres_schemas(base: str) -> set[str]:
    import asyncpg

    connection = await asyncpg.connect(base.split("?", 1)[0])
    try:
        rows = await connection.fetch("SELECT nspname FROM pg_namespace")
    finally:
        await connection.close()
    return {row["nspname"] for row in rows}


async def _redis_keys(base: str, pattern: str) -> list[bytes]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(base.split("?", 1)[0])
    try:
        return [key async for key in client.scan_iter(match=pattern)]
    finally:
        await client.aclose()


def _mysql_databases(base: str) -> set[str]:
    admin = _mysql_admin(base)
    try:
        with admin.cursor() as cursor:
            cursor.execute("SHOW DATABASES")
            return {row[0] for row in cursor.fetchall()}
    finally:
        admin.close()


async def _used_scratch(backend: str, base: str) -> str:
    async with study.scratch_url(backend, base) as url, open_store(url) as store:
        await store.enqueue([Task.new("x")])
        assert sum((await store.counts()).values()) == 1
    return url


async def test_postgres_scratch_schema_is_dropped() -> None:
    base = server_url("postgres")
    url = await _used_scratch("postgres", base)
    schema = url.rpartition("schema=")[2]
    assert schema.startswith("tb_study_") and schema not in await _postgres_schemas(base)


async def test_redis_scratch_prefix_is_deleted() -> None:
    base = server_url("redis")
    url = await _used_scratch("redis", base)
    prefix = url.rpartition("prefix=")[2]
    assert prefix.startswith("tb_study_") and await _redis_keys(base, f"{prefix}*") == []


async def test_mysql_scratch_database_is_dropped() -> None:
    base = server_url("mysql")
    url = await _used_scratch("mysql", base)
    database = url.rpartition("/")[2]
    assert database.startswith("tb_study_") and database not in _mysql_databases(base)


# -- measurements ------------------------------------------------------------------------------


async def test_claim_plan_scans_without_the_index_and_searches_with_it(tmp_path: Path) -> None:
    legacy = await study.claim_plan(f"sqlite:///{tmp_path / 'l.db'}?profile=legacy")
    improved = await study.claim_plan(f"sqlite:///{tmp_path / 'i.db'}")
    assert "SCAN taskbench_tasks" in legacy and "USE TEMP B-TREE FOR ORDER BY" in legacy
    assert any("ix_taskbench_tasks_claim" in step for step in improved)


async def test_index_drift_counts_indexes_either_side_lacks(tmp_path: Path) -> None:
    legacy = await study.store_indexes(f"sqlite:///{tmp_path / 'l.db'}?profile=legacy")
    improved = await study.store_indexes(f"sqlite:///{tmp_path / 'i.db'}")
    assert legacy == {} and len(improved) == 4
    assert study.index_drift(legacy, improved) == 4
    assert study.index_drift(improved, dict(improved)) == 0
    changed = {**improved, "ix_taskbench_tasks_claim": ["status"]}
    assert study.index_drift(improved, changed) == 2  # same name, other columns: both sides


async def test_fault_run_accounts_for_every_task() -> None:
    for retry in (False, True):
        run = await study.fault_run(
            "memory://", tasks=200, failure_rate=0.2, retry=retry, interrupt_after=50, seed=1
        )
        assert run["lost"] == 0 and run["succeeded"] + run["dead"] == 200
        # without retries P(no dead task) is 0.8**200; with 10 attempts P(any) is about 2e-5
        assert (run["dead"] > 0) is not retry


async def test_urgent_tasks_overtake_the_backlog_only_with_priority() -> None:
    common = {"backlog": 300, "urgent": 5, "concurrency": 5, "work_ms": 2.0}
    fifo = await study.priority_latency("memory://", prioritise=False, **common)
    first = await study.priority_latency("memory://", prioritise=True, **common)
    assert len(fifo["urgent_ms"]) == len(first["urgent_ms"]) == 5
    assert first["p50_ms"] < fifo["p50_ms"]


async def test_downstream_limit_stops_refusals_and_accounts_for_every_call() -> None:
    run = await study.downstream_run(
        "memory://", tasks=60, capacity=200.0, concurrency=20, limit=False
    )
    assert run["succeeded"] == 60
    assert run["calls"] == 60 + run["refused"] == sum(run["accepted_per_bin"]) + run["refused"]
    assert run["refused"] > 0, "calling as fast as a memory store allows exceeds 200/s"


async def test_cli_json_returns_the_object_and_reports_failures_without_passwords() -> None:
    args = ["bench", "--store", "memory://", "--no-save", "--tasks", "20", "--concurrency", "2"]
    result = await study.cli_json(*args, "--workload", "noop")
    assert result["succeeded"] == 20
    with pytest.raises(BenchmarkError, match=r"(?s)exit 2.*unknown store scheme") as failure:
        await study.cli_json("bench", "--store", "nosuch://u:hunter2@h/x", *args[3:])
    assert "hunter2" not in str(failure.value)


def test_bins_and_percentiles() -> None:
    assert study._bins([0.0, 0.05, 0.1, 0.35], 0.1) == [2, 1, 0, 1]
    assert study._bins([], 0.1) == []
    assert study.summarise_ms([3.0, 1.0, 2.0, 4.0]) == {"p50": 2.0, "p95": 4.0, "max": 4.0}


def test_recommendation_rows_need_their_chapters() -> None:
    assert study.recommend({}) == []
    compared = {"stores": {"postgres": {"drain_tps": 10.0}, "mysql": {"drain_tps": 20.0}}}
    rows = study.recommend({"01_compare": compared, "02_bottlenecks": None})
    production = next(row for row in rows if row["service"] == "TaskStore for production")
    assert production["supported choice"].startswith("mysql")
    assert [row["service"] for row in rows] == [
        "TaskStore for production",
        "TaskStore for development",
    ]
    crash = [
        {"label": "redis: aof-always", "survives_process_crash": True, "lost": 0, "corrupted": 0},
        {"label": "redis: no-persistence", "survives_process_crash": False, "lost": 9,
         "corrupted": 0},
    ]  # fmt: skip
    (durability,) = study.recommend({"05_reliability": {"crash": crash}})
    assert "0 lost, 0 corrupted: redis: aof-always" in durability["measured"]
    assert "redis: no-persistence lost 9" in durability["measured"]
    improvements = {"index": {"ratio": 0.1, "ci_low": 0.05, "ci_high": 0.2}}
    assert [row["better"] for row in study.impact_of(improvements)] == ["lower"]


# -- running and checking the report -----------------------------------------------------------


def _taskbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskbench.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_study_refuses_fast_and_full_together() -> None:
    done = _taskbench("study", "--fast", "--full")
    assert done.returncode == 2 and "not allowed with argument" in done.stderr
    assert "Traceback" not in done.stderr


def test_study_names_an_unknown_chapter(tmp_path: Path) -> None:
    done = _taskbench("study", "--fast", "--only", "99", "--out", str(tmp_path))
    assert done.returncode == 1 and "no chapter matches ['99']" in done.stderr
    assert "Traceback" not in done.stderr


def _chromium() -> str:
    binary = study.find_chromium()
    if binary is None:
        message = "the report check needs Chromium (apt-get install -y chromium)"
        if all_backends_required():
            pytest.fail(f"{message}; in CI it must run")
        pytest.skip(message)
    return binary


PLOT = '<div id="f1" class="plotly-graph-div" style="height:100px"></div>'


def test_the_browser_check_catches_undrawn_figures_and_script_errors(tmp_path: Path) -> None:
    binary = _chromium()
    page = tmp_path / "broken.html"
    page.write_text(
        f"<html><head></head><body>{PLOT}<script>Plotly.newPlot('f1', [])</script>"
        "<script>console.error('visible');</script></body></html>"
    )
    check = study.check_page(page, binary, screenshot=None)
    assert (check.figures, check.drawn) == (1, 0)
    assert any("Plotly is not defined" in error for error in check.errors)
    assert any("console.error: visible" in error for error in check.errors)
    assert not check.ok


def test_the_browser_check_flags_scripts_fetched_from_the_network(tmp_path: Path) -> None:
    binary = _chromium()
    page = tmp_path / "remote.html"
    page.write_text(
        '<html><head><script src="https://cdn.example.invalid/x.js"></script></head>'
        "<body>no figure</body></html>"
    )
    check = study.check_page(page, binary, screenshot=tmp_path / "remote.png")
    assert check.remote_scripts == 1 and not check.ok
    assert check.screenshot is not None and Path(check.screenshot).stat().st_size > 0


def test_a_browser_that_hangs_fails_the_page_and_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in for a Chromium that never exits: it starts a helper and waits forever."""
    helper_pid = tmp_path / "helper.pid"
    hanging = tmp_path / "hanging-browser"
    hanging.write_text(f"#!/bin/sh\nsleep 600 &\necho $! > {helper_pid}\nwait\n")
    hanging.chmod(0o755)
    monkeypatch.setattr(study.browser, "CHROMIUM_TIMEOUT_S", 1.0)  # read there
    page = tmp_path / "page.html"
    page.write_text(f"<html><head></head><body>{PLOT}</body></html>")
    check = study.check_page(page, str(hanging), screenshot=None)
    assert not check.ok and check.drawn == 0
    assert check.errors == ("chromium did not finish in 3 x 1 s",)
    assert not _alive(int(helper_pid.read_text())), "the browser's helper outlived it"


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie left for a reaper (pid 1 may not reap here)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
