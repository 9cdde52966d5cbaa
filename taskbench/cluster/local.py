"""Worker processes on this machine, watched through the coordinator, the workers' files
and the store.

Design rules:

* **The store and the coordinator tell the truth, not the parent's guesses**:
  the leader is the one the coordinator names, events come from the files
  each worker appends (they survive kill -9), and every task id is read back
  from the store at the end (:func:`account`).
* A worker that exits without being signalled fails the wait in progress
  with its log's tail (:class:`~taskbench.errors.BenchmarkError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from taskbench.bench.drain import verify
from taskbench.cluster.options import WorkerOptions
from taskbench.coordination import Coordinator, Leadership, open_coordinator
from taskbench.distributed import EventKind, LeadershipEvent, read_events, read_lines
from taskbench.errors import BenchmarkError
from taskbench.model import TaskStatus
from taskbench.stores import TaskStore

POLL_S = 0.05
"""How often the parent looks at the store, the coordinator and the workers' files."""
STARTUP_TIMEOUT_S = 60.0
"""How long worker processes may take to start and join."""


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
