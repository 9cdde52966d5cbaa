"""Sweeps: one benchmark parameter over a list of values, one DataFrame row per point and repeat.

* :func:`sweep_concurrency` drains ``tasks`` tasks at each concurrency
  (:func:`~taskbench.bench.drain.run_drain`, in this process);
* :func:`sweep_backlog` times the claim round trip at each backlog size
  (:func:`~taskbench.bench.backlog.claim_latency`);
* :func:`sweep_processes` drains ``tasks`` tasks with N worker processes
  sharing one store (:func:`measure_processes`): the aggregate throughput
  of N OS processes, each running a :class:`~taskbench.executor.TaskExecutor`
  on the same server store or SQLite file;
* :func:`sweep_rate` runs the open loop (:func:`~taskbench.bench.load.open_loop`)
  at each arrival rate: throughput achieved and latency under a given load;
* :func:`measure_alone` runs one drain in a fresh worker process, so the
  CPU and memory it reports are the drain's alone (the scorecard's resources);
* :func:`scaling_slope` reduces a sweep to one number: how throughput grows
  with the swept parameter.

Every row holds ``parameter``, ``value`` and ``repeat``, the ``sweep_id``
shared by the rows of one sweep, then the measurement's own fields,
flattened as :func:`taskbench.bench.results.flatten` does
(``latency_p50_ms``...). Throughput is the ``drain_tps`` column, except in
a rate sweep (open loop), where it is ``achieved_tps``.

Design rules:

* **Validate before anything starts**: bad values, sizes or URLs raise
  :class:`~taskbench.errors.ConfigError` before the first point is measured.
* **The store is purged** before each point, as the benchmarks it calls do:
  give a sweep a store of its own.
* **Each point can be saved** (``save=True``): the repeats of one point are
  one run, written by :func:`~taskbench.bench.results.save_run` with kind
  ``sweep-<parameter>``; its rows carry ``sweep_id``, ``parameter`` and
  ``value``, so the points of one sweep read back together.
* **Progress** is a ``tqdm.auto`` bar over the points x repeats: a widget
  in Jupyter, a bar on a terminal's stderr, nothing when stderr is not a
  terminal or ``CI`` is set (``progress=None``, the default; True or False
  forces it).
* **Scalability is a log-log slope.** :func:`scaling_slope` fits
  ``log(throughput) = slope * log(value) + c`` with ``numpy.polyfit`` over
  the per-point medians. We chose it over the ratio last/first because it
  uses every point (one noisy end point moves it less) and it does not
  depend on the sweep's range: 1.0 is linear scaling (twice the workers,
  twice the throughput), 0 is flat, below 0 is a slowdown, on any range.
  The ratio would mean something different for 1->64 than for 1->4.
* **Worker processes are fresh interpreters** (``python -c``), never
  forks: each has its own connections and event loop. They connect first
  and start together when all are ready (a barrier over their pipes, see
  :func:`run_in_processes`); the parent counts every task afterwards.
* pandas and numpy (the ``notebooks`` extra) are imported inside the
  functions that need them, so worker processes start light.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import psutil

from taskbench.bench.backlog import claim_latency
from taskbench.bench.drain import BENCH_RETRY, DrainConfig, check_positive, run_drain
from taskbench.bench.environment import requires_extra, scrub
from taskbench.bench.load import OpenLoopConfig, open_loop
from taskbench.bench.resources import find_server, tree_rss
from taskbench.bench.results import flatten, save_run
from taskbench.bench.workloads import Workload, parse_workload
from taskbench.errors import BenchmarkError, ConfigError
from taskbench.executor import TaskExecutor
from taskbench.model import Outcome, Task, TaskStatus
from taskbench.stores import Capability, TaskStore, open_store
from taskbench.urls import redact

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

__all__ = [
    "AloneRun",
    "ProcessRun",
    "Sweep",
    "measure_alone",
    "measure_processes",
    "run_in_processes",
    "scaling_slope",
    "sweep_backlog",
    "sweep_concurrency",
    "sweep_processes",
    "sweep_rate",
]

FIRST_COLUMNS = ("parameter", "value", "repeat", "sweep_id")
MIB = 1024.0 * 1024.0
ENQUEUE_BATCH = 1_000
PROCESS_TIMEOUT_S = 900.0
"""How long the worker processes of one point may take, start-up included."""
JOIN_TIMEOUT_S = 30.0

Measurement = Mapping[str, Any]
Measure = Callable[[int], Awaitable[Measurement]]
Ready = Callable[[], Awaitable[None]]
Job = Callable[[Mapping[str, Any], Ready], Coroutine[Any, Any, dict[str, Any]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sweep:
    """How a sweep repeats, reports and saves its points (the options every sweep takes)."""

    repeats: int = 1
    progress: bool | None = None
    """None: a bar in Jupyter or on a terminal, nothing in CI or a pipe."""
    save: bool = False
    directory: str | os.PathLike[str] | None = None
    """Where saved points go (default: :func:`taskbench.bench.results.results_dir`)."""


# -- checks ----------------------------------------------------------------------------


def check_values(values: Sequence[int], parameter: str) -> list[int]:
    """``values`` as a non-empty list of positive ints, or ConfigError."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
        raise ConfigError(f"{parameter} values must be a non-empty sequence, got {values!r}")
    return [check_positive(value, f"each {parameter} value") for value in values]


