"""Results files: one atomic Parquet file per run, read back together through DuckDB.

Also the environment that every run records beside its numbers, and that no
password ever reaches a results file. Real drains on the memory store, real
files in a temporary folder; the only injected fault is a Ctrl-C in the
middle of a write.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hdrh.histogram import HdrHistogram

from taskbench.bench import results
from taskbench.bench.drain import DrainResult, run_drain
from taskbench.bench.environment import describe_environment, describe_store, scrub
from taskbench.bench.metrics import HIGHEST_US, LOWEST_US, SIGNIFICANT_FIGURES
from taskbench.bench.results import (
    RESULTS_DIR_VARIABLE,
    flatten,
    latest,
    load_runs,
    merge_histograms,
    results_dir,
    save_run,
)
from taskbench.errors import ConfigError, MissingDependencyError
from taskbench.stores import open_store

PASSWORD = "hunter2-secret"
NO_ENV: dict[str, Any] = {}


def histogram_of(*microseconds: int) -> HdrHistogram:
    histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    for value in microseconds:
        histogram.record_value(value)
    return histogram


async def drains(count: int) -> list[DrainResult]:
    return [
        await run_drain("memory://", tasks=50, concurrency=4, workload="noop") for _ in range(count)
    ]


# -- where -------------------------------------------------------------------------------


def test_the_folder_is_the_argument_then_the_variable_then_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RESULTS_DIR_VARIABLE, raising=False)
    checkout = Path(results.__file__).resolve().parents[2]
    assert results_dir() == checkout / "data" / "runs"
    monkeypatch.setenv(RESULTS_DIR_VARIABLE, str(tmp_path / "from-env"))
    assert results_dir() == tmp_path / "from-env"
    assert results_dir(tmp_path / "given") == tmp_path / "given"


# -- rows --------------------------------------------------------------------------------


def test_nested_fields_are_flattened_with_the_unit_last() -> None:
    flat = flatten({"latency_ms": {"p50": 1.5, "p99": 9.0}, "extra": {"x": 1}, "ids": [1, 2]})
    assert flat == {"latency_p50_ms": 1.5, "latency_p99_ms": 9.0, "extra_x": 1, "ids": "[1, 2]"}


async def test_a_drain_run_round_trips_with_one_row_per_repeat(tmp_path: Path) -> None:
    measured = await drains(2)
    path = save_run("drain", measured, params={"repeats": 2}, directory=tmp_path)
    assert path.parent == tmp_path and path.suffix == ".parquet"
    frame = load_runs(tmp_path)
    assert list(frame["repeat"]) == [0, 1]
    assert frame["run_id"].nunique() == 1
    assert list(frame["latency_p50_ms"]) == [m.latency_ms.p50 for m in measured]
    assert list(frame["drain_tps"]) == [m.drain_tps for m in measured]
    assert list(frame["succeeded"]) == [50, 50]
    assert json.loads(frame["params"][0]) == {"repeats": 2}
    env = json.loads(frame["env"][0])
    assert env["stores"] == ["memory://"]
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))


async def test_runs_with_different_columns_read_together(tmp_path: Path) -> None:
    save_run("drain", await drains(1), env=NO_ENV, directory=tmp_path)
    save_run("backlog", [{"backlog": 1000, "p50_ms": 0.2}], env=NO_ENV, directory=tmp_path)
    frame = load_runs(tmp_path)
    assert sorted(frame["kind"]) == ["backlog", "drain"]
    backlog = load_runs(tmp_path, kind="backlog")
    assert list(backlog["backlog"]) == [1000]
    assert backlog["drain_tps"].isna().all()


def test_filters_match_values_and_lists_and_reject_unknown_columns(tmp_path: Path) -> None:
    for tasks in (10, 20, 30):
        save_run("drain", [{"tasks": tasks}], env=NO_ENV, directory=tmp_path)
    assert list(load_runs(tmp_path, tasks=20)["tasks"]) == [20]
    assert sorted(load_runs(tmp_path, tasks=[10, 30])["tasks"]) == [10, 30]
    with pytest.raises(ConfigError, match="unknown result columns \\['bogus'\\]"):
        load_runs(tmp_path, bogus=1)


def test_latest_is_the_newest_matching_run(tmp_path: Path) -> None:
    save_run("drain", [{"tasks": 1}] * 2, env=NO_ENV, directory=tmp_path, run_id="first")
    save_run("drain", [{"tasks": 2}], env=NO_ENV, directory=tmp_path)
    save_run("backlog", [{"tasks": 3}], env=NO_ENV, directory=tmp_path)
    assert list(latest("drain", tmp_path)["tasks"]) == [2]
    older = latest("drain", tmp_path, tasks=1)
    assert list(older["repeat"]) == [0, 1]
    assert set(older["run_id"]) == {"first"}
    assert latest("peers", tmp_path).empty


def test_an_empty_folder_reads_as_no_runs(tmp_path: Path) -> None:
    frame = load_runs(tmp_path / "nothing-yet", kind="drain")
    assert frame.empty
    assert {"run_id", "kind", "env", "params", "hist"} <= set(frame.columns)


def test_a_connection_sees_runs_saved_after_it_opened(tmp_path: Path) -> None:
    save_run("drain", [{"tasks": 1}], env=NO_ENV, directory=tmp_path)
    with results.connect(tmp_path) as connection:
        save_run("drain", [{"tasks": 2}], env=NO_ENV, directory=tmp_path)
        assert connection.sql("SELECT count(*) FROM runs").fetchall() == [(2,)]


# -- atomic writes -----------------------------------------------------------------------


def test_an_interrupted_write_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_run("drain", [{"tasks": 1}], env=NO_ENV, directory=tmp_path)
    before = sorted(tmp_path.iterdir())
    real_write = pq.write_table

    def write_then_ctrl_c(*args: Any, **kwargs: Any) -> None:
        real_write(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(pq, "write_table", write_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        save_run("drain", [{"tasks": 2}], env=NO_ENV, directory=tmp_path)
    assert sorted(tmp_path.iterdir()) == before
    assert list(load_runs(tmp_path)["tasks"]) == [1]


# -- no password -------------------------------------------------------------------------


def test_no_password_reaches_the_file(tmp_path: Path) -> None:
    url = f"postgresql://bench:{PASSWORD}@127.0.0.1/test"
    path = save_run(
        "drain",
        [{"store": url, "note": f"failed on {url} once"}],
        params={"urls": [url]},
        directory=tmp_path,
    )
    table = pq.read_table(path).to_pylist()
    assert PASSWORD not in repr(table)
    assert table[0]["store"] == "postgresql://bench:***@127.0.0.1/test"
    assert json.loads(table[0]["env"])["stores"] == [table[0]["store"]]


def test_the_environment_says_what_ran_and_hides_passwords() -> None:
    env = describe_environment([f"redis://:{PASSWORD}@127.0.0.1:6379/0"])
    assert env["stores"] == ["redis://:***@127.0.0.1:6379/0"]
    assert PASSWORD not in json.dumps(env)
    packages = env["packages"]
    assert isinstance(packages, dict) and {"taskbench", "duckdb", "pandas"} <= packages.keys()
    git = env["git"]
    assert isinstance(git, dict) and len(git["commit"] or "0" * 40) == 40
    machine = env["machine"]
    assert isinstance(machine, dict) and machine["cpu_count"] and machine["memory_total_bytes"]


def test_scrub_hides_every_password_in_a_message() -> None:
    text = f"a redis://:{PASSWORD}@h/0 b mysql://u:{PASSWORD}@h/d c sqlite:///x.db"
    assert scrub(text) == "a redis://:***@h/0 b mysql://u:***@h/d c sqlite:///x.db"


class DescribedStore:
    """A store that answers the optional ``describe()`` hook."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    async def describe(self) -> dict[str, object]:
        if self.fail:
            raise RuntimeError(f"cannot reach postgresql://u:{PASSWORD}@h/db")
        return {"server_version": "15.6", "dsn": f"postgresql://u:{PASSWORD}@h/db"}


