"""The measured scorecard: the report's criteria, computed for each store on this machine.

The report (section 1.3, table 1.5) rates the stores in words: "Performance:
High", "Reliability: Low-Medium". :func:`scorecard` measures the same
criteria, one row per store, one column per measure; :data:`CRITERIA`
groups the columns under the report's four headings, and
:data:`REPORT_TABLE` is the report's own table, for contrast
(:func:`side_by_side` puts the two together).

Performance
    ``throughput_tps``: median drain throughput (no-op tasks, our executor)
    at the plan's headline concurrency. ``latency_p50_ms`` /
    ``latency_p99_ms``: one task's cost in the store, a claim(1)+finish round
    trip behind a backlog (:mod:`taskbench.bench.backlog`; the drain's own
    enqueue->finish latency is mostly time spent queued behind the backlog,
    so it says little about the store). ``scalability_slope``: the log-log
    slope of throughput across the concurrency sweep
    (:func:`~taskbench.bench.sweeps.scaling_slope`; 1 = linear, 0 = flat).
    ``multi_process`` (capability) and ``process_speedup``: aggregate
    throughput with the most worker processes over one process.
Reliability
    ``durability_lost``: tasks lost after a crash at the store's default
    durable setting (:func:`default_setting`), read from saved results of
    kind ``crash`` (columns ``store``, ``setting`` and ``lost``); NaN, with
    a note, until such a run exists; the note lists every setting's figure.
    ``consistency_errors``: tasks lost or run twice across every drain
    measured here (should be 0). ``persistent`` and
    ``transactional``: the store's declared capabilities.
Maintainability
    ``code_lines``, ``code_functions``, ``complexity_mean``,
    ``complexity_max`` of the store's module (:mod:`~taskbench.bench.codemetrics`).
    ``tests``: test items collected for the store in ``tests/contract`` and
    ``tests/integration`` (:func:`count_store_tests` says how they are told apart).
Operational
    ``setup_services`` (a server to run: the store is MULTI_HOST) and
    ``setup_steps`` (:data:`SETUP_STEPS`). ``cpu_s_per_1k`` and
    ``rss_mb_per_1k``: CPU seconds and resident-memory growth per 1,000
    tasks of a drain run alone in a fresh worker process
    (:func:`~taskbench.bench.sweeps.measure_alone`): the drain's CPU and
    peak memory as :mod:`taskbench.bench.resources` samples them, minus the
    memory the worker held before it started. ``server_cpu_s_per_1k`` and
    ``server_rss_mb_per_1k``: the same for the server's whole process tree,
    when it runs on this machine (its resident memory sums each process's,
    so PostgreSQL's shared buffers count once per backend that touched
    them). Embedded stores have no server: 0. On a shared server, other
    clients' load during the drain counts too.

Not measured, and why: availability (needs a replicated deployment),
error handling (the contract suite checks it, there is no number),
documentation, debugging, monitoring and backup/restore (no honest number).

Design rules:

* **A row for every store asked for**, never a silent omission: a store
  whose server is not configured, unreachable or lacks its driver gets a
  row whose ``status`` says so and whose ``notes`` give the reason; what
  needs no server (code, tests, setup, durability) is still filled in.
* **Never touch existing tasks.** Each store is measured in a place of its
  own, made here and removed after: a PostgreSQL schema and a MySQL
  database named ``tb_scorecard_<hex>``, a Redis key prefix of that name
  (deleted by exact prefix, never FLUSHDB), a SQLite file in a temporary
  folder. Only the server of each URL is used.
* **Numbers where measured, NaN where not, and a note saying why.** A
  password never reaches a row, a note or a log (URLs are redacted,
  messages scrubbed).
* Server stores come from the ``stores`` argument, else from
  ``TASKBENCH_TEST_POSTGRES_URL``, ``..._REDIS_URL`` and ``..._MYSQL_URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from taskbench.bench.backlog import fill, time_round_trip, warm_up
from taskbench.bench.codemetrics import measure_module, store_modules
from taskbench.bench.drain import check_positive
from taskbench.bench.environment import requires_extra, scrub
from taskbench.bench.results import load_runs
from taskbench.bench.sweeps import (
    Sweep,
    check_values,
    measure_alone,
    scaling_slope,
    show_progress,
    sweep_concurrency,
    sweep_processes,
)
from taskbench.errors import (
    ConfigError,
    MissingDependencyError,
    StoreUnavailableError,
    TaskbenchError,
)
from taskbench.stores import STORES, Capability, open_store
from taskbench.urls import redact, split_url

with requires_extra("the scorecard"):
    import pandas as pd  # type: ignore[import-untyped]

__all__ = [
    "CRITERIA",
    "FAST",
    "FULL",
    "REPORT_TABLE",
    "SETUP_STEPS",
    "Plan",
    "by_criterion",
    "check_reachable",
    "count_store_tests",
    "default_setting",
    "default_stores",
    "measure_scorecard",
    "report_rating",
    "scorecard",
    "side_by_side",
]

log = logging.getLogger("taskbench.bench.scorecard")
T = TypeVar("T")

# -- what is measured, and how much ----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """The sizes of one scorecard's measurements."""

    tasks: int
    """Tasks per drain, in the concurrency sweep and the process sweep."""
    concurrency: tuple[int, ...]
    headline_concurrency: int
    """The concurrency throughput is quoted at (one of ``concurrency``)."""
    processes: tuple[int, ...]
    repeats: int
    backlog: int
    samples: int
    """Claim round trips timed behind ``backlog`` queued tasks."""
    resource_tasks: int
    """Tasks of the drain run alone in a worker process to measure resources."""

    def __post_init__(self) -> None:
        """Check every size (ConfigError) before anything is measured."""
        sizes = ("tasks", "headline_concurrency", "repeats", "backlog", "samples", "resource_tasks")
        for name in sizes:
            check_positive(getattr(self, name), name)
        check_values(self.concurrency, "concurrency")
        check_values(self.processes, "processes")
        if self.headline_concurrency not in self.concurrency:
            raise ConfigError("headline_concurrency must be one of the concurrency values")
        if self.samples > self.backlog:
            raise ConfigError("samples must not exceed the backlog")