def _check_sweep(options: Sweep) -> None:
    check_positive(options.repeats, "repeats")
    if options.progress not in (None, True, False):
        raise ConfigError(f"progress must be True, False or None, got {options.progress!r}")


# -- the loop every sweep shares -------------------------------------------------------


def show_progress(progress: bool | None) -> bool:
    """Whether to draw a bar: as asked, else in Jupyter or on a terminal, never in CI."""
    if progress is not None:
        return progress
    if os.environ.get("CI"):
        return False
    return "ipykernel" in sys.modules or sys.stderr.isatty()


@contextmanager
def _progress_bar(total: int, description: str, progress: bool | None) -> Iterator[Any]:
    from tqdm.auto import tqdm

    with tqdm(
        total=total, desc=description, unit="run", disable=not show_progress(progress)
    ) as bar:
        yield bar


def _save_point(parameter: str, value: int, point: list[Measurement], options: Sweep) -> None:
    save_run(
        f"sweep-{parameter}",
        point,
        params={"parameter": parameter, "value": value, "repeats": options.repeats},
        directory=options.directory,
    )


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    with requires_extra("tabulating a sweep"):
        import pandas as pd
    frame = pd.DataFrame(rows)
    rest = [column for column in frame.columns if column not in FIRST_COLUMNS]
    return frame[[*FIRST_COLUMNS, *rest]]


async def run_sweep(
    parameter: str, values: Sequence[int], measure: Measure, options: Sweep
) -> pd.DataFrame:
    """Measure each value ``options.repeats`` times; one row per measurement."""
    checked = check_values(values, parameter)
    _check_sweep(options)
    sweep_id = uuid.uuid4().hex
    rows: list[dict[str, Any]] = []
    total = len(checked) * options.repeats
    with _progress_bar(total, f"{parameter} sweep", options.progress) as bar:
        for value in checked:
            point: list[Measurement] = []
            for _ in range(options.repeats):
                measured = flatten(await measure(value))
                point.append(
                    {"sweep_id": sweep_id, "parameter": parameter, "value": value, **measured}
                )
                bar.update(1)
            if options.save:
                _save_point(parameter, value, point, options)
            rows.extend({**row, "repeat": repeat} for repeat, row in enumerate(point))
    return _frame(rows)


# -- concurrency and backlog -----------------------------------------------------------


