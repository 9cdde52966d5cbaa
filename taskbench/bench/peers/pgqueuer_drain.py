"""Drain N no-op pgqueuer jobs from PostgreSQL and print one JSON line.

Runs in the peers virtual environment, by file path, so it imports only
pgqueuer (with asyncpg, its driver) and the standard library. It installs
pgqueuer's tables in a schema of its own (``PGQUEUER_SCHEMA``, with a
``PGQUEUER_PREFIX`` so its NOTIFY channel is private too), enqueues
``--tasks`` jobs in one bulk ``Queries.enqueue`` call, then runs the queue
managers in ``mode=drain`` until the queue is empty, and drops the schema.

Configuration: the one pgqueuer's own drain benchmark (``tools/benchmark.py``)
uses: several QueueManagers, each on its own asyncpg connection, with
``batch_size=10``, under uvloop. ``concurrency`` jobs in flight means
``concurrency / 10`` managers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from importlib.metadata import version
from typing import Any

BATCH_SIZE = 10
ENTRYPOINT = "noop"
DROP_SCHEMA = "DROP SCHEMA IF EXISTS {schema} CASCADE"  # schema: tb_peers_pgq_ + hex, ours


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--url", required=True, help="postgresql://user@host:port/database")
    return parser.parse_args()


async def connect(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(url)


async def queries_for(url: str) -> Any:
    from pgqueuer import AsyncpgDriver, Queries

    return Queries(AsyncpgDriver(await connect(url)))


async def drain(url: str, managers: int, counter: list[int]) -> None:
    from pgqueuer import PgQueuer
    from pgqueuer.types import QueueExecutionMode

    async def run_one() -> None:
        pgq = PgQueuer((await queries_for(url)).driver)

        async def noop(job: Any) -> None:
            counter[0] += 1

        pgq.entrypoint(ENTRYPOINT)(noop)
        await pgq.run(batch_size=BATCH_SIZE, mode=QueueExecutionMode.drain)

    await asyncio.gather(*(run_one() for _ in range(managers)))


async def drop_schema(url: str) -> None:
    connection = await connect(url)
    try:
        await connection.execute(DROP_SCHEMA.format(schema=os.environ["PGQUEUER_SCHEMA"]))
    finally:
        await connection.close()


async def left_in_queue(queries: Any) -> int:
    return sum(row.count for row in await queries.queue_size() if row.status == "queued")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    managers = max(1, args.concurrency // BATCH_SIZE)
    queries = await queries_for(args.url)
    await queries.install()
    try:
        started = time.perf_counter()
        await queries.enqueue([ENTRYPOINT] * args.tasks, [None] * args.tasks, [0] * args.tasks)
        enqueued = time.perf_counter()
        counter = [0]
        await drain(args.url, managers, counter)
        drained = time.perf_counter()
        remaining = await left_in_queue(queries)
    finally:
        await queries.uninstall()
        await drop_schema(args.url)
    drain_s = drained - enqueued
    config = (
        f"{managers} QueueManagers x asyncpg connection, batch_size={BATCH_SIZE}, "
        "mode=drain, uvloop, durability=durable (its default: all tables logged)"
    )
    return {
        "peer": "pgqueuer",
        "version": version("pgqueuer"),
        "config": config,
        "tasks": args.tasks,
        "concurrency": managers * BATCH_SIZE,
        "enqueue_s": enqueued - started,
        "drain_s": drain_s,
        "drain_tps": counter[0] / drain_s,
        "completed": counter[0],
        "left_in_queue": remaining,
    }


def main() -> None:
    args = parse_args()
    schema = f"tb_peers_pgq_{uuid.uuid4().hex[:8]}"
    os.environ["PGQUEUER_SCHEMA"] = schema
    os.environ["PGQUEUER_PREFIX"] = f"{schema}_"
    import uvloop

    result = uvloop.run(measure(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
