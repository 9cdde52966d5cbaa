"""Thin wrappers for experiments that live elsewhere, each returning plain JSON data.

A CLI command's JSON (:func:`cli_json`), and the distributed options measured
with ``taskbench cluster`` and ``taskbench failover`` (:func:`distributed_option`);
a crash experiment of :mod:`taskbench.faults.crash` (:func:`crash_run`); and
the test suite itself: tests per file (:func:`count_tests`) and line coverage
per module (:func:`coverage_by_module`). Each runs in a subprocess or in the
module that owns the experiment.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import (
    Callable,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import Any

from taskbench.bench.environment import scrub
from taskbench.errors import BenchmarkError, TaskbenchError
from taskbench.study.measurements import quiet_logs
from taskbench.study.session import CHECKOUT_ROOT, JSON


async def cli_json(*args: str, timeout: float = 900.0) -> JSON:
    """Run ``taskbench ARGS --json`` in a subprocess and return the JSON object it prints.

    For the experiments whose logic lives in a CLI command (``failover``,
    ``cluster``). A non-zero exit or a timeout raises BenchmarkError with the
    end of the command's stderr, passwords scrubbed.
    """
    command = [sys.executable, "-m", "taskbench.cli", *args, "--json"]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=CHECKOUT_ROOT
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise BenchmarkError(f"taskbench {args[0]} took longer than {timeout:.0f} s") from None
    if process.returncode != 0:
        tail = scrub(err.decode(errors="replace")[-2000:])
        raise BenchmarkError(f"taskbench {args[0]} failed (exit {process.returncode}): {tail}")
    return json.loads(out)


DISTRIBUTED_OPTIONS = {
    "A: etcd election": ("etcd", "leader"),
    "B: Redis election": ("redis", "leader"),
    "leaderless (row locks)": ("redis", "leaderless"),
}
"""The report's distributed options (section 1.2; its option C, a home-made consensus, is
rejected on purpose) and Airflow's leaderless design: label -> (coordinator, mode)."""


async def distributed_option(
    fresh_store: Callable[[], str],
    coordinator_url: str,
    mode: str,
    *,
    workers: int,
    tasks: int,
    kills: int,
    ttl: float,
) -> dict[str, Any]:
    """One distributed option measured: throughput of ``workers`` processes on I/O-bound
    tasks (``taskbench cluster``), then ``kills`` kill -9s under load (``taskbench
    failover``: the leader, or any worker when leaderless). Each on a fresh store."""
    common = ["--coordinator", coordinator_url, "--mode", mode, "--workload", "sleep:20"]
    cluster = await cli_json(
        "cluster", "--store", fresh_store(), *common,
        "--workers", str(workers), "--tasks", str(tasks), "--concurrency", "10",
    )  # fmt: skip
    (run,) = cluster["runs"]
    failover = await cli_json(
        "failover", "--store", fresh_store(), *common,
        "--workers", str(workers), "--tasks", str(tasks), "--kills", str(kills),
        "--ttl", str(ttl),
    )  # fmt: skip
    return {
        "workers": workers,
        "tasks_per_s": run["tasks_per_s"],
        "failover_p50_s": failover["failover_s"]["p50"],
        "failover_max_s": failover["failover_s"]["max"],
        "kills": kills,
        "stale_writes_accepted": failover["stale_writes_accepted"],
        "lost": run["lost"] + failover["lost"],
        "duplicates": run["duplicates"] + failover["duplicates"],
    }


def server_installed(server: str) -> bool:
    """Whether the fault experiments can start a ``server`` of their own on this machine."""
    from taskbench.faults.servers import check_installed

    try:
        check_installed(server)
    except TaskbenchError:
        return False
    return True


async def crash_run(
    server: str,
    setting: str | None,
    *,
    tasks: int,
    worker_kills: int,
    server_kills: int,
    server_restarts: int = 0,
) -> dict[str, Any]:
    """One crash or restart experiment (:mod:`taskbench.faults.crash`) as JSON data.

    ``setting`` None is the server's default durable setting.

    The servers it kills on purpose make the stores and their drivers log
    reconnections: every logger below CRITICAL is held back while it runs.
    """
    from taskbench.faults.crash import CrashPlan, run_experiment

    plan = CrashPlan.create(
        server=server,
        setting=setting,
        tasks=tasks,
        worker_kills=worker_kills,
        server_kills=server_kills,
        server_restarts=server_restarts,
    )
    with quiet_logs("", logging.CRITICAL):  # the root: drivers' loggers (asyncpg.pool...) too
        result = await run_experiment(plan)
    figures: dict[str, Any] = result.to_json_dict()
    return figures


def count_tests(root: Path = CHECKOUT_ROOT) -> list[dict[str, Any]]:
    """Collected tests per test file (``pytest --collect-only``), with their kind."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    files = Counter(line.split("::", 1)[0] for line in done.stdout.splitlines() if "::" in line)
    return [
        {
            "file": path,
            "kind": Path(path).parts[1] if len(Path(path).parts) > 2 else "other",
            "tests": count,
        }
        for path, count in sorted(files.items())
    ]


COVERAGE_TIMEOUT_S = 900


def coverage_by_module(
    test_paths: Sequence[str], root: Path = CHECKOUT_ROOT
) -> list[dict[str, Any]]:
    """Line coverage of each ``taskbench`` module by the tests at ``test_paths``.

    Runs ``coverage run -m pytest`` in a subprocess (a data file of its own in a
    temporary folder), then reads ``coverage json``. One row per module:
    ``module``, ``statements``, ``covered``, ``percent``; empty when coverage or
    pytest is not installed (``pip install 'taskbench[dev]'``). Raises
    BenchmarkError when the tests fail, since a failing suite covers nothing
    worth reporting.
    """
    if not all(importlib.util.find_spec(name) for name in ("coverage", "pytest")):
        return []
    with tempfile.TemporaryDirectory(prefix="taskbench-coverage-") as folder:
        data, report = Path(folder) / ".coverage", Path(folder) / "coverage.json"
        run = [sys.executable, "-m", "coverage", "run", f"--data-file={data}", "--source=taskbench"]
        tests = ["-m", "pytest", "-q", "-p", "no:cacheprovider", *test_paths]
        done = subprocess.run(
            [*run, *tests], cwd=root, capture_output=True, text=True,
            timeout=COVERAGE_TIMEOUT_S, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BenchmarkError(f"the tests under coverage failed:\n{scrub(done.stdout[-2000:])}")
        export = ["json", f"--data-file={data}", "-o", str(report)]
        coverage = [sys.executable, "-m", "coverage"]
        subprocess.run([*coverage, *export], cwd=root, capture_output=True, check=True, timeout=120)
        files = json.loads(report.read_text())["files"]
    rows = [_coverage_row(path, found["summary"]) for path, found in files.items()]
    return sorted((row for row in rows if row["statements"]), key=lambda row: row["module"])


def _coverage_row(path: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    module = Path(path).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
    return {
        "module": module,
        "statements": summary["num_statements"],
        "covered": summary["covered_lines"],
        "percent": round(summary["percent_covered"], 1),
    }