async def sweep_concurrency(
    url: str,
    values: Sequence[int],
    *,
    tasks: int,
    workload: str | Workload = "noop",
    executor: str = "taskbench",
    options: Sweep | None = None,
) -> pd.DataFrame:
    """Drain ``tasks`` tasks through ``url`` at each concurrency in ``values``."""
    config = DrainConfig.create(
        url, tasks=tasks, concurrency=1, workload=workload, executor=executor
    )

    async def measure(concurrency: int) -> Measurement:
        result = await run_drain(
            config.url,
            tasks=config.tasks,
            concurrency=concurrency,
            workload=config.workload,
            executor=config.executor,
        )
        return result.to_json_dict()

    return await run_sweep("concurrency", values, measure, options or Sweep())


async def sweep_backlog(
    url: str,
    values: Sequence[int],
    *,
    samples: int = 200,
    options: Sweep | None = None,
) -> pd.DataFrame:
    """Time ``samples`` claim(1)+finish round trips behind each backlog size in ``values``."""
    DrainConfig.create(url, tasks=1, concurrency=1, workload="noop", executor="taskbench")
    check_positive(samples, "samples")
    if samples > min(check_values(values, "backlog")):
        raise ConfigError(f"samples ({samples}) must not exceed the smallest backlog")

    async def measure(backlog: int) -> Measurement:
        latency = await claim_latency(url, backlog, samples=samples)
        return {"store": redact(url), **asdict(latency)}

    return await run_sweep("backlog", values, measure, options or Sweep())


async def sweep_rate(
    url: str,
    values: Sequence[int],
    *,
    duration: float,
    concurrency: int,
    workload: str | Workload = "noop",
    warmup: object = None,
    options: Sweep | None = None,
) -> pd.DataFrame:
    """An open loop at each arrival rate in ``values`` (tasks/s) for ``duration`` seconds.

    Each point is :func:`~taskbench.bench.load.open_loop`: its throughput is
    ``achieved_tps`` (not ``drain_tps``) and its latencies count from each
    task's scheduled arrival. ``warmup`` is the open loop's (``"1s"``, or tasks).
    """

    def config(rate: int) -> OpenLoopConfig:
        return OpenLoopConfig.create(
            url,
            workload=workload,
            concurrency=concurrency,
            rate=rate,
            duration=duration,
            warmup=warmup,
        )

    config(check_values(values, "rate")[0])

    async def measure(rate: int) -> Measurement:
        return (await open_loop(config(rate))).to_json_dict()

    return await run_sweep("rate", values, measure, options or Sweep())


# -- worker processes ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessRun:
    """One drain by several worker processes sharing a store."""

    store: str
    processes: int
    tasks: int
    concurrency: int
    """Tasks run at once in each process."""
    workload: str
    wall_s: float
    """From the first process's start to the last task's finish."""
    drain_tps: float
    """``tasks / wall_s``: the aggregate throughput of every process."""
    cpu_s: float
    """CPU seconds of the worker processes during the drain, summed."""
    succeeded: int
    dead: int
    lost: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareReport:
    """What one worker process did: counts, and when it started and last finished a task."""

    succeeded: int
    dead: int
    started: float
    last_finish: float | None
    cpu_s: float


class _ShareTally:
    """The executor's metrics hook in a worker process: counts and the last finish time."""

    def __init__(self) -> None:
        self.succeeded = 0
        self.dead = 0
        self.last_finish: float | None = None

    def on_claimed(self, tasks: Sequence[Task]) -> None:
        return None

    def on_outcome(self, task: Task, outcome: Outcome) -> None:
        if outcome.status is TaskStatus.SUCCEEDED:
            self.succeeded += 1
        elif outcome.status is TaskStatus.DEAD:
            self.dead += 1
        else:
            return
        self.last_finish = max(self.last_finish or 0.0, outcome.finished_at)


