"""The distributed subcommands: ``worker``, ``cluster`` and ``failover``.

    taskbench worker --store URL --coordinator URL --concurrency C [--ttl S] [--workload SPEC]
    taskbench cluster --workers N[,N...] --store URL --coordinator URL --tasks T ...
    taskbench failover --store URL --coordinator URL --kills K --ttl S --tasks T --json

``worker`` runs one :class:`~taskbench.distributed.DistributedExecutor` until
SIGTERM or SIGINT (then it resigns, drains and exits 0). ``cluster`` and
``failover`` run local worker *processes* (``python -m taskbench.cli worker``)
on the same store and coordinator: ``cluster`` times a drain with N processes
(several N side by side, with the speed-up over the first); ``failover``
kills the leader process K times (found through the coordinator), starts a
replacement each time, and reports how long the cluster went without an
acting leader, then accounts for every task.

Design rules:

* **Check everything before anything starts**: URLs, timings (``ttl > 0``,
  ``refresh < ttl``), counts. A bad value exits 2 with our message; a server
  that does not answer within ``--connect-timeout`` exits 1. No traceback.
* **Workers leave evidence that survives kill -9.** With ``--record DIR``
  each worker appends its leadership timeline
  (``DIR/<worker>.events.jsonl``) and every task id it executed
  (``DIR/<worker>.executed``) with one ``write(2)`` per line; the parent
  reads them to time failovers, count duplicate executions and check that no
  stale write was accepted.
* **The store and the coordinator tell the truth, not the parent's guesses**:
  the leader to kill is the one the coordinator names, a failover ends when
  the new leader's first duty round is applied, and every task id is read
  back from the store at the end.
* The stores given to ``cluster`` and ``failover`` are **purged first**;
  give them a store (and a coordinator prefix) of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taskbench.bench.drain import check_positive, check_store_url, enqueue_all, verify
from taskbench.bench.workloads import ACCEPTED_FORMS, Workload, parse_workload
from taskbench.cli.common import EXIT_OK, EXIT_USAGE, Subcommand, argument, positive_int
from taskbench.coordination import COORDINATORS, Coordinator, Leadership, open_coordinator
from taskbench.coordination.base import DEFAULT_TTL_S
from taskbench.distributed import (
    DistributedExecutor,
    EventKind,
    LeadershipEvent,
    LineLog,
    Mode,
    check_duty_period,
    check_mode,
    open_fenced_coordinator,
    read_events,
    read_lines,
    stale_writes_accepted,
)
from taskbench.errors import BenchmarkError, ConfigError
from taskbench.executor import ExecutorStats
from taskbench.model import Task, TaskStatus
from taskbench.stores import Capability, TaskStore, open_store
from taskbench.urls import options_for, redact

POLL_S = 0.05
"""How often the parent looks at the store, the coordinator and the workers' files."""
STARTUP_TIMEOUT_S = 60.0
"""How long worker processes may take to start and join."""


# -- checking input -------------------------------------------------------------------


def check_shared_store_url(url: str) -> str:
    """A store URL that several processes can share (not ``memory://``)."""
    check_store_url(url)
    if Capability.MULTI_PROCESS not in open_store(url).capabilities:
        raise ConfigError(f"{redact(url)} cannot be shared between processes; use a server store")
    return url


def check_coordinator_url(url: str) -> str:
    """``url`` if it names a known coordinator (driver installed) with valid options."""
    backend, parts = COORDINATORS.resolve(url)
    options_for(backend, parts.query)
    return url


def check_seconds(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)


def seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"expected a number of seconds, got {raw!r}") from None
    return check_seconds(value, "the value")


def non_negative_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"expected a whole number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"expected a number >= 0, got {value}")
    return value


