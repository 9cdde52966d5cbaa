"""Drain N no-op saq jobs from Redis and print one JSON line.

Runs in the peers virtual environment, by file path, so it imports only saq
(with redis-py and hiredis) and the standard library. Isolation: the Redis
database given in the URL (13 by default, never 0) and a queue name unique to
this run; afterwards it deletes exactly the keys under that name (never
FLUSHDB).

Configuration: saq's documented throughput setting is the worker's
``concurrency`` (jobs in flight per worker); it is set to the benchmark's
concurrency, with the default Redis queue (BLMOVE dequeue, no polling). A
completion is counted in ``after_process``, which saq calls once the job's
COMPLETE status has been written, so the clock stops on durable completions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from importlib.metadata import version
from typing import Any

from saq import Queue, Status, Worker

ENQUEUE_CHUNK = 500


class CompletionCounter:
    """Counts distinct completed jobs; ``done`` is set at ``expected``."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.completed: set[str] = set()
        self.done = asyncio.Event()

    async def after_process(self, ctx: dict[str, Any]) -> None:
        job = ctx.get("job")
        if job is not None and job.status == Status.COMPLETE:
            self.completed.add(job.key)
            if len(self.completed) >= self.expected:
                self.done.set()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--url", required=True, help="redis://host:port/13")
    parser.add_argument("--timeout", type=float, default=600.0)
    return parser.parse_args()


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def enqueue(queue: Any, tasks: int) -> None:
    for first in range(0, tasks, ENQUEUE_CHUNK):
        count = min(ENQUEUE_CHUNK, tasks - first)
        await asyncio.gather(*(queue.enqueue("noop") for _ in range(count)))


async def delete_run_keys(queue: Any) -> None:
    keys = [key async for key in queue.redis.scan_iter(match=f"saq:*{queue.name}*", count=1000)]
    if keys:
        await queue.redis.delete(*keys)


async def drain(queue: Any, args: argparse.Namespace) -> tuple[int, float]:
    """Run a worker until every job completed: (completions, time.perf_counter() then)."""
    counter = CompletionCounter(args.tasks)
    worker = Worker(
        queue, functions=[noop], concurrency=args.concurrency, after_process=counter.after_process
    )
    running = asyncio.create_task(worker.start())
    try:
        await asyncio.wait_for(counter.done.wait(), args.timeout)
        drained = time.perf_counter()
    finally:
        await worker.stop()
        await running
    return len(counter.completed), drained


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    queue = Queue.from_url(args.url, name=f"taskbench-peers-{uuid.uuid4().hex[:12]}")
    await queue.connect()
    try:
        started = time.perf_counter()
        await enqueue(queue, args.tasks)
        enqueued = time.perf_counter()
        completed, drained = await drain(queue, args)
        remaining = await queue.count("queued")
    finally:
        await delete_run_keys(queue)
        await queue.disconnect()
    drain_s = drained - enqueued
    return {
        "peer": "saq",
        "version": version("saq"),
        "config": f"Worker(concurrency={args.concurrency}), RedisQueue, redis-py "
        f"{version('redis')} + hiredis",
        "tasks": args.tasks,
        "concurrency": args.concurrency,
        "enqueue_s": enqueued - started,
        "drain_s": drain_s,
        "drain_tps": completed / drain_s,
        "completed": completed,
        "left_in_queue": remaining,
    }


def main() -> None:
    print(json.dumps(asyncio.run(measure(parse_args()))), flush=True)


if __name__ == "__main__":
    main()
