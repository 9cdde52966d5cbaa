"""The experiment: a clean store, workers, faults at moments of real progress, then the audit.

:func:`run_experiment` runs a :class:`~taskbench.faults.crash.plan.CrashPlan`
to a :class:`CrashResult`. It starts the server if the plan names one, purges
the store, starts the :class:`~taskbench.faults.crash.pool.WorkerPool`, cuts
the probe tasks into one batch per fault plus one, enqueues each batch and
strikes its fault once executions of a random 20-80 % of the batch have
started (the runs logs say so at once), so tasks are in flight when it lands:
a worker SIGKILLed and replaced, every process of the server killed -9, or
the server restarted cleanly. Then the workers finish and
:func:`~taskbench.faults.crash.accounting.audit` counts the damage. The seed
is in the result. Everything started (workers, server, temporary directory)
is torn down on every way out, errors included.

Duplicates are expected, and bounded: a fault can re-run only what was in
flight where it struck, executions started and not yet acknowledged, read
from the logs right after it (``in_flight_at_faults``, summed).

:func:`save_result` saves a result; :func:`settings_table` lists every
server's durability settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from taskbench.errors import BenchmarkError
from taskbench.faults.crash.accounting import Audit, audit
from taskbench.faults.crash.patience import enqueue_reliably, patiently
from taskbench.faults.crash.plan import CrashPlan
from taskbench.faults.crash.pool import POLL_S, WorkerPool
from taskbench.faults.crash.records import LineCounter, probe_tasks
from taskbench.faults.crash.worker import WorkerConfig
from taskbench.faults.servers import SERVERS, SETTINGS, Server, server_for
from taskbench.model import Task
from taskbench.stores import TaskStore, open_store
from taskbench.urls import redact

PROGRESS_TIMEOUT_S = 120.0
FAULT_WINDOW = (0.2, 0.8)
WORKER_KILL, SERVER_KILL, SERVER_RESTART = "worker-kill", "server-kill", "server-restart"


@dataclass(frozen=True, slots=True, kw_only=True)
class CrashResult:
    """An experiment's figures (``to_json_dict`` is what ``--json`` prints and what is saved)."""

    experiment: str
    store: str
    server: str
    setting: str
    survives_process_crash: bool | None
    tasks: int
    workers: int
    concurrency: int
    worker_kills: int
    server_kills: int
    server_restarts: int
    succeeded: int
    dead: int
    lost: int
    lost_missing: int
    lost_unfinished: int
    lost_completions: int
    corrupted: int
    acknowledged: int
    executions: int
    duplicates: int
    extra_executions: int
    in_flight_at_faults: int
    """Executions started and not yet acknowledged where each fault struck, summed: what
    a fault may legitimately re-run. ``extra_executions`` beyond it are completions (or
    claims) the store acknowledged and then forgot."""
    store_errors: int
    wall_s: float
    seed: int

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def _schedule(plan: CrashPlan, rng: random.Random) -> list[str]:
    faults = [WORKER_KILL] * plan.worker_kills + [SERVER_KILL] * plan.server_kills
    faults += [SERVER_RESTART] * plan.server_restarts
    rng.shuffle(faults)
    return faults


def _batches(tasks: Sequence[Task], count: int) -> list[list[Task]]:
    size, extra = divmod(len(tasks), count)
    bounds = [i * size + min(i, extra) for i in range(count + 1)]
    return [list(tasks[a:b]) for a, b in itertools.pairwise(bounds)]


async def _wait_for_runs(runs: LineCounter, target: int, pool: WorkerPool) -> None:
    deadline = time.monotonic() + PROGRESS_TIMEOUT_S
    while runs.refresh() < target:
        pool.check_alive()
        if time.monotonic() > deadline:
            raise BenchmarkError(
                f"no progress: {runs.count} of {target} executions started after "
                f"{PROGRESS_TIMEOUT_S:g} s; a worker's log ends:\n{pool.log_tail(0)}"
            )
        await asyncio.sleep(POLL_S)


class Progress:
    """What the workers' logs say so far: executions started, completions acknowledged."""

    def __init__(self, directory: Path) -> None:
        self.runs = LineCounter(directory, "runs")
        self.acks = LineCounter(directory, "acks")

    def started(self) -> int:
        return self.runs.refresh()

    def in_flight(self, pids: Iterable[int]) -> int:
        """Executions these workers started and the store has not acknowledged."""
        self.runs.refresh()
        self.acks.refresh()
        return sum(max(0, self.runs.of(pid) - self.acks.of(pid)) for pid in pids)


