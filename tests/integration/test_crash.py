"""Crash durability, measured: worker and server kills against every store family.

Each experiment test runs a small :mod:`taskbench.faults.crash` experiment: a
few hundred probe tasks executed by a worker subprocess that is SIGKILLed two
or three times, and, for the server stores, one kill -9 of a server the test
starts itself on a free port (PostgreSQL, Redis, MariaDB, each with the
durability setting under test). Nothing is mocked: real processes, real
servers, real files.

* A setting expected to survive a process crash must lose nothing, corrupt
  nothing and dead-letter nothing.
* Any other setting reports what it lost (it may lose nothing by luck: that
  is not asserted), and its accounting must add up.
* Redis without persistence restarts empty, so its loss is certain: that test
  proves the audit sees a loss. Another damages a store by hand, one way per
  kind of damage, and checks that each is counted where it belongs.

The CLI and the soak run here too, small.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from taskbench.errors import BenchmarkError
from taskbench.faults.crash import (
    TASK_NAME,
    CrashPlan,
    CrashResult,
    Record,
    append_lines,
    audit,
    probe_result,
    probe_tasks,
    run_experiment,
)
from taskbench.faults.servers import SETTINGS, check_installed
from taskbench.faults.soak import Sample, SoakPlan, run_soak, second_half_slope
from taskbench.model import Outcome, TaskStatus
from taskbench.stores import open_store
from tests.backends import all_backends_required

ROOT = Path(__file__).resolve().parents[2]
EVERY_SETTING = [
    pytest.param(server, name, id=f"{server}-{name}")
    for server, settings in SETTINGS.items()
    for name in settings
    if (server, name) != ("redis", "no-persistence")  # certain loss: its own test below
]


def require_server(server: str) -> None:
    """Skip (fail in CI) when the server's binaries are not installed."""
    if server == "sqlite":
        return
    try:
        check_installed(server)
    except BenchmarkError as error:
        if all_backends_required():
            pytest.fail(f"{error}; in CI every backend must run")
        pytest.skip(str(error))


def small_plan(server: str, setting: str, **overrides: Any) -> CrashPlan:
    """A few hundred tasks, 2-3 worker kills, one server kill where there is a server."""
    has_server = server != "sqlite"
    shape: dict[str, Any] = {
        "tasks": 200,
        "worker_kills": 2 if has_server else 3,
        "server_kills": 1 if has_server else 0,
        "lease_s": 2.0,  # a killed worker's tasks come back sooner
        "seed": 7,
    }
    return CrashPlan.create(server=server, setting=setting, **(shape | overrides))


def assert_accounted(result: CrashResult) -> None:
    """Every task is in exactly one final class, and the counts agree with each other."""
    finals = result.succeeded + result.dead + result.lost_missing + result.lost_unfinished
    assert finals == result.tasks, result
    assert result.lost == result.lost_missing + result.lost_unfinished + result.lost_completions
    assert result.lost_completions <= result.succeeded + result.dead
    assert result.executions >= result.succeeded  # a task runs before it can succeed
    assert result.acknowledged <= result.executions


@pytest.mark.slow
@pytest.mark.parametrize(("server", "setting"), EVERY_SETTING)
async def test_crash_experiment(
    server: str, setting: str, record_property: pytest.RecordProperty
) -> None:
    require_server(server)
    result = await run_experiment(small_plan(server, setting))
    for figure in ("lost", "lost_completions", "duplicates", "corrupted"):
        record_property(figure, getattr(result, figure))
    print(f"{server} {setting}: {result.to_json_dict()}")

    assert_accounted(result)
    assert result.corrupted == 0
    assert result.executions > 0 and result.acknowledged > 0
    if SETTINGS[server][setting].survives_process_crash:
        assert (result.lost, result.dead) == (0, 0), result
        assert result.succeeded == result.tasks


@pytest.mark.slow
async def test_redis_without_persistence_loses_what_it_held_and_the_audit_says_so() -> None:
    require_server("redis")
    plan = small_plan("redis", "no-persistence", worker_kills=0, server_kills=1)

    result = await run_experiment(plan)

    assert_accounted(result)
    # The server restarts empty: the first batch (half the tasks) and every
    # acknowledged completion of it are gone, whatever the timing.
    assert result.lost_missing >= result.tasks // 2
    assert result.succeeded == result.tasks - result.lost_missing
    assert result.corrupted == 0


