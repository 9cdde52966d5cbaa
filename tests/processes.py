"""Spawned processes that connect, then contend for one store: the harness the
multi-process store tests share.

Each child (``spawn``: its own interpreter and connections) runs a module-level
``target(url, name, start, results)``, which calls :func:`after_barrier` with
its work: the store is opened, every child waits at ``start`` (a barrier of
all of them) so that their claims contend, then the work runs and the child
puts ``(name, report)`` on ``results``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Awaitable, Callable
from multiprocessing.synchronize import Barrier
from typing import Any, TypeVar

from taskbench.stores import TaskStore, open_store

T = TypeVar("T")
Target = Callable[[str, str, Barrier, Any], None]


async def after_barrier(
    url: str, start: Barrier, work: Callable[[TaskStore], Awaitable[T]], timeout: float
) -> T:
    """In a child: open ``url``, wait for every child, run ``work`` on the store, close it."""
    store = open_store(url)
    await store.open()
    try:
        await asyncio.to_thread(start.wait, timeout)  # every process is connected: now contend
        return await work(store)
    finally:
        await store.close()


def run_spawned(target: Target, url: str, processes: int, *, timeout: float) -> dict[str, Any]:
    """Run ``target`` in ``processes`` spawned children named process0, process1...; return
    each child's report by name. Every child must exit 0."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    results = context.Queue()
    names = [f"process{i}" for i in range(processes)]
    children = [context.Process(target=target, args=(url, name, start, results)) for name in names]
    for child in children:
        child.start()
    try:
        reports = dict(results.get(timeout=timeout) for _ in children)
    finally:
        for child in children:
            child.join(timeout=30)
    for child in children:
        assert child.exitcode == 0, f"{child.name} exited with {child.exitcode}"
    return reports