async def _strike(
    fault: str, pool: WorkerPool, server: Server | None, plan: CrashPlan, rng: random.Random
) -> int:
    """Strike one fault; return how many executions were in flight where it struck."""
    progress = Progress(pool.directory)
    if fault == WORKER_KILL:
        index = rng.randrange(pool.count)
        pid = pool.processes[index].pid
        pool.kill(index)
        exposed = progress.in_flight([pid])
        pool.start(index)
        return exposed
    assert server is not None
    await asyncio.to_thread(server.kill if fault == SERVER_KILL else server.stop)
    exposed = progress.in_flight(process.pid for process in pool.processes.values())
    await asyncio.sleep(plan.downtime_s)
    await asyncio.to_thread(server.start)
    return exposed


async def _run_phases(
    plan: CrashPlan, store: TaskStore, pool: WorkerPool, server: Server | None
) -> tuple[list[Task], int]:
    """Enqueue batch by batch; strike each fault once part of its batch has started.

    Returns the tasks and the executions in flight where the faults struck.
    """
    rng = random.Random(plan.seed)
    tasks = probe_tasks(plan.tasks, plan.seed)
    faults = _schedule(plan, rng)
    batches = _batches(tasks, len(faults) + 1)
    runs = LineCounter(pool.directory, "runs")
    exposed = 0
    for fault, batch in zip(faults, batches, strict=False):
        await enqueue_reliably(store, batch)
        target = runs.refresh() + max(1, round(rng.uniform(*FAULT_WINDOW) * len(batch)))
        await _wait_for_runs(runs, target, pool)
        exposed += await _strike(fault, pool, server, plan, rng)
    await enqueue_reliably(store, batches[-1])
    await pool.finish()
    return tasks, exposed


def _result(
    plan: CrashPlan, url: str, found: Audit, in_flight: int, pool: WorkerPool, wall_s: float
) -> CrashResult:
    setting = plan.setting
    figures = asdict(found)
    return CrashResult(
        experiment=plan.experiment,
        store=redact(url),
        server=plan.server,
        setting=setting.name if setting else "as-given",
        survives_process_crash=setting.survives_process_crash if setting else None,
        workers=plan.workers,
        concurrency=plan.concurrency,
        worker_kills=plan.worker_kills,
        server_kills=plan.server_kills,
        server_restarts=plan.server_restarts,
        lost=found.lost,
        in_flight_at_faults=in_flight,
        store_errors=sum(stats.get("store_errors", 0) for stats in pool.stats()),
        wall_s=round(wall_s, 3),
        seed=plan.seed,
        **figures,
    )


def _store_url(plan: CrashPlan, directory: Path, server: Server | None) -> str:
    if plan.url is not None:
        return plan.url
    if server is not None:
        return server.url
    assert plan.setting is not None
    return f"sqlite:///{directory / 'tasks.db'}?{'&'.join(plan.setting.options)}"


async def run_experiment(plan: CrashPlan) -> CrashResult:
    """Run ``plan`` from a clean store to the audit; everything it started is torn down."""
    with contextlib.ExitStack() as stack:
        made = tempfile.TemporaryDirectory(prefix="taskbench-crash-")
        directory = Path(stack.enter_context(made))
        server = None
        if plan.server in SERVERS and plan.setting is not None:
            server = await asyncio.to_thread(stack.enter_context, server_for(plan.setting))
        url = _store_url(plan, directory, server)
        started = time.perf_counter()
        async with open_store(url) as store:
            await patiently(store.purge)
            template = WorkerConfig(
                url=url,
                directory=str(directory),
                concurrency=plan.concurrency,
                lease_s=plan.lease_s,
                task_ms=plan.task_ms,
            )
            with WorkerPool(template, plan.workers) as pool:
                tasks, in_flight = await _run_phases(plan, store, pool, server)
                found = await audit(store, tasks, directory)
        return _result(plan, url, found, in_flight, pool, time.perf_counter() - started)


def save_result(result: CrashResult, directory: str | os.PathLike[str] | None = None) -> Path:
    """Save one experiment with ``save_run(kind=result.experiment)`` (``crash`` or ``restart``)."""
    from taskbench.bench.results import save_run

    return save_run(result.experiment, [result.to_json_dict()], directory=directory)


def settings_table(servers: Iterable[str] = SETTINGS) -> list[dict[str, Any]]:
    """Every setting, as rows for a table (docs, ``--help``, notebooks)."""
    return [
        {"server": s.server, "setting": s.name, "summary": s.summary,
         "survives_process_crash": s.survives_process_crash,
         "survives_power_loss": s.survives_power_loss}
        for server in servers for s in SETTINGS[server].values()
    ]  # fmt: skip
