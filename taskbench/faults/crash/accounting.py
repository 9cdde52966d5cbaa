"""The audit: every task read back at the end and accounted for against the workers' logs.

The audit trusts the logs and the original tasks, not the store. Every task
is put in one class: missing, unfinished (queued or running), completion lost
(terminal, but not as acknowledged), dead, or succeeded; and counted as
corrupted if its payload or result is not what was written.
``succeeded + dead + lost_missing + lost_unfinished == tasks`` always, and
``lost = lost_missing + lost_unfinished + lost_completions``. Executions,
duplicated tasks and extra executions are counted from the runs logs.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from taskbench.faults.crash.patience import patiently
from taskbench.faults.crash.records import _run_of, read_records, result_is_intact
from taskbench.model import Task, TaskStatus
from taskbench.stores import TaskStore

READ_CHUNK = 1_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Audit:
    """Every task put in one class at the end, with the execution counts."""

    tasks: int
    succeeded: int
    dead: int
    lost_missing: int
    lost_unfinished: int
    lost_completions: int
    corrupted: int
    acknowledged: int
    executions: int
    duplicates: int
    extra_executions: int

    @property
    def lost(self) -> int:
        return self.lost_missing + self.lost_unfinished + self.lost_completions


def _classify(task: Task | None, acked: set[str]) -> str:
    if task is None:
        return "lost_missing"
    if not task.status.is_terminal:
        return "lost_unfinished"
    if acked and (task.status is not TaskStatus.SUCCEEDED or acked != {_run_of(task)}):
        return "lost_completions"
    return str(task.status)


def _corrupted(original: Task, stored: Task | None) -> bool:
    if stored is None:
        return False
    if (stored.name, stored.payload_json) != (original.name, original.payload_json):
        return True
    if stored.status is not TaskStatus.SUCCEEDED:
        return False
    return not result_is_intact(stored, original)


async def _read_back(store: TaskStore, ids: Sequence[str]) -> dict[str, Task]:
    found: dict[str, Task] = {}
    for start in range(0, len(ids), READ_CHUNK):
        chunk = await patiently(functools.partial(store.get_many, ids[start : start + READ_CHUNK]))
        found.update((task.id, task) for task in chunk)
    return found


async def audit(store: TaskStore, tasks: Sequence[Task], directory: Path) -> Audit:
    """Read every task back and account for it against the workers' logs."""
    stored = await _read_back(store, [task.id for task in tasks])
    acked: dict[str, set[str]] = {}
    for record in read_records(directory, "acks"):
        acked.setdefault(record.task_id, set()).add(record.run)
    runs = Counter(record.task_id for record in read_records(directory, "runs"))
    classes = Counter(_classify(stored.get(t.id), acked.get(t.id, set())) for t in tasks)
    return Audit(
        tasks=len(tasks),
        succeeded=sum(s.status is TaskStatus.SUCCEEDED for s in stored.values()),
        dead=sum(s.status is TaskStatus.DEAD for s in stored.values()),
        lost_missing=classes["lost_missing"],
        lost_unfinished=classes["lost_unfinished"],
        lost_completions=classes["lost_completions"],
        corrupted=sum(_corrupted(t, stored.get(t.id)) for t in tasks),
        acknowledged=sum(len(acked_runs) for acked_runs in acked.values()),
        executions=sum(runs.values()),
        duplicates=sum(1 for n in runs.values() if n > 1),
        extra_executions=sum(n - 1 for n in runs.values() if n > 1),
    )
