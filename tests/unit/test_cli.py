"""The ``taskbench`` command, run as a real subprocess (``python -m taskbench.cli``).

Checks what a user or a script sees: ``--json`` is exactly one JSON object
with every field, the accounting adds up for every executor, every mode and
for a memory and a SQLite store, every run lands in its results file (one
row per repeat) that ``results list`` and ``results compare`` read back, no
password reaches any output or file, and bad input exits 2 with our message
on stderr and no traceback.

Every run writes into a temporary results folder (``$TASKBENCH_RESULTS_DIR``),
never into the checkout's data/.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from taskbench.bench.results import RESULTS_DIR_VARIABLE, load_runs
from taskbench.cli import lenient_output, main

ROOT = Path(__file__).resolve().parents[2]
EXECUTORS = ["taskbench", "asyncio", "threads"]
JSON_FIELDS = {
    "store", "workload", "executor", "tasks", "concurrency", "enqueue_tps", "drain_tps",
    "latency_ms", "queue_ms", "succeeded", "failed", "dead", "lost", "duplicates", "wall_s",
    "cpu_s", "max_rss_mb", "resources", "mode", "results_file",
}  # fmt: skip
LOAD_FIELDS = {
    "mode", "store", "workload", "tasks", "rate", "duration_s", "measured", "achieved_tps",
    "offered_tps", "latency_ms", "queue_ms", "service_ms", "send_lag_ms", "enqueue_ms",
    "wake_ms", "succeeded",
    "dead", "lost", "duplicates", "resources", "results_file",
}  # fmt: skip
GOOD = ["--store", "memory://", "--tasks", "10", "--concurrency", "2", "--workload", "noop"]
PASSWORD = "s3cret-pw"


@pytest.fixture(autouse=True)
def results_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's runs go to a folder of its own (the subprocesses inherit it)."""
    folder = tmp_path / "runs"
    monkeypatch.setenv(RESULTS_DIR_VARIABLE, str(folder))
    return folder


def taskbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskbench.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=os.environ.copy(),
    )


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command's ``main`` here: its exit code, stdout and stderr."""
    try:
        code = main(list(args))
    except SystemExit as exit:  # argparse refuses bad usage by exiting
        code = int(exit.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def printed_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """The one JSON object an in-process ``--json`` run printed."""
    code, out, err = in_process(capsys, *args)
    assert code == 0, err
    assert out.endswith("}\n") and out.count("\n") == 1, out
    result: dict[str, Any] = json.loads(out)
    return result


def json_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON object a successful ``--json`` run printed, and nothing else."""
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("}\n") and done.stdout.count("\n") == 1, done.stdout
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def bench_json(store: str, tasks: int, workload: str, executor: str) -> dict[str, Any]:
    done = taskbench(
        "bench", "--store", store, "--tasks", str(tasks), "--concurrency", "20",
        "--workload", workload, "--executor", executor, "--json", "--no-save",
    )  # fmt: skip
    return json_of(done)


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'bench.db'}"


@pytest.mark.parametrize("executor", EXECUTORS)
def test_json_has_every_field_and_the_accounting_adds_up(store_url: str, executor: str) -> None:
    result = bench_json(store_url, 300, "noop", executor)
    assert result.keys() >= JSON_FIELDS
    assert set(result["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert (result["store"], result["executor"], result["workload"]) == (
        store_url,
        executor,
        "noop",
    )
    assert (result["tasks"], result["concurrency"]) == (300, 20)
    assert (result["succeeded"], result["dead"], result["failed"]) == (300, 0, 0)
    assert (result["lost"], result["duplicates"]) == (0, 0)
    assert result["drain_tps"] > 0 and result["enqueue_tps"] > 0


@pytest.mark.parametrize("executor", EXECUTORS)
def test_flaky_tasks_all_end_terminal_with_failed_attempts(executor: str) -> None:
    result = bench_json("memory://", 300, "flaky:0.3", executor)
    assert result["lost"] == 0
    assert result["succeeded"] + result["dead"] == 300
    assert result["failed"] > 0  # P(no failure in 300 tries at 0.3) is 0.7**300
    assert result["failed"] >= result["dead"]


def test_without_json_it_prints_a_readable_summary() -> None:
    done = taskbench("bench", *GOOD, "--executor", "asyncio")
    assert done.returncode == 0, done.stderr
    assert "10 succeeded, 0 dead, 0 lost, 0 duplicates" in done.stdout
    assert "tasks/s" in done.stdout
    assert "\r" not in done.stdout + done.stderr  # no progress bar when stdout is a pipe


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--help"], "bench"),
        (["bench", "--help"], "--workload SPEC"),
        (["bench", "--help"], "--mode {drain,open,closed}"),
        (["overhead", "--help"], "--repeats N"),
        (["results", "--help"], "RUN_B against RUN_A on one metric"),
        (["results", "compare", "--help"], "RUN_A RUN_B"),
        (["backlog", "--help"], "--backlog N"),
        (["peers", "--help"], "--peers PEERS"),
        (["wakeup", "--help"], "--drain-repeats N"),
    ],
)
def test_every_command_has_help(args: list[str], mentions: str) -> None:
    done = taskbench(*args)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: taskbench")
    assert mentions in done.stdout


def _replace(option: str, value: str) -> list[str]:
    args = list(GOOD)
    args[args.index(option) + 1] = value
    return args


BAD_INPUT = [
    pytest.param(_replace("--tasks", "0"), "must be a positive integer", id="tasks-zero"),
    pytest.param(_replace("--tasks", "-3"), "must be a positive integer", id="tasks-negative"),
    pytest.param(_replace("--tasks", "ten"), "expected a whole number", id="tasks-text"),
    pytest.param(_replace("--concurrency", "0"), "must be a positive integer", id="concurrency"),
    pytest.param(_replace("--workload", "nap:5"), "accepted: noop, sleep:MS", id="workload"),
    pytest.param(_replace("--workload", "flaky:1.5"), "between 0 and 1", id="flaky-range"),
    pytest.param(_replace("--store", "memory"), "malformed URL", id="url-malformed"),
    pytest.param(_replace("--store", "nosuch://h"), "unknown store scheme", id="url-scheme"),
    pytest.param(_replace("--store", "memory://?x=1"), "unknown option 'x'", id="url-option"),
    pytest.param([*GOOD, "--executor", "celery"], "invalid choice: 'celery'", id="executor"),
    pytest.param(GOOD[2:], "--store", id="store-missing"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_exits_2_with_the_message_and_no_traceback(args: list[str], message: str) -> None:
    done = taskbench("bench", *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


BAD_LOAD_INPUT = [
    pytest.param([*GOOD, "--repeats", "0"], "must be a positive integer", id="repeats"),
    pytest.param([*GOOD, "--warmup", "lots"], "warmup must be", id="warmup"),
    pytest.param([*GOOD, "--warmup", "2s"], "not seconds", id="drain-warmup-seconds"),
    pytest.param([*GOOD, "--mode", "sideways"], "invalid choice: 'sideways'", id="mode"),
    pytest.param([*GOOD, "--rate", "5"], "--rate does not apply to --mode drain", id="drain-rate"),
    pytest.param(GOOD[:2] + GOOD[4:], "--mode drain needs --tasks", id="drain-no-tasks"),
    pytest.param(
        [*GOOD[:2], *GOOD[4:], "--mode", "open", "--rate", "0", "--duration", "1"],
        "rate must be > 0",
        id="open-rate-zero",
    ),
    pytest.param(
        [*GOOD[:2], *GOOD[4:], "--mode", "open", "--rate", "10", "--duration", "-1"],
        "duration must be > 0",
        id="open-duration-negative",
    ),
    pytest.param(
        [*GOOD[:2], *GOOD[4:], "--mode", "open", "--rate", "fast", "--duration", "1"],
        "expected a number",
        id="open-rate-text",
    ),
    pytest.param(
        [*GOOD[:2], *GOOD[4:], "--mode", "open", "--duration", "1"],
        "--mode open needs --rate",
        id="open-no-rate",
    ),
    pytest.param(
        [*GOOD, "--mode", "open", "--rate", "10", "--duration", "1"],
        "--tasks does not apply to --mode open",
        id="open-tasks",
    ),
    pytest.param(
        [*GOOD[:2], *GOOD[4:], "--mode", "closed", "--tasks", "0"],
        "must be a positive integer",
        id="closed-tasks-zero",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_LOAD_INPUT)
def test_bad_load_options_exit_2_before_anything_runs(
    args: list[str], message: str, results_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = in_process(capsys, "bench", *args)
    assert code == 2, (out, err)
    assert message in err and out == ""
    assert not results_folder.exists()


def test_an_unreachable_store_exits_1_without_its_password() -> None:
    pytest.importorskip("asyncpg")
    url = "postgresql://bench:s3cret@127.0.0.1:1/test"
    done = taskbench("bench", *_replace("--store", url), "--json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "unavailable" in done.stderr
    assert "s3cret" not in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_sqlite_path_in_a_missing_directory_exits_1_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "tasks.db"
    done = taskbench("bench", *_replace("--store", f"sqlite:///{missing}"))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert str(missing.parent) in done.stderr
    assert "Traceback" not in done.stderr


def test_backlog_times_claims_on_a_filled_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'backlog.db'}?profile=legacy"
    done = taskbench("backlog", "--store", url, "--backlog", "300", "--samples", "20", "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert (figures["backlog"], figures["samples"], figures["store"]) == (300, 20, url)
    assert 0 < figures["p50_ms"] <= figures["p95_ms"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["peers", "--peers", "celery"], "unknown peer 'celery'"),
        (["peers", "--tasks", "0"], "must be a positive integer"),
        (["backlog", "--store", "memory://", "--backlog", "0"], "must be a positive integer"),
        (["wakeup"], "--store"),
        (["wakeup", "--store", "nosuch://h"], "unknown store scheme"),
        (["wakeup", "--store", "memory://", "--duration", "0"], "seconds must be > 0"),
        (["wakeup", "--store", "memory://", "--warmup", "soon"], "expected a number of seconds"),
        (["wakeup", "--store", "memory://", "--drain-repeats", "0"], "must be a positive integer"),
        (["wakeup", "--store", "memory://", "--shares", "0.5,2"], "distinct numbers in (0, 1]"),
        (
            ["wakeup", "--store", "memory://", "--duration", "2", "--warmup", "2"],
            "must be shorter than the duration",
        ),
    ],
)
def test_other_commands_refuse_bad_input(args: list[str], message: str) -> None:
    done = taskbench(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr


# -- load modes (in process: the same main(), without a new interpreter per run) ------

Capture = pytest.CaptureFixture[str]


def test_open_mode_reports_from_the_schedule_and_accounts_for_every_task(capsys: Capture) -> None:
    result = printed_json(
        capsys, "bench", "--store", "memory://", "--mode", "open", "--rate", "200",
        "--duration", "1", "--warmup", "0.25s", "--concurrency", "5",
        "--workload", "noop+priority:mixed", "--json",
    )  # fmt: skip
    assert result.keys() >= LOAD_FIELDS
    shape = (result["mode"], result["rate"], result["duration_s"], result["tasks"])
    assert shape == ("open", 200, 1, 200)
    assert (result["succeeded"], result["lost"], result["duplicates"]) == (200, 0, 0)
    assert result["measured"] == 150
    assert result["send_lag_ms"]["p50"] >= 0 and result["queue_ms"]["p99"] > 0


def test_closed_mode_prints_a_readable_summary(capsys: Capture) -> None:
    code, out, err = in_process(
        capsys, "bench", "--store", "memory://", "--mode", "closed", "--tasks", "100",
        "--concurrency", "4", "--workload", "sleep:1", "--warmup", "10",
    )  # fmt: skip
    assert code == 0, err
    assert "mode         closed  (warm-up 10)" in out
    assert "110 sent, 100 measured" in out
    assert "110 succeeded, 0 dead, 0 lost, 0 duplicates" in out


def test_no_metrics_still_verifies_and_says_what_it_did_not_measure(capsys: Capture) -> None:
    result = printed_json(capsys, "bench", *GOOD, "--no-metrics", "--json")
    assert (result["succeeded"], result["lost"], result["metrics"]) == (10, 0, False)
    assert (result["latency_ms"], result["duplicates"], result["resources"]) == (None, None, None)


# -- saved results --------------------------------------------------------------------


def test_repeats_save_one_row_each_and_print_the_spread(
    results_folder: Path, capsys: Capture
) -> None:
    printed = printed_json(capsys, "bench", *GOOD, "--repeats", "3", "--json")
    assert len(printed["repeats"]) == 3
    assert printed["summary"]["drain_tps"]["n"] == 3
    frame = load_runs(results_folder)
    assert printed["results_file"].startswith(str(results_folder))
    assert list(frame["repeat"]) == [0, 1, 2] and frame["run_id"].nunique() == 1
    assert list(frame["succeeded"]) == [10, 10, 10]
    assert frame["hist"].notna().all() and frame["queue_hist"].notna().all()


def test_no_save_writes_nothing_and_results_dir_is_obeyed(
    results_folder: Path, tmp_path: Path, capsys: Capture
) -> None:
    assert printed_json(capsys, "bench", *GOOD, "--no-save", "--json")["results_file"] is None
    assert not results_folder.exists()
    elsewhere = tmp_path / "elsewhere"
    _, out, _ = in_process(capsys, "bench", *GOOD, "--results-dir", str(elsewhere))
    assert f"saved        {elsewhere}" in out
    assert len(load_runs(elsewhere)) == 1


def _saved_run(capsys: Capture, *extra: str) -> str:
    """Run a small bench; the id prefix its file name ends with."""
    path = printed_json(capsys, "bench", *GOOD, *extra, "--json")["results_file"]
    return Path(path).stem.rpartition("-")[2]


def _listed(capsys: Capture, *options: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = printed_json(capsys, "results", "list", *options, "--json")["runs"]
    return runs


def test_results_list_shows_each_run_once_filtered_and_limited(capsys: Capture) -> None:
    first = _saved_run(capsys, "--repeats", "2")
    second = _saved_run(capsys, "--workload", "noop+payload:10")
    closed = ["--store", "sqlite://", "--tasks", "5", "--concurrency", "1", "--workload", "noop"]
    printed_json(capsys, "bench", *closed, "--mode", "closed", "--json")
    runs = _listed(capsys)
    assert [run["kind"] for run in runs] == ["drain", "drain", "closed"]
    assert runs[0]["run_id"].startswith(first) and runs[0]["repeats"] == 2
    assert runs[1]["run_id"].startswith(second) and runs[1]["workload"] == "noop+payload:10"
    assert runs[0]["drain_tps"] > 0 and runs[2]["achieved_tps"] > 0
    assert [run["kind"] for run in _listed(capsys, "--kind", "closed")] == ["closed"]
    assert [run["store"] for run in _listed(capsys, "--store", "sqlite")] == ["sqlite://"]
    assert [run["kind"] for run in _listed(capsys, "--last", "1")] == ["closed"]
    table = in_process(capsys, "results", "list")[1].splitlines()
    assert table[0].split()[:3] == ["run_id", "recorded_at", "kind"]
    assert len(table) == 4 and table[1].startswith(first)


def test_results_compare_gives_the_ratio_its_interval_and_a_verdict(capsys: Capture) -> None:
    before = _saved_run(capsys, "--repeats", "3")
    after = _saved_run(capsys, "--repeats", "3")
    found = printed_json(capsys, "results", "compare", before, after, "--json")
    assert found["metric"] == "drain_tps"
    assert found["run_a"].startswith(before) and found["run_b"].startswith(after)
    comparison = found["comparison"]
    assert comparison["ci_low"] <= comparison["ratio"] <= comparison["ci_high"]
    assert comparison["n_before"] == comparison["n_after"] == 3
    assert comparison["verdict"] in {"better", "worse", "no significant change"}
    latency = printed_json(
        capsys, "results", "compare", before, after, "--metric", "latency_p99_ms", "--json"
    )
    assert latency["comparison"]["higher_is_better"] is False
    _, text, _ = in_process(capsys, "results", "compare", before, after)
    assert "B / A" in text and "CI" in text


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["compare", "nosuchrun", "{run}"], 1, "no saved run 'nosuchrun'"),
        (["compare", "{run}", "{run}", "--metric", "bogus"], 1, "has no 'bogus'; it has:"),
        (["list", "--last", "0"], 2, "must be a positive integer"),
    ],
)
def test_results_refuses_what_is_not_there(
    args: list[str], code: int, message: str, capsys: Capture
) -> None:
    run = _saved_run(capsys)
    done = in_process(capsys, "results", *(arg.format(run=run) for arg in args))
    assert done[0] == code and message in done[2]


def test_an_empty_results_folder_lists_nothing(capsys: Capture) -> None:
    assert in_process(capsys, "results", "list")[1] == "no saved runs match\n"


def test_no_password_reaches_the_output_the_file_or_the_listing(results_folder: Path) -> None:
    url = f"memory://bench:{PASSWORD}@local"
    done = taskbench("bench", *_replace("--store", url), "--repeats", "2")
    assert done.returncode == 0, done.stderr
    listing = taskbench("results", "list", "--json")
    files = b"".join(path.read_bytes() for path in results_folder.iterdir())
    for seen in (done.stdout, done.stderr, listing.stdout, files.decode("latin-1")):
        assert PASSWORD not in seen
    assert "memory://bench:***@local" in done.stdout
    assert "memory://bench:***@local" in listing.stdout


def test_overhead_runs_both_sides_interleaved_and_saves_them(
    results_folder: Path, capsys: Capture
) -> None:
    found = printed_json(
        capsys, "overhead", "--store", "memory://", "--tasks", "100", "--concurrency", "4",
        "--repeats", "2", "--json",
    )  # fmt: skip
    assert [r["metrics"] for r in found["with_metrics"]] == [True, True]
    assert [r["metrics"] for r in found["without_metrics"]] == [False, False]
    assert found["drain_tps"]["n_before"] == found["tasks_per_cpu_s"]["n_after"] == 2
    assert found["hook_cpu_us_per_task"] > 0 and 0 < found["hook_ratio"] < 1
    frame = load_runs(results_folder, kind="overhead")
    assert sorted(frame["metrics"]) == [False, False, True, True]


# -- scorecard -------------------------------------------------------------------------


def test_scorecard_json_has_every_store_its_figures_and_the_reports_words(
    tmp_path: Path, capsys: Capture
) -> None:
    from taskbench.bench.results import save_run
    from taskbench.bench.scorecard import CRITERIA

    crashes = tmp_path / "crashes"
    for setting, lost in (("normal", 0), ("off", 5)):
        rows = [{"store": "sqlite:///c.db", "setting": setting, "lost": lost}]
        save_run("crash", rows, directory=crashes, env={})
    found = printed_json(
        capsys, "scorecard", "--stores", f"m=memory://,sqlite:///{tmp_path / 'card.db'}",
        "--fast", "--results-dir", str(crashes), "--json",
    )  # fmt: skip
    assert list(found["criteria"]) == list(CRITERIA)
    memory, sqlite = found["stores"]["m"], found["stores"]["sqlite"]
    assert memory["status"] == sqlite["status"] == "measured"
    assert memory["throughput_tps"] > 0 and sqlite["latency_p99_ms"] > 0
    assert memory["report"] == dict.fromkeys(found["criteria"])  # the report did not rate it
    assert sqlite["report"]["Performance"] == "Low-Medium"
    assert memory["durability_lost"] is None and memory["process_speedup"] is None
    assert sqlite["durability_lost"] == 0  # the default setting (normal), not the worst (off)


def test_scorecard_table_puts_the_reports_word_before_the_figures() -> None:
    import pandas as pd

    from taskbench.bench.scorecard import COLUMNS
    from taskbench.cli.scorecard import card_text

    rows = {
        "redis": {"backend": "redis", "status": "measured", "throughput_tps": 10558.4,
                  "latency_p50_ms": 0.01444, "notes": "a note"},
        "memory": {"backend": "memory", "status": "measured", "throughput_tps": 2.08},
    }  # fmt: skip
    card = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(COLUMNS))
    lines = card_text(card).splitlines()
    performance = lines[lines.index("## Performance") + 1 :]
    redis = next(line for line in performance if line.startswith("redis"))
    assert redis.split()[1:4] == ["Very", "High", "10,558"]  # report, then measured
    assert "0.0144" in redis
    memory = next(line for line in performance if line.startswith("memory"))
    assert memory.split()[1:3] == ["-", "2.08"]
    assert "redis: a note" in lines


@pytest.mark.parametrize(
    ("stores", "code", "message"),
    [
        ("nosuch://x", 2, "unknown store scheme 'nosuch'"),
        ("memory://,memory://", 2, "store 'memory' is given twice"),
        (",", 2, "--stores needs at least one store URL"),
        (f"r=redis://:{PASSWORD}@127.0.0.1:1/0", 1, "store 'r': cannot reach Redis"),
        (f"postgresql://u:{PASSWORD}@127.0.0.1:1/db", 1, "store 'postgres'"),
    ],
)
def test_scorecard_refuses_bad_or_unreachable_stores_before_measuring(
    stores: str, code: int, message: str, capsys: Capture
) -> None:
    returned, out, err = in_process(capsys, "scorecard", "--stores", stores, "--fast")
    assert returned == code
    assert out == ""
    assert message in err
    assert PASSWORD not in err and "Traceback" not in err


# -- faults hostile / backup: their arguments are checked before anything runs ---------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hostile"], "the following arguments are required: --store"),
        (["hostile", "--store", "memory://", "--examples", "0"], "at least 1 example"),
        (["hostile", "--store", "memory://", "--examples", "many"], "expected a whole number"),
        (["hostile", "--store", "memory://", "--entry-points", "cli,nope"], "'nope'; known:"),
        (["hostile", "--store", "memory://", "--entry-points", ","], "none given"),
        (["hostile", "--store", f"redis://:{PASSWORD}@a..b/0"], "host 'a..b' is not a valid"),
        (["backup", "--store", "memory://", "--tasks", "5"], "at least 6 tasks"),
        (["backup", "--store", "memory://", "--tasks", "1e3"], "expected a whole number"),
        (["backup", "--store", "nosuch://x"], "unknown store scheme 'nosuch'"),
        (["backup", "--tasks", "10"], "the following arguments are required: --store"),
    ],
)
def test_faults_hostile_and_backup_refuse_bad_arguments_with_exit_2(
    args: list[str], message: str, capsys: Capture
) -> None:
    code, out, err = in_process(capsys, "faults", *args)
    assert (code, out) == (2, "")
    assert f"taskbench faults {args[0]}: error:" in err and message in err, err
    assert PASSWORD not in err


def test_faults_backup_runs_its_drill_as_a_cli_entry(tmp_path: Path, capsys: Capture) -> None:
    url = f"sqlite:///{tmp_path / 'drill.db'}"
    found = printed_json(capsys, "faults", "backup", "--store", url, "--tasks", "12", "--json")
    assert (found["tasks"], found["mismatches"]) == (12, 0)


def test_a_store_path_that_is_not_utf8_is_printed_escaped(tmp_path: Path) -> None:
    """A non-UTF-8 byte in a path (a lone surrogate in argv) to a strict UTF-8 pipe."""
    store = os.fsencode(f"sqlite:///{tmp_path}/") + b"\xff.db"
    command: list[str | bytes] = [sys.executable, "-m", "taskbench.cli", "bench", "--store", store]
    command += GOOD[2:]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=90, env=env, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"\\udcff.db" in done.stdout


def test_lenient_output_escapes_what_a_strict_stdout_cannot_encode() -> None:
    raw = io.BytesIO()
    strict = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
    with contextlib.redirect_stdout(strict):
        with lenient_output():
            print("path \udcff.db")
        with pytest.raises(UnicodeEncodeError):
            print("\udcff")
    strict.flush()
    assert raw.getvalue() == b"path \\udcff.db\n"
    assert strict.errors == "strict"


def test_scorecard_has_help_and_is_listed(capsys: Capture) -> None:
    code, out, _ = in_process(capsys, "scorecard", "--help")
    assert code == 0 and "--stores [NAME=]URL,..." in out and "--fast" in out
    assert "scorecard" in in_process(capsys, "--help")[1]


def test_wakeup_offers_half_the_drain_and_saves_the_histograms_it_printed(
    capsys: Capture,
) -> None:
    from taskbench.bench.results import latest, percentile_spectrum

    printed = printed_json(
        capsys, "wakeup", "--store", "memory://", "--drain-tasks", "500", "--drain-repeats", "1",
        "--duration", "1", "--warmup", "0.2", "--concurrency", "5", "--shares", "0.5", "--json",
    )  # fmt: skip
    (store,) = printed["stores"]
    assert store["rate"] == pytest.approx(store["drain_tps"] / 2)
    assert store["lost"] == 0 and store["met"] == (store["queue_ms"]["p99"] < 10.0)
    assert store["target_p99_ms"] == printed["target_p99_ms"] == 10.0
    (saved,) = printed["results_files"]
    row = latest("wakeup", store="memory://")
    assert Path(saved).is_file() and len(row) == 1
    assert row["params"].iloc[0].count("drain_tps") == 1
    assert percentile_spectrum(row["queue_hist"]) == store["spectrum"]
    assert row["succeeded"].iloc[0] == row["tasks"].iloc[0]
