"""Crash and restart experiments: tasks run in worker subprocesses while we kill things.

What this module owns: the probe tasks (payloads whose digest comes back in
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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from taskbench.errors import BenchmarkError, ConfigError, StoreError, TaskbenchError
from taskbench.executor import ExecutorStats, TaskExecutor
from taskbench.faults.servers import (
    SERVERS,
    SETTINGS,
    Server,
    Setting,
    find_setting,
    kill_tree,
    server_for,
)
from taskbench.model import Outcome, RetryPolicy, Task, TaskStatus
from taskbench.stores import TaskStore, open_store
from taskbench.stores.base import Capability
from taskbench.urls import redact

log = logging.getLogger("taskbench.faults")

T = TypeVar("T")

TASK_NAME = "crash-probe"
MAX_ATTEMPTS = 1_000
"""Every claim spends an attempt, killed ones too: dead letters must not hide a loss."""
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 \"'\\/{}[]:,é€中🙂\n\t"
WORKER_ENV = "TASKBENCH_FAULT_WORKER"
DONE_MARKER = "done"
WORKER_RETRY = RetryPolicy(base_delay=0.01, factor=2.0, max_delay=0.5)
HOUSEKEEPING_S = 0.25
POLL_S = 0.01
"""How often the parent looks at the workers' files and processes."""
RETRY_PAUSE_S = 0.2
PATIENCE_S = 60.0
"""How long a store call is retried while a server comes back."""
PROGRESS_TIMEOUT_S = 120.0
FINISH_TIMEOUT_S = 300.0
READ_CHUNK = 1_000
FAULT_WINDOW = (0.2, 0.8)
WORKER_KILL, SERVER_KILL, SERVER_RESTART = "worker-kill", "server-kill", "server-restart"
EXPERIMENTS = ("crash", "restart")
"""The kinds a result is saved under (``save_run(kind=...)``)."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- probe tasks ------------------------------------------------------------------------


def probe_task(index: int, rng: random.Random) -> Task:
    """A task whose payload is text awkward to encode (quotes, escapes, non-ASCII, emoji)."""
    text = "".join(rng.choices(ALPHABET, k=rng.randint(8, 400)))
    return Task.new(
        TASK_NAME, {"n": index, "text": text}, id=f"probe-{index:07d}", max_attempts=MAX_ATTEMPTS
    )


def probe_tasks(count: int, seed: int) -> list[Task]:
    rng = random.Random(seed)
    return [probe_task(index, rng) for index in range(count)]


def probe_result(task: Task, run: str) -> dict[str, Any]:
    """What the handler returns: the task, the attempt, this execution's unique ``run``,
    and a digest of the payload it was given."""
    digest = _sha256(task.payload_json)
    return {"task": task.id, "attempt": task.attempts, "run": run, "payload_sha256": digest}


def result_is_intact(stored: Task, original: Task) -> bool:
    """Whether ``stored``'s result is one its handler could have returned for ``original``."""
    result = stored.result
    if not isinstance(result, dict) or not isinstance(result.get("run"), str):
        return False
    return result == probe_result(replace(original, attempts=stored.attempts), result["run"])


def _run_of(task: Task) -> str | None:
    result = task.result if task.result_json else None
    return result.get("run") if isinstance(result, dict) else None


@dataclass(frozen=True, slots=True)
class Record:
    """One line of a runs or acks file: which execution of which task."""

    task_id: str
    attempt: int
    run: str

    def line(self) -> str:
        return f"{self.task_id} {self.attempt} {self.run}"

    @classmethod
    def parse(cls, line: str) -> Record:
        task_id, attempt, run = line.split(" ")
        return cls(task_id, int(attempt), run)


# -- record files -----------------------------------------------------------------------


def append_lines(path: Path, lines: Sequence[str], *, fsync: bool) -> None:
    """Append ``lines`` in one write (O_APPEND); fsync if asked."""
    if not lines:
        return
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, "".join(f"{line}\n" for line in lines).encode())
        if fsync:
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_records(directory: Path, kind: str) -> list[Record]:
    """Every complete line of the ``<kind>-*.log`` files (``runs`` or ``acks``)."""
    records = []
    for path in sorted(directory.glob(f"{kind}-*.log")):
        for line in path.read_bytes().split(b"\n")[:-1]:  # the tail after the last \n is cut
            records.append(Record.parse(line.decode()))
    return records


