"""Sweeps on the memory store and SQLite with tiny sizes: rows, columns, saving, slopes.

No timing is asserted: only that every point was measured and every task
accounted for. The worker-process sweep starts real interpreters.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from taskbench.bench.results import load_runs
from taskbench.bench.sweeps import (
    FIRST_COLUMNS,
    Sweep,
    measure_alone,
    run_in_processes,
    scaling_slope,
    show_progress,
    sweep_backlog,
    sweep_concurrency,
    sweep_processes,
    sweep_rate,
)
from taskbench.errors import BenchmarkError, ConfigError


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sweep.db'}"


async def test_a_concurrency_sweep_has_one_row_per_point_and_repeat() -> None:
    frame = await sweep_concurrency("memory://", [1, 4, 16], tasks=60, options=Sweep(repeats=2))
    assert list(frame.columns[: len(FIRST_COLUMNS)]) == list(FIRST_COLUMNS)
    assert list(zip(frame["value"], frame["repeat"], strict=True)) == [
        (1, 0), (1, 1), (4, 0), (4, 1), (16, 0), (16, 1),
    ]  # fmt: skip
    assert (frame["parameter"] == "concurrency").all()
    assert frame["sweep_id"].nunique() == 1
    assert (frame["concurrency"] == frame["value"]).all()
    assert (frame["succeeded"] == 60).all() and (frame["lost"] == 0).all()
    assert (frame["drain_tps"] > 0).all()
    assert {"latency_p50_ms", "latency_p99_ms", "cpu_s"} <= set(frame.columns)


async def test_a_backlog_sweep_times_claims_behind_each_backlog(tmp_path: Path) -> None:
    frame = await sweep_backlog(sqlite_url(tmp_path), [30, 90], samples=10)
    assert list(frame["value"]) == [30, 90]
    assert list(frame["backlog"]) == [30, 90]
    assert (frame["samples"] == 10).all()
    assert (frame["p50_ms"] > 0).all() and (frame["p50_ms"] <= frame["p95_ms"]).all()


async def test_worker_processes_share_a_sqlite_file_and_drain_every_task(tmp_path: Path) -> None:
    frame = await sweep_processes(sqlite_url(tmp_path), [1, 2], tasks=300, concurrency=8)
    assert list(frame["value"]) == [1, 2]
    assert list(frame["processes"]) == [1, 2]
    assert (frame["succeeded"] == 300).all() and (frame["lost"] == 0).all()
    assert (frame["drain_tps"] > 0).all() and (frame["cpu_s"] > 0).all()


async def test_a_store_of_one_process_cannot_be_swept_over_processes() -> None:
    with pytest.raises(ConfigError, match="cannot be shared by several processes"):
        await sweep_processes("memory://", [1, 2], tasks=10, concurrency=1)


async def test_a_rate_sweep_runs_the_open_loop_at_each_rate() -> None:
    frame = await sweep_rate("memory://", [50, 100], duration=0.4, concurrency=4)
    assert list(frame["value"]) == [50, 100]
    assert list(frame["rate"]) == [50.0, 100.0]
    assert (frame["mode"] == "open").all()
    assert (frame["lost"] == 0).all() and (frame["achieved_tps"] > 0).all()


async def test_each_point_is_saved_as_a_run_of_its_own(tmp_path: Path) -> None:
    options = Sweep(repeats=2, save=True, directory=tmp_path)
    frame = await sweep_concurrency("memory://", [2, 3], tasks=20, options=options)
    saved = load_runs(tmp_path, kind="sweep-concurrency")
    assert len(list(tmp_path.glob("sweep-concurrency-*.parquet"))) == 2
    assert saved["run_id"].nunique() == 2
    assert sorted(zip(saved["value"], saved["repeat"], strict=True)) == [
        (2, 0), (2, 1), (3, 0), (3, 1),
    ]  # fmt: skip
    assert set(saved["sweep_id"]) == set(frame["sweep_id"])


async def test_a_drain_alone_reports_its_memory_before_and_its_resources() -> None:
    run = await measure_alone("memory://", tasks=200, concurrency=4)
    assert run.drain["succeeded"] == 200 and run.drain["lost"] == 0
    assert run.rss_before_mb > 0
    assert run.server_rss_before_mb is None  # no server for the memory store
    assert run.drain["resources"]["bench_peak_rss_mb"] > 0


@pytest.mark.parametrize(
    ("values", "fragment"),
    [([], "non-empty"), ([0], "positive"), ([2, -1], "positive"), ("12", "non-empty")],
)
async def test_bad_values_are_refused_before_anything_runs(values: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        await sweep_concurrency("memory://", values, tasks=10)  # type: ignore[arg-type]


async def test_bad_sizes_are_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="repeats"):
        await sweep_concurrency("memory://", [1], tasks=10, options=Sweep(repeats=0))
    with pytest.raises(ConfigError, match="tasks"):
        await sweep_concurrency("memory://", [1], tasks=0)
    with pytest.raises(ConfigError, match="smallest backlog"):
        await sweep_backlog(sqlite_url(tmp_path), [5, 50], samples=10)
    with pytest.raises(ConfigError, match="unknown store scheme"):
        await sweep_concurrency("nosuch://x", [1], tasks=10)


async def test_a_failing_worker_job_is_a_benchmark_error_with_its_reason() -> None:
    with pytest.raises(BenchmarkError, match="AttributeError"):
        await run_in_processes("taskbench.bench.sweeps:no_such_job", [{}])
    with pytest.raises(BenchmarkError, match="taskbench 'module:function'"):
        await run_in_processes("os:getcwd", [{}])


def test_the_slope_is_one_for_linear_scaling_and_zero_when_flat() -> None:
    linear = pd.DataFrame({"value": [1, 2, 4, 4], "drain_tps": [100.0, 200.0, 400.0, 400.0]})
    flat = pd.DataFrame({"value": [1, 10, 100], "drain_tps": [50.0, 50.0, 50.0]})
    halving = pd.DataFrame({"value": [1, 2, 4], "achieved_tps": [400.0, 200.0, 100.0]})
    assert scaling_slope(linear) == pytest.approx(1.0)
    assert scaling_slope(flat) == pytest.approx(0.0)
    assert scaling_slope(halving, y="achieved_tps") == pytest.approx(-1.0)


def test_the_slope_uses_the_median_of_each_point() -> None:
    noisy = pd.DataFrame(
        {"value": [1, 1, 1, 8, 8, 8], "drain_tps": [10.0, 10.0, 9_999.0, 80.0, 80.0, 0.001]}
    )
    assert scaling_slope(noisy) == pytest.approx(1.0)


def test_the_slope_needs_two_usable_points() -> None:
    assert math.isnan(scaling_slope(pd.DataFrame({"value": [4, 4], "drain_tps": [1.0, 2.0]})))
    assert math.isnan(scaling_slope(pd.DataFrame({"value": [1, 2], "drain_tps": [0.0, 5.0]})))
    with pytest.raises(ConfigError, match="no column"):
        scaling_slope(pd.DataFrame({"value": [1, 2]}))


def test_progress_is_off_in_ci_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert show_progress(None) is False
    assert show_progress(True) is True
    monkeypatch.delenv("CI")
    assert show_progress(False) is False
