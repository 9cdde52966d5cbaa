"""The distributed commands and the DistributedExecutor refuse bad input before anything starts.

Usage errors (a TTL <= 0, refresh >= TTL, a malformed URL, kills < 0, ...) exit 2
with our message and no traceback; a coordinator that does not answer exits 1
within its connect timeout. Also: the timeline checks that the failover figures
rest on, and the options a parent hands to its worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskbench.cli import build_parser, main
from taskbench.cli.distributed import worker_options
from taskbench.cluster.failover import waves
from taskbench.cluster.options import WorkerOptions
from taskbench.coordination import open_coordinator
from taskbench.coordination.base import cancel_and_wait, raise_if_cancel_requested
from taskbench.distributed import (
    DistributedExecutor,
    EventKind,
    LeadershipEvent,
    LineLog,
    Mode,
    acting_spans,
    overlapping_epochs,
    read_events,
    read_lines,
    stale_writes_accepted,
)
from taskbench.errors import ConfigError
from taskbench.stores import open_store
from tests.etcd_cluster import free_ports

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-pw"
FAILOVER = ["failover", "--kills", "1", "--ttl", "2", "--tasks", "9"]


def exit_code(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the command in-process; its exit code and stderr (argparse exits with 2)."""
    try:
        code = main(argv)
    except SystemExit as exited:
        code = int(exited.code or 0)
    return code, capsys.readouterr().err


@pytest.fixture
def shared_store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tasks.db'}"


def nobody() -> str:
    """A coordinator URL where nothing listens: if a check let bad input through, the
    command would fail fast (exit 1) instead of starting a real worker."""
    return f"etcd://127.0.0.1:{free_ports(1)[0]}?connect_timeout=1"


def worker(store: str, *extra: str, coordinator: str | None = None) -> list[str]:
    return ["worker", "--store", store, "--coordinator", coordinator or nobody(), *extra]


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (["--ttl", "0"], "positive"),
        (["--ttl", "-1"], "positive"),
        (["--ttl", "nan"], "positive"),
        (["--ttl", "3", "--refresh", "3"], "refresh"),
        (["--ttl", "3", "--refresh", "5"], "refresh"),
        (["--ttl", "3", "--refresh", "2.9"], "safety_margin"),
        (["--duty-period", "0"], "positive"),
        (["--concurrency", "0"], "positive"),
        (["--lease", "-2"], "positive"),
        (["--workload", "sleep:abc"], "workload"),
        (["--mode", "boss"], "invalid choice"),
    ],
)
def test_bad_worker_options_exit_2_with_our_message(
    shared_store: str, extra: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = exit_code(worker(shared_store, *extra), capsys)
    assert code == 2
    assert complaint in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("store", "coordinator", "complaint"),
    [
        ("memory://", "etcd://127.0.0.1:2379", "cannot be shared"),
        ("sqlite//x.db", "etcd://127.0.0.1:2379", "malformed"),
        ("nosuch://x", "etcd://127.0.0.1:2379", "unknown store scheme"),
        (None, "etcd//127.0.0.1:2379", "malformed"),
        (None, "etcd://127.0.0.1:99999", "out of range"),
        (None, "zookeeper://127.0.0.1:2181", "unknown coordinator scheme"),
        (None, "redis://127.0.0.1:6379/0?tll=2", "unknown option"),
        (None, f"redis://:{SECRET}@127.0.0.1:6379/0?ttl=2&refresh=2", "refresh"),
    ],
)
def test_bad_urls_exit_2_without_the_password(
    shared_store: str,
    store: str | None,
    coordinator: str,
    complaint: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = exit_code(worker(store or shared_store, coordinator=coordinator), capsys)
    assert code == 2
    assert complaint in err
    assert SECRET not in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("command", "complaint"),
    [
        (["failover", "--kills", "-1", "--ttl", "2", "--tasks", "10"], ">= 0"),
        (["failover", "--kills", "1", "--tasks", "10"], "--ttl"),
        (["failover", "--kills", "1", "--ttl", "0", "--tasks", "10"], "positive"),
        (["failover", "--kills", "1", "--ttl", "2", "--tasks", "0"], "positive"),
        (["failover", "--kills", "1", "--ttl", "2", "--tasks", "9", "--workers", "1"], "at least"),
        (["failover", "--kills", "x", "--ttl", "2", "--tasks", "10"], "whole number"),
        (["failover", "--kills", "1", "--ttl", "2", "--tasks", "9", "--signal", "HUP"], "choice"),
        ([*FAILOVER, "--mode", "leaderless", "--signal", "TERM"], "hands nothing over"),
        (["cluster", "--workers", "0", "--tasks", "10"], "positive"),
        (["cluster", "--workers", "1,1", "--tasks", "10"], "once"),
        (["cluster", "--workers", "1,x", "--tasks", "10"], "whole number"),
    ],
)
def test_bad_cluster_and_failover_arguments_exit_2(
    shared_store: str, command: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = ["--store", shared_store, "--coordinator", nobody()]
    code, err = exit_code([*command, *urls], capsys)
    assert code == 2
    assert complaint in err
    assert "Traceback" not in err


def unreachable(scheme: str) -> str:
    port = free_ports(1)[0]
    if scheme == "etcd":
        return f"etcd://root:{SECRET}@127.0.0.1:{port}?connect_timeout=1"
    return f"redis://:{SECRET}@127.0.0.1:{port}/0?connect_timeout=1"


@pytest.mark.parametrize("command", ["worker", "failover"])
@pytest.mark.parametrize("scheme", ["etcd", "redis"])
def test_an_unreachable_coordinator_exits_1_quickly(
    shared_store: str, command: str, scheme: str
) -> None:
    args = [command, "--store", shared_store, "--coordinator", unreachable(scheme), "--ttl", "2"]
    args += ["--kills", "1", "--tasks", "10"] if command == "failover" else []
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "taskbench.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "cannot reach" in done.stderr
    assert SECRET not in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 30, "a bounded connect timeout, not a hang"


# -- the DistributedExecutor's own checks ---------------------------------------------


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"duty_period": 0}, "duty_period"),
        ({"duty_period": -1.0}, "duty_period"),
        ({"duty_period": float("inf")}, "duty_period"),
        ({"duty_period": True}, "duty_period"),
        ({"mode": "boss"}, "unknown mode"),
        ({"worker_id": "me"}, "worker_id"),
        ({"housekeeping": True}, "housekeeping"),
        ({"concurrency": 0}, "concurrency"),
    ],
)
def test_the_distributed_executor_refuses_bad_options(
    options: dict[str, object], complaint: str
) -> None:
    coordinator = open_coordinator("etcd://127.0.0.1:2379", worker_id="w1")
    settings: dict[str, object] = {"concurrency": 2} | options
    with pytest.raises(ConfigError, match=complaint):
        DistributedExecutor(open_store("memory://"), coordinator, **settings)  # type: ignore[arg-type]


