"""Throughput with N worker processes: the ``cluster`` command's experiment.

Each size starts its own processes on a purged store, then times enqueueing
and draining the same tasks; the report gives each size's rate and its
speed-up over the first size, and accounts for every task.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from taskbench.bench.drain import enqueue_all
from taskbench.bench.workloads import parse_workload
from taskbench.cluster.local import (
    Accounting,
    account,
    local_cluster,
    record_dir,
    wait_until_drained,
)
from taskbench.cluster.options import WorkerOptions, describe
from taskbench.stores import open_store


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


async def measure_scaling(
    options: WorkerOptions,
    *,
    counts: Sequence[int],
    tasks: int,
    timeout: float,
    record: Path | None,
) -> list[ThroughputRun]:
    """:func:`measure_throughput` for each size in ``counts``, one after the other; with
    ``record``, each size keeps its files under ``record/workers-N``."""
    return [
        await measure_throughput(
            options,
            workers=count,
            tasks=tasks,
            timeout=timeout,
            record=record / f"workers-{count}" if record else None,
        )
        for count in counts
    ]


def cluster_report(options: WorkerOptions, tasks: int, runs: list[ThroughputRun]) -> dict[str, Any]:
    base = runs[0]
    return {
        **describe(options),
        "tasks": tasks,
        "runs": [run.to_json_dict() for run in runs],
        "speedup": {str(r.workers): r.tasks_per_s / base.tasks_per_s for r in runs[1:]},
        "speedup_over_workers": base.workers,
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