async def drain_share(arguments: Mapping[str, Any], ready: Ready) -> dict[str, Any]:
    """A worker-process job: connect, wait for the others, drain until idle, report."""
    workload = parse_workload(arguments["workload"])
    async with open_store(arguments["url"]) as store:
        await ready()
        started, cpu = time.time(), time.process_time()
        tally = _ShareTally()
        executor = TaskExecutor(
            store, concurrency=arguments["concurrency"], retry=BENCH_RETRY, metrics=tally
        )
        executor.register(workload.task_name, workload.handle)
        await executor.run(until_idle=True)
    report = ShareReport(
        succeeded=tally.succeeded,
        dead=tally.dead,
        started=started,
        last_finish=tally.last_finish,
        cpu_s=time.process_time() - cpu,
    )
    return asdict(report)


async def _fill(store: TaskStore, workload: Workload, tasks: int) -> None:
    now = time.time()
    for start in range(0, tasks, ENQUEUE_BATCH):
        size = min(ENQUEUE_BATCH, tasks - start)
        await store.enqueue([Task.new(workload.task_name, now=now) for _ in range(size)])


async def _prepare_shared_store(url: str, workload: Workload, tasks: int) -> None:
    """Check that ``url`` can be shared by processes, purge it and enqueue ``tasks`` tasks."""
    async with open_store(url) as store:
        if Capability.MULTI_PROCESS not in store.capabilities:
            raise ConfigError(f"{store.url} cannot be shared by several processes")
        await store.purge()
        await _fill(store, workload, tasks)


async def _terminal_counts(url: str) -> tuple[int, int]:
    async with open_store(url) as store:
        counts = await store.counts()
    return counts[TaskStatus.SUCCEEDED], counts[TaskStatus.DEAD]


def _wall(reports: Sequence[ShareReport]) -> float:
    finishes = [r.last_finish for r in reports if r.last_finish is not None]
    if not finishes:
        raise BenchmarkError("no worker process finished a task")
    return max(finishes) - min(r.started for r in reports)


async def measure_processes(
    url: str, processes: int, *, tasks: int, concurrency: int, workload: str | Workload = "noop"
) -> ProcessRun:
    """Drain ``tasks`` tasks enqueued in ``url`` with ``processes`` worker processes.

    The store is purged and filled here, then every process connects, waits
    for the others, and drains until nothing is queued or running. ``wall_s``
    runs from the first process's start to the last finish it reported.
    """
    config = DrainConfig.create(
        url, tasks=tasks, concurrency=concurrency, workload=workload, executor="taskbench"
    )
    check_positive(processes, "processes")
    await _prepare_shared_store(url, config.workload, tasks)
    job = {"url": url, "workload": config.workload.spec, "concurrency": concurrency}
    replies = await run_in_processes(f"{__name__}:drain_share", [job] * processes)
    reports = [ShareReport(**reply) for reply in replies]
    succeeded, dead = await _terminal_counts(url)
    wall_s = _wall(reports)
    return ProcessRun(
        store=redact(url),
        processes=processes,
        tasks=tasks,
        concurrency=concurrency,
        workload=config.workload.spec,
        wall_s=wall_s,
        drain_tps=tasks / wall_s if wall_s > 0 else math.inf,
        cpu_s=sum(r.cpu_s for r in reports),
        succeeded=succeeded,
        dead=dead,
        lost=tasks - succeeded - dead,
    )


async def sweep_processes(
    url: str,
    values: Sequence[int],
    *,
    tasks: int,
    concurrency: int,
    workload: str | Workload = "noop",
    options: Sweep | None = None,
) -> pd.DataFrame:
    """Drain ``tasks`` tasks with each number of worker processes in ``values``."""
    DrainConfig.create(
        url, tasks=tasks, concurrency=concurrency, workload=workload, executor="taskbench"
    )

    async def measure(processes: int) -> Measurement:
        run = await measure_processes(
            url, processes, tasks=tasks, concurrency=concurrency, workload=workload
        )
        return asdict(run)

    return await run_sweep("processes", values, measure, options or Sweep())


