"""The worker pool, the experiment's side of the workers: start, kill -9, replace, finish.

:class:`WorkerPool` starts ``python -m taskbench.faults.crash`` subprocesses,
each configured through its environment and writing its output to a log
file of its own; SIGKILLs one and starts its replacement when a fault says
so; raises, with a log tail, when one exits before it was told to; tells them
all that no more work is coming (the ``done`` marker) and waits for each to
exit 0; and reads their counters back. Leaving the pool kills every worker
still running, errors included.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from taskbench.errors import BenchmarkError
from taskbench.faults.crash.worker import DONE_MARKER, WorkerConfig
from taskbench.faults.servers import kill_tree

POLL_S = 0.01
"""How often the parent looks at the workers' files and processes."""
FINISH_TIMEOUT_S = 300.0


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
