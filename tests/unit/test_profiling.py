"""Profiling a real memory-store drain: both profilers find the executor and the store.

No timings are asserted, only that the time was attributed: the report's
rows are ranked, their shares add up to at most the whole run, and the
functions taskbench runs on every task (the executor, the memory store)
appear in them.
"""

from __future__ import annotations

import sys

import pytest

from taskbench.bench.drain import DrainResult, run_drain
from taskbench.bench.profiling import PROFILERS, ProfileReport, profile, short_path
from taskbench.errors import ConfigError, MissingDependencyError

TASKS = 2_000
TOP = 400
"""Enough rows to hold every function a memory drain calls."""


async def small_drain() -> DrainResult:
    return await run_drain("memory://", tasks=TASKS, concurrency=16, workload="noop")


async def profiled(profiler: str, top: int = TOP) -> ProfileReport[DrainResult]:
    return await profile(small_drain, profiler=profiler, top=top, interval_s=0.001)


@pytest.mark.parametrize("profiler", PROFILERS)
async def test_a_profiled_drain_finds_its_time_in_the_executor_and_the_store(
    profiler: str,
) -> None:
    report = await profiled(profiler)
    assert report.profiler == profiler and report.duration_s > 0
    assert report.result.succeeded == TASKS and report.result.lost == 0
    locations = {row.location.partition(":")[0] for row in report.rows}
    assert {"taskbench/executor.py", "taskbench/stores/memory.py"} <= locations
    assert "executor.py" in report.text


@pytest.mark.parametrize("profiler", PROFILERS)
async def test_rows_are_ranked_by_self_time_and_shares_fit_the_run(profiler: str) -> None:
    report = await profiled(profiler)
    self_times = [row.self_s for row in report.rows]
    assert self_times == sorted(self_times, reverse=True)
    assert all(0 <= row.self_s <= row.total_s + 1e-9 for row in report.rows)
    assert 0 < sum(row.share for row in report.rows) <= 1.0 + 1e-6


async def test_top_keeps_the_first_rows_and_they_make_a_dataframe() -> None:
    report = await profiled("cprofile", top=5)
    assert len(report.rows) == 5
    frame = report.to_frame()
    assert list(frame.columns) == ["function", "location", "self_s", "total_s", "share"]
    assert list(frame["function"]) == [row.function for row in report.rows]
    assert report.records()[0]["self_s"] == report.rows[0].self_s


def test_paths_are_shortened_to_their_import_path() -> None:
    assert short_path(sys.modules["taskbench.executor"].__file__ or "") == "taskbench/executor.py"
    assert short_path("~") == "<built-in>"
    assert short_path("<string>") == "<string>"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"profiler": "perf"}, "unknown profiler 'perf'; known: pyinstrument, cprofile"),
        ({"top": 0}, "top must be a positive integer"),
        ({"interval_s": 0.0}, "interval_s must be a positive number"),
    ],
)
async def test_bad_options_are_config_errors_and_nothing_runs(
    options: dict[str, object], fragment: str
) -> None:
    started: list[bool] = []

    async def work() -> None:
        started.append(True)

    with pytest.raises(ConfigError, match=fragment):
        await profile(work, **options)  # type: ignore[arg-type]
    assert not started


async def test_a_missing_pyinstrument_names_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyinstrument", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'taskbench\[notebooks\]'"):
        await profile(small_drain)
