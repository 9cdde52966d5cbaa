"""The open loop's producer: its records folded into the recorder, and its own process.

* The recorder's fold-in (:meth:`Recorder.time_sends`): known times in,
  exact splits out (every value below 2,048 µs, which an HdrHistogram of 3
  significant figures holds exactly).
* The producer process on SQLite (a temp file): it reports every id and each
  enqueue call; the open loop runs it on a shared store by default and says so.
* Its failures: a store nobody listens on, a bad job, an enqueue the store
  refuses, a child killed mid-run, a cancelled run, a parent that goes away.
  Each gives a BenchmarkError naming what happened (never a password), and
  leaves no child process behind.
* ``taskbench bench --producer``, checked while parsing.

No time is asserted: only counts, values given in, and which processes exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from taskbench.bench.load import OpenLoopConfig, open_loop
from taskbench.bench.metrics import EnqueueCall, LatencySeries, Recorder
from taskbench.bench.producer import (
    CHILD_CODE,
    ORPHANED_EXIT,
    ProducerJob,
    Schedule,
    produce,
    spawned_producer,
)
from taskbench.bench.results import merge_histograms
from taskbench.bench.workloads import parse_workload
from taskbench.cli import main
from taskbench.errors import BenchmarkError, ConfigError
from taskbench.faults.servers import free_ports
from taskbench.model import Task, TaskStatus
from taskbench.stores import TaskStore, open_store

T0 = 1_700_000_000.0
MS = 0.001
FIND_CHILD_TIMEOUT_S = 60.0


def _recorded_us(series: LatencySeries) -> list[int]:
    """Every sample of ``series``, in µs, smallest first."""
    series.flush()
    values: list[int] = []
    for item in series.histogram.get_recorded_iterator():
        values += [int(item.value_iterated_to)] * int(item.count_at_value_iterated_to)
    return values


def _claimed(task_id: str, created: float, started: float, attempts: int = 1) -> Task:
    task = Task.new("bench", id=task_id, now=created)
    return replace(task, status=TaskStatus.RUNNING, attempts=attempts, started_at=started)


# -- the recorder's fold-in -----------------------------------------------------------


def test_the_fold_in_splits_each_measured_task_from_its_call_and_its_start() -> None:
    recorder = Recorder(measure_from=T0, track_wake=True)
    ids = ["warm", "a", "b", "early", "lost"]
    created = [T0 - 1, T0, T0 + 1 * MS, T0 + 2 * MS, T0 + 2 * MS]
    recorder.on_claimed([_claimed("warm", T0 - 1, T0 - 0.9)])  # warm-up: never timed
    recorder.on_claimed([_claimed("early", created[3], T0 + 2.5 * MS)])  # before its return
    recorder.on_claimed([_claimed("a", T0, T0 + 4 * MS), _claimed("b", created[2], T0 + 3.5 * MS)])
    recorder.on_claimed([_claimed("a", T0, T0 + 9 * MS, attempts=2)])  # a retry: not a start
    calls = [
        EnqueueCall(0, 3, T0 + 1 * MS, T0 + 2 * MS),  # warm, a, b in one call
        EnqueueCall(3, 5, T0 + 2.2 * MS, T0 + 3 * MS),  # early, lost
    ]
    recorder.time_sends(ids, created, calls)
    #          a: 1 ms, b: 0 ms (clamped to 1 µs), early: 0.2 ms, lost: 0.2 ms
    assert _recorded_us(recorder.send_lag) == [1, 200, 200, 1000]
    assert _recorded_us(recorder.enqueue) == [800, 800, 1000, 1000]
    #          early: started before its call returned (0); a: 2 ms; b: 1.5 ms; lost: none
    assert _recorded_us(recorder.wake) == [1, 1500, 2000]


def test_without_tracking_the_fold_in_gives_no_wake_and_claims_keep_nothing() -> None:
    recorder = Recorder(measure_from=T0)
    recorder.on_claimed([_claimed("a", T0, T0 + 4 * MS)])
    recorder.time_sends(["a"], [T0], [EnqueueCall(0, 1, T0 + 1 * MS, T0 + 2 * MS)])
    assert (_recorded_us(recorder.send_lag), _recorded_us(recorder.enqueue)) == ([1000], [1000])
    assert recorder.wake.count == 0


async def test_produce_records_every_task_in_exactly_one_call() -> None:
    workload = parse_workload("noop")
    async with open_store("memory://") as store:
        schedule = Schedule.plan(workload, rate=2_000, arrivals=300, t0=time.time())
        sends = await produce(store, workload, schedule)
        assert len(await store.get_many(sends.ids)) == 300
    covered = sorted(index for call in sends.calls for index in range(call.first, call.end))
    assert covered == list(range(300)) and len(set(sends.ids)) == 300
    assert all(call.sent <= call.returned for call in sends.calls)
    assert sends.cpu_s is None  # in-process: its CPU is the benchmark's


# -- the producer process -------------------------------------------------------------


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'open.db'}"


def _producer_children() -> list[psutil.Process]:
    """This process's descendants that run the producer's code (zombies included)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if child.status() == psutil.STATUS_ZOMBIE or CHILD_CODE in child.cmdline():
                found.append(child)
    return found


