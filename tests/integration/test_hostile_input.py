"""Hostile input against every store, the URL openers and the CLI (issue 7, item 4).

Three kinds of tests:

* **Campaigns.** :func:`taskbench.faults.hostile.run_campaign` draws
  ``TASKBENCH_HOSTILE_EXAMPLES`` cases (default 200) per entry point, with a
  fixed seed (``TASKBENCH_HOSTILE_SEED`` to explore others), against each
  store backend on its own isolated server space, and against the URL
  openers and the CLI. Every finding must be one of :data:`KNOWN_BUGS`.
* **One regression test per known bug**, ``xfail(strict=True)`` where it fails
  today. When a fix lands, the test passes, the strict xfail fails the run,
  and the marker and the entry of KNOWN_BUGS come out together.
* **The judges themselves**, against real stores: a changed canary, a
  non-finite time, a traceback from the CLI are each caught, so a campaign
  that reports nothing has looked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from taskbench import Task
from taskbench.errors import ConfigError, InvalidTaskError, TaskbenchError
from taskbench.faults.hostile import (
    STORE_ENTRY_POINTS,
    CampaignResult,
    CliCase,
    CliRun,
    Finding,
    StoreChecks,
    Violation,
    cli_cases,
    expect_same,
    judge_cli,
    nest,
    run_campaign,
    run_examples,
)
from taskbench.faults.servers import free_port
from taskbench.model import Outcome
from taskbench.stores import TaskStore, open_store
from tests.backends import isolated_store_url

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["memory", "sqlite", "postgres", "redis", "mysql"]
EXAMPLES = int(os.environ.get("TASKBENCH_HOSTILE_EXAMPLES", "200"))
SEED = int(os.environ.get("TASKBENCH_HOSTILE_SEED", "20240607"))
SECRET = "Pw-5ecret-q7"
CAMPAIGN_TIMEOUT_S = 60 + EXAMPLES * 0.3
"""pytest-timeout's limit for a campaign (a campaign thread that timed out would run on)."""

# -- the known bugs: where each is fixed, and which findings it explains ------------------

Matcher = Callable[[str, Finding], bool]
"""(backend, finding) -> whether the finding is this bug's doing."""


KNOWN_BUGS: dict[str, tuple[str, Matcher]] = {}


def unexplained(backend: str, result: CampaignResult) -> list[Finding]:
    """Findings that no known bug explains (the first few of each signature)."""
    return [f for f in result.findings if not any(m(backend, f) for _, m in KNOWN_BUGS.values())]


def assert_only_known(backend: str, result: CampaignResult) -> None:
    strays = unexplained(backend, result)
    shown = "\n".join(f"{f.entry_point} {f.kind}: {f.detail}\n    case: {f.case}" for f in strays)
    assert not strays, f"seed {SEED}; findings no known bug explains:\n{shown}\n{result.summary()}"


# -- campaigns ------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
async def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with isolated_store_url(request.param, tmp_path) as url:
        yield url


@pytest.mark.slow
@pytest.mark.timeout(CAMPAIGN_TIMEOUT_S)
async def test_store_campaign_finds_only_known_bugs(
    backend_url: str, request: pytest.FixtureRequest
) -> None:
    result = await asyncio.to_thread(
        run_campaign, backend_url, EXAMPLES, entry_points=STORE_ENTRY_POINTS, seed=SEED
    )
    assert result.cases == EXAMPLES * len(STORE_ENTRY_POINTS), result.summary()
    assert all(t.accepted and t.refused for t in result.tallies.values()), result.summary()
    assert_only_known(request.node.callspec.params["backend_url"], result)


@pytest.mark.slow
@pytest.mark.timeout(CAMPAIGN_TIMEOUT_S)
async def test_url_and_cli_campaign_finds_only_known_bugs() -> None:
    entry_points = ("open_store", "open_coordinator", "cli")
    result = await asyncio.to_thread(
        run_campaign, "memory://", EXAMPLES, entry_points=entry_points, seed=SEED
    )
    assert result.cases == EXAMPLES * len(entry_points), result.summary()
    assert_only_known("memory", result)


def _environment(tmp_path: Path) -> dict[str, str]:
    """The CLI's environment: this checkout importable, results saved under ``tmp_path``."""
    results = str(tmp_path / "results")
    return {**os.environ, "PYTHONPATH": str(ROOT), "TASKBENCH_RESULTS_DIR": results}


def as_argv(case: CliCase) -> list[bytes] | None:
    """The case's arguments as a real argv (bytes), or None if no argv can hold them."""
    try:
        argv = [os.fsencode(argument) for argument in case.argv]
    except UnicodeEncodeError:  # a surrogate that no byte escapes to
        return None
    return None if any(b"\x00" in argument for argument in argv) else argv