async def test_describe_store_asks_the_hook_and_never_raises() -> None:
    assert await describe_store(open_store("memory://")) == {}
    described = await describe_store(DescribedStore())
    assert described == {"server_version": "15.6", "dsn": "postgresql://u:***@h/db"}
    failed = await describe_store(DescribedStore(fail=True))
    assert failed == {"error": "RuntimeError: cannot reach postgresql://u:***@h/db"}


# -- histograms --------------------------------------------------------------------------


def test_stored_histograms_merge_into_one(tmp_path: Path) -> None:
    runs = [{"tasks": 2}, {"tasks": 2}, {"tasks": 0}]
    hists = [histogram_of(1_000, 2_000), histogram_of(3_000, 4_000).encode(), None]
    save_run("drain", runs, env=NO_ENV, histograms=hists, directory=tmp_path)
    merged = merge_histograms(load_runs(tmp_path)["hist"])
    assert merged.get_total_count() == 4
    assert merged.get_min_value() == 1_000
    assert merged.get_max_value() == pytest.approx(4_000, rel=1e-3)


def test_a_bad_histogram_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not an encoded HdrHistogram"):
        merge_histograms(["not base64 at all"])


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "measurements", "extra", "fragment"),
    [
        ("", [{"tasks": 1}], {}, "kind must be"),
        ("a/b", [{"tasks": 1}], {}, "kind must be"),
        ("..", [{"tasks": 1}], {}, "kind must be"),
        ("drain", [{"tasks": 1}], {"run_id": "../x"}, "run_id must be"),
        ("drain", [], {}, "at least one measurement"),
        ("drain", [{"tasks": 1}], {"histograms": []}, "0 histograms for 1"),
        ("drain", [{"run_id": "mine"}], {}, "clash"),
    ],
)
def test_a_bad_run_is_refused_before_anything_is_written(
    tmp_path: Path, kind: str, measurements: list[dict[str, Any]], extra: Any, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        save_run(kind, measurements, env=NO_ENV, directory=tmp_path, **extra)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_missing_extra_names_the_pip_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "duckdb", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'taskbench\[notebooks\]'"):
        load_runs(tmp_path)


def _histogram_of(values_us: range) -> str:
    histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    for value in values_us:
        histogram.record_value(value)
    return results.encode_histogram(histogram)


def test_the_spectrum_reads_the_tail_only_as_far_as_the_samples_go() -> None:
    spectrum = results.percentile_spectrum([_histogram_of(range(1, 1001))])
    by_percentile = {row["percentile"]: row["ms"] for row in spectrum}
    assert 99.9 in by_percentile and 99.99 not in by_percentile  # 1,000 samples
    assert by_percentile[0.0] == pytest.approx(0.001)
    assert by_percentile[50.0] == pytest.approx(0.5, rel=0.01)
    assert by_percentile[99.0] == pytest.approx(0.99, rel=0.01)
    assert by_percentile[100.0] == pytest.approx(1.0, rel=0.01)
    values = [row["ms"] for row in spectrum]
    assert values == sorted(values)


def test_the_spectrum_of_no_sample_is_empty() -> None:
    empty = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    assert results.percentile_spectrum([results.encode_histogram(empty), None]) == []