# -- one drain alone in a fresh process ------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AloneRun:
    """A drain run in a fresh worker process, and the memory in use before it started."""

    drain: dict[str, Any]
    """The :class:`~taskbench.bench.drain.DrainResult` as ``to_json_dict()``; its
    ``resources`` hold the CPU seconds and peak memory of the drain, of the
    worker and of the local server (:mod:`taskbench.bench.resources`)."""
    rss_before_mb: float
    """The worker's resident memory once ready (interpreter, taskbench, driver loaded)."""
    server_rss_before_mb: float | None
    """The local server's resident memory (whole process tree) then; None if not local."""


def _resident_mb(server: psutil.Process | None) -> float | None:
    return None if server is None else tree_rss(server)[0] / MIB


async def drain_alone(arguments: Mapping[str, Any], ready: Ready) -> dict[str, Any]:
    """A worker-process job: one :func:`~taskbench.bench.drain.run_drain`, and the memory before."""
    url = arguments["url"]
    open_store(url)  # imports the backend's driver before the baseline
    server, _ = find_server(url)
    rss_before_mb = psutil.Process().memory_info().rss / MIB
    server_before_mb = _resident_mb(server)
    await ready()
    result = await run_drain(
        url,
        tasks=arguments["tasks"],
        concurrency=arguments["concurrency"],
        workload=arguments["workload"],
    )
    run = AloneRun(
        drain=result.to_json_dict(),
        rss_before_mb=rss_before_mb,
        server_rss_before_mb=server_before_mb,
    )
    return asdict(run)


async def measure_alone(
    url: str, *, tasks: int, concurrency: int, workload: str | Workload = "noop"
) -> AloneRun:
    """Drain ``tasks`` tasks through ``url`` in a fresh process, with nothing else running."""
    config = DrainConfig.create(url, tasks=tasks, concurrency=concurrency, workload=workload)
    job = {"url": url, "tasks": tasks, "concurrency": concurrency, "workload": config.workload.spec}
    (reply,) = await run_in_processes(f"{__name__}:drain_alone", [job])
    return AloneRun(**reply)


# -- worker-process plumbing ----------------------------------------------------------
#
# A worker is ``python -c WORKER_CODE``, a fresh interpreter (nothing forked, no
# re-import of the caller's __main__, so it works from scripts, pytest and
# Jupyter alike). The parent writes one JSON line on its stdin: the job (a
# ``taskbench.*`` "module:function") and its arguments (a store URL travels
# here, never on a command line that ``ps`` shows). The worker answers on
# stdout with lines that start with MARKER: ``ready`` once connected, then
# ``ok`` (the job's report) or ``error``. The parent writes ``go`` to every
# worker only when all are ready: that is the start barrier.

MARKER = "taskbench-worker "
WORKER_CODE = "from taskbench.bench.sweeps import worker_main; worker_main()"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""Put first on the workers' path, so they run the very code their parent runs."""
STDERR_TAIL = 2_000


def _say(message: Mapping[str, Any]) -> None:
    sys.stdout.write(MARKER + json.dumps(message) + "\n")
    sys.stdout.flush()


async def _ready() -> None:
    """Tell the parent this worker is connected; return when it says go."""
    _say({"ready": True})
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != "go":
        raise BenchmarkError("the parent process went away before the start")


def _load_job(name: str) -> Job:
    module, _, function = name.partition(":")
    if not module.startswith("taskbench.") or not function:
        raise ConfigError(f"a worker job is a taskbench 'module:function', got {name!r}")
    job: Job = getattr(importlib.import_module(module), function)
    return job


def worker_main() -> None:
    """The body of a worker process: read the job on stdin, run it, print its report."""
    request = json.loads(sys.stdin.readline())
    try:
        report = asyncio.run(_load_job(request["job"])(request["arguments"], _ready))
    except Exception as exc:
        _say({"error": scrub(f"{type(exc).__name__}: {exc}")})
        raise SystemExit(1) from None
    _say({"ok": report})


@dataclass(frozen=True, slots=True)
class _Worker:
    process: asyncio.subprocess.Process
    stderr: IO[bytes]

    def stderr_tail(self) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().decode("utf-8", errors="replace")
        return scrub(text[-STDERR_TAIL:].strip())