FAST = Plan(
    tasks=400,
    concurrency=(1, 10, 50),
    headline_concurrency=50,
    processes=(1, 2),
    repeats=1,
    backlog=1_000,
    samples=100,
    resource_tasks=1_000,
)
"""Seconds per store: a smoke run for tests and notebooks with FAST=True."""

FULL = Plan(
    tasks=5_000,
    concurrency=(1, 5, 10, 50, 100),
    headline_concurrency=50,
    processes=(1, 2, 4),
    repeats=3,
    backlog=10_000,
    samples=1_000,
    resource_tasks=10_000,
)
"""About a minute or two per store on a 2-core machine."""

CRITERIA: dict[str, tuple[str, ...]] = {
    "Performance": (
        "throughput_tps",
        "latency_p50_ms",
        "latency_p99_ms",
        "scalability_slope",
        "multi_process",
        "process_speedup",
    ),
    "Reliability": ("durability_lost", "consistency_errors", "persistent", "transactional"),
    "Maintainability": (
        "code_lines",
        "code_functions",
        "complexity_mean",
        "complexity_max",
        "tests",
    ),
    "Operational": (
        "setup_services",
        "setup_steps",
        "cpu_s_per_1k",
        "rss_mb_per_1k",
        "server_cpu_s_per_1k",
        "server_rss_mb_per_1k",
    ),
}
"""The report's four headings (section 1.3) and the columns that measure each."""

IDENTITY = ("backend", "url", "status", "capabilities")
COLUMNS = (*IDENTITY, *(c for group in CRITERIA.values() for c in group), "notes")

SERVER_VARIABLES = {
    "postgres": "TASKBENCH_TEST_POSTGRES_URL",
    "redis": "TASKBENCH_TEST_REDIS_URL",
    "mysql": "TASKBENCH_TEST_MYSQL_URL",
}
MYSQL_PORT = 3306

