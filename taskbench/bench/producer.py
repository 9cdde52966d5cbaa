"""The open loop's producer: its schedule, its send loop, and the process it runs in.

* :class:`Schedule` is every arrival's time (``t0 + i / rate``) and priority,
  computed before the start (:func:`arrival_times`).
* :func:`produce` enqueues each arrival when it is due, a batch of all that
  are due when it is late, with up to :data:`MAX_SENDS_IN_FLIGHT` enqueue
  calls in flight, as independent clients would. It returns :class:`Sends`:
  every id in schedule order, and each ``enqueue`` call as an
  :class:`~taskbench.bench.metrics.EnqueueCall` (which tasks, sent when,
  returned when). The benchmark's recorder folds them in once the run is
  over (:meth:`~taskbench.bench.metrics.Recorder.time_sends`), whichever
  process the producer ran in.
* :func:`spawned_producer` runs :func:`produce` in a child process with a
  store client of its own, so that the producer and the executor do not take
  turns on one interpreter. :mod:`taskbench.bench.load` uses it whenever the
  store can be shared by processes.

The child is a fresh interpreter (``python -c``, as the sweeps' worker
processes): nothing is forked and the caller's ``__main__`` is not imported
again (``multiprocessing``'s spawn would re-run a script's top level, which
for a benchmark means purging the store it is measuring). It talks JSON
lines, each starting with :data:`MARKER`:

1. the parent writes the :class:`ProducerJob` on the child's stdin (the store
   URL travels there, never on a command line ``ps`` shows);
2. the child parses the workload, opens its store and says ``ready``;
3. the parent starts its executor, picks ``t0`` and writes it;
4. the child plans the same schedule from ``t0``, sends it, and prints
   ``sent`` (its :class:`Sends` and CPU seconds) or ``error``, then exits.

Design rules:

* **Every wait on the child has a timeout**, and the child is killed (by its
  own handle) whenever the parent leaves :func:`spawned_producer` with it
  still running: an error, a timeout, a cancellation, Ctrl-C. The child
  ignores SIGINT (the terminal sends it to the whole process group): its
  parent decides when it stops. A child whose parent has gone (its stdin
  closed) exits at once.
* **Failures name what happened**: a :class:`~taskbench.errors.BenchmarkError`
  with the redacted URL and the child's own message (passwords scrubbed),
  or its exit code and the tail of its stderr.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any, TypeVar

from taskbench.bench.environment import scrub
from taskbench.bench.metrics import EnqueueCall
from taskbench.bench.workloads import Workload, parse_workload
from taskbench.errors import BenchmarkError
from taskbench.model import Task, TaskPriority
from taskbench.stores import TaskStore, open_store
from taskbench.urls import redact

MAX_SEND_BATCH = 1_000
"""The most tasks a late producer sends in one ``enqueue``."""
MAX_SENDS_IN_FLIGHT = 8
"""The most ``enqueue`` calls the open loop's producer has in flight at once."""
READY_TIMEOUT_S = 60.0
"""How long the child may take to start, parse its job and open its store."""
FINISH_SLACK_S = 60.0
"""How long after its last scheduled arrival the child may take to report."""
EXIT_TIMEOUT_S = 10.0
"""How long the child may take to exit once it has reported, or been killed."""
MARKER = "taskbench-producer "
CHILD_CODE = "from taskbench.bench.producer import child_main; child_main()"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""Put first on the child's path, so it runs the very code its parent runs."""
STDERR_TAIL = 2_000
ORPHANED_EXIT = 3
"""The child's exit code when its parent went away."""

T = TypeVar("T")


# -- the schedule and the send loop ----------------------------------------------------


def arrival_times(rate: float, arrivals: int, t0: float) -> array[float]:
    """When each arrival is due: ``t0 + i / rate`` for ``i`` in ``range(arrivals)``."""
    return array("d", (t0 + i / rate for i in range(arrivals)))


@dataclass(frozen=True, slots=True)
class Schedule:
    """Arrival times (:func:`arrival_times`) and priorities of every task, computed up front."""

    times: array[float]
    priorities: list[TaskPriority]

    @classmethod
    def plan(cls, workload: Workload, rate: float, arrivals: int, t0: float) -> Schedule:
        times = arrival_times(rate, arrivals, t0)
        return cls(times, workload.draw_priorities(len(times), workload.priority_rng()))

    def task(self, workload: Workload, index: int) -> Task:
        """Arrival ``index`` as a new task, created at its scheduled time."""
        return workload.task_at(self.times[index], self.priorities[index])

    def due(self, now: float) -> int:
        """How many arrivals are due at ``now``."""
        return bisect.bisect_right(self.times, now)