def test_generated_command_lines_never_end_in_a_traceback(tmp_path: Path) -> None:
    """A sample of the CLI campaign's command lines, each run as a real process."""
    drawn: list[CliCase] = []
    run_examples(cli_cases(free_port(), str(tmp_path)), drawn.append, examples=40, seed=SEED)
    runnable = [argv for argv in map(as_argv, drawn) if argv is not None]
    assert len(runnable) >= 8, drawn
    for argv in runnable[:8]:
        done = subprocess.run(
            [sys.executable.encode(), b"-m", b"taskbench.cli", *argv],
            cwd=tmp_path,
            env=_environment(tmp_path),
            capture_output=True,
            timeout=120,
            check=False,
        )
        stderr = done.stderr.decode(errors="replace")
        assert done.returncode in (0, 1, 2), (argv, stderr[-2000:])
        assert "Traceback" not in stderr, (argv, stderr[-2000:])


# -- the judges catch what they must --------------------------------------------------------


@pytest.fixture
async def planted(tmp_path: Path) -> AsyncIterator[StoreChecks]:
    async with open_store(f"sqlite:///{tmp_path / 'judged.db'}") as store:
        checks = StoreChecks(store)
        await checks.reset()
        yield checks


async def test_a_canary_changed_through_the_api_is_caught(planted: StoreChecks) -> None:
    await planted.check_canaries()
    assert await planted.store.requeue_dead(["canary-dead"]) == 1
    with pytest.raises(Violation, match="canary"):
        await planted.check_canaries()


async def test_a_stored_non_finite_time_is_caught(planted: StoreChecks) -> None:
    bait = await planted.new_bait(claimed=True)
    with pytest.raises(Violation, match="not finite"):
        expect_same(dataclasses.replace(bait, run_at=math.inf), bait, "bait")


async def test_a_partial_write_of_a_refused_enqueue_is_caught(planted: StoreChecks) -> None:
    stored = Task.new("job", id="already-there")
    await planted.store.enqueue([stored])
    with pytest.raises(Violation, match="refused enqueue"):
        await planted.expect_absent([stored])


def test_the_cli_judge_refuses_tracebacks_silence_and_leaks() -> None:
    case = CliCase(("bench",), password=SECRET)
    with pytest.raises(Violation, match="exit 1"):
        judge_cli(case, CliRun(1, "", "Traceback (most recent call last):\n"))
    with pytest.raises(Violation, match="no message"):
        judge_cli(case, CliRun(2, "", ""))
    with pytest.raises(Violation, match="password"):
        judge_cli(case, CliRun(0, f"store redis://:{SECRET}@h/0", ""))
    with pytest.raises(Violation, match="raised"):
        judge_cli(case, CliRun(None, "", "", crash="Traceback\nUnicodeEncodeError: x"))


# -- one regression test per known bug ----------------------------------------------------


def _xfail(bug: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"known bug {bug}: {KNOWN_BUGS[bug][0]}")


@pytest.fixture
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    async with (
        isolated_store_url(request.param, tmp_path) as url,
        open_store(url) as opened,
    ):
        yield opened


async def _claimed(store: TaskStore, task_id: str = "bait") -> Task:
    await store.enqueue([Task.new("job", id=task_id, run_at=100.0, now=100.0)])
    return next(t for t in await store.claim("w", 100, lease_s=100, now=200.0) if t.id == task_id)


def test_a_payload_nested_past_the_recursion_limit_is_an_invalid_task() -> None:
    with pytest.raises(InvalidTaskError):
        Task.new("job", nest(None, 5_000))
    with pytest.raises(InvalidTaskError):
        from taskbench.model import validate_new_task

        validate_new_task(dataclasses.replace(Task.new("job"), payload_json="[" * 5_000))


@pytest.mark.parametrize("store", BACKENDS, indirect=True)
async def test_lone_surrogates_are_refused_or_stored_never_a_driver_error(
    store: TaskStore,
) -> None:
    for attempt in (
        lambda: store.enqueue([Task.new("job\ud800")]),
        lambda: store.claim("w\udc80", 1, lease_s=1),
        lambda: store.get_many(["id\ud800"]),
    ):
        with contextlib.suppress(TaskbenchError):
            await attempt()


async def test_a_status_that_is_not_one_is_a_config_error() -> None:
    async with open_store("memory://") as store:
        with pytest.raises(ConfigError):
            await store.purge(["QUEUED"])  # type: ignore[list-item]


@pytest.mark.parametrize("store", BACKENDS, indirect=True)
async def test_non_finite_times_are_refused_and_change_nothing(store: TaskStore) -> None:
    bait = await _claimed(store)
    for call in (
        lambda: store.extend([bait.lease], lease_s=1, now=math.nan),
        lambda: store.extend([bait.lease], lease_s=math.inf, now=300.0),
        lambda: store.finish([Outcome.succeeded(bait.lease, None, now=math.inf)]),
        lambda: store.claim("w", 1, lease_s=1, now=math.inf),
    ):
        with pytest.raises(TaskbenchError):
            await call()
        assert await store.get(bait.id) == bait


def test_huge_integers_in_a_new_task_are_an_invalid_task() -> None:
    with pytest.raises(InvalidTaskError):
        Task.new("job", run_at=10**400)
    with pytest.raises(InvalidTaskError):
        Task.new("job", max_attempts=10**5_000)