SETUP_STEPS: dict[str, tuple[str, ...]] = {
    "memory": ("pip install taskbench",),
    "sqlite": ("pip install taskbench", "choose a file on a local disk"),
    "postgres": (
        "pip install 'taskbench[postgres]'",
        "install and start PostgreSQL",
        "create a role and a database",
        "give the URL (the schema is created at open)",
    ),
    "redis": (
        "pip install 'taskbench[redis]'",
        "install and start Redis 7",
        "configure persistence (appendonly, appendfsync) for durability",
        "give the URL",
    ),
    "mysql": (
        "pip install 'taskbench[mysql]'",
        "install and start MariaDB >= 10.6 or MySQL >= 8",
        "create a database and a user that logs in over TCP",
        "give the URL",
    ),
}
"""What it takes to get each store running, step by step (the declared part of "setup")."""

REPORT_RATINGS = {
    "TaskExecutor": ("Medium", "High", "High", "High", "High"),
    "SQLiteTaskStore": ("Low-Medium", "High", "High", "High", "Medium"),
    "PostgresTaskStore": ("High", "High", "Medium", "Medium", "High"),
    "RedisTaskStore": ("Very High", "Low-Medium", "Medium", "Medium", "High"),
    "DistributedExecutor": ("Medium", "Medium", "Low", "Low", "Low"),
}
REPORT_COLUMNS = ("Performance", "Reliability", "Maintainability", "Operational", "Overall")
REPORT_SERVICE = {
    "sqlite": "SQLiteTaskStore",
    "postgres": "PostgresTaskStore",
    "redis": "RedisTaskStore",
}
"""Our backends that the report's table rates (it rates neither memory nor MySQL)."""


def _report_table() -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(REPORT_RATINGS, orient="index", columns=list(REPORT_COLUMNS))
    frame.index.name = "Service"
    return frame


REPORT_TABLE = _report_table()
"""The report's table 1.5, verbatim: one row per service, its words in each column."""


# -- which store is which --------------------------------------------------------------


def backend_of(url: str) -> str:
    """The backend module's name for ``url`` (``"postgres"`` for ``postgresql://...``)."""
    scheme = split_url(url).scheme.lower()
    backend = STORES.backends.get(scheme)
    if backend is None:
        known = ", ".join(f"{s}://" for s in sorted(STORES.backends))
        raise ConfigError(f"unknown store scheme {scheme!r}; known: {known}")
    return backend.module.rpartition(".")[2]


def default_stores() -> dict[str, str | None]:
    """memory, SQLite, and each server store from its ``TASKBENCH_TEST_*_URL`` (None if unset)."""
    servers = {
        name: os.environ.get(variable) or None for name, variable in SERVER_VARIABLES.items()
    }
    return {"memory": "memory://", "sqlite": "sqlite:///scorecard.db", **servers}


def _store_class(backend: str) -> Any:
    """The store class of ``backend``, imported (MissingDependencyError without its driver)."""
    spec = next(b for b in STORES.backends.values() if b.module.rpartition(".")[2] == backend)
    return getattr(importlib.import_module(spec.module), spec.cls)


def _capabilities(url: str | None, backend: str) -> Capability:
    """The store's capabilities, read without connecting."""
    if url is None:
        capabilities: Capability = _store_class(backend).capabilities
        return capabilities
    return open_store(url).capabilities


# -- what needs no server: capabilities, code, tests, setup, durability -----------------


def _capability_columns(capabilities: Capability) -> dict[str, Any]:
    names = [flag.name for flag in Capability if flag and flag in capabilities and flag.name]
    return {
        "capabilities": "|".join(names),
        "multi_process": Capability.MULTI_PROCESS in capabilities,
        "persistent": Capability.PERSISTENT in capabilities,
        "transactional": Capability.TRANSACTIONAL in capabilities,
    }


