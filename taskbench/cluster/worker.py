"""One distributed worker process: a DistributedExecutor on a store and a coordinator,
until SIGTERM or SIGINT (then it resigns, drains and returns its counters).

With a record directory, the worker leaves evidence that survives kill -9:
its leadership timeline (``DIR/<worker>.events.jsonl``) and every task id it
executed (``DIR/<worker>.executed``), one ``write(2)`` per line, which the
experiments read back (:mod:`taskbench.cluster.local`).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from taskbench.bench.workloads import Workload, parse_workload
from taskbench.cluster.options import WorkerOptions
from taskbench.coordination import Coordinator
from taskbench.distributed import (
    DistributedExecutor,
    LeadershipEvent,
    LineLog,
    open_fenced_coordinator,
)
from taskbench.executor import ExecutorStats
from taskbench.model import Task
from taskbench.stores import TaskStore, open_store


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
