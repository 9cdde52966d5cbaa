"""RedisStore against real servers: failures, key hygiene, hostile data, exact floats.

Two servers are used. The shared one (``TASKBENCH_TEST_REDIS_URL``) with a
per-test prefix, and a throwaway ``redis-server`` this module starts on a
free port with a password, so that a wrong password is really refused and
every key the store writes can be listed without other programs' keys.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from taskbench.errors import ConfigError, StoreUnavailableError
from taskbench.model import Outcome, Task, TaskStatus
from taskbench.stores import open_store
from tests.backends import isolated_store_url

pytest.importorskip("redis")

from taskbench.stores.redis import RedisStore

T0 = 1_700_000_000.0
LEASE = 30.0
PASSWORD = "hunter2-" + uuid.uuid4().hex[:8]
LAYOUT = {"queued:0", "queued:1", "queued:2", "queued:3", "running", "dead", "succeeded"}
LAYOUT |= {"seq", "wakeup"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def wait_until_listening(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and server.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the throwaway redis-server on port {port} did not start")


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server of our own, with a password, on a free port; its port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port, workdir = free_port(), tmp_path_factory.mktemp("redis")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(workdir), "--requirepass", PASSWORD]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_listening(port, server)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
async def shared_url(tmp_path: Path) -> AsyncIterator[str]:
    async with isolated_store_url("redis", tmp_path) as url:
        yield url


def make(name: str = "job", payload: object = None, **kwargs: object) -> Task:
    return Task.new(name, payload, now=kwargs.pop("now", T0), **kwargs)  # type: ignore[arg-type]


async def all_keys(port: int) -> set[str]:
    import redis.asyncio as aioredis

    client = aioredis.Redis(port=port, db=3, password=PASSWORD, decode_responses=True)
    try:
        return {key async for key in client.scan_iter(match="*", count=1000)}
    finally:
        await client.aclose()


# -- failures -----------------------------------------------------------------------


async def test_a_closed_port_fails_clearly_without_the_password() -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0?socket_timeout=2"
    store = open_store(url)
    with pytest.raises(StoreUnavailableError) as caught:
        await store.open()
    message = str(caught.value)
    assert "cannot reach Redis" in message
    assert "redis://:***@127.0.0.1" in message
    assert PASSWORD not in message and PASSWORD not in repr(store)


async def test_a_wrong_password_is_refused_clearly(private_redis: int) -> None:
    store = open_store(f"redis://:wrong-{PASSWORD}@127.0.0.1:{private_redis}/0")
    with pytest.raises(StoreUnavailableError, match="refused the credentials") as caught:
        await store.open()
    assert PASSWORD not in str(caught.value)
    assert ":***@" in str(caught.value)


async def test_an_unknown_user_is_refused_by_the_shared_server(shared_url: str) -> None:
    # The shared server's default user has no password, and Redis 6+ accepts
    # any password for such a user; an unknown user name is always refused.
    url = shared_url.replace("redis://", f"redis://nobody-{uuid.uuid4().hex[:6]}:{PASSWORD}@", 1)
    store = open_store(url)
    with pytest.raises(StoreUnavailableError, match="refused the credentials") as caught:
        await store.open()
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("prefix=", "prefix"),
        ("socket_timeout=0", "socket_timeout"),
        ("socket_timeout=nan", "socket_timeout"),
        ("max_connections=0", "max_connections"),
        ("max_connections=many", "max_connections"),
    ],
)
def test_bad_options_raise_config_error(query: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        open_store(f"redis://127.0.0.1:6379/0?{query}")


def test_the_url_path_must_be_a_database_number() -> None:
    with pytest.raises(ConfigError, match="database number"):
        open_store("redis://127.0.0.1:6379/tasks")


async def test_more_callers_than_connections_queue_instead_of_failing(shared_url: str) -> None:
    async with open_store(f"{shared_url}&max_connections=2") as store:
        await store.enqueue([make(id=f"c{i}") for i in range(40)])
        claims = [store.claim(f"w{i}", 2, lease_s=LEASE, now=T0) for i in range(20)]
        claimed = [t.id for batch in await asyncio.gather(*claims) for t in batch]
        assert sorted(claimed) == sorted(f"c{i}" for i in range(40))


# -- key hygiene --------------------------------------------------------------------


async def run_lifecycle(store: RedisStore) -> None:
    """Touch every script: enqueue, claim, finish three ways, extend, release,
    requeue expired and dead, wait for work, list, count and get."""
    await store.enqueue([make(id=f"t{i}", priority=i % 4, max_attempts=1) for i in range(6)])
    a, b, c, d, e = await store.claim("w1", 5, lease_s=LEASE, now=T0)
    await store.finish(
        [
            Outcome.succeeded(a.lease, {"ok": 1}, now=T0 + 1),
            Outcome.dead(b.lease, "fatal", now=T0 + 1),
            Outcome.retry(c.lease, "again", run_at=T0 + 5, now=T0 + 1),
        ]
    )
    assert await store.extend([d.lease], lease_s=LEASE, now=T0 + 2) == 1
    assert await store.release([e.lease]) == 1
    assert await store.requeue_expired(now=T0 + 3 * LEASE) == 1
    assert await store.requeue_dead(now=T0 + 4 * LEASE) == 2
    await store.wait_for_work(0.5)
    assert await store.list_dead() == []
    assert sum((await store.counts()).values()) == 6
    assert len(await store.get_many([f"t{i}" for i in range(6)])) == 6


async def test_every_key_the_store_writes_is_under_its_prefix(private_redis: int) -> None:
    prefix = f"hygiene:{uuid.uuid4().hex[:6]}:"
    url = f"redis://:{PASSWORD}@127.0.0.1:{private_redis}/3?prefix={prefix}"
    async with open_store(url) as store:
        assert isinstance(store, RedisStore)
        await run_lifecycle(store)
        keys = await all_keys(private_redis)
        assert keys and all(key.startswith(prefix) for key in keys), keys
        names = {key.removeprefix(prefix) for key in keys}
        tasks = {name for name in names if name.startswith("task:")}
        assert tasks == {f"task:t{i}" for i in range(6)}
        assert names - tasks <= LAYOUT, names - tasks
        assert await store.purge() == 6
        leftovers = {key.removeprefix(prefix) for key in await all_keys(private_redis)}
        assert leftovers <= {"seq", "wakeup"}, leftovers


# -- order ---------------------------------------------------------------------------


async def test_equal_times_go_by_arrival_not_by_id(shared_url: str) -> None:
    arrivals = ["zz", "b", "yy", "a", "c"]  # neither sorted nor reverse-sorted
    async with open_store(shared_url) as store:
        for task_id in arrivals:
            await store.enqueue([make(id=task_id)])
        claimed = await store.claim("w", 2, lease_s=LEASE, now=T0)
        assert [t.id for t in claimed] == ["zz", "b"]
        retries = [Outcome.retry(t.lease, "x", run_at=T0, now=T0) for t in claimed]
        assert await store.finish(retries) == 2
        order = [t.id for t in await store.claim("w", 5, lease_s=LEASE, now=T0)]
        assert order == arrivals  # a retry keeps its place of arrival
        dead = [Outcome.dead(t.lease, "x", now=T0 + 1) for t in await store.get_many(order)]
        assert await store.finish(dead) == 5
        assert [t.id for t in await store.list_dead(limit=3)] == arrivals[:3]


# -- hostile data and exact values --------------------------------------------------

HOSTILE = [
    "]]; return redis.call('FLUSHALL') --[[",
    "'); redis.call('DEL', KEYS[1]); --",
    '"}], {"id": "evil"}]',
    '\\" \\u0000 \\n %s %d %016d {0} $1 ?',
    "naïve ✓ 名前 🚀 \u2028 \x7f \x01",
]


async def test_lua_and_json_injection_is_stored_verbatim(shared_url: str) -> None:
    async with open_store(shared_url) as store:
        tasks = [
            make(text, {"lua": text, text: [text]}, id=f"h{i}") for i, text in enumerate(HOSTILE)
        ]
        await store.enqueue(tasks)
        assert sorted(await store.get_many([t.id for t in tasks]), key=lambda t: t.id) == tasks
        claimed = await store.claim(HOSTILE[0], len(tasks), lease_s=LEASE, now=T0)
        assert {t.lease_owner for t in claimed} == {HOSTILE[0]}
        outcomes = [
            Outcome.dead(t.lease, HOSTILE[i], now=T0 + 1)
            if i % 2
            else Outcome.succeeded(t.lease, {HOSTILE[i]: HOSTILE[i]}, now=T0 + 1)
            for i, t in enumerate(claimed)
        ]
        assert await store.finish(outcomes) == len(tasks)
        for outcome in outcomes:
            stored = await store.get(outcome.lease.task_id)
            assert stored is not None
            assert (stored.result_json, stored.last_error) == (outcome.result_json, outcome.error)
        assert (await store.counts())[TaskStatus.QUEUED] == 0


TRICKY_DOUBLES = [
    0.1 + 0.2,
    T0 + 1 / 3,
    1e-300,
    2.0**53,  # the latest time a store accepts (model.MAX_TIME); past it is refused
    1_699_999_999.9999998,
    123456789.12345679,
]


async def test_floats_round_trip_exactly(shared_url: str) -> None:
    async with open_store(shared_url) as store:
        tasks = [make(id=f"f{i}", run_at=x, now=x) for i, x in enumerate(TRICKY_DOUBLES)]
        await store.enqueue(tasks)
        for task in tasks:
            assert await store.get(task.id) == task
        for task in sorted(tasks, key=lambda t: t.run_at):
            lease_s = 1 / 7
            (running,) = await store.claim("w", 1, lease_s=lease_s, now=task.run_at)
            assert running.id == task.id
            assert running.started_at == task.run_at
            assert running.lease_expires_at == task.run_at + lease_s
            finish = Outcome.succeeded(running.lease, 0.1 + 0.7, now=task.run_at + 1e-3)
            assert await store.finish([finish]) == 1
            done = await store.get(task.id)
            assert done is not None and done.finished_at == task.run_at + 1e-3


async def test_a_task_due_in_a_microsecond_waits_for_it(shared_url: str) -> None:
    async with open_store(shared_url) as store:
        due = T0 + 1e-6
        await store.enqueue([make(id="later", run_at=due)])
        assert await store.claim("w", 1, lease_s=LEASE, now=T0) == []
        assert [t.id for t in await store.claim("w", 1, lease_s=LEASE, now=due)] == ["later"]