def test_the_executor_leases_under_the_coordinators_name() -> None:
    coordinator = open_coordinator("etcd://127.0.0.1:2379", worker_id="node-7")
    node = DistributedExecutor(open_store("memory://"), coordinator, concurrency=3)
    assert node.executor.worker_id == node.worker_id == "node-7"
    assert node.executor.housekeeping is False
    assert node.mode is Mode.LEADER


# -- what a parent hands its workers --------------------------------------------------


def test_worker_options_survive_the_trip_to_a_worker_process(
    shared_store: str, tmp_path: Path
) -> None:
    sent = WorkerOptions.create(
        store=shared_store,
        coordinator="redis://127.0.0.1:6379/0?prefix=t:",
        concurrency=7,
        workload="sleep:5+flaky:0.1",
        ttl=4.0,
        refresh=1.0,
        duty_period=0.3,
        mode=Mode.LEADERLESS,
        lease=12.0,
        grace=3.0,
        self_fencing=False,
        connect_timeout=2.0,
    )
    argv = sent.argv("w9", tmp_path)
    args = build_parser().parse_args(argv[argv.index("-v") :])
    assert worker_options(args) == sent
    assert (args.worker_id, args.record) == ("w9", tmp_path)


@pytest.mark.parametrize(("tasks", "parts"), [(10, 3), (3, 3), (2, 3), (1000, 11)])
def test_waves_split_the_tasks_evenly(tasks: int, parts: int) -> None:
    sizes = waves(tasks, parts)
    assert len(sizes) == parts and sum(sizes) == tasks
    assert max(sizes) - min(sizes) <= 1


# -- timelines ------------------------------------------------------------------------