class LineCounter:
    """How many lines the workers' ``<kind>-*.log`` files hold, reading only what is new."""

    def __init__(self, directory: Path, kind: str) -> None:
        self.directory = directory
        self.kind = kind
        self.count = 0
        self._lines: dict[Path, int] = {}
        self._offsets: dict[Path, int] = {}

    def refresh(self) -> int:
        for path in self.directory.glob(f"{self.kind}-*.log"):
            with path.open("rb") as file:
                file.seek(self._offsets.get(path, 0))
                complete = file.read().rpartition(b"\n")[0]
            if complete:
                lines = complete.count(b"\n") + 1
                self.count += lines
                self._lines[path] = self._lines.get(path, 0) + lines
                self._offsets[path] = self._offsets.get(path, 0) + len(complete) + 1
        return self.count

    def of(self, pid: int) -> int:
        """The lines of one worker's file (as of the last refresh)."""
        return self._lines.get(self.directory / f"{self.kind}-{pid}.log", 0)


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value))
    os.replace(temporary, path)


# -- the worker subprocess --------------------------------------------------------------


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


async def patiently(call: Callable[[], Awaitable[T]], *, patience_s: float = PATIENCE_S) -> T:
    """``await call()``, retried on StoreError (a server coming back) for ``patience_s``."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return await call()
        except StoreError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(RETRY_PAUSE_S)


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


# -- the worker pool (parent side) ------------------------------------------------------


class WorkerPool:
    """The worker subprocesses of one experiment: start, kill -9, replace, finish."""

    def __init__(self, template: WorkerConfig, count: int) -> None:
        self.template = template
        self.directory = Path(template.directory)
        self.count = count
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.logs: dict[int, Path] = {}
        self.launched = 0

    def __enter__(self) -> WorkerPool:
        for index in range(self.count):
            self.start(index)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for index in list(self.processes):
            self.kill(index)

    def start(self, index: int) -> None:
        config = replace(self.template, index=index)
        path = self.directory / f"worker-{index}-{self.launched}.log"
        with path.open("ab") as output:
            self.processes[index] = subprocess.Popen(
                [sys.executable, "-m", "taskbench.faults.crash"],
                env=os.environ | config.to_env(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.logs[index] = path
        self.launched += 1

    def kill(self, index: int) -> None:
        """SIGKILL one worker (a crash: no cleanup, no last words) and reap it."""
        process = self.processes.pop(index)
        if process.poll() is None:  # not reaped yet, so the pid is still this worker's
            kill_tree(process.pid)
        process.wait()

    def check_alive(self) -> None:
        """Raise if a worker exited before it was told to (its log tail says why)."""
        for index, process in self.processes.items():
            if process.poll() is not None:
                raise BenchmarkError(
                    f"worker {index} exited with code {process.returncode}:\n{self.log_tail(index)}"
                )

    def log_tail(self, index: int, lines: int = 15) -> str:
        text = self.logs[index].read_text(errors="replace") if index in self.logs else ""
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    async def finish(self, timeout: float = FINISH_TIMEOUT_S) -> None:
        """Tell the workers no more work is coming; wait for each to drain and exit 0."""
        (self.directory / DONE_MARKER).touch()
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in self.processes.values()):
            if time.monotonic() > deadline:
                tails = "\n".join(self.log_tail(i) for i in self.processes)
                raise BenchmarkError(f"workers did not finish within {timeout:g} s:\n{tails}")
            await asyncio.sleep(POLL_S)
        failed = {i: p.returncode for i, p in self.processes.items() if p.returncode != 0}
        if failed:
            index = next(iter(failed))
            raise BenchmarkError(f"workers failed {failed}:\n{self.log_tail(index)}")
        self.processes.clear()

    def stats(self) -> list[dict[str, int]]:
        """Every worker's counters: final if it exited, its last progress if it was killed."""
        final = {p.name.removeprefix("stats-"): p for p in self.directory.glob("stats-*.json")}
        last = {p.name.removeprefix("progress-"): p for p in self.directory.glob("progress-*.json")}
        return [json.loads(path.read_text()) for path in (last | final).values()]


