"""Fixtures of the contract suite: every test runs once per store backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from taskbench.stores import Capability, TaskStore, open_store
from tests.backends import STORE_BACKENDS, isolated_store_url

OpenStore = Callable[[], Awaitable[TaskStore]]


@pytest.fixture(params=STORE_BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with isolated_store_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def open_client(store_url: str) -> AsyncIterator[OpenStore]:
    """Opens another client of the same store: a new connection where the
    backend is shared between processes, the same object where it is not."""
    opened: list[TaskStore] = []

    async def open_one() -> TaskStore:
        if opened and Capability.MULTI_PROCESS not in opened[0].capabilities:
            return opened[0]
        store = open_store(store_url)
        await store.open()
        opened.append(store)
        return store

    yield open_one
    for store in reversed(opened):
        await store.close()


@pytest.fixture
async def store(open_client: OpenStore) -> TaskStore:
    return await open_client()
