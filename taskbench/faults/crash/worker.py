"""The worker subprocess (``python -m taskbench.faults.crash``): probe tasks on a real executor.

:func:`main` reads a :class:`WorkerConfig` from ``$TASKBENCH_FAULT_WORKER``
(not argv: a store URL may hold a password, and argv is public), and
:func:`run_worker` opens the store, waiting for its server, and runs a
:class:`~taskbench.executor.TaskExecutor` on the probe handler. Meanwhile it
requeues dead workers' leases and publishes its counters
(``progress-<pid>.json``); once the experiment's directory holds the
``done`` marker and the store is idle, it stops and writes its final counters
(``stats-<pid>.json``).

What was acknowledged is known outside the store: the handler appends a line
to ``runs-<pid>.log`` per execution started, and the :class:`Acknowledger`
one to ``acks-<pid>.log`` per completion the store acknowledged (``finish``
returned *and* a read-back shows the task succeeded with that execution's
result), fsynced before the worker goes on, so no later kill can unsay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from taskbench.errors import ConfigError, TaskbenchError
from taskbench.executor import ExecutorStats, TaskExecutor
from taskbench.faults.crash.patience import RETRY_PAUSE_S, patiently
from taskbench.faults.crash.records import (
    TASK_NAME,
    Record,
    _run_of,
    append_lines,
    probe_result,
)
from taskbench.model import Outcome, RetryPolicy, Task, TaskStatus
from taskbench.stores import TaskStore, open_store

log = logging.getLogger("taskbench.faults")

WORKER_ENV = "TASKBENCH_FAULT_WORKER"
DONE_MARKER = "done"
WORKER_RETRY = RetryPolicy(base_delay=0.01, factor=2.0, max_delay=0.5)
HOUSEKEEPING_S = 0.25


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value))
    os.replace(temporary, path)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """What a worker subprocess needs; it travels in an environment variable, not argv
    (a store URL may hold a password, and argv is public)."""

    url: str
    directory: str
    index: int = 0
    concurrency: int = 8
    lease_s: float = 3.0
    task_ms: float = 10.0
    record: bool = True

    def to_env(self) -> dict[str, str]:
        return {WORKER_ENV: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls) -> WorkerConfig:
        raw = os.environ.get(WORKER_ENV)
        if not raw:
            raise ConfigError(f"a fault worker reads its configuration from ${WORKER_ENV}")
        return cls(**json.loads(raw))


class Acknowledger:
    """ExecutorMetrics that turns reported completions into fsynced acknowledgements.

    A completion is acknowledged when ``finish`` has returned for it and a
    read-back shows the task succeeded with that execution's result (a refused
    outcome does not). The read-back starts as soon as ``finish`` returns and
    takes whatever was reported meanwhile: the gap between the store's answer
    and the log is one round trip and an fsync, far shorter than any
    setting's window of loss, so forgotten completions are caught.
    """

    def __init__(self, store: TaskStore, path: Path) -> None:
        self.store = store
        self.path = path
        self._reported: list[Record] = []
        self._waiting = asyncio.Event()

    def on_claimed(self, tasks: Sequence[Task]) -> None:
        return None

    def on_outcome(self, task: Task, outcome: Outcome) -> None:
        if outcome.status is TaskStatus.SUCCEEDED and outcome.result_json is not None:
            run = json.loads(outcome.result_json)["run"]
            self._reported.append(Record(task.id, outcome.lease.attempt, run))
            self._waiting.set()

    async def confirm(self) -> None:
        """Read back what was reported; log (and fsync) what the store shows."""
        reported, self._reported = self._reported, []
        if not reported:
            return
        try:
            stored = await self.store.get_many([record.task_id for record in reported])
        except TaskbenchError:
            self._reported = reported + self._reported  # the server is away: try again later
            await asyncio.sleep(RETRY_PAUSE_S)
            return
        runs = {task.id: _run_of(task) for task in stored if task.status is TaskStatus.SUCCEEDED}
        shown = [record.line() for record in reported if runs.get(record.task_id) == record.run]
        append_lines(self.path, shown, fsync=True)

    async def run(self) -> None:
        while True:
            await self._waiting.wait()
            self._waiting.clear()
            await self.confirm()
            if self._reported:
                self._waiting.set()


def _probe_handler(config: WorkerConfig, runs: Path) -> Callable[[Task], Awaitable[Any]]:
    delay = config.task_ms / 1000
    executions = itertools.count()
    prefix = f"{config.index}.{os.getpid()}."

    async def probe(task: Task) -> Any:
        run = f"{prefix}{next(executions)}"
        if config.record:
            append_lines(runs, [Record(task.id, task.attempts, run).line()], fsync=False)
        if delay:
            await asyncio.sleep(delay)
        return probe_result(task, run)

    return probe


async def _is_idle(store: TaskStore) -> bool:
    counts = await store.counts()
    return counts[TaskStatus.QUEUED] + counts[TaskStatus.RUNNING] == 0


async def _housekeeping(store: TaskStore, executor: TaskExecutor, directory: Path) -> None:
    """Requeue dead workers' leases, publish progress, stop once told to and idle."""
    progress = directory / f"progress-{os.getpid()}.json"
    while True:
        await asyncio.sleep(HOUSEKEEPING_S)
        _write_json(progress, asdict(executor.stats))
        try:
            await store.requeue_expired()
            if (directory / DONE_MARKER).exists() and await _is_idle(store):
                await executor.stop()
                return
        except TaskbenchError as error:
            log.warning("housekeeping: %s", error)


def _executor(store: TaskStore, config: WorkerConfig, acks: Acknowledger | None) -> TaskExecutor:
    executor = TaskExecutor(
        store,
        concurrency=config.concurrency,
        lease_s=config.lease_s,
        retry=WORKER_RETRY,
        worker_id=f"worker{config.index}-{os.getpid()}",
        metrics=acks,
    )
    runs = Path(config.directory) / f"runs-{os.getpid()}.log"
    executor.register(TASK_NAME, _probe_handler(config, runs))
    return executor


async def _work(store: TaskStore, config: WorkerConfig) -> ExecutorStats:
    directory = Path(config.directory)
    acks = Acknowledger(store, directory / f"acks-{os.getpid()}.log") if config.record else None
    executor = _executor(store, config, acks)
    helpers = [asyncio.create_task(_housekeeping(store, executor, directory))]
    if acks is not None:
        helpers.append(asyncio.create_task(acks.run()))
    try:
        stats = await executor.run()
    finally:
        for helper in helpers:
            helper.cancel()
    if acks is not None:
        await acks.confirm()
    _write_json(directory / f"stats-{os.getpid()}.json", asdict(stats))
    return stats


async def run_worker(config: WorkerConfig) -> ExecutorStats:
    """The worker's life: open the store (waiting for its server), work until told to stop."""
    store = open_store(config.url)
    await patiently(store.open)
    try:
        return await _work(store, config)
    finally:
        with contextlib.suppress(TaskbenchError):
            await store.close()


def main() -> int:
    """``python -m taskbench.faults.crash``: one worker, configured by $TASKBENCH_FAULT_WORKER."""
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(run_worker(WorkerConfig.from_env()))
    return 0