async def test_audit_puts_each_kind_of_damage_in_its_own_class(tmp_path: Path) -> None:
    """Finish probe tasks by hand, log them as acknowledged, then damage the store."""
    tasks = probe_tasks(6, seed=3)
    database = tmp_path / "tasks.db"
    async with open_store(f"sqlite:///{database}") as store:
        await store.enqueue(tasks)
        claimed = sorted(await store.claim("hand", 6, lease_s=60), key=lambda task: task.id)
        runs = {task.id: f"hand.{i}" for i, task in enumerate(claimed)}
        outcomes = [
            Outcome.succeeded(t.lease, probe_result(t, runs[t.id]), now=1.0) for t in claimed
        ]
        assert await store.finish(outcomes) == 6
        records = {t.id: Record(t.id, t.attempts, runs[t.id]).line() for t in claimed}
        acked = [records[task.id] for task in tasks[:5]]  # the last one was never acknowledged
        append_lines(tmp_path / "acks-1.log", acked, fsync=False)
        executed = [*records.values(), records[tasks[0].id]]  # the first one ran twice
        append_lines(tmp_path / "runs-1.log", executed, fsync=False)
        with sqlite3.connect(database) as raw:
            raw.execute("DELETE FROM taskbench_tasks WHERE id = ?", (tasks[1].id,))
            raw.execute("UPDATE taskbench_tasks SET status = 'queued' WHERE id = ?", (tasks[2].id,))
            forgotten = json.dumps(probe_result(claimed[3], "a-later-run"))  # intact, not acked
            raw.execute(
                "UPDATE taskbench_tasks SET result = ? WHERE id = ?", (forgotten, tasks[3].id)
            )
            raw.execute("UPDATE taskbench_tasks SET payload = '[]' WHERE id = ?", (tasks[4].id,))
            raw.execute("UPDATE taskbench_tasks SET result = '7' WHERE id = ?", (tasks[5].id,))

        found = await audit(store, tasks, tmp_path)

    assert (found.lost_missing, found.lost_unfinished, found.lost_completions) == (1, 1, 1)
    assert found.lost == 3
    assert found.corrupted == 2  # a payload rewritten, a result that is not the handler's
    assert (found.succeeded, found.dead) == (4, 0)
    assert (found.acknowledged, found.executions) == (5, 7)
    assert (found.duplicates, found.extra_executions) == (1, 1)


# -- the command line ---------------------------------------------------------------------


def taskbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskbench.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )


@pytest.mark.slow
def test_cli_crash_on_a_store_url_prints_one_json_object_and_saves_the_run(
    tmp_path: Path,
) -> None:
    from taskbench.bench.results import load_runs

    url = f"sqlite:///{tmp_path / 'given.db'}?synchronous=FULL"
    done = taskbench(
        "faults", "crash", "--store", url, "--tasks", "80", "--kills", "1", "--seed", "5",
        "--json", "--results-dir", str(tmp_path / "runs"),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    result = json.loads(done.stdout)
    assert {"tasks", "lost", "duplicates", "corrupted", "setting"} <= result.keys()
    assert (result["store"], result["server"], result["setting"]) == (url, "url", "as-given")
    assert (result["tasks"], result["lost"], result["corrupted"]) == (80, 0, 0)
    saved = load_runs(tmp_path / "runs", kind="crash")
    assert list(saved["lost"]) == [0] and list(saved["store"]) == [url]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["crash", "--server", "sqlite", "--server-kills", "1"], "no server process"),
        (["crash", "--server", "redis", "--setting", "fsync"], "unknown redis setting"),
        (["crash", "--store", "memory://"], "cannot be shared"),
        (["crash", "--server", "sqlite", "--tasks", "2", "--kills", "3"], "tasks must be"),
        (["soak", "--store", "memory://", "--tasks", "10"], "cannot be shared"),
        (["restart", "--server", "sqlite"], "invalid choice"),
    ],
)
def test_cli_refuses_bad_plans_before_starting_anything(args: list[str], message: str) -> None:
    done = taskbench("faults", *args)

    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


# -- the soak -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_soak_runs_every_task_and_samples_the_worker(tmp_path: Path) -> None:
    plan = SoakPlan.create(
        f"sqlite:///{tmp_path / 'soak.db'}", tasks=3_000, backlog=500, sample_s=0.05
    )

    result = await run_soak(plan)

    assert (result.succeeded, result.lost) == (3_000, 0)
    done = [sample[1] for sample in result.samples]
    assert len(done) >= 2 and done == sorted(done)
    assert 0 < result.rss_warm_mb <= result.rss_max_mb
    async with open_store(plan.url) as store:
        assert (await store.counts())[TaskStatus.SUCCEEDED] == 3_000
        task = await store.get("soak-000000000")
        assert task is not None and task.name == TASK_NAME


def test_second_half_slope_fits_the_late_samples_only() -> None:
    early = [Sample(float(i), i * 1_000, 500.0 - i) for i in range(5)]  # shrinking, ignored
    late = [Sample(float(i), i * 1_000, 40.0 + 0.002 * i * 1_000) for i in range(5, 11)]

    assert second_half_slope(early + late) == pytest.approx(200.0)  # 0.002 MB/task
    assert second_half_slope([]) == 0.0
