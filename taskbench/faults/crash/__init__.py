"""Crash and restart experiments: tasks run in worker subprocesses while we kill things.

What this package owns: the probe tasks (payloads whose digest comes back in
the result); the worker subprocess (``python -m taskbench.faults.crash``)
that runs them with a real :class:`~taskbench.executor.TaskExecutor` and
records what happened outside the store; the experiment that enqueues work
and, mid-run, kills workers (SIGKILL), crashes the server (kill -9 of every
process) or restarts it cleanly; and the audit that counts the damage.

Design rules:

* **What was acknowledged is known outside the store.** Every worker appends
  to files of its own in the experiment's directory: ``runs-<pid>.log``, one
  line per execution started, and ``acks-<pid>.log``, one line per
  completion the store acknowledged: ``finish`` returned *and* a read-back
  shows the task succeeded with that execution's result. A line is ``id
  attempt run``, where ``run`` is unique to the execution and is also in the
  result, so a completion the store forgot and a later execution redid is
  told apart even when the store forgot the claim too (same attempt number).
  The ack log is fsynced before the worker goes on, so no later kill can
  unsay an acknowledgement.
* **The audit trusts the logs and the original tasks, not the store.** At the
  end every task is read back and put in one class: missing, unfinished
  (queued or running), completion lost (terminal, but not as acknowledged),
  dead, or succeeded; and counted as corrupted if its payload or result is
  not what was written. ``succeeded + dead + lost_missing + lost_unfinished
  == tasks`` always, and ``lost = lost_missing + lost_unfinished +
  lost_completions``.
* **Duplicates are expected, and bounded.** Execution is at-least-once: a
  killed worker's leases are requeued and run again, and so are leases that
  expire while a server is down. A fault can re-run only what was in flight
  where it struck: executions started and not yet acknowledged, read from
  the logs right after the kill (``in_flight_at_faults``, summed). A setting
  that forgets acknowledged completions re-runs them too, beyond that sum.
* **Faults strike at random moments of real progress.** The tasks are cut
  into one batch per fault, plus one; each batch is enqueued, and its fault
  strikes once executions of a random 20-80 % of it have started (the runs
  logs say so at once), so tasks are in flight when it lands. The seed is in
  the result.
* **Everything is torn down** (workers, server, temporary directory) on every
  way out, errors included.

The modules, from the workers' side to the experiment's:

* :mod:`~taskbench.faults.crash.records`: the probe tasks and the runs and
  acks files both sides read and write;
* :mod:`~taskbench.faults.crash.patience`: store calls that wait out a server
  coming back (also used by :mod:`taskbench.faults.soak`);
* :mod:`~taskbench.faults.crash.worker`: the worker subprocess
  (``__main__`` runs its :func:`main`);
* :mod:`~taskbench.faults.crash.pool`: the experiment's side of the workers:
  start, kill -9, replace, finish;
* :mod:`~taskbench.faults.crash.plan`: an experiment's plan, checked before
  anything starts;
* :mod:`~taskbench.faults.crash.accounting`: the audit;
* :mod:`~taskbench.faults.crash.experiment`: the strikes, the run from a
  clean store to a :class:`CrashResult`, saving it, and the settings table.

Every public name of theirs is importable from here, as it was before the
split. A module-level setting is read where it is defined, so patch it there
(``crash.experiment.PROGRESS_TIMEOUT_S``), not here; the few that a second
module imports are read there too: ``POLL_S`` (pool, experiment),
``RETRY_PAUSE_S`` (patience, worker), ``TASK_NAME`` (records, worker) and
``DONE_MARKER`` (worker, pool). The workers are subprocesses: a patch made
in the experiment's process does not reach them.
"""

from __future__ import annotations

from taskbench.faults.crash.accounting import (
    READ_CHUNK,
    Audit,
    audit,
)
from taskbench.faults.crash.experiment import (
    FAULT_WINDOW,
    PROGRESS_TIMEOUT_S,
    SERVER_KILL,
    SERVER_RESTART,
    WORKER_KILL,
    CrashResult,
    Progress,
    run_experiment,
    save_result,
    settings_table,
)
from taskbench.faults.crash.patience import (
    PATIENCE_S,
    RETRY_PAUSE_S,
    T,
    enqueue_reliably,
    patiently,
)
from taskbench.faults.crash.plan import (
    EXPERIMENTS,
    CrashPlan,
)
from taskbench.faults.crash.pool import (
    FINISH_TIMEOUT_S,
    POLL_S,
    WorkerPool,
)
from taskbench.faults.crash.records import (
    ALPHABET,
    MAX_ATTEMPTS,
    TASK_NAME,
    LineCounter,
    Record,
    append_lines,
    probe_result,
    probe_task,
    probe_tasks,
    read_records,
    result_is_intact,
)
from taskbench.faults.crash.worker import (
    DONE_MARKER,
    HOUSEKEEPING_S,
    WORKER_ENV,
    WORKER_RETRY,
    Acknowledger,
    WorkerConfig,
    log,
    main,
    run_worker,
)

__all__ = [
    "ALPHABET",
    "DONE_MARKER",
    "EXPERIMENTS",
    "FAULT_WINDOW",
    "FINISH_TIMEOUT_S",
    "HOUSEKEEPING_S",
    "MAX_ATTEMPTS",
    "PATIENCE_S",
    "POLL_S",
    "PROGRESS_TIMEOUT_S",
    "READ_CHUNK",
    "RETRY_PAUSE_S",
    "SERVER_KILL",
    "SERVER_RESTART",
    "TASK_NAME",
    "WORKER_ENV",
    "WORKER_KILL",
    "WORKER_RETRY",
    "Acknowledger",
    "Audit",
    "CrashPlan",
    "CrashResult",
    "LineCounter",
    "Progress",
    "Record",
    "T",
    "WorkerConfig",
    "WorkerPool",
    "append_lines",
    "audit",
    "enqueue_reliably",
    "log",
    "main",
    "patiently",
    "probe_result",
    "probe_task",
    "probe_tasks",
    "read_records",
    "result_is_intact",
    "run_experiment",
    "run_worker",
    "save_result",
    "settings_table",
]