def worker_counts(raw: str) -> list[int]:
    """``1,2,4``: the cluster sizes to run side by side."""
    counts = [positive_int(part) for part in raw.split(",")]
    if len(set(counts)) != len(counts):
        raise ConfigError(f"each cluster size once, please: {raw!r}")
    return counts


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    """Everything a worker process needs; :meth:`create` checks it all (ConfigError)."""

    store: str
    coordinator: str
    concurrency: int
    workload: str = "noop"
    ttl: float | None = None
    """None: the coordinator URL's ``ttl`` option, else its default."""
    refresh: float | None = None
    duty_period: float = 1.0
    mode: Mode = Mode.LEADER
    lease: float = 30.0
    grace: float = 10.0
    self_fencing: bool = True
    connect_timeout: float = 5.0

    @classmethod
    def create(cls, **options: Any) -> WorkerOptions:
        made = cls(**options)
        check_shared_store_url(made.store)
        check_coordinator_url(made.coordinator)
        check_positive(made.concurrency, "concurrency")
        parse_workload(made.workload)
        check_duty_period(made.duty_period)
        check_mode(made.mode)
        check_seconds(made.lease, "lease")
        check_seconds(made.grace, "grace")
        open_coordinator(made.coordinator, **made.coordinator_options())  # checks the timings
        return made

    def coordinator_options(self, worker_id: str | None = None) -> dict[str, Any]:
        options: dict[str, Any] = {"connect_timeout": self.connect_timeout}
        if self.ttl is not None:
            options["ttl"] = self.ttl
        if self.refresh is not None:
            options["refresh"] = self.refresh
        if worker_id is not None:
            options["worker_id"] = worker_id
        return options

    def argv(self, worker_id: str, record: Path) -> list[str]:
        """The command line of a worker process with these options."""
        command = [sys.executable, "-m", "taskbench.cli", "-v", "worker"]
        command += ["--store", self.store, "--coordinator", self.coordinator]
        command += ["--concurrency", str(self.concurrency), "--workload", self.workload]
        command += ["--duty-period", str(self.duty_period)]
        command += ["--mode", self.mode.value, "--lease", str(self.lease)]
        command += ["--grace", str(self.grace), "--connect-timeout", str(self.connect_timeout)]
        command += ["--worker-id", worker_id, "--record", str(record)]
        if self.ttl is not None:
            command += ["--ttl", str(self.ttl)]
        if self.refresh is not None:
            command += ["--refresh", str(self.refresh)]
        if not self.self_fencing:
            command.append("--no-self-fencing")
        return command


def add_worker_arguments(parser: argparse.ArgumentParser, *, ttl_required: bool = False) -> None:
    """The options every distributed command passes on to its worker processes."""
    add_service_arguments(parser, ttl_required=ttl_required)
    add_tuning_arguments(parser)


def add_service_arguments(parser: argparse.ArgumentParser, *, ttl_required: bool) -> None:
    """Where the shared store and the coordinator are, and the session timings."""
    parser.add_argument(
        "--store",
        required=True,
        type=argument(check_shared_store_url),
        metavar="URL",
        help="the shared store, e.g. postgresql://postgres@127.0.0.1/test?schema=dist",
    )
    parser.add_argument(
        "--coordinator",
        required=True,
        type=argument(check_coordinator_url),
        metavar="URL",
        help="etcd://host:port[,host:port...] or redis://host:port/db (options: prefix, election)",
    )
    parser.add_argument(
        "--ttl",
        required=ttl_required,
        type=argument(seconds),
        metavar="S",
        help="coordinator session TTL: a dead worker is noticed after it "
        "(default: the URL's ttl option, else 10)",
    )
    parser.add_argument(
        "--refresh", type=argument(seconds), metavar="S", help="session refresh (ttl/3)"
    )
    parser.add_argument(
        "--connect-timeout",
        default=5.0,
        type=argument(seconds),
        metavar="S",
        help="give up on an unreachable server after this (default: %(default)s)",
    )