@dataclass(frozen=True, slots=True)
class Sends:
    """What a producer sent: every id in schedule order, and each ``enqueue`` call."""

    ids: list[str] = field(default_factory=list)
    calls: list[EnqueueCall] = field(default_factory=list)
    cpu_s: float | None = None
    """The producer process's CPU seconds from ``t0`` to its last reply (None in-process:
    they are the benchmark's)."""

    def to_json(self) -> dict[str, Any]:
        return {"ids": self.ids, "calls": self.calls, "cpu_s": self.cpu_s}

    @classmethod
    def from_json(cls, sent: Mapping[str, Any]) -> Sends:
        calls = [EnqueueCall(*call) for call in sent["calls"]]
        return cls(list(sent["ids"]), calls, sent["cpu_s"])


async def produce(store: TaskStore, workload: Workload, schedule: Schedule) -> Sends:
    """Enqueue every arrival of ``schedule`` on time (a batch of all that are due when late).

    Up to MAX_SENDS_IN_FLIGHT enqueue calls are in flight at once, as from
    independent clients: a slow round trip delays its own tasks, not the
    sending of the next arrivals. The first error of a send is raised.
    """
    sends = Sends()
    ids, slots = sends.ids, asyncio.Semaphore(MAX_SENDS_IN_FLIGHT)
    try:
        async with asyncio.TaskGroup() as group:
            while len(ids) < len(schedule.times):
                await slots.acquire()
                sent, now = len(ids), time.time()
                due = min(schedule.due(now), sent + MAX_SEND_BATCH)
                if due <= sent:
                    slots.release()
                    await asyncio.sleep(schedule.times[sent] - now)
                    continue
                batch = [schedule.task(workload, i) for i in range(sent, due)]
                ids.extend(task.id for task in batch)
                group.create_task(_send(store, batch, sent, sends.calls, slots))
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
    return sends


async def _send(
    store: TaskStore,
    batch: list[Task],
    first: int,
    calls: list[EnqueueCall],
    slot: asyncio.Semaphore,
) -> None:
    try:
        sent = time.time()
        await store.enqueue(batch)
        calls.append(EnqueueCall(first, first + len(batch), sent, time.time()))
    finally:
        slot.release()


# -- the producer process: the parent's side -------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerJob:
    """What the child needs, as JSON: the store, the workload's spec, the schedule's shape."""

    url: str
    workload: str
    rate: float
    arrivals: int


