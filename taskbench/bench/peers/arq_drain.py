"""Drain N no-op arq jobs from Redis and print one JSON line.

Runs in the peers virtual environment (arq pins redis-py < 6, which is why
the peers do not share the project's environment), by file path, so it
imports only arq and the standard library. Isolation: the Redis database
given in the URL (13 by default, never 0), a queue name and job ids unique to
this run; afterwards it deletes exactly the keys of this run (never FLUSHDB).

Configuration: arq's documented settings for throughput: ``max_jobs`` equal
to the concurrency, ``poll_delay=0.01`` (default 0.5 s), ``keep_result=0``
(no result key per job), ``burst=True`` so the worker stops once the queue is
empty, and ``handle_signals=False`` because it runs inside this script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from importlib.metadata import version
from typing import Any

from arq import Worker, create_pool
from arq.connections import RedisSettings

POLL_DELAY_S = 0.01
ENQUEUE_CHUNK = 500


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--url", required=True, help="redis://host:port/13")
    return parser.parse_args()


async def enqueue(pool: Any, run_id: str, queue: str, tasks: int) -> None:
    for first in range(0, tasks, ENQUEUE_CHUNK):
        ids = range(first, min(first + ENQUEUE_CHUNK, tasks))
        await asyncio.gather(
            *(pool.enqueue_job("noop", _job_id=f"{run_id}-{i}", _queue_name=queue) for i in ids)
        )


async def delete_run_keys(pool: Any, run_id: str, queue: str) -> None:
    for pattern in (f"arq:*{run_id}*", f"{queue}*"):
        keys = [key async for key in pool.scan_iter(match=pattern, count=1000)]
        if keys:
            await pool.delete(*keys)


async def run_worker(pool: Any, queue: str, concurrency: int, counter: list[int]) -> None:
    async def noop(ctx: dict[str, Any]) -> None:
        counter[0] += 1

    noop.__qualname__ = noop.__name__ = "noop"
    worker = Worker(
        functions=[noop],
        redis_pool=pool,
        queue_name=queue,
        max_jobs=concurrency,
        poll_delay=POLL_DELAY_S,
        keep_result=0,
        burst=True,
        handle_signals=False,
    )
    try:
        await worker.main()
    finally:
        await worker.close()


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:12]
    queue = f"taskbench-peers:arq:{run_id}"
    pool = await create_pool(RedisSettings.from_dsn(args.url), default_queue_name=queue)
    counter = [0]
    try:
        started = time.perf_counter()
        await enqueue(pool, run_id, queue, args.tasks)
        enqueued = time.perf_counter()
        await run_worker(pool, queue, args.concurrency, counter)
        drained = time.perf_counter()
        remaining = await pool.zcard(queue)
    finally:
        await delete_run_keys(pool, run_id, queue)
        await pool.aclose()
    drain_s = drained - enqueued
    return {
        "peer": "arq",
        "version": version("arq"),
        "config": (
            f"Worker(max_jobs={args.concurrency}, poll_delay={POLL_DELAY_S}, keep_result=0, "
            f"burst=True), redis-py {version('redis')} + hiredis"
        ),
        "tasks": args.tasks,
        "concurrency": args.concurrency,
        "enqueue_s": enqueued - started,
        "drain_s": drain_s,
        "drain_tps": counter[0] / drain_s,
        "completed": counter[0],
        "left_in_queue": remaining,
    }


def main() -> None:
    print(json.dumps(asyncio.run(measure(parse_args()))), flush=True)


if __name__ == "__main__":
    main()