def add_tuning_arguments(parser: argparse.ArgumentParser) -> None:
    """What each worker runs, and how."""
    parser.add_argument(
        "--concurrency",
        default=10,
        type=argument(positive_int),
        metavar="C",
        help="tasks each worker runs at once (default: %(default)s)",
    )
    parser.add_argument(
        "--workload",
        default="noop",
        type=argument(_workload_spec),
        metavar="SPEC",
        help=f"what each task does: {', '.join(ACCEPTED_FORMS)}, joined by '+' "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--duty-period",
        default=1.0,
        type=argument(seconds),
        metavar="S",
        help="how often the leader requeues expired and abandoned leases (default: %(default)s)",
    )
    parser.add_argument(
        "--mode",
        default="leader",
        choices=[mode.value for mode in Mode],
        help="leader: one elected, fenced leader runs the duties; leaderless: every worker "
        "does, unfenced (default: %(default)s)",
    )
    parser.add_argument(
        "--lease",
        default=30.0,
        type=argument(seconds),
        metavar="S",
        help="task lease, extended while a task runs (default: %(default)s)",
    )
    parser.add_argument(
        "--grace",
        default=10.0,
        type=argument(seconds),
        metavar="S",
        help="on SIGTERM, running tasks get this long to finish (default: %(default)s)",
    )
    parser.add_argument(
        "--no-self-fencing",
        dest="self_fencing",
        action="store_false",
        help="study knob: act on a won epoch until the store refuses it",
    )


def _workload_spec(raw: str) -> str:
    parse_workload(raw)
    return raw


def worker_options(args: argparse.Namespace) -> WorkerOptions:
    """The options of ``args`` (ConfigError for a combination that is not valid)."""
    return WorkerOptions.create(
        store=args.store,
        coordinator=args.coordinator,
        concurrency=args.concurrency,
        workload=args.workload,
        ttl=args.ttl,
        refresh=args.refresh,
        duty_period=args.duty_period,
        mode=Mode(args.mode),
        lease=args.lease,
        grace=args.grace,
        self_fencing=args.self_fencing,
        connect_timeout=args.connect_timeout,
    )


def usage_error(exc: ConfigError) -> int:
    print(f"taskbench: error: {exc}", file=sys.stderr)
    return EXIT_USAGE


# -- worker ---------------------------------------------------------------------------


class WorkerRecord:
    """Where a worker process leaves its timeline and the ids it executed."""

    def __init__(self, directory: Path, worker_id: str) -> None:
        self._events = LineLog(directory / f"{worker_id}.events.jsonl")
        self._executed = LineLog(directory / f"{worker_id}.executed")

    def event(self, event: LeadershipEvent) -> None:
        self._events.append(event.to_json())

    def recording(self, workload: Workload) -> Callable[[Task], Awaitable[None]]:
        """The workload's handler, appending each id it ran to completion."""

        async def run_and_record(task: Task) -> None:
            await workload.handle(task)
            self._executed.append(task.id)

        return run_and_record

    def close(self) -> None:
        self._events.close()
        self._executed.close()


def stop_on_signals(node: DistributedExecutor, grace: float) -> None:
    """SIGTERM and SIGINT start a graceful stop (resign first, then drain); a repeated
    signal changes nothing. The handlers stay until the event loop closes, so a signal
    that arrives while the connections close does not cut the shutdown short."""
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def stop() -> None:
        if not stopping:
            stopping.append(asyncio.create_task(node.stop(grace)))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)


def build_node(
    options: WorkerOptions,
    store: TaskStore,
    coordinator: Coordinator,
    recorder: WorkerRecord | None,
) -> DistributedExecutor:
    """The DistributedExecutor of a worker process, with the workload's handler."""
    workload = parse_workload(options.workload)
    node = DistributedExecutor(
        store,
        coordinator,
        concurrency=options.concurrency,
        duty_period=options.duty_period,
        mode=options.mode,
        self_fencing=options.self_fencing,
        on_event=recorder.event if recorder else None,
        lease_s=options.lease,
    )
    handler = recorder.recording(workload) if recorder else workload.handle
    node.register(workload.task_name, handler)
    return node


async def serve(
    options: WorkerOptions, worker_id: str | None, record: Path | None
) -> ExecutorStats:
    """Run one worker until SIGTERM/SIGINT; its executor's counters."""
    async with open_store(options.store) as store:
        settings = options.coordinator_options(worker_id)
        async with open_fenced_coordinator(options.coordinator, store, **settings) as coordinator:
            recorder = WorkerRecord(record, coordinator.worker_id) if record else None
            node = build_node(options, store, coordinator, recorder)
            stop_on_signals(node, options.grace)
            try:
                return await node.run()
            finally:
                if recorder is not None:
                    recorder.close()