def _setup_columns(backend: str, capabilities: Capability) -> dict[str, Any]:
    steps = SETUP_STEPS.get(backend)
    return {
        "setup_services": int(Capability.MULTI_HOST in capabilities),
        "setup_steps": len(steps) if steps else math.nan,
    }


def _code_columns(backend: str) -> dict[str, Any]:
    metrics = measure_module(store_modules()[backend])
    return {
        "code_lines": metrics.lines_of_code,
        "code_functions": metrics.functions,
        "complexity_mean": metrics.complexity_mean,
        "complexity_max": metrics.complexity_max,
    }


TEST_FOLDERS = ("tests/contract", "tests/integration")
NOT_STORE_TESTS = re.compile(r"coordinator|etcd")
"""Test files of the coordinators: their ``[redis]`` items test RedisCoordinator, not a store."""
COLLECT_TIMEOUT_S = 300.0
CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


def _backend_named(text: str, backends: Iterable[str]) -> str | None:
    """The backend that ``text`` (a parameter id or a file stem) names, if any."""
    parts = set(re.split(r"[-_\[\]]", text.replace("sqlite-legacy", "sqlite")))
    found = [backend for backend in backends if backend in parts]
    return found[0] if len(found) == 1 else None


def store_of_test(node_id: str, backends: Iterable[str]) -> str | None:
    """The store a collected test item exercises, or None (see :func:`count_store_tests`)."""
    path, _, rest = node_id.partition("::")
    stem = Path(path).stem
    if NOT_STORE_TESTS.search(stem):
        return None
    chosen = tuple(backends)
    _, _, params = rest.partition("[")
    return _backend_named(params, chosen) or _backend_named(stem, chosen)


def _collected_node_ids(root: Path) -> list[str]:
    folders = [folder for folder in TEST_FOLDERS if (root / folder).is_dir()]
    if not folders:
        raise ConfigError(f"no test suite beside the package (looked in {root})")
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    try:
        done = subprocess.run(
            [*command, *folders],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=COLLECT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"could not collect the tests: {exc}") from None
    if done.returncode != 0:
        raise ConfigError(f"collecting the tests failed: {scrub(done.stdout[-500:])}")
    return [line.strip() for line in done.stdout.splitlines() if "::" in line]


def count_store_tests(root: Path = CHECKOUT_ROOT) -> Counter[str]:
    """Collected contract and integration test items per store backend.

    Runs ``pytest --collect-only -q tests/contract tests/integration`` in a
    subprocess and attributes each node id to a backend: by its parameter id
    (``test_claim[postgres]``; ``sqlite-legacy`` counts as sqlite, the same
    module), else by its file name (``test_mysql_store.py``). Coordinator
    test files (``coordinator`` or ``etcd`` in the name) are left out, and so
    is an item that names no backend or more than one.
    """
    backends = tuple(store_modules())
    stores = (store_of_test(node_id, backends) for node_id in _collected_node_ids(root))
    return Counter(store for store in stores if store is not None)


@dataclass(frozen=True, slots=True)
class Durability:
    """Tasks lost after crashes of one backend at its default durable setting, and a note
    listing every setting's figure (NaN when the default setting has no saved run)."""

    lost: float
    note: str


FAULT_SERVERS = {"mysql": "mariadb"}
"""Backends whose crash experiments name their server otherwise (``faults --server``)."""


def default_setting(backend: str) -> str | None:
    """The durability setting a store runs with unless told otherwise (faults' DEFAULT_SETTINGS).

    SQLite ``normal`` (the store's default ``synchronous``), PostgreSQL and
    MariaDB their servers' defaults, Redis ``aof-everysec`` (the persistence
    its documentation recommends); None for a store that has no setting (memory).
    """
    from taskbench.faults.servers import DEFAULT_SETTINGS

    return DEFAULT_SETTINGS.get(FAULT_SERVERS.get(backend, backend))


def _latest_run(rows: pd.DataFrame) -> pd.DataFrame:
    newest = rows.sort_values(["recorded_at", "run_id"]).iloc[-1]["run_id"]
    return rows[rows["run_id"] == newest]