def duties(epoch: int | None, sent: float, end: float) -> LeadershipEvent:
    return LeadershipEvent(
        kind=EventKind.DUTIES, worker_id=f"w{epoch}", epoch=epoch, at=end, sent_at=sent
    )


def test_rounds_in_epoch_order_are_not_stale() -> None:
    timeline = [duties(1, 0.0, 0.1), duties(1, 1.0, 1.1), duties(2, 2.0, 2.1), duties(3, 3, 3.1)]
    assert stale_writes_accepted(timeline) == 0


def test_an_old_epoch_applied_after_a_newer_round_ended_is_stale() -> None:
    timeline = [duties(1, 0.0, 0.1), duties(2, 2.0, 2.1), duties(1, 2.5, 2.6), duties(2, 3, 3.1)]
    assert stale_writes_accepted(timeline) == 1


def test_overlapping_refused_and_unfenced_rounds_are_not_judged() -> None:
    refused = LeadershipEvent(kind=EventKind.REFUSED, worker_id="w1", epoch=1, at=2.6, sent_at=2.5)
    timeline = [
        duties(2, 2.0, 2.3),
        duties(1, 2.2, 2.4),  # sent before the newer round ended: either order is fine
        refused,
        duties(None, 5.0, 5.1),  # leaderless: no epoch, nothing to fence
    ]
    assert stale_writes_accepted(timeline) == 0


def elected(epoch: int, at: float) -> LeadershipEvent:
    return LeadershipEvent(kind=EventKind.ELECTED, worker_id=f"w{epoch}", epoch=epoch, at=at)


def test_epochs_that_act_one_after_the_other_do_not_overlap() -> None:
    refused = LeadershipEvent(kind=EventKind.REFUSED, worker_id="w1", epoch=1, at=3.5, sent_at=3.4)
    timeline = [
        elected(1, 0.0),
        duties(1, 0.5, 0.6),
        duties(1, 1.0, 2.6),  # ends after epoch 2's election, but was sent before it
        elected(2, 2.5),
        duties(2, 3.0, 3.1),
        refused,  # epoch 1 again, refused by the store: it changed nothing
        elected(3, 4.0),  # elected, never wrote
        elected(4, 5.0),
        duties(None, 4.5, 4.6),  # leaderless round: no epoch
    ]
    assert acting_spans(timeline) == {1: (0.0, 1.0), 2: (2.5, 3.0), 3: (4.0, 4.0), 4: (5.0, 5.0)}
    assert overlapping_epochs(timeline) == []


def test_a_write_sent_after_a_newer_epoch_was_elected_is_an_overlap() -> None:
    timeline = [elected(1, 0.0), elected(2, 2.0), duties(1, 2.5, 2.6), duties(2, 3.0, 3.1)]
    assert overlapping_epochs(timeline) == [(1, 2)]
    unelected = [elected(5, 1.0), duties(5, 4.0, 4.1), duties(6, 3.0, 3.1), elected(7, 3.5)]
    assert overlapping_epochs(unelected) == [(5, 6), (5, 7)]


def test_events_survive_a_round_trip_through_a_line_log(tmp_path: Path) -> None:
    path = tmp_path / "w.events.jsonl"
    log = LineLog(path)
    written = [
        duties(4, 1.0, 1.5),
        LeadershipEvent(kind=EventKind.RESIGNED, worker_id="w", epoch=4, at=2.0),
    ]
    for event in reversed(written):
        log.append(event.to_json())
    log.close()
    with path.open("a") as file:
        file.write('{"kind": "duties", "worker_id"')  # a line cut short by kill -9
    assert read_events([path]) == written
    assert len(list(read_lines([path, tmp_path / "missing"]))) == 2


# -- cancellation a driver swallowed ----------------------------------------------------


async def swallow_one_cancellation(checked: bool) -> None:
    """Like a driver call under Python 3.11's asyncio.wait_for: the cancel is dropped."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(30)
    if checked:
        raise_if_cancel_requested()
    await asyncio.sleep(30)


async def test_a_loop_that_checks_stops_on_the_cancellation_a_driver_swallowed() -> None:
    task = asyncio.create_task(swallow_one_cancellation(checked=True))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()


async def test_cancel_and_wait_cancels_again_until_the_task_has_ended() -> None:
    task = asyncio.create_task(swallow_one_cancellation(checked=False))
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_and_wait(task)
    assert task.cancelled()