def configure_worker(parser: argparse.ArgumentParser) -> None:
    add_worker_arguments(parser)
    parser.add_argument("--worker-id", help="this worker's name (default: host-pid-random)")
    parser.add_argument(
        "--record", type=Path, metavar="DIR", help="append the timeline and executed ids here"
    )
    parser.add_argument("--json", action="store_true", help="print the counters as JSON at exit")


def run_worker(args: argparse.Namespace) -> int:
    try:
        options = worker_options(args)
    except ConfigError as exc:
        return usage_error(exc)
    stats = asyncio.run(serve(options, args.worker_id, args.record))
    counters = asdict(stats)
    if args.json:
        print(json.dumps(counters))
    else:
        print(", ".join(f"{name} {count}" for name, count in counters.items()))
    return EXIT_OK


# -- a cluster of local worker processes ----------------------------------------------


@dataclass
class WorkerProcess:
    worker_id: str
    process: subprocess.Popen[bytes]
    log_path: Path
    signalled: bool = False

    @property
    def running(self) -> bool:
        return self.process.poll() is None


@dataclass
class LocalCluster:
    """Worker processes on this machine, and a coordinator that watches them."""

    options: WorkerOptions
    root: Path
    observer: Coordinator
    tag: str = field(default_factory=lambda: f"tb{os.getpid()}{secrets.token_hex(2)}")
    workers: dict[str, WorkerProcess] = field(default_factory=dict)

    def start_worker(self) -> WorkerProcess:
        worker_id = f"{self.tag}-w{len(self.workers)}"
        log_path = self.root / f"{worker_id}.log"
        with log_path.open("wb") as log:
            command = self.options.argv(worker_id, self.root)
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self.workers[worker_id] = WorkerProcess(worker_id, process, log_path)
        return self.workers[worker_id]

    def send(self, worker_id: str, signum: int) -> float:
        """Signal one worker; the wall-clock time it was sent."""
        worker = self.workers[worker_id]
        worker.signalled = True
        sent = time.time()
        worker.process.send_signal(signum)
        return sent

    def resume(self, worker_id: str) -> None:
        """SIGCONT a stopped worker: a live member again."""
        worker = self.workers[worker_id]
        worker.process.send_signal(signal.SIGCONT)
        worker.signalled = False

    def live_ids(self) -> set[str]:
        return {w.worker_id for w in self.workers.values() if w.running and not w.signalled}

    def events(self) -> list[LeadershipEvent]:
        return read_events(self.root.glob("*.events.jsonl"))

    def executions(self) -> Counter[str]:
        return Counter(read_lines(self.root.glob("*.executed")))

    def check_alive(self) -> None:
        """BenchmarkError, with its log's tail, if a worker we did not signal has exited."""
        for worker in self.workers.values():
            if not worker.signalled and not worker.running:
                tail = worker.log_path.read_text(errors="replace")[-2000:]
                raise BenchmarkError(
                    f"worker {worker.worker_id} exited with {worker.process.returncode}:\n{tail}"
                )

    async def wait_for_members(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Until every live worker is listed as a member."""

        async def joined() -> bool:
            return self.live_ids() <= set(await self.observer.members())

        await self._poll(joined, timeout, "the workers to join")

    async def wait_for_event(
        self, match: Callable[[LeadershipEvent], bool], *, timeout: float, what: str
    ) -> LeadershipEvent:
        """The earliest event of any worker that ``match`` accepts, once there is one."""
        found: list[LeadershipEvent] = []

        async def seen() -> bool:
            found[:] = [event for event in self.events() if match(event)][:1]
            return bool(found)

        await self._poll(seen, timeout, what)
        return found[0]

    async def wait_for_acting_leader(self, timeout: float) -> Leadership:
        """The leadership the coordinator names, once its holder (ours, live) has acted."""
        found: list[Leadership] = []

        async def acting() -> bool:
            leadership = await current_leadership(self.observer)
            if leadership is None or leadership.leader_id not in self.live_ids():
                return False
            acted = any(
                e.kind is EventKind.DUTIES and e.epoch == leadership.epoch for e in self.events()
            )
            found.extend([leadership] if acted else [])
            return acted

        await self._poll(acting, timeout, "an acting leader")
        return found[0]

    async def stop(self, grace: float) -> None:
        """SIGTERM every running worker; SIGKILL those still running ``grace`` + 5 s later."""
        for worker in self.workers.values():
            if worker.running:
                worker.signalled = True
                worker.process.terminate()
        deadline = time.monotonic() + grace + 5.0
        while any(w.running for w in self.workers.values()) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
        for worker in self.workers.values():
            if worker.running:
                worker.process.kill()
            worker.process.wait()

    async def _poll(self, done: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not await done():
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchmarkError(f"gave up waiting for {what} after {timeout:.0f} s")
            await asyncio.sleep(POLL_S)


async def current_leadership(coordinator: Coordinator) -> Leadership | None:
    """Who leads now, as the coordinator's server says."""
    changes = coordinator.observe()
    try:
        return await anext(changes)
    finally:
        if isinstance(changes, AsyncGenerator):
            await changes.aclose()


@contextlib.asynccontextmanager
async def local_cluster(
    options: WorkerOptions, workers: int, root: Path
) -> AsyncIterator[LocalCluster]:
    """``workers`` worker processes, all joined; stopped (SIGTERM) when the block ends."""
    settings = options.coordinator_options()
    async with open_coordinator(options.coordinator, **settings) as observer:
        cluster = LocalCluster(options, root, observer)
        try:
            for _ in range(workers):
                cluster.start_worker()
            await cluster.wait_for_members()
            yield cluster
        finally:
            await cluster.stop(options.grace)


@contextlib.contextmanager
def record_dir(chosen: Path | None) -> Iterator[Path]:
    """``chosen`` (created, kept), or a temporary directory removed afterwards."""
    if chosen is not None:
        chosen.mkdir(parents=True, exist_ok=True)
        yield chosen
        return
    with tempfile.TemporaryDirectory(prefix="taskbench-cluster-") as scratch:
        yield Path(scratch)


async def wait_until_drained(store: TaskStore, timeout: float) -> None:
    """Until nothing is queued or running (BenchmarkError after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await store.counts()
        if counts[TaskStatus.QUEUED] + counts[TaskStatus.RUNNING] == 0:
            return
        if time.monotonic() > deadline:
            raise BenchmarkError(f"tasks still pending after {timeout:.0f} s: {dict(counts)}")
        await asyncio.sleep(POLL_S)


@dataclass(frozen=True, slots=True, kw_only=True)
class Accounting:
    """Every enqueued id, read back from the store, and the executions the workers logged."""

    tasks: int
    succeeded: int
    dead: int
    lost: int
    duplicates: int
    """Executions beyond the first, summed over ids (bounded by what was in flight at kills)."""


async def account(store: TaskStore, ids: Sequence[str], executions: Counter[str]) -> Accounting:
    checked = await verify(store, ids)
    return Accounting(
        tasks=len(ids),
        succeeded=checked.succeeded,
        dead=checked.dead,
        lost=checked.lost,
        duplicates=sum(count - 1 for count in executions.values() if count > 1),
    )


# -- cluster: throughput with N processes ---------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ThroughputRun:
    workers: int
    drain_s: float
    tasks_per_s: float
    accounting: Accounting

    def to_json_dict(self) -> dict[str, Any]:
        figures = {"workers": self.workers, "drain_s": self.drain_s}
        return figures | {"tasks_per_s": self.tasks_per_s} | asdict(self.accounting)


async def measure_throughput(
    options: WorkerOptions, *, workers: int, tasks: int, timeout: float, record: Path | None
) -> ThroughputRun:
    """Start ``workers`` processes, then time enqueueing and draining ``tasks`` tasks."""
    workload = parse_workload(options.workload)
    with record_dir(record) as root:
        async with open_store(options.store) as store:
            await store.purge()
            async with local_cluster(options, workers, root) as cluster:
                started = time.perf_counter()
                ids, _ = await enqueue_all(store, workload, tasks)
                await wait_until_drained(store, timeout)
                drain_s = time.perf_counter() - started
            accounting = await account(store, ids, cluster.executions())
    return ThroughputRun(
        workers=workers, drain_s=drain_s, tasks_per_s=tasks / drain_s, accounting=accounting
    )


def configure_cluster(parser: argparse.ArgumentParser) -> None:
    add_worker_arguments(parser)
    parser.add_argument(
        "--workers",
        required=True,
        type=argument(worker_counts),
        metavar="N[,N...]",
        help="worker processes; several sizes run one after the other, in one invocation",
    )
    parser.add_argument(
        "--tasks", required=True, type=argument(positive_int), metavar="T", help="tasks to drain"
    )
    add_run_arguments(parser)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        default=600.0,
        type=argument(seconds),
        metavar="S",
        help="give up on a drain after this (default: %(default)s)",
    )
    parser.add_argument(
        "--record", type=Path, metavar="DIR", help="keep the workers' logs and timelines here"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_cluster(args: argparse.Namespace) -> int:
    try:
        options = worker_options(args)
    except ConfigError as exc:
        return usage_error(exc)
    runs = [
        asyncio.run(
            measure_throughput(
                options,
                workers=count,
                tasks=args.tasks,
                timeout=args.timeout,
                record=args.record / f"workers-{count}" if args.record else None,
            )
        )
        for count in args.workers
    ]
    report = cluster_report(options, args.tasks, runs)
    print(json.dumps(report) if args.json else format_cluster(report))
    return EXIT_OK


def cluster_report(options: WorkerOptions, tasks: int, runs: list[ThroughputRun]) -> dict[str, Any]:
    base = runs[0]
    return {
        **describe(options),
        "tasks": tasks,
        "runs": [run.to_json_dict() for run in runs],
        "speedup": {str(r.workers): r.tasks_per_s / base.tasks_per_s for r in runs[1:]},
        "speedup_over_workers": base.workers,
    }


def describe(options: WorkerOptions) -> dict[str, Any]:
    return {
        "store": redact(options.store),
        "coordinator": redact(options.coordinator),
        "workload": options.workload,
        "concurrency": options.concurrency,
        "mode": options.mode.value,
        "ttl": options.ttl,
    }


def format_cluster(report: dict[str, Any]) -> str:
    lines = [
        f"{report['store']} / {report['coordinator']}: {report['tasks']} x {report['workload']}"
    ]
    for run in report["runs"]:
        speedup = report["speedup"].get(str(run["workers"]))
        lines.append(
            f"  {run['workers']} process(es) x {report['concurrency']}: "
            f"{run['tasks_per_s']:,.0f} tasks/s in {run['drain_s']:.2f} s"
            + (f"  ({speedup:.2f}x)" if speedup else "")
            + f"; lost {run['lost']}, duplicates {run['duplicates']}"
        )
    return "\n".join(lines)


# -- failover: kill the leader (leaderless: a worker), time the recovery ---------------

SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "STOP": signal.SIGSTOP}


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverSample:
    """One disruption: seconds from the signal until the cluster acted again."""

    victim: str
    old_epoch: int | None
    new_epoch: int | None
    election_s: float | None
    """Until a new leader was elected (None in leaderless mode)."""
    failover_s: float
    """Until the next leader's first duty round was applied (leaderless: until a worker's
    duty round requeued the victim's tasks)."""
    held: int
    """Tasks running under the victim just after the signal."""
    requeued: int
    """Abandoned tasks that round requeued."""


async def disrupt(
    cluster: LocalCluster, store: TaskStore, wave: Sequence[str], signum: int, timeout: float
) -> FailoverSample:
    """Signal the acting leader (leaderless: a worker) while it runs tasks of ``wave`` and
    wait until the cluster acts again; a killed or terminated worker is replaced, a paused one
    is resumed once its successor has acted."""
    leader = None
    if cluster.options.mode is Mode.LEADER:
        leader = await cluster.wait_for_acting_leader(timeout)
    victim = leader.leader_id if leader else min(cluster.live_ids())
    await wait_until_holding(store, wave, victim, timeout)
    sent = cluster.send(victim, signum)
    if signum == signal.SIGKILL:
        cluster.workers[victim].process.wait()
    held = await tasks_held(store, wave, victim)
    if signum != signal.SIGSTOP:
        cluster.start_worker()
    elected, acted = await next_action(cluster, leader, sent, bool(held), timeout)
    if signum == signal.SIGSTOP:
        cluster.resume(victim)  # deposed while paused: its next fenced write must be refused
    await cluster.wait_for_members()
    return FailoverSample(
        victim=victim,
        old_epoch=leader.epoch if leader else None,
        new_epoch=acted.epoch,
        election_s=elected.at - sent if elected else None,
        failover_s=acted.at - sent,
        held=len(held),
        requeued=acted.requeued_abandoned,
    )


async def next_action(
    cluster: LocalCluster, leader: Leadership | None, sent: float, held: bool, timeout: float
) -> tuple[LeadershipEvent | None, LeadershipEvent]:
    """The next leader's election and first duty round; leaderless, the first round that
    requeued what the victim held."""
    if leader is None:
        if not held:
            raise BenchmarkError("the worker was stopped holding no task: give each kill more")
        acted = await cluster.wait_for_event(
            lambda e: e.kind is EventKind.DUTIES and e.at > sent and e.requeued_abandoned > 0,
            timeout=timeout,
            what="a duty round that requeues the victim's tasks",
        )
        return None, acted
    elected, acted = [
        await cluster.wait_for_event(
            newer_than(leader, after=sent, kind=kind), timeout=timeout, what=f"a new {kind} event"
        )
        for kind in (EventKind.ELECTED, EventKind.DUTIES)
    ]
    return elected, acted


def newer_than(
    leadership: Leadership, *, after: float, kind: EventKind
) -> Callable[[LeadershipEvent], bool]:
    """Matches ``kind`` events later than ``after`` from an epoch above ``leadership``'s."""

    def match(event: LeadershipEvent) -> bool:
        epoch = event.epoch if event.epoch is not None else -1
        return event.kind is kind and event.at > after and epoch > leadership.epoch

    return match


async def tasks_held(store: TaskStore, ids: Sequence[str], worker_id: str) -> list[Task]:
    """The tasks among ``ids`` running under ``worker_id``'s lease now."""
    tasks = await store.get_many(ids)
    return [t for t in tasks if t.status is TaskStatus.RUNNING and t.lease_owner == worker_id]


async def wait_until_holding(
    store: TaskStore, ids: Sequence[str], worker_id: str, timeout: float
) -> None:
    """Until ``worker_id`` runs one of ``ids``, or none of them is left in the queue
    (BenchmarkError if tasks stay queued for ``timeout``: nobody is executing them)."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = await store.get_many(ids)
        if any(t.status is TaskStatus.RUNNING and t.lease_owner == worker_id for t in tasks):
            return
        if not any(t.status is TaskStatus.QUEUED for t in tasks):
            return
        if time.monotonic() > deadline:
            statuses = Counter(str(t.status) for t in tasks)
            raise BenchmarkError(f"tasks stayed queued for {timeout:.0f} s: {dict(statuses)}")
        await asyncio.sleep(POLL_S)


def waves(tasks: int, parts: int) -> list[int]:
    """``tasks`` split into ``parts`` near-equal waves (one before each kill, one after)."""
    return [tasks // parts + (1 if index < tasks % parts else 0) for index in range(parts)]


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverResult:
    samples: list[FailoverSample]
    stale_writes_accepted: int
    refused_writes: int
    accounting: Accounting

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "failover_s": summary([s.failover_s for s in self.samples]),
            "election_s": summary([s.election_s for s in self.samples if s.election_s is not None]),
            "victims": [s.victim for s in self.samples],
            "epochs": [[s.old_epoch, s.new_epoch] for s in self.samples],
            "held": [s.held for s in self.samples],
            "requeued": [s.requeued for s in self.samples],
            "stale_writes_accepted": self.stale_writes_accepted,
            "refused_writes": self.refused_writes,
            **asdict(self.accounting),
        }


def summary(samples: list[float]) -> dict[str, Any]:
    return {
        "p50": statistics.median(samples) if samples else None,
        "max": max(samples) if samples else None,
        "samples": samples,
    }


async def measure_failover(
    options: WorkerOptions,
    *,
    workers: int,
    kills: int,
    tasks: int,
    signum: int,
    timeout: float,
    record: Path | None,
) -> FailoverResult:
    """Run ``workers`` processes under load and disrupt the leader (leaderless: a worker)
    ``kills`` times."""
    workload = parse_workload(options.workload)
    wait = 3 * (options.ttl or DEFAULT_TTL_S) + STARTUP_TIMEOUT_S
    with record_dir(record) as root:
        async with open_store(options.store) as store:
            await store.purge()
            async with local_cluster(options, workers, root) as cluster:
                ids: list[str] = []
                samples: list[FailoverSample] = []
                for wave in waves(tasks, kills + 1):
                    wave_ids, _ = await enqueue_all(store, workload, wave)
                    ids += wave_ids
                    if len(samples) < kills:
                        samples.append(await disrupt(cluster, store, wave_ids, signum, wait))
                    await wait_until_drained(store, timeout)  # a task meets one disruption
            accounting = await account(store, ids, cluster.executions())
            events = cluster.events()
    return FailoverResult(
        samples=samples,
        stale_writes_accepted=stale_writes_accepted(events),
        refused_writes=sum(e.kind is EventKind.REFUSED for e in events),
        accounting=accounting,
    )


def configure_failover(parser: argparse.ArgumentParser) -> None:
    add_worker_arguments(parser, ttl_required=True)
    parser.set_defaults(workload="sleep:100")
    parser.add_argument(
        "--workers",
        default=3,
        type=argument(at_least_two),
        metavar="N",
        help="worker processes (default: %(default)s)",
    )
    parser.add_argument(
        "--kills",
        required=True,
        type=argument(non_negative_int),
        metavar="K",
        help="how many times to disrupt the leader",
    )
    parser.add_argument(
        "--tasks",
        required=True,
        type=argument(positive_int),
        metavar="T",
        help="tasks, enqueued in K+1 waves: one before each disruption, one after",
    )
    parser.add_argument(
        "--signal",
        default="KILL",
        choices=list(SIGNALS),
        help="KILL: a crash (failover after the TTL, a replacement is started); TERM: a "
        "graceful handover; STOP: a pause past the TTL, then SIGCONT (the old leader returns "
        "deposed: see --no-self-fencing)",
    )
    add_run_arguments(parser)


def at_least_two(raw: str) -> int:
    count = positive_int(raw)
    if count < 2:
        raise ConfigError("a failover needs at least 2 workers")
    return count


def run_failover(args: argparse.Namespace) -> int:
    try:
        options = worker_options(args)
        if options.mode is Mode.LEADERLESS and args.signal == "TERM":
            raise ConfigError("in leaderless mode a SIGTERM hands nothing over: use --signal KILL")
    except ConfigError as exc:
        return usage_error(exc)
    result = asyncio.run(
        measure_failover(
            options,
            workers=args.workers,
            kills=args.kills,
            tasks=args.tasks,
            signum=SIGNALS[args.signal],
            timeout=args.timeout,
            record=args.record,
        )
    )
    report = {**describe(options), "signal": args.signal, "workers": args.workers}
    report |= {"kills": args.kills, **result.to_json_dict()}
    print(json.dumps(report) if args.json else format_failover(report))
    return EXIT_OK


def format_failover(report: dict[str, Any]) -> str:
    failover = report["failover_s"]
    timing = (
        f"p50 {failover['p50']:.3f} s, max {failover['max']:.3f} s"
        if failover["samples"]
        else "no samples"
    )
    return "\n".join(
        [
            f"{report['store']} / {report['coordinator']} (ttl {report['ttl']} s)",
            f"SIG{report['signal']} x {report['kills']}: failover {timing}",
            f"stale writes accepted {report['stale_writes_accepted']}, "
            f"refused {report['refused_writes']}",
            f"tasks {report['tasks']}: {report['succeeded']} succeeded, {report['dead']} dead, "
            f"{report['lost']} lost, {report['duplicates']} duplicate executions",
        ]
    )


COMMANDS = {
    "worker": Subcommand(
        help="run one distributed worker (executor + membership + election) until SIGTERM",
        configure=configure_worker,
        run=run_worker,
    ),
    "cluster": Subcommand(
        help="drain T tasks with N local worker processes (several N side by side)",
        configure=configure_cluster,
        run=run_cluster,
    ),
    "failover": Subcommand(
        help="kill the leader worker K times under load; time each failover, account for tasks "
        "(leaderless: kill a worker, time until its tasks are requeued)",
        configure=configure_failover,
        run=run_failover,
    ),
}