def _durability(backend: str, rows: pd.DataFrame) -> Durability:
    """The median ``lost`` of the latest run of the backend's default setting; all in the note."""
    settings = rows["setting"].fillna("-") if "setting" in rows else pd.Series("-", rows.index)
    lost = {
        str(setting): float(_latest_run(group)["lost"].astype(float).median())
        for setting, group in rows.groupby(settings)
    }
    shown = ", ".join(f"{setting} {value:g}" for setting, value in sorted(lost.items()))
    chosen = default_setting(backend)
    note = (
        f"durability (lost after crashes, latest run per setting; scored: the default "
        f"setting, {chosen or 'none'}): {shown}"
    )
    return Durability(lost.get(chosen, math.nan) if chosen else math.nan, note)


def saved_durability(directory: str | os.PathLike[str] | None = None) -> dict[str, Durability]:
    """Per backend, from the saved ``crash`` runs (columns ``store``, ``lost``, ``setting``).

    Each setting's figure is the median ``lost`` over the rows of its latest
    run; the backend's figure is its default setting's (:func:`default_setting`),
    NaN if that setting has no saved run, and the note lists every setting.
    """
    runs = load_runs(directory, kind="crash")
    if runs.empty or not {"store", "lost"} <= set(runs.columns):
        return {}
    runs = runs.assign(backend=runs["store"].map(_backend_or_none)).dropna(subset=["backend"])
    return {
        str(backend): _durability(str(backend), rows) for backend, rows in runs.groupby("backend")
    }


def _backend_or_none(url: object) -> str | None:
    try:
        return backend_of(str(url))
    except ConfigError:
        return None


# -- a place of its own on each server -------------------------------------------------

SCRATCH_PREFIX = "tb_scorecard_"
SCAN_BATCH = 1_000


def _scratch_name() -> str:
    return f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"


def with_option(url: str, name: str, value: str) -> str:
    """``url`` with query option ``name`` set to ``value`` (replacing any it had)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    return urlunsplit(parts._replace(query=urlencode([*query, (name, value)])))


def _without_query(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query="", fragment=""))


def _admin_error(url: str, exc: Exception, password: str = "") -> StoreUnavailableError:
    message = scrub(f"{type(exc).__name__}: {exc}")
    if password:
        message = message.replace(password, "***")
    return StoreUnavailableError(f"cannot prepare a scratch place on {redact(url)}: {message}")


async def _drop_postgres_schema(url: str, schema: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_without_query(url))
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


async def _delete_redis_prefix(url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(_without_query(url))
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=SCAN_BATCH)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def _mysql_execute(url: str, statement: str) -> None:
    import pymysql

    parts = urlsplit(url)
    password = unquote(parts.password or "")
    try:
        connection = pymysql.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or MYSQL_PORT,
            user=unquote(parts.username or "root"),
            password=password,
            autocommit=True,
            connect_timeout=10,
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()
    except pymysql.err.Error as exc:
        raise _admin_error(url, exc, password) from None


def _mysql_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def _sqlite_file(url: str, folder: str) -> str:
    """``url``'s options on a file in ``folder`` (an in-memory database stays in memory)."""
    parts = urlsplit(url)
    if parts.path in ("", "/", "/:memory:"):
        return url
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}:///{Path(folder).resolve() / 'scorecard.db'}{query}"


async def _cleanup(what: str, cleanup: Awaitable[None]) -> None:
    """Run a cleanup; a failure is logged, not raised (the figures are measured by then)."""
    try:
        await cleanup
    except Exception as exc:
        log.warning("could not remove %s: %s", what, scrub(f"{type(exc).__name__}: {exc}"))