class ProducerProcess:
    """A producer running in a child process: :meth:`ready`, :meth:`go`, :meth:`sends`.

    Make one with :func:`spawned_producer`, which also stops it.
    """

    def __init__(self, process: asyncio.subprocess.Process, stderr: IO[bytes], url: str):
        self.process = process
        self.stderr = stderr
        self.url = redact(url)
        self._error: str | None = None
        """The child's own account of its failure, once it gave one."""

    @classmethod
    async def start(cls, job: ProducerJob, stderr: IO[bytes]) -> ProducerProcess:
        """Start a child and give it ``job`` (its stderr goes to the file ``stderr``)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD_CODE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=_child_environment(),
        )
        child = cls(process, stderr, job.url)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # said in ready()
            await child._write(asdict(job))
        return child

    async def ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Return once the child has opened its store; BenchmarkError if it fails first."""
        message = await self._within(self._next_message(), timeout, "report ready")
        if message is None or "ready" not in message:
            raise await self._failure()

    async def go(self, t0: float) -> None:
        """Tell the child its schedule starts at ``t0`` (a child already gone says why in
        :meth:`sends`)."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await self._write({"t0": t0})

    async def sends(self, timeout: float) -> Sends:
        """The child's :class:`Sends`, once it has sent its whole schedule and exited."""
        messages = await self._within(self._last_messages(), timeout, "finish its schedule")
        code = await self._within(self.process.wait(), EXIT_TIMEOUT_S, "exit")
        sent = [message["sent"] for message in messages if "sent" in message]
        if code != 0 or not sent:
            raise await self._failure()
        return Sends.from_json(sent[-1])

    async def stop(self) -> None:
        """Kill the child if it still runs, and wait for it to exit (no zombie left)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.communicate(), EXIT_TIMEOUT_S)

    @property
    def _stdout(self) -> asyncio.StreamReader:
        stdout = self.process.stdout
        assert stdout is not None  # created with stdout=PIPE
        return stdout

    async def _write(self, message: Mapping[str, Any]) -> None:
        stdin = self.process.stdin
        assert stdin is not None  # created with stdin=PIPE
        stdin.write(json.dumps(message).encode() + b"\n")
        await stdin.drain()

    async def _last_messages(self) -> list[dict[str, Any]]:
        """Every message the child writes until it closes its stdout."""
        rest = await self._stdout.read()
        lines = rest.decode(errors="replace").splitlines()
        return [message for line in lines if (message := self._record(line)) is not None]

    async def _next_message(self) -> dict[str, Any] | None:
        """The child's next message (None once its stdout is closed)."""
        while line := await self._stdout.readline():
            message = self._record(line.decode(errors="replace"))
            if message is not None:
                return message
        return None

    def _record(self, text: str) -> dict[str, Any] | None:
        """A message line parsed (an error kept for :meth:`_failure`); None if not one."""
        if not text.startswith(MARKER):
            return None
        try:
            message: dict[str, Any] = json.loads(text[len(MARKER) :])
        except json.JSONDecodeError:  # cut short: the child was killed while writing it
            return None
        if "error" in message:
            self._error = str(message["error"])
        return message

    async def _within(self, step: Awaitable[T], timeout: float, what: str) -> T:
        try:
            return await asyncio.wait_for(step, timeout)
        except TimeoutError:
            raise BenchmarkError(
                f"the open loop's producer process ({self.url}) did not {what} within {timeout:g} s"
            ) from None

    async def _failure(self) -> BenchmarkError:
        """What went wrong in the child: its own message, or its exit code and stderr."""
        if self._error is None:
            await self._within(self._last_messages(), EXIT_TIMEOUT_S, "exit")  # an error, last
        code = await self._within(self.process.wait(), EXIT_TIMEOUT_S, "exit")
        where = f"the open loop's producer process ({self.url})"
        if self._error is not None:
            return BenchmarkError(f"{where} failed: {self._error}")
        return BenchmarkError(f"{where} exited with code {code}: {self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().decode("utf-8", errors="replace")
        return scrub(text[-STDERR_TAIL:].strip()) or "(nothing on stderr)"


def _child_environment() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    first = str(PACKAGE_ROOT)
    return {**os.environ, "PYTHONPATH": f"{first}{os.pathsep}{path}" if path else first}


@contextlib.asynccontextmanager
async def spawned_producer(
    job: ProducerJob, *, ready_timeout: float = READY_TIMEOUT_S
) -> AsyncIterator[ProducerProcess]:
    """``async with spawned_producer(job) as child``: a child producer that is ready.

    The child has parsed ``job``, opened its store and waits for
    :meth:`ProducerProcess.go`. Leaving the block kills it if it still runs.
    """
    with tempfile.TemporaryFile() as stderr:
        child = await ProducerProcess.start(job, stderr)
        try:
            await child.ready(ready_timeout)
            yield child
        finally:
            await child.stop()


# -- the producer process: the child's side --------------------------------------------


def _say(message: Mapping[str, Any]) -> None:
    sys.stdout.write(MARKER + json.dumps(message) + "\n")
    sys.stdout.flush()


def _read_t0() -> float:
    line = sys.stdin.readline()
    if not line:
        raise BenchmarkError("the parent process went away before the start")
    return float(json.loads(line)["t0"])


def _exit_when_orphaned() -> None:
    """Wait for the parent to close our stdin; exit at once if it does before we are done.

    It reads the raw descriptor: a daemon thread must not hold ``sys.stdin``'s
    lock when the interpreter shuts down."""
    while os.read(sys.stdin.fileno(), 4096):
        pass
    os._exit(ORPHANED_EXIT)


async def _produce_on_cue(job: ProducerJob) -> Sends:
    workload = parse_workload(job.workload)
    async with open_store(job.url) as store:
        _say({"ready": True})
        t0 = await asyncio.to_thread(_read_t0)
        threading.Thread(target=_exit_when_orphaned, daemon=True).start()
        cpu = time.process_time()
        schedule = Schedule.plan(workload, job.rate, job.arrivals, t0)
        sends = await produce(store, workload, schedule)
    return replace(sends, cpu_s=time.process_time() - cpu)


def child_main() -> None:
    """The body of the producer process: read the job on stdin, say ready, send, report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this process stops
    try:
        job = ProducerJob(**json.loads(sys.stdin.readline()))
        sends = asyncio.run(_produce_on_cue(job))
    except Exception as exc:
        _say({"error": scrub(f"{type(exc).__name__}: {exc}")})
        raise SystemExit(1) from None
    _say({"sent": sends.to_json()})