async def test_a_producer_process_reports_every_id_and_call(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    async with open_store(url) as store:  # the schema exists before the child opens it
        job = ProducerJob(url=url, workload="noop+priority:mixed", rate=500.0, arrivals=100)
        async with spawned_producer(job) as child:
            await child.go(time.time() + 0.1)
            sends = await child.sends(timeout=60)
            assert child.process.returncode == 0
        stored = await store.get_many(sends.ids)
    assert len(sends.ids) == len(set(sends.ids)) == len(stored) == 100
    covered = sorted(index for call in sends.calls for index in range(call.first, call.end))
    assert covered == list(range(100))
    assert sends.cpu_s is not None and sends.cpu_s > 0
    assert _producer_children() == []


def _recording_opener(opened: list[TaskStore]) -> Callable[[str], TaskStore]:
    """``open_store``, keeping each store it opens in ``opened``."""

    def opener(url: str) -> TaskStore:
        opened.append(open_store(url))
        return opened[-1]

    return opener


async def test_on_sqlite_the_producer_runs_in_a_process_of_its_own(tmp_path: Path) -> None:
    opened: list[TaskStore] = []
    opener = _recording_opener(opened)
    config = OpenLoopConfig.create(
        _sqlite(tmp_path), workload="noop", concurrency=4, rate=100, duration=1.5, warmup="0.5s"
    )
    result = await open_loop(config, opener=opener)
    assert (result.producer, len(opened)) == ("process", 1)  # its client is in the child
    assert (result.tasks, result.succeeded, result.lost, result.duplicates) == (150, 150, 0, 0)
    assert result.measured == 100
    for name in ("send_lag", "enqueue", "wake", "queue"):
        assert merge_histograms([result.histograms[name]]).get_total_count() == 100, name
    assert result.producer_cpu_s is not None and result.producer_cpu_s > 0
    assert result.to_json_dict()["producer"] == "process"
    assert _producer_children() == []


async def test_inline_the_producer_is_a_second_client_in_this_process(tmp_path: Path) -> None:
    opened: list[TaskStore] = []
    opener = _recording_opener(opened)
    config = OpenLoopConfig.create(
        _sqlite(tmp_path), workload="noop", concurrency=4, rate=100, duration=1, producer="inline"
    )
    result = await open_loop(config, opener=opener)
    assert (result.producer, len(opened), result.producer_cpu_s) == ("inline", 2, None)
    assert (result.tasks, result.succeeded, result.lost) == (100, 100, 0)
    assert merge_histograms([result.histograms["wake"]]).get_total_count() == 100


async def test_the_memory_store_keeps_its_producer_inline() -> None:
    config = OpenLoopConfig.create(
        "memory://", workload="noop", concurrency=4, rate=100, duration=1
    )
    result = await open_loop(config)
    assert (result.producer, result.succeeded, result.lost) == ("inline", 100, 0)
    with pytest.raises(ConfigError, match="cannot be shared by processes"):
        await open_loop(replace(config, producer="process"))  # made without create()


@pytest.mark.parametrize("producer", ["thread", "", 1])
def test_a_bad_producer_is_refused_before_anything_starts(producer: object) -> None:
    with pytest.raises(ConfigError, match="producer must be one of process, inline"):
        OpenLoopConfig.create(
            "memory://",
            workload="noop",
            concurrency=1,
            rate=1,
            duration=1,
            producer=producer,  # type: ignore[arg-type]
        )
    with pytest.raises(ConfigError, match="memory:// cannot be shared by processes"):
        OpenLoopConfig.create(
            "memory://", workload="noop", concurrency=1, rate=1, duration=1, producer="process"
        )


# -- its failures ---------------------------------------------------------------------


async def test_a_store_nobody_listens_on_is_named_without_its_password() -> None:
    (port,) = free_ports(1)
    url = f"postgresql://bench:pw-s3cret@127.0.0.1:{port}/test"
    job = ProducerJob(url=url, workload="noop", rate=10.0, arrivals=10)
    with pytest.raises(BenchmarkError) as raised:
        async with spawned_producer(job):
            pytest.fail("the child cannot have opened its store")
    message = str(raised.value)
    assert f"producer process (postgresql://bench:***@127.0.0.1:{port}/test) failed" in message
    assert "pw-s3cret" not in message
    assert _producer_children() == []


async def test_a_bad_job_is_the_childs_config_error(tmp_path: Path) -> None:
    job = ProducerJob(url=_sqlite(tmp_path), workload="juggle:3", rate=10.0, arrivals=10)
    with pytest.raises(BenchmarkError, match=r"failed: ConfigError: .*juggle"):
        async with spawned_producer(job):
            pytest.fail("the child cannot have parsed its job")
    assert _producer_children() == []


async def test_an_enqueue_the_store_refuses_is_reported(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    async with open_store(url):
        pass  # the schema exists
    job = ProducerJob(url=url, workload="noop", rate=100.0, arrivals=10)
    async with spawned_producer(job) as child:
        with sqlite3.connect(tmp_path / "open.db") as db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON taskbench_tasks "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        await child.go(time.time())
        with pytest.raises(
            BenchmarkError, match=r"producer process .* failed: .*refused by the test"
        ):
            await child.sends(timeout=60)
        assert child.process.returncode == 1
    assert _producer_children() == []


def _stored_tasks(path: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            (count,) = db.execute("SELECT count(*) FROM taskbench_tasks").fetchone()
    except sqlite3.OperationalError:  # not created yet, or busy
        return 0
    return int(count)


async def _child_mid_run(run: asyncio.Task[object], path: Path) -> psutil.Process:
    """The producer process of ``run``, once it has sent tasks (fails if ``run`` ends first)."""
    deadline = time.monotonic() + FIND_CHILD_TIMEOUT_S
    while time.monotonic() < deadline and not run.done():
        children = [c for c in _producer_children() if c.status() != psutil.STATUS_ZOMBIE]
        if children and _stored_tasks(path) > 0:
            return children[0]
        await asyncio.sleep(0.05)
    pytest.fail("the open loop never got its producer process sending")


@contextlib.asynccontextmanager
async def _long_open_loop(tmp_path: Path) -> AsyncIterator[asyncio.Task[object]]:
    config = OpenLoopConfig.create(
        _sqlite(tmp_path), workload="noop", concurrency=4, rate=50, duration=120
    )
    run: asyncio.Task[object] = asyncio.create_task(open_loop(config))
    try:
        yield run
    finally:
        run.cancel()
        with contextlib.suppress(BaseException):
            await run


async def test_a_producer_killed_mid_run_fails_the_run_and_is_reaped(tmp_path: Path) -> None:
    async with _long_open_loop(tmp_path) as run:
        child = await _child_mid_run(run, tmp_path / "open.db")
        child.kill()
        with pytest.raises(BenchmarkError, match=r"producer process \(sqlite.*exited with code -9"):
            await run
    assert not psutil.pid_exists(child.pid)
    assert _producer_children() == []


async def test_a_cancelled_run_kills_its_producer(tmp_path: Path) -> None:
    async with _long_open_loop(tmp_path) as run:
        child = await _child_mid_run(run, tmp_path / "open.db")
        run.cancel()  # what asyncio.run does on Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await run
    assert not psutil.pid_exists(child.pid)
    assert _producer_children() == []


async def test_a_child_whose_parent_goes_away_exits(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    async with open_store(url):
        pass
    job = ProducerJob(url=url, workload="noop", rate=10.0, arrivals=10_000)
    async with spawned_producer(job) as child:
        await child.go(time.time())
        stdin = child.process.stdin
        assert stdin is not None
        stdin.close()  # as when the parent dies: the child must not send its 1,000 s schedule
        assert await asyncio.wait_for(child.process.wait(), 60) == ORPHANED_EXIT
    assert _producer_children() == []


# -- the command line -----------------------------------------------------------------


def _exit_code(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    try:
        code = main(list(args))
    except SystemExit as exit:  # argparse refuses bad usage by exiting
        code = int(exit.code or 0)
    return code, capsys.readouterr().err


OPEN = ["bench", "--mode", "open", "--rate", "10", "--duration", "1", "--concurrency", "1"]
OPEN += ["--workload", "noop", "--no-save"]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--store", "memory://", "--producer", "thread"], "invalid choice: 'thread'"),
        (["--store", "memory://", "--producer", "process"], "cannot be shared by processes"),
    ],
)
def test_a_bad_producer_option_exits_2(
    capsys: pytest.CaptureFixture[str], extra: list[str], fragment: str
) -> None:
    code, err = _exit_code(capsys, *OPEN, *extra)
    assert code == 2 and fragment in err


def test_the_producer_option_is_for_the_open_loop_only(capsys: pytest.CaptureFixture[str]) -> None:
    drain = ["bench", "--store", "memory://", "--tasks", "5", "--concurrency", "1"]
    code, err = _exit_code(capsys, *drain, "--workload", "noop", "--producer", "inline")
    assert code == 2 and "--producer does not apply to --mode drain" in err