@pytest.mark.parametrize("store", BACKENDS, indirect=True)
async def test_huge_integers_in_store_calls_are_refused_cleanly(store: TaskStore) -> None:
    bait = await _claimed(store)
    forged = bait.lease.__class__(task_id=bait.id, attempt=2**63, owner="w")
    for call in (
        lambda: store.claim("w", 10**20, lease_s=1),
        lambda: store.release([forged]),
        lambda: store.wait_for_work(-(10**400)),
    ):
        with contextlib.suppress(TaskbenchError):
            await call()
    assert await store.get(bait.id) == bait


@pytest.mark.parametrize("store", BACKENDS, indirect=True)
async def test_a_new_task_with_a_field_a_run_sets_is_refused(store: TaskStore) -> None:
    fields = {"finished_at": 5.0, "lease_owner": "w", "last_error": "x", "result_json": "1"}
    for name, value in fields.items():
        task = dataclasses.replace(Task.new("job"), **{name: value})
        with pytest.raises(InvalidTaskError, match=name):
            await store.enqueue([task])
        assert await store.get(task.id) is None


@pytest.mark.parametrize("store", BACKENDS, indirect=True)
async def test_a_claim_takes_only_tasks_due_at_its_now(store: TaskStore) -> None:
    await store.enqueue([Task.new("job", run_at=100.0, now=1.0) for _ in range(2)])
    await store.enqueue([Task.new("job", id="later", run_at=200.0, now=1.0)])
    assert len(await store.claim("w", 1, lease_s=10, now=300.0)) == 1
    assert [t.run_at for t in await store.claim("w", 5, lease_s=10, now=150.0)] == [100.0]


@pytest.mark.parametrize("store", BACKENDS, indirect=True)
async def test_ids_and_owners_compare_exactly(store: TaskStore) -> None:
    await store.enqueue([Task.new("job", id="pad")])
    await store.enqueue([Task.new("job", id="pad ")])
    assert [t.id for t in await store.get_many(["pad"])] == ["pad"]
    bait = await _claimed(store)
    look_alike = bait.lease.__class__(task_id=bait.id, attempt=1, owner="w ")
    assert await store.extend([look_alike], lease_s=5, now=300.0) == 0


@pytest.mark.parametrize("store", BACKENDS, indirect=True)
async def test_an_id_that_is_not_text_never_matches_a_task(store: TaskStore) -> None:
    await store.enqueue([Task.new("job", id="kept")])
    for call in (
        lambda: store.get_many([0]),  # type: ignore[list-item]
        lambda: store.requeue_dead([0]),  # type: ignore[list-item]
        lambda: store.get_many([Ellipsis]),  # type: ignore[list-item]
    ):
        with contextlib.suppress(TaskbenchError):
            assert not await call()


LEAKY_URLS = [
    f"a b://u:{SECRET}@127.0.0.1:1/0",
    f"://u:{SECRET}@127.0.0.1:1/0",
    f"1x://u:{SECRET}@127.0.0.1:1/0",
    f"sqlite://u:{SECRET}@127.0.0.1/x.db",
    f"redis://:{SECRET}#x@127.0.0.1:1/0",
    f"redis://:{SECRET}@127.0.0.1:99999/0",
    f"postgresql://u:{SECRET}@[::1/db",
]


@pytest.mark.parametrize("url", LEAKY_URLS)
async def test_a_malformed_url_never_shows_its_password(url: str) -> None:
    with pytest.raises(TaskbenchError) as caught:
        async with open_store(url):
            pass
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


BAD_LOCATIONS = [
    "postgresql://u@a..b:1/db",
    "mysql://u@a..b:1/db",
    "postgresql://u@\ud800:1/db",
    "sqlite:///{tmp}/a\x00b.db",
    "sqlite:///{tmp}/\ud800.db",
    "redis://u@a..b:1/0",
]


@pytest.mark.parametrize("url", BAD_LOCATIONS)
async def test_a_host_or_path_that_cannot_exist_fails_cleanly(url: str, tmp_path: Path) -> None:
    with pytest.raises(TaskbenchError):
        async with open_store(url.format(tmp=tmp_path)):
            pass


async def test_an_etcd_host_that_cannot_exist_fails_cleanly() -> None:
    from taskbench.coordination import open_coordinator

    with pytest.raises(TaskbenchError):
        async with open_coordinator("etcd://\ud800:1"):
            pass


def test_the_cli_prints_a_store_path_that_is_not_utf8(tmp_path: Path) -> None:
    """A path byte that is not UTF-8 (surrogate-escaped in argv) must not crash the summary."""
    store = os.fsencode(f"sqlite:///{tmp_path}/") + b"\xff.db"
    argv = [b"bench", b"--store", store, b"--tasks", b"1", b"--concurrency", b"1"]
    command = [sys.executable, "-m", "taskbench.cli", *argv, b"--workload", b"noop"]
    done = subprocess.run(
        command, cwd=tmp_path, env=_environment(tmp_path), capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
