"""The ``taskbench`` command, run as a real subprocess (``python -m taskbench.cli``).

Checks what a user or a script sees: ``--json`` is exactly one JSON object
with every field, the accounting adds up for every executor and for a
memory and a SQLite store, and bad input exits 2 with our message on stderr
and no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXECUTORS = ["taskbench", "asyncio", "threads"]
JSON_FIELDS = {
    "store", "workload", "executor", "tasks", "concurrency", "enqueue_tps", "drain_tps",
    "latency_ms", "succeeded", "failed", "dead", "lost", "duplicates", "wall_s", "cpu_s",
    "max_rss_mb",
}  # fmt: skip
GOOD = ["--store", "memory://", "--tasks", "10", "--concurrency", "2", "--workload", "noop"]


def taskbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskbench.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def bench_json(store: str, tasks: int, workload: str, executor: str) -> dict[str, Any]:
    done = taskbench(
        "bench", "--store", store, "--tasks", str(tasks), "--concurrency", "20",
        "--workload", workload, "--executor", executor, "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("}\n") and done.stdout.count("\n") == 1, done.stdout
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'bench.db'}"


@pytest.mark.parametrize("executor", EXECUTORS)
def test_json_has_every_field_and_the_accounting_adds_up(store_url: str, executor: str) -> None:
    result = bench_json(store_url, 300, "noop", executor)
    assert result.keys() >= JSON_FIELDS
    assert set(result["latency_ms"]) == {"p50", "p95", "p99"}
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
        (["backlog", "--help"], "--backlog N"),
        (["peers", "--help"], "--peers PEERS"),
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
    ],
)
def test_other_commands_refuse_bad_input(args: list[str], message: str) -> None:
    done = taskbench(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