def _worker_environment() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    first = str(PACKAGE_ROOT)
    return {**os.environ, "PYTHONPATH": f"{first}{os.pathsep}{path}" if path else first}


async def _send(worker: _Worker, text: str) -> None:
    stdin = worker.process.stdin
    assert stdin is not None  # created with stdin=PIPE
    stdin.write(text.encode() + b"\n")
    await stdin.drain()


async def _start_worker(job: str, arguments: Mapping[str, Any], stderr: IO[bytes]) -> _Worker:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER_CODE,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        env=_worker_environment(),
    )
    worker = _Worker(process, stderr)
    await _send(worker, json.dumps({"job": job, "arguments": dict(arguments)}))
    return worker


async def _expect(worker: _Worker, key: str) -> Any:
    """The value under ``key`` of the worker's next message; BenchmarkError on failure."""
    stdout = worker.process.stdout
    assert stdout is not None  # created with stdout=PIPE
    while line := await stdout.readline():
        text = line.decode("utf-8", errors="replace")
        if text.startswith(MARKER):
            message = json.loads(text[len(MARKER) :])
            if "error" in message:
                raise BenchmarkError(f"a worker process failed: {message['error']}")
            return message[key]
    code = await worker.process.wait()
    raise BenchmarkError(f"a worker process exited with {code}: {worker.stderr_tail()}")


async def _start_together(workers: Sequence[_Worker]) -> list[Any]:
    for worker in workers:
        await _expect(worker, "ready")
    for worker in workers:
        await _send(worker, "go")
    return [await _expect(worker, "ok") for worker in workers]


async def _reap(workers: Sequence[_Worker], *, failed: bool) -> None:
    """Wait for every worker to exit (killing our own workers first after a failure)."""
    for worker in workers:
        if failed and worker.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
        try:
            await asyncio.wait_for(worker.process.communicate(), JOIN_TIMEOUT_S)
        except TimeoutError:
            worker.process.kill()
            await worker.process.communicate()


async def run_in_processes(
    job: str,
    arguments: Sequence[Mapping[str, Any]],
    *,
    timeout: float = PROCESS_TIMEOUT_S,
) -> list[Any]:
    """Run ``job`` in one worker process per argument mapping, started together.

    ``job`` is ``"taskbench.module:function"``, an ``async def job(arguments,
    ready)`` that connects, awaits ``ready()`` (the barrier), does its work
    and returns a JSON-ready report. Returns the reports in argument order;
    raises BenchmarkError when a worker fails or all take over ``timeout``
    seconds.
    """
    workers: list[_Worker] = []
    failed = True
    with contextlib.ExitStack() as files:
        try:
            for one in arguments:
                stderr = files.enter_context(tempfile.TemporaryFile())
                workers.append(await _start_worker(job, one, stderr))
            replies = await asyncio.wait_for(_start_together(workers), timeout)
            failed = False
        except TimeoutError:
            raise BenchmarkError(
                f"worker processes did not finish within {timeout:.0f} s"
            ) from None
        finally:
            await _reap(workers, failed=failed)
    return replies


# -- reading a sweep -------------------------------------------------------------------


def scaling_slope(frame: pd.DataFrame, *, y: str = "drain_tps", x: str = "value") -> float:
    """The log-log slope of the per-point median ``y`` against ``x`` (see the module docstring).

    NaN when fewer than two distinct positive ``x`` have a positive median ``y``.
    """
    with requires_extra("fitting a scaling slope"):
        import numpy as np
    if x not in frame.columns or y not in frame.columns:
        raise ConfigError(f"the sweep has no column {x!r} or {y!r}; it has {list(frame.columns)}")
    medians = frame.groupby(x)[y].median()
    usable = medians[(medians.index > 0) & (medians > 0)]
    if len(usable) < 2:
        return math.nan
    xs = np.log(usable.index.to_numpy(dtype=float))
    ys = np.log(usable.to_numpy(dtype=float))
    slope, _ = np.polyfit(xs, ys, 1)
    return float(slope)