@contextlib.asynccontextmanager
async def scratch_url(backend: str, url: str) -> AsyncIterator[str]:
    """A URL on ``url``'s server that no one else uses, removed when the block ends."""
    name = _scratch_name()
    if backend == "postgres":
        try:
            yield with_option(url, "schema", name)
        finally:
            await _cleanup(f"schema {name}", _drop_postgres_schema(url, name))
    elif backend == "redis":
        try:
            yield with_option(url, "prefix", f"{name}:")
        finally:
            await _cleanup(f"keys {name}:*", _delete_redis_prefix(url, f"{name}:"))
    elif backend == "mysql":
        await asyncio.to_thread(
            _mysql_execute, url, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"
        )
        try:
            yield _mysql_database(url, name)
        finally:
            drop = asyncio.to_thread(_mysql_execute, url, f"DROP DATABASE IF EXISTS `{name}`")
            await _cleanup(f"database {name}", drop)
    elif backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX) as folder:
            yield _sqlite_file(url, folder)
    else:
        yield url


# -- what is measured on a reachable store ---------------------------------------------


def nearest_rank(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending list."""
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


async def round_trips_ms(url: str, *, backlog: int, samples: int) -> list[float]:
    """``samples`` claim(1)+finish round trips (ms, ascending) behind ``backlog`` queued tasks."""
    async with open_store(url) as store:
        await store.purge()
        try:
            await fill(store, backlog)
            await warm_up(store)
            durations = [await time_round_trip(store) for _ in range(samples)]
        finally:
            await store.purge()
    return sorted(d * 1000.0 for d in durations)


def _median_by_value(sweep: pd.DataFrame, column: str = "drain_tps") -> pd.Series:
    return sweep.groupby("value")[column].median()


async def _performance(url: str, plan: Plan) -> dict[str, Any]:
    options = Sweep(repeats=plan.repeats, progress=False)
    sweep = await sweep_concurrency(url, plan.concurrency, tasks=plan.tasks, options=options)
    latency = await round_trips_ms(url, backlog=plan.backlog, samples=plan.samples)
    return {
        "throughput_tps": float(_median_by_value(sweep)[plan.headline_concurrency]),
        "scalability_slope": scaling_slope(sweep),
        "latency_p50_ms": nearest_rank(latency, 0.50),
        "latency_p99_ms": nearest_rank(latency, 0.99),
        "consistency_errors": int((sweep["lost"] + sweep["duplicates"]).sum()),
    }


async def _process_speedup(url: str, plan: Plan) -> tuple[float, int]:
    """Aggregate throughput with the most processes over the fewest; and tasks lost."""
    options = Sweep(repeats=plan.repeats, progress=False)
    sweep = await sweep_processes(
        url,
        plan.processes,
        tasks=plan.tasks,
        concurrency=plan.headline_concurrency,
        options=options,
    )
    medians = _median_by_value(sweep)
    return float(medians.iloc[-1] / medians.iloc[0]), int(sweep["lost"].sum())


def _per_1k(value: float | None, tasks: int) -> float:
    return math.nan if value is None else value * 1000.0 / tasks


def _growth(peak_mb: float | None, before_mb: float | None) -> float | None:
    return None if peak_mb is None or before_mb is None else peak_mb - before_mb


async def _resources(url: str, plan: Plan, embedded: bool, notes: list[str]) -> dict[str, Any]:
    """Worker and server CPU seconds and memory growth per 1,000 tasks, from one drain alone."""
    run = await measure_alone(url, tasks=plan.resource_tasks, concurrency=plan.headline_concurrency)
    usage = run.drain.get("resources") or {}
    tasks = plan.resource_tasks
    values = {
        "cpu_s_per_1k": _per_1k(usage.get("bench_cpu_s"), tasks),
        "rss_mb_per_1k": _per_1k(_growth(usage.get("bench_peak_rss_mb"), run.rss_before_mb), tasks),
        "consistency_errors": run.drain["lost"] + (run.drain["duplicates"] or 0),
    }
    if embedded:
        return values | {"server_cpu_s_per_1k": 0.0, "server_rss_mb_per_1k": 0.0}
    if usage.get("server_cpu_s") is None:
        notes.append(f"server resources: {usage.get('server_note') or 'not measured'}")
    server_growth = _growth(usage.get("server_peak_rss_mb"), run.server_rss_before_mb)
    return values | {
        "server_cpu_s_per_1k": _per_1k(usage.get("server_cpu_s"), tasks),
        "server_rss_mb_per_1k": _per_1k(server_growth, tasks),
    }


Step = Callable[[str], None]


async def _measure(url: str, plan: Plan, step: Step) -> tuple[dict[str, Any], list[str]]:
    """Every measured column of one reachable store (in its scratch place), and notes."""
    notes: list[str] = []
    capabilities = open_store(url).capabilities
    step("throughput and latency")
    values = await _performance(url, plan)
    if Capability.MULTI_PROCESS in capabilities:
        step("worker processes")
        values["process_speedup"], lost = await _process_speedup(url, plan)
        values["consistency_errors"] += lost
    else:
        notes.append("process_speedup: the store lives in one process")
    step("resources")
    embedded = Capability.MULTI_HOST not in capabilities
    resources = await _resources(url, plan, embedded, notes)
    values["consistency_errors"] += resources.pop("consistency_errors")
    return values | resources, notes


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: str
    values: dict[str, Any]
    notes: list[str]


async def _measured(url: str, backend: str, plan: Plan, step: Step) -> _Outcome:
    """The measured columns, or the reason there are none (never raises a TaskbenchError)."""
    try:
        async with scratch_url(backend, url) as place:
            values, notes = await _measure(place, plan, step)
    except MissingDependencyError as exc:
        return _Outcome("missing driver", {}, [scrub(str(exc))])
    except StoreUnavailableError as exc:
        return _Outcome("unreachable", {}, [scrub(str(exc))])
    except TaskbenchError as exc:
        return _Outcome("failed", {}, [scrub(f"{type(exc).__name__}: {exc}")])
    return _Outcome("measured", values, notes)


# -- one row per store -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Shared:
    """What every row reads: the plan, the test counts and the saved crash results."""

    plan: Plan
    tests: Counter[str] | str
    """Counts per backend, or why they could not be had."""
    durability: dict[str, Durability] | str


def _static_columns(
    backend: str, capabilities: Capability | None, shared: _Shared
) -> tuple[dict[str, Any], list[str]]:
    """Columns that need no server: capabilities, setup, code, tests, durability."""
    values: dict[str, Any] = _code_columns(backend)
    notes: list[str] = []
    if capabilities is not None:
        values |= _capability_columns(capabilities) | _setup_columns(backend, capabilities)
    if isinstance(shared.tests, str):
        notes.append(f"tests: {shared.tests}")
    else:
        values["tests"] = shared.tests.get(backend, 0)
    if isinstance(shared.durability, str):
        notes.append(f"durability: {shared.durability}")
    elif backend in shared.durability:
        values["durability_lost"] = shared.durability[backend].lost
        notes.append(shared.durability[backend].note)
    else:
        notes.append("durability: no saved crash run for this store yet")
    return values, notes


async def _row(name: str, url: str | None, shared: _Shared, step: Step) -> dict[str, Any]:
    backend = backend_of(url) if url is not None else name
    try:
        capabilities: Capability | None = _capabilities(url, backend)
    except MissingDependencyError:
        capabilities = None
    values, notes = _static_columns(backend, capabilities, shared)
    if url is None:
        outcome = _Outcome("not configured", {}, [f"{SERVER_VARIABLES[backend]} is not set"])
    else:
        outcome = await _measured(url, backend, shared.plan, step)
    row = {"store": name, "backend": backend, "url": redact(url) if url else None}
    notes = [*outcome.notes, *notes]
    return row | values | outcome.values | {"status": outcome.status, "notes": "; ".join(notes)}


def _check_stores(stores: Mapping[str, str | None]) -> None:
    """Every URL names a known backend; a missing URL is allowed only for a server store."""
    for name, url in stores.items():
        if url is None and name not in SERVER_VARIABLES:
            raise ConfigError(f"store {name!r} has no URL")
        if url is not None:
            backend_of(url)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).set_index("store")
    return frame.reindex(columns=list(COLUMNS))


def _tests_or_reason() -> Counter[str] | str:
    try:
        return count_store_tests()
    except TaskbenchError as exc:
        return str(exc)


def _durability_or_reason(directory: str | os.PathLike[str] | None) -> dict[str, Durability] | str:
    try:
        return saved_durability(directory)
    except TaskbenchError as exc:
        return scrub(str(exc))


def _show_step(bar: Any, name: str, what: str) -> None:
    bar.set_postfix_str(f"{name}: {what}")


async def measure_scorecard(
    stores: Mapping[str, str | None] | None = None,
    *,
    fast: bool = False,
    plan: Plan | None = None,
    directory: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """:func:`scorecard`, as a coroutine (``await`` it in Jupyter or in a running loop)."""
    chosen = default_stores() if stores is None else dict(stores)
    _check_stores(chosen)
    shared = _Shared(
        plan=plan or (FAST if fast else FULL),
        tests=_tests_or_reason(),
        durability=_durability_or_reason(directory),
    )
    from tqdm.auto import tqdm

    rows = []
    with tqdm(
        total=len(chosen), desc="scorecard", unit="store", disable=not show_progress(progress)
    ) as bar:
        for name, url in chosen.items():
            rows.append(await _row(name, url, shared, functools.partial(_show_step, bar, name)))
            bar.update(1)
    return _frame(rows)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to the end, in a thread of its own when a loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorecard") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def scorecard(
    stores: Mapping[str, str | None] | None = None,
    *,
    fast: bool = False,
    plan: Plan | None = None,
    directory: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """The report's criteria measured for each store: one row per store (see the module docstring).

    ``stores`` maps a row name to a store URL (default: :func:`default_stores`;
    a server store whose URL is None gets a "not configured" row). ``fast``
    picks the :data:`FAST` plan instead of :data:`FULL`; ``plan`` overrides
    both. ``directory`` is where saved ``crash`` results are read from.
    Raises ConfigError for a malformed URL or an unknown scheme; any other
    failure of a store is its row's ``status`` and ``notes``.
    """
    return _run(
        measure_scorecard(stores, fast=fast, plan=plan, directory=directory, progress=progress)
    )


def side_by_side(card: pd.DataFrame) -> pd.DataFrame:
    """The report's words beside a few measured columns, for each store the report rated."""
    measured = [
        "throughput_tps",
        "latency_p50_ms",
        "durability_lost",
        "complexity_mean",
        "setup_steps",
    ]
    rated = card[card["backend"].isin(REPORT_SERVICE)]
    words = REPORT_TABLE.loc[[REPORT_SERVICE[b] for b in rated["backend"]], list(REPORT_COLUMNS)]
    words.index = rated.index
    return pd.concat({"report": words, "measured": rated[measured]}, axis=1)


def report_rating(backend: str, criterion: str) -> str | None:
    """The report's word for ``backend`` under ``criterion`` (None: it did not rate it)."""
    service = REPORT_SERVICE.get(backend)
    return None if service is None else str(REPORT_TABLE.loc[service, criterion])


def by_criterion(card: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per heading of :data:`CRITERIA`, its measured columns with the report's word first."""
    tables = {}
    for criterion, columns in CRITERIA.items():
        words = [report_rating(str(b), criterion) for b in card["backend"]]
        report = pd.Series(words, index=card.index, name="report", dtype=object)
        tables[criterion] = pd.concat([report, card[list(columns)]], axis=1)
    return tables


async def _reach(name: str, url: str) -> None:
    backend = backend_of(url)
    try:
        async with scratch_url(backend, url) as place, open_store(place):
            pass
    except TaskbenchError as exc:
        raise type(exc)(f"store {name!r}: {scrub(str(exc))}") from None


async def check_reachable(stores: Mapping[str, str | None]) -> None:
    """Open each configured store in a scratch place and close it again, before measuring.

    Raises the store's StoreUnavailableError (or MissingDependencyError, ...)
    naming the row, so a long scorecard does not fail minutes in.
    """
    _check_stores(stores)
    for name, url in stores.items():
        if url is not None:
            await _reach(name, url)
