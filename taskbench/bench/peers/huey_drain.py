"""Drain N no-op huey tasks from a SqliteHuey file and print one JSON line.

Runs in the peers virtual environment (see ``environment.py``), by file
path, so it imports only huey and the standard library. The workload is the
one every peer script shares: enqueue ``--tasks`` no-op tasks, start the
consumer with ``--concurrency`` workers, time until every task has completed,
and count the completions (huey's ``SIGNAL_COMPLETE``, so results stay off).

Configuration: huey's documented throughput settings for SQLite: WAL journal
(SqliteHuey's default), ``worker_type='thread'``, ``workers=concurrency``,
``periodic=False`` (no scheduler needed), ``results=False``. ``--fsync``
picks ``synchronous=FULL`` (durable) or ``OFF`` (reference).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from huey import SqliteHuey, signals

QUEUE_NAME = "taskbench-peers"


class CompletionCounter:
    """Counts completions from any worker thread; ``done`` is set at ``expected``."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.done = threading.Event()
        self._lock = threading.Lock()

    def hit(self, *_signal_args: Any) -> None:
        with self._lock:
            self.count += 1
            if self.count >= self.expected:
                self.done.set()


def no_op() -> None:
    """The task: does nothing, so the queue's own cost is what is measured."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--fsync", choices=["true", "false"], default="true")
    parser.add_argument("--timeout", type=float, default=600.0)
    return parser.parse_args()


def drain(huey: Any, args: argparse.Namespace, fsync: bool) -> dict[str, Any]:
    noop = huey.task()(no_op)
    counter = CompletionCounter(args.tasks)
    huey.signal(signals.SIGNAL_COMPLETE)(counter.hit)
    started = time.perf_counter()
    for _ in range(args.tasks):
        noop()
    enqueued = time.perf_counter()
    consumer = huey.create_consumer(workers=args.concurrency, worker_type="thread", periodic=False)
    consumer.start()
    counter.done.wait(args.timeout)
    drained = time.perf_counter()
    consumer.stop(graceful=True)
    drain_s = drained - enqueued
    config = (
        f"SqliteHuey(fsync={fsync}, journal_mode=wal, results=False), consumer("
        f"worker_type=thread, workers={args.concurrency}, periodic=False)"
    )
    return {
        "peer": "huey-fsync" if fsync else "huey-nofsync",
        "version": version("huey"),
        "config": config,
        "tasks": args.tasks,
        "concurrency": args.concurrency,
        "enqueue_s": enqueued - started,
        "drain_s": drain_s,
        "drain_tps": counter.count / drain_s,
        "completed": counter.count,
        "left_in_queue": huey.pending_count(),
    }


def main() -> None:
    args = parse_args()
    fsync = args.fsync == "true"
    with tempfile.TemporaryDirectory(prefix="taskbench-peers-huey-") as folder:
        database = Path(folder) / "huey.db"
        huey = SqliteHuey(QUEUE_NAME, filename=str(database), fsync=fsync, results=False)
        print(json.dumps(drain(huey, args, fsync)), flush=True)


if __name__ == "__main__":
    main()