# -- the plan ---------------------------------------------------------------------------


def _check_count(value: int, what: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_seconds(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class CrashPlan:
    """One experiment; make it with :meth:`create`, which checks everything first.

    ``server`` is ``sqlite`` (a file in the experiment's directory) or a server
    this module starts (``postgres``, ``redis``, ``mariadb``) with ``setting``;
    or ``url`` names an existing store (it is PURGED) that no one will crash.
    """

    server: str
    setting: Setting | None
    url: str | None = None
    tasks: int = 400
    worker_kills: int = 3
    server_kills: int = 0
    server_restarts: int = 0
    workers: int = 1
    concurrency: int = 8
    task_ms: float = 10.0
    lease_s: float = 3.0
    downtime_s: float = 0.5
    seed: int = field(default_factory=lambda: random.randrange(2**31))
    experiment: str = "crash"

    @classmethod
    def create(
        cls,
        *,
        server: str | None = None,
        setting: str | None = None,
        url: str | None = None,
        **kw: Any,
    ) -> CrashPlan:
        """Validate (ConfigError naming the fault) before anything starts."""
        chosen = _choose_setting(server, setting, url)
        plan = cls(server=chosen.server if chosen else "url", setting=chosen, url=url, **kw)
        plan.check()
        return plan

    @property
    def faults(self) -> int:
        return self.worker_kills + self.server_kills + self.server_restarts

    def check(self) -> None:
        for name in ("worker_kills", "server_kills", "server_restarts"):
            _check_count(getattr(self, name), name.replace("_", " "))
        for name in ("workers", "concurrency"):
            _check_count(getattr(self, name), name, minimum=1)
        _check_count(self.tasks, "tasks", minimum=self.faults + 1)
        _check_seconds(self.lease_s, "lease_s")
        _check_seconds(self.downtime_s, "downtime_s")
        if self.task_ms < 0:
            raise ConfigError(f"task_ms must be >= 0, got {self.task_ms!r}")
        if self.experiment not in EXPERIMENTS:
            raise ConfigError(f"experiment must be one of {EXPERIMENTS}, got {self.experiment!r}")
        if self.server_kills + self.server_restarts and self.server not in SERVERS:
            raise ConfigError(
                f"{self.server} has no server process to kill or restart; "
                f"servers: {', '.join(SERVERS)}"
            )
        if self.url is not None:
            _check_shared(self.url)


def _choose_setting(server: str | None, setting: str | None, url: str | None) -> Setting | None:
    if (server is None) == (url is None):
        raise ConfigError("give either a store URL or a server to start (not both)")
    if url is not None:
        if setting is not None:
            raise ConfigError("a setting applies to a server the experiment starts, not to a URL")
        return None
    assert server is not None
    return find_setting(server, setting)


def _check_shared(url: str) -> None:
    store = open_store(url)
    if Capability.MULTI_PROCESS not in store.capabilities:
        raise ConfigError(f"{redact(url)} cannot be shared by worker processes")


# -- the experiment ---------------------------------------------------------------------


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


async def _not_stored(store: TaskStore, tasks: Sequence[Task]) -> list[Task]:
    stored = {task.id for task in await store.get_many([task.id for task in tasks])}
    return [task for task in tasks if task.id not in stored]


async def enqueue_reliably(store: TaskStore, tasks: Sequence[Task]) -> None:
    """Enqueue through server faults: after an error, enqueue only what is not stored."""
    pending = list(tasks)
    deadline = time.monotonic() + PATIENCE_S
    while pending:
        try:
            await store.enqueue(pending)
            return
        except StoreError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(RETRY_PAUSE_S)
        pending = await patiently(functools.partial(_not_stored, store, pending))


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


if __name__ == "__main__":
    sys.exit(main())
