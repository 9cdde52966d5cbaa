"""The study: what the chapter notebooks need beyond the benchmarks, and running them as a report.

The notebooks under ``notebooks/`` (one per chapter, ``NN_name.ipynb``) walk
through the "Task Package Services Benchmark Report". This module owns:

* **A chapter's session** (:func:`start` -> :class:`Session`): the size it
  runs at (``fast`` for CI, ``default``, ``full``), the stores it may use, and
  :meth:`Session.measure`, which runs a measurement on the *live* service
  when its URL is set and the server answers, and otherwise reads the
  committed *reference* result from ``data/reference/`` (labelled with the
  machine and date that produced it). It always prints which it used.
* **Scratch namespaces** on shared servers (:func:`scratch_url`): a
  PostgreSQL schema, a MySQL database, a Redis key prefix of the study's own,
  dropped afterwards; nothing else on the server is touched.
* **Measurements no benchmark module offers**: the claim query's SQLite plan,
  the indexes each store really has, claim round trips under a backlog,
  high-priority latency under a backlog, a rate-limited downstream, tasks
  under injected failures, the cost of the executor's metrics, tests per
  module; and thin wrappers for experiments that live elsewhere (a CLI
  command's JSON, a crash experiment). Each returns plain JSON data, so it
  can be stored as a reference.
* **The recommendation** (:func:`recommend`, :func:`impact_of`): section 1.7
  of the report redone from the chapters' summaries.
* **Running the report** (:func:`run_study`): every notebook through
  papermill into an output folder, an HTML page per chapter (nbconvert, with
  plotly.js embedded once per page and no other script to fetch, so the
  report works offline), one ``index.html``, and :func:`check_report`, which
  opens the pages in headless Chromium and checks every figure drew.

Design rules:

* **Paths come from the package**, never from the working directory.
* **Chapters are discovered**, not listed: a notebook named ``NN_slug.ipynb``
  in ``notebooks/`` is a chapter; its first heading is its title.
* **No password is shown or stored**: URLs are printed redacted and reference
  files are scrubbed.
* Notebook machinery (papermill, nbconvert, plotly, ipywidgets) and server
  drivers are imported inside the functions that use them; a missing one
  names its ``pip install 'taskbench[...]'`` line.

The sections below follow that list; each could be a module of its own
(sessions and references, experiments, recommendation, report, browser).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import html
import importlib.util
import itertools
import json
import logging
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import taskbench
from taskbench.bench import backlog as backlog_bench
from taskbench.bench.environment import git_state, machine, requires_extra, scrub
from taskbench.errors import BenchmarkError, ConfigError, StoreUnavailableError, TaskbenchError
from taskbench.executor import TaskExecutor
from taskbench.faults.etcd import EtcdCluster, find_etcd
from taskbench.model import RetryPolicy, Task, TaskPriority, TaskStatus
from taskbench.ratelimit import RateLimit, TokenBucket
from taskbench.stores import TaskStore, open_store
from taskbench.urls import redact

CHECKOUT_ROOT = Path(taskbench.__file__).resolve().parents[1]
NOTEBOOKS_DIR = CHECKOUT_ROOT / "notebooks"
REFERENCE_DIR = CHECKOUT_ROOT / "data" / "reference"
DEFAULT_OUTPUT_DIR = CHECKOUT_ROOT / "reports"
CHAPTER_FILE = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")
MARKDOWN_MARKS = re.compile(r"[*`]")
"""Emphasis and code marks, dropped from an abstract shown as plain text."""

SIZES = ("fast", "default", "full")
EMBEDDED = ("memory", "sqlite", "sqlite-legacy")
SERVER_VARIABLES = {
    "postgres": "TASKBENCH_TEST_POSTGRES_URL",
    "redis": "TASKBENCH_TEST_REDIS_URL",
    "mysql": "TASKBENCH_TEST_MYSQL_URL",
}
"""Server backends, and the environment variable that gives each one's URL."""
ETCD_VARIABLE = "TASKBENCH_TEST_ETCD_URL"
PROBE_TIMEOUT_S = 5.0
KERNEL = "python3"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
RENDER_BUDGET_MS = 5_000
"""Chromium's virtual time for a page's scripts to run before its DOM is read."""
SCREENSHOT_SIZE = (1280, 14_000)
"""Tall enough for the longest chapter: Chromium's --screenshot takes the window only."""

JSON = Any
"""Plain JSON data: what a measurement returns and a reference file stores."""
Measure = Callable[[str], Awaitable[JSON]]

__all__ = [
    "Session",
    "Sourced",
    "chapters",
    "check_report",
    "run_study",
    "scratch_url",
    "start",
]


def study_paths_exist() -> None:
    """Raise ConfigError unless taskbench runs from a checkout that holds the notebooks."""
    if not NOTEBOOKS_DIR.is_dir():
        raise ConfigError(
            f"the study needs a checkout of taskbench: no notebooks in {NOTEBOOKS_DIR}"
        )


def pick_size(fast: bool, full: bool) -> str:
    """``fast``, ``full`` or ``default``; ConfigError if both flags are set."""
    if fast and full:
        raise ConfigError("a chapter runs either FAST or FULL, not both")
    return "fast" if fast else "full" if full else "default"


# -- live services or committed reference results ------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """One store backend a chapter may measure, and whether it runs live."""

    name: str
    url: str | None
    """The URL to measure on (embedded) or the server's base URL; None when not set."""
    live: bool
    note: str
    """Why it is (not) live, with any URL redacted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Sourced:
    """A measurement's value and where it came from: ``live`` or ``reference``."""

    backend: str
    value: JSON
    source: str
    recorded: str
    """For a reference: its date and machine; for a live value: ``this run``."""

    @property
    def label(self) -> str:
        """The backend's name for a figure, marked when the value is a reference."""
        return self.backend if self.source == "live" else f"{self.backend} (reference)"


def machine_label(meta: Mapping[str, Any]) -> str:
    """``2025-11-29, Intel Xeon (2 CPUs), commit 1a2b3c4`` from a reference's metadata."""
    box = meta.get("machine", {})
    commit = (meta.get("git", {}).get("commit") or "unknown")[:7]
    return (
        f"{str(meta.get('recorded_at', '?'))[:10]}, {box.get('cpu_model', '?')} "
        f"({box.get('cpu_count', '?')} CPUs), {meta.get('size', '?')} size, commit {commit}"
    )


@dataclass(frozen=True, slots=True)
class References:
    """The committed reference results: ``<directory>/<chapter>/<name>.<backend>.json``,
    and each chapter's summary as ``<directory>/summaries/<chapter>.json``."""

    directory: Path = REFERENCE_DIR

    def path(self, chapter: str, name: str, backend: str) -> Path:
        return self.directory / chapter / f"{name}.{backend}.json"

    def save(self, chapter: str, name: str, backend: str, value: JSON, size: str) -> Path:
        """Write a live value as the reference for (chapter, name, backend), with its label."""
        path = self.path(chapter, name, backend)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {key: machine()[key] for key in ("cpu_model", "cpu_count", "os")},
            "git": git_state(),
            "size": size,
        }
        text = json.dumps({"meta": meta, "value": value}, indent=1, sort_keys=True)
        path.write_text(scrub(text) + "\n", encoding="utf-8")
        return path

    def load(self, chapter: str, name: str, backend: str) -> Sourced | None:
        """The reference for (chapter, name, backend), or None if there is none."""
        path = self.path(chapter, name, backend)
        if not path.is_file():
            return None
        stored = json.loads(path.read_text(encoding="utf-8"))
        recorded = machine_label(stored["meta"])
        return Sourced(
            backend=backend, value=stored["value"], source="reference", recorded=recorded
        )

    def summary_path(self, chapter: str) -> Path:
        return self.directory / "summaries" / f"{chapter}.json"


def _with_query(url: str, **options: str) -> str:
    parts = urlsplit(url)
    extra = "&".join(f"{key}={value}" for key, value in options.items())
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def _without_query(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query="", fragment=""))


def _server_failure(backend: str, url: str, error: BaseException) -> StoreUnavailableError:
    reason = scrub(f"{type(error).__name__}: {error}")
    return StoreUnavailableError(f"{backend} at {redact(url)} is not usable: {reason}")


async def _drop_postgres_schema(base: str, schema: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_without_query(base), timeout=PROBE_TIMEOUT_S)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


async def _delete_redis_prefix(base: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(_without_query(base), socket_timeout=PROBE_TIMEOUT_S)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def _mysql_admin(base: str, statement: str) -> None:
    import pymysql

    parts = urlsplit(base)
    connection = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        connect_timeout=int(PROBE_TIMEOUT_S),
        autocommit=True,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


@contextlib.asynccontextmanager
async def scratch_url(backend: str, base: str) -> AsyncIterator[str]:
    """A URL on the server at ``base`` that only this block uses, dropped when it ends.

    PostgreSQL: a new schema (``?schema=``); Redis: a new key prefix; MySQL: a
    new database named ``tb_study_*`` (the server user must be allowed to
    create it). Driver failures become StoreUnavailableError (URL redacted).
    """
    token = f"tb_study_{uuid.uuid4().hex[:10]}"
    try:
        if backend == "mysql":
            await asyncio.to_thread(_mysql_admin, base, f"CREATE DATABASE `{token}`")
    except Exception as exc:
        raise _server_failure(backend, base, exc) from None
    try:
        yield _scratch_of(backend, base, token)
    finally:
        await _drop_scratch(backend, base, token)


def _scratch_of(backend: str, base: str, token: str) -> str:
    if backend == "postgres":
        return _with_query(base, schema=token)
    if backend == "redis":
        return _with_query(base, prefix=f"{token}:")
    if backend == "mysql":
        return urlunsplit(urlsplit(base)._replace(path=f"/{token}"))
    raise ConfigError(f"no scratch namespace for {backend!r}; known: {', '.join(SERVER_VARIABLES)}")


async def _drop_scratch(backend: str, base: str, token: str) -> None:
    try:
        if backend == "postgres":
            await _drop_postgres_schema(base, token)
        elif backend == "redis":
            await _delete_redis_prefix(base, f"{token}:")
        elif backend == "mysql":
            await asyncio.to_thread(_mysql_admin, base, f"DROP DATABASE IF EXISTS `{token}`")
    except Exception as exc:
        raise _server_failure(backend, base, exc) from None


async def _ping(backend: str, base: str) -> None:
    """One round trip to the server with its admin connection (driver errors propagate)."""
    if backend == "postgres":
        import asyncpg

        connection = await asyncpg.connect(_without_query(base), timeout=PROBE_TIMEOUT_S)
        await connection.close()
    elif backend == "redis":
        import redis.asyncio as aioredis

        client = aioredis.from_url(_without_query(base), socket_timeout=PROBE_TIMEOUT_S)
        try:
            await client.ping()
        finally:
            await client.aclose()
    elif backend == "mysql":
        await asyncio.to_thread(_mysql_admin, base, "SELECT 1")


async def probe(backend: str, base: str) -> str | None:
    """None if the server at ``base`` answers within the timeout; else why not (redacted)."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await _ping(backend, base)
    except Exception as exc:  # any failure means "not usable": report it, never raise
        return scrub(f"{type(exc).__name__}: {exc}")
    return None


async def find_backends(
    servers: Mapping[str, str | None] | None, scratch_dir: Path
) -> dict[str, Backend]:
    """The embedded backends (always live) and each server backend, probed."""
    found = {
        "memory": Backend(name="memory", url="memory://", live=True, note="embedded"),
        "sqlite": Backend(name="sqlite", url=None, live=True, note=f"embedded, in {scratch_dir}"),
        "sqlite-legacy": Backend(
            name="sqlite-legacy", url=None, live=True, note="embedded, profile=legacy"
        ),
    }
    for backend, variable in SERVER_VARIABLES.items():
        url = (servers or {}).get(backend) or os.environ.get(variable)
        if not url:
            found[backend] = Backend(name=backend, url=None, live=False, note=f"{variable} not set")
            continue
        problem = await probe(backend, url)
        note = redact(url) if problem is None else f"{redact(url)} not reachable: {problem}"
        found[backend] = Backend(name=backend, url=url, live=problem is None, note=note)
    return found


# -- a chapter's session ---------------------------------------------------------------------


def _live(backend: str, value: JSON) -> Sourced:
    return Sourced(backend=backend, value=value, source="live", recorded="this run")


@dataclass(slots=True, kw_only=True)
class Session:
    """One chapter's run: its size, its backends, its measurements and its summary."""

    chapter: str
    size: str
    output_dir: Path
    refresh: bool
    backends: dict[str, Backend]
    scratch_dir: Path
    references: References = field(default_factory=References)
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    etcd: EtcdCluster | None = None

    def etcd_url(self, given: str | None = None) -> str | None:
        """An etcd to measure on: ``given``, else ``$TASKBENCH_TEST_ETCD_URL``, else one
        throwaway member this session starts (stopped when the kernel exits) if the etcd
        binary is installed; None when there is none (the chapter shows references)."""
        url = given or os.environ.get(ETCD_VARIABLE)
        if url or find_etcd() is None:
            return url
        if self.etcd is None:
            self.etcd = EtcdCluster(self.scratch_dir / "etcd").start()
            atexit.register(self.etcd.stop)
            print(f"  etcd           live: a throwaway member on {self.etcd.endpoints}")
        return self.etcd.url

    def pick(self, *, fast: Any, default: Any, full: Any) -> Any:
        """The value for this session's size."""
        return {"fast": fast, "default": default, "full": full}[self.size]

    def embedded_url(self, backend: str) -> str:
        """A fresh URL for an embedded backend (a new SQLite file each call)."""
        if backend == "memory":
            return "memory://"
        path = self.scratch_dir / f"{backend}-{uuid.uuid4().hex[:8]}.db"
        legacy = "?profile=legacy" if backend == "sqlite-legacy" else ""
        if backend in ("sqlite", "sqlite-legacy"):
            return f"sqlite:///{path}{legacy}"
        raise ConfigError(f"{backend!r} is not embedded; embedded: {', '.join(EMBEDDED)}")

    async def measure(self, name: str, backend: str, measure: Measure) -> Sourced | None:
        """``measure(url)`` on ``backend`` live, else its reference; None if neither exists.

        Embedded backends always run live, on a fresh store. A live server
        runs in a scratch namespace of its own; with ``refresh`` its value
        becomes the committed reference.
        """
        found = self.backends[backend]
        if backend in EMBEDDED:
            return self._record(name, _live(backend, await measure(self.embedded_url(backend))))

        async def in_scratch() -> JSON:
            assert found.url is not None
            async with scratch_url(backend, found.url) as url:
                return await measure(url)

        return await self.measure_if(name, backend, found.live, in_scratch)

    async def measure_if(
        self, name: str, key: str, available: bool, measure: Callable[[], Awaitable[JSON]]
    ) -> Sourced | None:
        """``measure()`` when ``available`` (with ``refresh``, saved as the reference
        for ``key``), else the reference for ``key``; None if there is none."""
        if not available:
            return self._reference(name, key)
        value = await measure()
        if self.refresh:
            self.references.save(self.chapter, name, key, value, self.size)
        return self._record(name, _live(key, value))

    async def measure_together(
        self,
        name: str,
        backends: Iterable[str],
        measure_all: Callable[[dict[str, str]], Awaitable[Mapping[str, JSON]]],
    ) -> dict[str, Sourced]:
        """One call measures every live backend: ``measure_all({backend: url})``.

        For measurements that share set-up between stores (the scorecard). The
        server URLs are the servers' own, so ``measure_all`` must keep to a
        namespace of its own there. Backends not live come from their references.
        """
        chosen = list(backends)
        live = {b: self._live_url(b) for b in chosen if self.backends[b].live}
        values = await measure_all(live) if live else {}
        results: dict[str, Sourced] = {}
        for backend in chosen:
            if backend in values:
                if self.refresh and backend not in EMBEDDED:
                    self.references.save(self.chapter, name, backend, values[backend], self.size)
                results[backend] = self._record(name, _live(backend, values[backend]))
            elif backend not in live and (reference := self._reference(name, backend)):
                results[backend] = reference
        return results

    def _live_url(self, backend: str) -> str:
        url = self.backends[backend].url
        return self.embedded_url(backend) if backend in EMBEDDED or url is None else url

    def _reference(self, name: str, backend: str) -> Sourced | None:
        reference = self.references.load(self.chapter, name, backend)
        if reference is None:
            print(f"  {name} on {backend}: not live and no reference results: left out")
            return None
        print(f"  {name} on {backend}: reference results ({reference.recorded})")
        return self._record(name, reference)

    async def measure_each(
        self, name: str, backends: Iterable[str], measure: Measure
    ) -> dict[str, Sourced]:
        """:meth:`measure` on each backend in turn; those with no value are left out."""
        results: dict[str, Sourced] = {}
        for backend in backends:
            sourced = await self.measure(name, backend, measure)
            if sourced is not None:
                results[backend] = sourced
        return results

    def _record(self, name: str, sourced: Sourced) -> Sourced:
        self.sources.setdefault(name, {})[sourced.backend] = sourced.source
        return sourced

    def write_summary(self, values: Mapping[str, Any]) -> Path:
        """Write ``values`` (and the sources used) to ``<output_dir>/<chapter>.json``."""
        summary = {"chapter": self.chapter, "size": self.size, "sources": self.sources, **values}
        text = scrub(json.dumps(summary, indent=1, sort_keys=True, default=str))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / f"{self.chapter}.json"
        path.write_text(text + "\n", encoding="utf-8")
        if self.refresh:
            reference = self.references.summary_path(self.chapter)
            reference.parent.mkdir(parents=True, exist_ok=True)
            reference.write_text(text + "\n", encoding="utf-8")
        return path

    def describe(self) -> str:
        """What this session runs on, one line per backend."""
        box = machine()
        lines = [
            f"chapter {self.chapter}: size {self.size!r} on {box['cpu_model']} "
            f"({box['cpu_count']} CPUs), taskbench {taskbench.__version__}",
        ]
        for backend in self.backends.values():
            how = "live" if backend.live else "reference results"
            lines.append(f"  {backend.name:<14} {how:<18} {backend.note}")
        return "\n".join(lines)


def without_uri_grammar() -> None:
    """Keep jsonschema from importing ``rfc3987_syntax``, which builds a Lark grammar at import
    (about 5 s on this machine, in every kernel and every nbconvert run).

    plotly.io, papermill and nbconvert import nbformat, whose validator imports
    jsonschema; jsonschema uses that package only for its "iri"/"uri" format
    checks, which notebook validation never asks for. A ``None`` entry in
    ``sys.modules`` makes its import fail, and jsonschema then goes without.
    Call this before anything imports jsonschema; afterwards it does nothing.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # blocks it


def use_offline_figures() -> None:
    """Show plotly figures as HTML that carries plotly.js once per page and fetches nothing.

    JupyterLab gets the plotly mime type (interactive); saved notebooks and
    their nbconvert HTML get the HTML, whose first figure embeds plotly.js.
    """
    without_uri_grammar()
    with requires_extra("drawing the study's figures"):
        import plotly.io as pio  # type: ignore[import-untyped]
        from plotly.io.base_renderers import NotebookRenderer  # type: ignore[import-untyped]

    class OfflineHtml(NotebookRenderer):  # type: ignore[misc]
        """The classic notebook renderer without MathJax from a CDN."""

        def to_mimebundle(self, fig_dict: dict[str, Any]) -> dict[str, str]:
            page = pio.to_html(
                fig_dict,
                include_plotlyjs=False,
                include_mathjax=False,
                full_html=False,
                default_width="100%",
                default_height=450,
                validate=False,
            )
            return {"text/html": page}

    pio.renderers["taskbench"] = OfflineHtml()
    pio.renderers.default = "plotly_mimetype+taskbench"


async def start(
    chapter: str,
    *,
    fast: bool = False,
    full: bool = False,
    output_dir: str | os.PathLike[str] | None = None,
    servers: Mapping[str, str | None] | None = None,
    refresh: bool = False,
    reference_dir: str | os.PathLike[str] | None = None,
) -> Session:
    """Open a chapter's session: pick its size, probe the servers, set up figures, print it.

    ``servers`` maps a server backend to its URL (None: its environment
    variable); ``reference_dir`` replaces ``data/reference`` (for tests).
    """
    scratch = Path(tempfile.mkdtemp(prefix=f"taskbench-{chapter}-"))
    session = Session(
        chapter=chapter,
        size=pick_size(fast, full),
        output_dir=Path(output_dir) if output_dir else DEFAULT_OUTPUT_DIR,
        refresh=refresh,
        backends=await find_backends(servers, scratch),
        scratch_dir=scratch,
        references=References(Path(reference_dir)) if reference_dir else References(),
    )
    use_offline_figures()
    print(session.describe())
    return session


def drain_controls(
    session: Session, *, store: str, workload: str, concurrency: int, tasks: int
) -> Any:
    """Widgets (for JupyterLab) to pick a store, a workload, the concurrency and the size,
    and run the quickstart's drain again; the figure appears under the button."""
    with requires_extra("interactive widgets"):
        import ipywidgets as widgets  # type: ignore[import-untyped]
    from taskbench import viz
    from taskbench.bench.drain import run_drain

    pick = widgets.Dropdown(options=list(session.backends), value=store, description="store")
    spec = widgets.Text(value=workload, description="workload")
    slots = widgets.IntSlider(value=concurrency, min=1, max=500, description="concurrency")
    size = widgets.IntSlider(value=tasks, min=100, max=200_000, step=100, description="tasks")
    button = widgets.Button(description="Run", button_style="primary")
    shown = widgets.Output()

    async def drain(url: str) -> JSON:
        done = await run_drain(url, tasks=size.value, concurrency=slots.value, workload=spec.value)
        return done.to_json_dict()

    async def rerun() -> None:
        with shown:
            shown.clear_output()
            measured = await session.measure("drain", pick.value, drain)
            if measured is not None:
                title = f"{size.value:,} tasks on {measured.label}"
                viz.latency_bars(measured.value["latency_ms"], title=title).show()

    button.on_click(lambda _: asyncio.ensure_future(rerun()))
    return widgets.VBox([pick, spec, slots, size, button, shown])


def read_summary(
    chapter: str,
    output_dir: str | os.PathLike[str] | None = None,
    references: References | None = None,
) -> Sourced | None:
    """A chapter's summary from ``output_dir`` (this run), else its committed reference."""
    path = Path(output_dir or DEFAULT_OUTPUT_DIR) / f"{chapter}.json"
    if path.is_file():
        value = json.loads(path.read_text(encoding="utf-8"))
        return Sourced(backend=chapter, value=value, source="live", recorded="this run")
    reference = (references or References()).summary_path(chapter)
    if not reference.is_file():
        return None
    value = json.loads(reference.read_text(encoding="utf-8"))
    recorded = f"committed reference, {value.get('size', '?')} size"
    return Sourced(backend=chapter, value=value, source="reference", recorded=recorded)


# -- measurements the chapters need --------------------------------------------------------


def summarise_ms(values: Sequence[float]) -> dict[str, float]:
    """p50, p95 and max of millisecond values (nearest rank), for a table."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": float("nan"), "p95": float("nan"), "max": float("nan")}

    def rank(fraction: float) -> float:
        return ordered[max(0, round(fraction * len(ordered)) - 1)]

    return {"p50": rank(0.5), "p95": rank(0.95), "max": ordered[-1]}


async def claim_plan(url: str) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of the store's own claim statement, one line per step."""
    from taskbench.stores.sqlite import CLAIM, database_path

    async with open_store(url):  # creates the table (and, unless legacy, the indexes)
        pass
    now = time.time()

    def explain() -> list[str]:
        with contextlib.closing(sqlite3.connect(database_path(url.partition("?")[0]))) as db:
            rows = db.execute("EXPLAIN QUERY PLAN " + CLAIM, (now, "explain", now + 30, 1))
            return [str(row[3]) for row in rows]

    return await asyncio.to_thread(explain)


async def store_indexes(url: str) -> dict[str, list[str]]:
    """The indexes the store at ``url`` really has (name -> columns), from its catalog."""
    async with open_store(url) as store:
        reader = getattr(store, "indexes", None)
        found: dict[str, tuple[str, ...]] = await reader() if reader is not None else {}
    return {name: list(columns) for name, columns in sorted(found.items())}


def index_drift(a: Mapping[str, Sequence[str]], b: Mapping[str, Sequence[str]]) -> int:
    """How many indexes (name and columns) one side has and the other does not."""
    return len({(n, tuple(c)) for n, c in a.items()} ^ {(n, tuple(c)) for n, c in b.items()})


async def claim_round_trips(url: str, backlog: int, samples: int) -> list[float]:
    """Milliseconds of ``samples`` claim(1)+finish round trips with ``backlog`` tasks queued."""
    async with open_store(url) as store:
        await store.purge()
        await backlog_bench.fill(store, backlog)
        await backlog_bench.warm_up(store)
        durations = [await backlog_bench.time_round_trip(store) for _ in range(samples)]
        await store.purge()
    return [seconds * 1000.0 for seconds in durations]


async def _latencies_ms(store: TaskStore, ids: Sequence[str]) -> list[float]:
    tasks = await store.get_many(ids)
    return [1000.0 * ((t.finished_at or t.created_at) - t.created_at) for t in tasks]


async def _enqueue_urgent(
    store: TaskStore, count: int, spacing_s: float, priority: TaskPriority
) -> list[str]:
    """Enqueue ``count`` urgent tasks one by one, ``spacing_s`` apart; their ids."""
    ids = []
    for _ in range(count):
        task = Task.new("work", priority=priority)
        await store.enqueue([task])
        ids.append(task.id)
        await asyncio.sleep(spacing_s)
    return ids


async def priority_latency(
    url: str, *, backlog: int, urgent: int, concurrency: int, work_ms: float, prioritise: bool
) -> dict[str, Any]:
    """Latency of urgent tasks that arrive while a backlog drains: HIGH priority or FIFO.

    ``backlog`` NORMAL tasks are queued, an executor starts, and ``urgent``
    tasks arrive one by one during the first half of the drain, as HIGH
    (``prioritise``) or as NORMAL (plain FIFO). Each task sleeps ``work_ms``.
    """
    drain_s = backlog * work_ms / 1000.0 / concurrency
    async with open_store(url) as store:
        await store.purge()
        await store.enqueue([Task.new("work") for _ in range(backlog)])
        executor = TaskExecutor(store, concurrency=concurrency, poll_interval=0.01)
        executor.register("work", _sleeper(work_ms))
        running = asyncio.create_task(executor.run(until_idle=True))
        level = TaskPriority.HIGH if prioritise else TaskPriority.NORMAL
        ids = await _enqueue_urgent(store, urgent, drain_s / 2 / urgent, level)
        await running
        urgent_ms = await _latencies_ms(store, ids)
        await store.purge()
    return {"prioritise": prioritise, "urgent_ms": urgent_ms, **_ms_stats(urgent_ms)}


def _ms_stats(values: Sequence[float]) -> dict[str, float]:
    return {f"{key}_ms": value for key, value in summarise_ms(values).items()}


def _sleeper(work_ms: float) -> Callable[[Task], Awaitable[None]]:
    async def work(task: Task) -> None:
        await asyncio.sleep(work_ms / 1000.0)

    return work


class Overloaded(Exception):
    """The downstream service refused a call: it is over its capacity."""


class Downstream:
    """A service that accepts ``capacity`` calls a second (a token bucket) and refuses the rest."""

    def __init__(self, capacity: float, burst: float) -> None:
        self._bucket = TokenBucket(RateLimit(capacity, burst=burst))
        self.accepted: list[float] = []
        self.refused: list[float] = []

    def call(self) -> None:
        """Accept the call or raise Overloaded; either way, record when."""
        if self._bucket.wait_time() > 0:
            self.refused.append(time.monotonic())
            raise Overloaded("downstream over capacity")
        self._bucket.take()
        self.accepted.append(time.monotonic())


DOWNSTREAM_RETRY = RetryPolicy(base_delay=0.02, factor=2.0, max_delay=0.5)
TIMELINE_BIN_S = 0.1


async def downstream_run(
    url: str, *, tasks: int, capacity: float, concurrency: int, limit: bool
) -> dict[str, Any]:
    """Drain ``tasks`` calls to a downstream of ``capacity`` calls/s, with or without a limiter.

    Without the limiter the executor calls as fast as it can, the downstream
    refuses the excess, and refused calls are retried with backoff. With it,
    the executor's token bucket paces calls at the downstream's capacity.
    Returns the calls made, refused, the amplification (calls per task done)
    and the accepted and refused calls per TIMELINE_BIN_S bin.
    """
    downstream = Downstream(capacity, burst=max(5.0, capacity / 10))
    started = time.monotonic()
    async with open_store(url) as store:
        await store.purge()
        await store.enqueue([Task.new("call", max_attempts=1000) for _ in range(tasks)])
        executor = TaskExecutor(
            store,
            concurrency=concurrency,
            retry=DOWNSTREAM_RETRY,
            rate_limit=RateLimit(capacity) if limit else None,
            poll_interval=0.01,
        )
        executor.register("call", lambda task: downstream.call())
        stats = await executor.run(until_idle=True)
        await store.purge()
    calls = len(downstream.accepted) + len(downstream.refused)
    return {
        "limit": limit,
        "tasks": tasks,
        "succeeded": stats.succeeded,
        "calls": calls,
        "refused": len(downstream.refused),
        "amplification": calls / max(stats.succeeded, 1),
        "duration_s": time.monotonic() - started,
        "accepted_per_bin": _bins([t - started for t in downstream.accepted], TIMELINE_BIN_S),
        "refused_per_bin": _bins([t - started for t in downstream.refused], TIMELINE_BIN_S),
    }


def _bins(offsets: Sequence[float], width: float) -> list[int]:
    """How many of ``offsets`` (seconds) fall in each ``width``-second bin from 0."""
    counts = Counter(int(offset // width) for offset in offsets)
    return [counts.get(i, 0) for i in range(max(counts, default=-1) + 1)]


async def fault_run(
    url: str, *, tasks: int, failure_rate: float, retry: bool, interrupt_after: int, seed: int
) -> dict[str, Any]:
    """Tasks under injected failures and an interrupted worker: is every task accounted for?

    Each attempt fails with probability ``failure_rate``. A first executor is
    stopped without grace after ``interrupt_after`` successes (its running
    tasks are released), a second one finishes the work. ``retry`` False is
    the report's "before": the first failure is final (dead letters).
    The handler is a plain function, run in threads that cannot be cancelled:
    one still running at the stop may finish after its task was handed back,
    and run again (a duplicate, as at-least-once execution allows).
    """
    chance = random.Random(seed)
    executions: Counter[str] = Counter()
    lock = threading.Lock()  # a plain function runs in the executor's threads

    def flaky(task: Task) -> None:
        with lock:
            failed = chance.random() < failure_rate
            if not failed:
                executions[task.id] += 1
        if failed:
            raise RuntimeError("injected failure")

    policy = RetryPolicy(base_delay=0.001, max_delay=0.01, retry_on=(Exception,) if retry else ())
    with quiet_logs("taskbench.executor"):  # the dead letters are the point, not news
        return await _faults_in(url, tasks, flaky, policy, interrupt_after, executions) | {
            "retry": retry,
            "failure_rate": failure_rate,
        }


@contextlib.contextmanager
def quiet_logs(logger_name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Only ``level`` and above from this logger (``""``: the root, so every logger that
    sets no level of its own) while an experiment fails things on purpose."""
    logger = logging.getLogger(logger_name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


async def _faults_in(
    url: str,
    tasks: int,
    flaky: Callable[[Task], None],
    policy: RetryPolicy,
    interrupt_after: int,
    executions: Counter[str],
) -> dict[str, int]:
    async with open_store(url) as store:
        await store.purge()
        batch = [Task.new("flaky", max_attempts=10) for _ in range(tasks)]
        await store.enqueue(batch)
        await _interrupted_worker(store, flaky, policy, interrupt_after, executions)
        second = _executor(store, flaky, policy)
        await second.run(until_idle=True)
        found = {task.id: task.status for task in await store.get_many([t.id for t in batch])}
        await store.purge()
    return _accounting(batch, found, executions)


def _executor(store: TaskStore, handler: Callable[[Task], None], policy: RetryPolicy) -> Any:
    executor = TaskExecutor(store, concurrency=8, retry=policy, poll_interval=0.01)
    executor.register("flaky", handler)
    return executor


async def _interrupted_worker(
    store: TaskStore,
    handler: Callable[[Task], None],
    policy: RetryPolicy,
    after: int,
    executions: Counter[str],
) -> None:
    """Run an executor until ``after`` tasks ran, then stop it with no grace period."""
    first = _executor(store, handler, policy)
    running = asyncio.create_task(first.run(until_idle=True))
    while not running.done() and sum(executions.values()) < after:
        await asyncio.sleep(0.002)
    await first.stop(grace=0.0)
    await running


def _accounting(
    batch: Sequence[Task], found: Mapping[str, TaskStatus], executions: Counter[str]
) -> dict[str, int]:
    statuses = Counter(found.get(task.id) for task in batch)
    return {
        "tasks": len(batch),
        "succeeded": statuses[TaskStatus.SUCCEEDED],
        "dead": statuses[TaskStatus.DEAD],
        "lost": len(batch) - statuses[TaskStatus.SUCCEEDED] - statuses[TaskStatus.DEAD],
        "duplicates": sum(1 for count in executions.values() if count > 1),
    }


async def interleaved(
    repeats: int, first: Callable[[], Awaitable[float]], second: Callable[[], Awaitable[float]]
) -> tuple[list[float], list[float]]:
    """Run two measurements alternately ``repeats`` times each (so drift hits both alike)."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeats):
        a.append(await first())
        b.append(await second())
    return a, b


async def cli_json(*args: str, timeout: float = 900.0) -> JSON:
    """Run ``taskbench ARGS --json`` in a subprocess and return the JSON object it prints.

    For the experiments whose logic lives in a CLI command (``failover``,
    ``cluster``). A non-zero exit or a timeout raises BenchmarkError with the
    end of the command's stderr, passwords scrubbed.
    """
    command = [sys.executable, "-m", "taskbench.cli", *args, "--json"]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=CHECKOUT_ROOT
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise BenchmarkError(f"taskbench {args[0]} took longer than {timeout:.0f} s") from None
    if process.returncode != 0:
        tail = scrub(err.decode(errors="replace")[-2000:])
        raise BenchmarkError(f"taskbench {args[0]} failed (exit {process.returncode}): {tail}")
    return json.loads(out)


DISTRIBUTED_OPTIONS = {
    "A: etcd election": ("etcd", "leader"),
    "B: Redis election": ("redis", "leader"),
    "leaderless (row locks)": ("redis", "leaderless"),
}
"""The report's distributed options (section 1.2; its option C, a home-made consensus, is
rejected on purpose) and Airflow's leaderless design: label -> (coordinator, mode)."""


async def distributed_option(
    fresh_store: Callable[[], str],
    coordinator_url: str,
    mode: str,
    *,
    workers: int,
    tasks: int,
    kills: int,
    ttl: float,
) -> dict[str, Any]:
    """One distributed option measured: throughput of ``workers`` processes on I/O-bound
    tasks (``taskbench cluster``), then ``kills`` kill -9s under load (``taskbench
    failover``: the leader, or any worker when leaderless). Each on a fresh store."""
    common = ["--coordinator", coordinator_url, "--mode", mode, "--workload", "sleep:20"]
    cluster = await cli_json(
        "cluster", "--store", fresh_store(), *common,
        "--workers", str(workers), "--tasks", str(tasks), "--concurrency", "10",
    )  # fmt: skip
    (run,) = cluster["runs"]
    failover = await cli_json(
        "failover", "--store", fresh_store(), *common,
        "--workers", str(workers), "--tasks", str(tasks), "--kills", str(kills),
        "--ttl", str(ttl),
    )  # fmt: skip
    return {
        "workers": workers,
        "tasks_per_s": run["tasks_per_s"],
        "failover_p50_s": failover["failover_s"]["p50"],
        "failover_max_s": failover["failover_s"]["max"],
        "kills": kills,
        "stale_writes_accepted": failover["stale_writes_accepted"],
        "lost": run["lost"] + failover["lost"],
        "duplicates": run["duplicates"] + failover["duplicates"],
    }


def server_installed(server: str) -> bool:
    """Whether the fault experiments can start a ``server`` of their own on this machine."""
    from taskbench.faults.servers import check_installed

    try:
        check_installed(server)
    except TaskbenchError:
        return False
    return True


async def crash_run(
    server: str,
    setting: str | None,
    *,
    tasks: int,
    worker_kills: int,
    server_kills: int,
    server_restarts: int = 0,
) -> dict[str, Any]:
    """One crash or restart experiment (:mod:`taskbench.faults.crash`) as JSON data.

    ``setting`` None is the server's default durable setting.

    The servers it kills on purpose make the stores and their drivers log
    reconnections: every logger below CRITICAL is held back while it runs.
    """
    from taskbench.faults.crash import CrashPlan, run_experiment

    plan = CrashPlan.create(
        server=server,
        setting=setting,
        tasks=tasks,
        worker_kills=worker_kills,
        server_kills=server_kills,
        server_restarts=server_restarts,
    )
    with quiet_logs("", logging.CRITICAL):  # the root: drivers' loggers (asyncpg.pool...) too
        result = await run_experiment(plan)
    figures: dict[str, Any] = result.to_json_dict()
    return figures


def count_tests(root: Path = CHECKOUT_ROOT) -> list[dict[str, Any]]:
    """Collected tests per test file (``pytest --collect-only``), with their kind."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    files = Counter(line.split("::", 1)[0] for line in done.stdout.splitlines() if "::" in line)
    return [
        {
            "file": path,
            "kind": Path(path).parts[1] if len(Path(path).parts) > 2 else "other",
            "tests": count,
        }
        for path, count in sorted(files.items())
    ]


COVERAGE_TIMEOUT_S = 900


def coverage_by_module(
    test_paths: Sequence[str], root: Path = CHECKOUT_ROOT
) -> list[dict[str, Any]]:
    """Line coverage of each ``taskbench`` module by the tests at ``test_paths``.

    Runs ``coverage run -m pytest`` in a subprocess (a data file of its own in a
    temporary folder), then reads ``coverage json``. One row per module:
    ``module``, ``statements``, ``covered``, ``percent``; empty when coverage or
    pytest is not installed (``pip install 'taskbench[dev]'``). Raises
    BenchmarkError when the tests fail, since a failing suite covers nothing
    worth reporting.
    """
    if not all(importlib.util.find_spec(name) for name in ("coverage", "pytest")):
        return []
    with tempfile.TemporaryDirectory(prefix="taskbench-coverage-") as folder:
        data, report = Path(folder) / ".coverage", Path(folder) / "coverage.json"
        run = [sys.executable, "-m", "coverage", "run", f"--data-file={data}", "--source=taskbench"]
        tests = ["-m", "pytest", "-q", "-p", "no:cacheprovider", *test_paths]
        done = subprocess.run(
            [*run, *tests], cwd=root, capture_output=True, text=True,
            timeout=COVERAGE_TIMEOUT_S, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BenchmarkError(f"the tests under coverage failed:\n{scrub(done.stdout[-2000:])}")
        export = ["json", f"--data-file={data}", "-o", str(report)]
        coverage = [sys.executable, "-m", "coverage"]
        subprocess.run([*coverage, *export], cwd=root, capture_output=True, check=True, timeout=120)
        files = json.loads(report.read_text())["files"]
    rows = [_coverage_row(path, found["summary"]) for path, found in files.items()]
    return sorted((row for row in rows if row["statements"]), key=lambda row: row["module"])


def _coverage_row(path: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    module = Path(path).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
    return {
        "module": module,
        "statements": summary["num_statements"],
        "covered": summary["covered_lines"],
        "percent": round(summary["percent_covered"], 1),
    }


# -- the recommendation, from the chapters' summaries -----------------------------------------

IMPROVEMENTS = (
    ("P1.2 SQLite claim round trip (claim index)", "index", "lower"),
    ("P1.3 distributed throughput, most processes / one", "execution", "higher"),
    ("P2.1 downstream calls per task (rate limit)", "rate_limit", "lower"),
    ("P2.2 urgent task latency (priority)", "priority", "lower"),
    ("P2.3 tasks that succeed under faults (retries)", "faults", "higher"),
    ("P3.1 no-op throughput with metrics recorded", "metrics_cost", "higher"),
)
"""(label, key in the improvements chapter's summary, which direction is better)."""
SERVER_STORES = ("postgres", "mysql", "redis")


def impact_of(improvements: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per improvement measured in chapter 3: its ratio, interval and better direction."""
    rows = []
    for name, key, better in IMPROVEMENTS:
        if key in improvements:
            found = improvements[key]
            ratio = {k: found[k] for k in ("ratio", "ci_low", "ci_high")}
            rows.append({"name": name, **ratio, "better": better})
    return rows


def _tps(compared: Mapping[str, Any], store: str) -> str:
    found = compared["stores"].get(store)
    return f"{found['drain_tps']:,.0f} tasks/s" if found else "n/a"


def _claim(bottlenecks: Mapping[str, Any], store: str) -> str:
    found = bottlenecks.get("claim_p50_ms_at_largest_backlog", {}).get(store)
    return f"claim {found:.2f} ms" if found is not None else "claim n/a"


def _executor_row(compared: Mapping[str, Any], improved: Mapping[str, Any]) -> dict[str, str]:
    ratios = compared["executor_ratios"]
    rate, priority = improved["rate_limit"], improved["priority"]
    return {
        "service": "TaskExecutor",
        "report chose": "keep it; add rate limiting, prioritisation and error handling",
        "measured": (
            f"ours/asyncio x{ratios['noop: taskbench/asyncio']['ratio']:.2f} (no-op), "
            f"x{ratios['sleep:2: taskbench/asyncio']['ratio']:.2f} (sleep:2); ours/threads "
            f"x{ratios['noop: taskbench/threads']['ratio']:.2f}; calls per task "
            f"{rate['amplification_before']:.2f} -> {rate['amplification_after']:.2f} with the "
            f"rate limit; urgent p50 {priority['fifo_p50_ms']:.0f} -> "
            f"{priority['priority_p50_ms']:.0f} ms with priorities"
        ),
        "supported choice": "keep it, with the three features on: each pays for itself",
    }


def _production_row(compared: Mapping[str, Any], bottlenecks: Mapping[str, Any]) -> dict[str, str]:
    servers = [store for store in SERVER_STORES if store in compared["stores"]]
    sql = [store for store in servers if store != "redis"]
    best = max(sql, key=lambda store: compared["stores"][store]["drain_tps"], default=None)
    return {
        "service": "TaskStore for production",
        "report chose": "PostgreSQL",
        "measured": "; ".join(
            f"{store} {_tps(compared, store)}, {_claim(bottlenecks, store)}" for store in servers
        ),
        "supported choice": (
            f"{best}: the faster of the durable, multi-host SQL stores in this run"
            if best
            else "no server store measured"
        ),
    }


def _development_row(compared: Mapping[str, Any], bottlenecks: Mapping[str, Any]) -> dict[str, str]:
    return {
        "service": "TaskStore for development",
        "report chose": "SQLite",
        "measured": (
            f"sqlite {_tps(compared, 'sqlite')}, {_claim(bottlenecks, 'sqlite')}; legacy "
            f"{_tps(compared, 'sqlite-legacy')}, {_claim(bottlenecks, 'sqlite-legacy')}"
        ),
        "supported choice": "SQLite, improved profile: no server, and with the claim index it "
        "no longer slows down as the queue grows",
    }


def _redis_row(compared: Mapping[str, Any], bottlenecks: Mapping[str, Any]) -> dict[str, str]:
    return {
        "service": "TaskStore: Redis",
        "report chose": "a cache layer or temporary storage",
        "measured": f"redis {_tps(compared, 'redis')}, {_claim(bottlenecks, 'redis')}",
        "supported choice": "fast; its durability is the server's persistence setting, so keep "
        "it for work that may be redone",
    }


def _distributed_row(distributed: Mapping[str, Any]) -> dict[str, str]:
    leader = [run for run in distributed["cluster"] if run["mode"] == "leader"]
    one = next((run["tasks_per_s"] for run in leader if run["workers"] == 1), None)
    most = max(leader, key=lambda run: run["workers"], default=None)
    speedup = (
        f"x{most['tasks_per_s'] / one:.2f} with {most['workers']} processes"
        if most and one
        else "n/a"
    )
    kills = [row for row in distributed["failover"] if row["signal"] == "KILL"]
    worst = max((row["failover max (s)"] for row in kills), default=float("nan"))
    stale = sum(row["stale writes accepted"] for row in distributed["failover"])
    lost = sum(row["lost"] for row in distributed["failover"])
    return {
        "service": "DistributedExecutor",
        "report chose": "improve the current one: add task execution and error handling",
        "measured": (
            f"0 tasks/s before (placeholder); now {speedup}; failover after kill -9 at most "
            f"{worst:.2f} s (TTL {distributed['ttl']:g} s); {stale} stale writes accepted, "
            f"{lost} tasks lost"
        ),
        "supported choice": "the executing, fenced DistributedExecutor, on etcd or Redis",
    }


def _durability_row(reliability: Mapping[str, Any]) -> dict[str, str]:
    runs = reliability["crash"]
    promised = [run for run in runs if run["survives_process_crash"]]
    kept = [run["label"] for run in promised if run["lost"] == 0 and run["corrupted"] == 0]
    losing = [f"{run['label']} lost {run['lost']}" for run in runs if run["lost"]]
    return {
        "service": "TaskStore durability",
        "report chose": "SQLite and PostgreSQL: ACID; Redis: limited durability",
        "measured": f"0 lost, 0 corrupted: {', '.join(kept) or 'none'}; "
        f"losses: {', '.join(losing) or 'none'}",
        "supported choice": "durability is a setting: run every store with the settings that "
        "kept every acknowledged task here (Redis: appendfsync always)",
    }


def recommend(summaries: Mapping[str, Mapping[str, Any] | None]) -> list[dict[str, str]]:
    """Section 1.7's choices beside the numbers that bear on them.

    ``summaries`` maps a chapter's slug to its summary (None if missing); a row
    is left out when the chapters it needs are missing.
    """
    compared, improved = summaries.get("01_compare"), summaries.get("03_improvements")
    bottlenecks = summaries.get("02_bottlenecks") or {}
    rows = []
    if compared and improved:
        rows.append(_executor_row(compared, improved))
    if compared:
        rows.extend(
            [_production_row(compared, bottlenecks), _development_row(compared, bottlenecks)]
        )
        if "redis" in compared["stores"]:
            rows.append(_redis_row(compared, bottlenecks))
    if reliability := summaries.get("05_reliability"):
        rows.append(_durability_row(reliability))
    if distributed := summaries.get("04_distributed"):
        rows.append(_distributed_row(distributed))
    return rows


# -- running the chapters -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Chapter:
    """A chapter notebook: ``NN_slug.ipynb``, titled by its first heading.

    A notebook whose metadata holds ``{"taskbench": {"reads_summaries": true}}``
    reads the other chapters' summaries, so it runs after them.
    """

    slug: str
    path: Path
    title: str
    abstract: str
    reads_summaries: bool = False


def _read_notebook(path: Path) -> dict[str, Any]:
    notebook: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return notebook


def _title_and_abstract(notebook: Mapping[str, Any]) -> tuple[str, str]:
    markdown = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown"]
    lines = "\n".join(markdown).splitlines()
    title = next((line.lstrip("# ").strip() for line in lines if line.startswith("# ")), "")
    body = next((line.strip() for line in lines if line.strip() and line[0] not in "#>|-*"), "")
    return title, MARKDOWN_MARKS.sub("", body)


def chapters(directory: Path = NOTEBOOKS_DIR) -> list[Chapter]:
    """Every chapter notebook in ``directory``, in order."""
    found = []
    for path in sorted(directory.glob("*.ipynb")):
        if CHAPTER_FILE.match(path.name):
            notebook = _read_notebook(path)
            title, abstract = _title_and_abstract(notebook)
            reads = bool(notebook["metadata"].get("taskbench", {}).get("reads_summaries"))
            found.append(
                Chapter(
                    slug=path.stem, path=path, title=title, abstract=abstract, reads_summaries=reads
                )
            )
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class ChapterRun:
    """How one chapter ran: where its outputs are, how long it took, its error if any."""

    chapter: Chapter
    notebook: Path
    html: Path
    seconds: float
    error: str | None


def chapter_parameters(size: str, output_dir: Path) -> dict[str, Any]:
    """The papermill parameters every chapter takes from ``taskbench study``."""
    return {
        "FAST": size == "fast",
        "FULL": size == "full",
        "INTERACTIVE": False,
        "REFRESH_REFERENCE": size == "full",
        "OUTPUT_DIR": str(output_dir),
    }


def execute_chapter(chapter: Chapter, output_dir: Path, size: str) -> ChapterRun:
    """Run one chapter with papermill into ``output_dir`` and render its HTML page."""
    without_uri_grammar()
    with requires_extra("running the study's notebooks"):
        import papermill  # type: ignore[import-untyped]
    executed = output_dir / chapter.path.name
    started = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(
            str(chapter.path),
            str(executed),
            parameters=chapter_parameters(size, output_dir),
            kernel_name=KERNEL,
            cwd=str(output_dir),
            progress_bar=False,
        )
    except papermill.PapermillExecutionError as exc:
        error = scrub(f"{exc.ename}: {exc.evalue}")
    seconds = time.perf_counter() - started
    page = render_html(executed, output_dir / f"{chapter.slug}.html")
    return ChapterRun(chapter=chapter, notebook=executed, html=page, seconds=seconds, error=error)


OFFLINE_TEMPLATE = """\
{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""
"""nbconvert's lab page without the scripts it would fetch from CDNs (require.js,
MathJax, mermaid, the widget manager): the report must work offline."""


def render_html(notebook: Path, target: Path) -> Path:
    """An HTML page of an executed notebook that needs no network."""
    with requires_extra("rendering the study's HTML"):
        from nbconvert import HTMLExporter
    with tempfile.TemporaryDirectory(prefix="taskbench-template-") as templates:
        Path(templates, "taskbench.html.j2").write_text(OFFLINE_TEMPLATE, encoding="utf-8")
        exporter = HTMLExporter(  # type: ignore[no-untyped-call]
            extra_template_paths=[templates], template_file="taskbench.html.j2"
        )
        body, _ = exporter.from_filename(str(notebook))
    target.write_text(scrub(body), encoding="utf-8")
    return target


INDEX_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #1f2933; line-height: 1.5; }
h1 { font-size: 1.8rem; margin-bottom: .2rem; } .meta { color: #52606d; }
ul { list-style: none; padding: 0; } li { margin: .8rem 0; } a { color: #0b5cad; }
.failed { color: #b00020; font-weight: bold; }
"""


def _index_entry(run: ChapterRun) -> str:
    status = f' <span class="failed">failed: {html.escape(run.error)}</span>' if run.error else ""
    return (
        f'<li><a href="{html.escape(run.html.name)}">{html.escape(run.chapter.title)}</a>'
        f" <span class=meta>({run.seconds:.0f} s)</span>{status}"
        f"<br>{html.escape(run.chapter.abstract)}</li>"
    )


def write_index(output_dir: Path, runs: Sequence[ChapterRun], size: str) -> Path:
    """``index.html``: one link per chapter, with its abstract, time and any failure."""
    box = machine()
    commit = git_state().get("commit") or "unknown"
    meta = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, size {size}, {box['cpu_model']} "
        f"({box['cpu_count']} CPUs), taskbench {taskbench.__version__}, commit {str(commit)[:7]}"
    )
    entries = "\n".join(_index_entry(run) for run in runs)
    page = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>taskbench study</title><style>{INDEX_STYLE}</style></head><body>"
        "<h1>taskbench: the Task Package Services Benchmark Report, measured</h1>"
        f"<p class=meta>{html.escape(meta)}</p><ul>{entries}</ul></body></html>\n"
    )
    target = output_dir / "index.html"
    target.write_text(page, encoding="utf-8")
    return target


@dataclass(frozen=True, slots=True, kw_only=True)
class StudyRun:
    """Every chapter's run, the index page, and the total time."""

    runs: tuple[ChapterRun, ...]
    index: Path
    seconds: float

    @property
    def failed(self) -> list[ChapterRun]:
        return [run for run in self.runs if run.error is not None]


def _run_chapters(
    chosen: Sequence[Chapter], out: Path, size: str, jobs: int, log: Callable[[str], None]
) -> list[ChapterRun]:
    """Run ``chosen``, ``jobs`` at a time (each in a kernel of its own); in order of the list."""

    def run(chapter: Chapter) -> ChapterRun:
        log(f"running {chapter.slug} ...")
        done = execute_chapter(chapter, out, size)
        failure = f", FAILED: {done.error}" if done.error else ""
        log(f"  {chapter.slug}: {done.seconds:.0f} s{failure}")
        return done

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="chapter") as pool:
        return list(pool.map(run, chosen))


def run_study(
    output_dir: str | os.PathLike[str] | None = None,
    *,
    size: str = "default",
    only: Sequence[str] | None = None,
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> StudyRun:
    """Run every chapter (or those whose slug starts with one of ``only``) into ``output_dir``.

    ``jobs`` > 1 runs chapters side by side: quicker, but they share the
    machine, so their timings mean less (for CI, not for figures to quote).
    Chapters that read the others' summaries run after the rest.
    """
    study_paths_exist()
    if size not in SIZES:
        raise ConfigError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be a positive integer, got {jobs!r}")
    out = Path(output_dir or DEFAULT_OUTPUT_DIR).absolute()
    out.mkdir(parents=True, exist_ok=True)
    chosen = [c for c in chapters() if not only or c.slug.startswith(tuple(only))]
    if not chosen:
        raise ConfigError(f"no chapter matches {list(only or [])}; see {NOTEBOOKS_DIR}")
    started = time.perf_counter()
    first = [chapter for chapter in chosen if not chapter.reads_summaries]
    last = [chapter for chapter in chosen if chapter.reads_summaries]
    runs = _run_chapters(first, out, size, jobs, log) + _run_chapters(last, out, size, jobs, log)
    index = write_index(out, runs, size)
    return StudyRun(runs=tuple(runs), index=index, seconds=time.perf_counter() - started)


# -- checking the report in a real browser --------------------------------------------------

ERROR_HOOK = """<script>
(function () {
  function report(kind, detail) { console.log("TASKBENCH-JS-ERROR " + kind + ": " + detail); }
  window.addEventListener("error", function (event) {
    var target = event.target || {};
    report("error", event.message || ("failed to load " + (target.src || target.href)));
  }, true);
  window.addEventListener("unhandledrejection", function (event) {
    report("unhandled rejection", event.reason);
  });
  var original = console.error;
  console.error = function () {
    report("console.error", Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
})();
</script>"""
"""Injected first into a copy of each page under check, so that errors Chromium
logs only as plain console lines (failed loads, console.error) are recognisable."""
CONSOLE_ERROR = re.compile(r'CONSOLE[^\]]*\] "(TASKBENCH-JS-ERROR [^"]*|Uncaught [^"]*)"')
FIGURE_DIV = re.compile(r'<div [^>]*class="plotly-graph-div')
REMOTE_SCRIPT = re.compile(r"<script[^>]+src=[\"']?(?:https?:)?//", re.IGNORECASE)


@dataclass(frozen=True, slots=True, kw_only=True)
class PageCheck:
    """What Chromium saw on one page."""

    page: str
    figures: int
    drawn: int
    errors: tuple[str, ...]
    remote_scripts: int
    screenshot: str | None

    @property
    def ok(self) -> bool:
        return self.drawn == self.figures and not self.errors and not self.remote_scripts


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable on PATH, or None."""
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    return next((path for name in names if (path := shutil.which(name))), None)


CHROMIUM_TIMEOUT_S = 90.0
CHROMIUM_ATTEMPTS = 3


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    """Run headless Chromium to completion; None if it hung in every attempt.

    Chromium starts helper processes (zygote, renderer, GPU) that outlive a
    killed parent, so each run gets a process group of its own and a timeout
    kills the whole group. A headless run very occasionally never exits on a
    loaded machine (twice in some hundred runs here, while a normal
    run took 5-15 s); two retries are allowed before the page counts as failed.
    """
    for attempt in range(CHROMIUM_ATTEMPTS):  # a fresh profile: a killed run leaves its lock
        command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}-{attempt}", *args]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=CHROMIUM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            continue
        return subprocess.CompletedProcess(command, process.returncode, out, err)
    return None


def _drawn_figures(dom: str) -> int:
    """How many figure divs of the rendered page hold plotly's SVG."""
    starts = [match.start() for match in FIGURE_DIV.finditer(dom)] + [len(dom)]
    return sum('class="main-svg"' in dom[a:b] for a, b in itertools.pairwise(starts))


def check_page(page: Path, binary: str, screenshot: Path | None) -> PageCheck:
    """Open ``page`` in headless Chromium: figures drawn, script errors, remote scripts.

    The page is opened as a copy with :data:`ERROR_HOOK` first in its head; one
    Chromium run prints the rendered DOM and, if asked, saves a screenshot.
    """
    source = page.read_text(encoding="utf-8")
    width, height = SCREENSHOT_SIZE
    shot = [f"--window-size={width},{height}", f"--screenshot={screenshot}"] if screenshot else []
    with tempfile.TemporaryDirectory(prefix="taskbench-chromium-") as scratch:
        hooked = Path(scratch) / page.name
        hooked.write_text(source.replace("<head>", "<head>" + ERROR_HOOK, 1), encoding="utf-8")
        shown = _chromium(
            binary,
            Path(scratch) / "profile",
            "--enable-logging=stderr",
            "--v=0",
            f"--virtual-time-budget={RENDER_BUDGET_MS}",
            *shot,
            "--dump-dom",
            hooked.as_uri(),
        )
    hung = f"chromium did not finish in {CHROMIUM_ATTEMPTS} x {CHROMIUM_TIMEOUT_S:.0f} s"
    return PageCheck(
        page=page.name,
        figures=len(FIGURE_DIV.findall(source)),
        drawn=_drawn_figures(shown.stdout) if shown else 0,
        errors=tuple(CONSOLE_ERROR.findall(shown.stderr)) if shown else (hung,),
        remote_scripts=len(REMOTE_SCRIPT.findall(source)),
        screenshot=str(screenshot) if screenshot is not None and screenshot.exists() else None,
    )


def check_report(
    output_dir: str | os.PathLike[str], *, screenshots: bool = True, jobs: int = 2
) -> list[PageCheck]:
    """Check every HTML page in ``output_dir`` in headless Chromium (ConfigError if absent),
    ``jobs`` pages at a time. Screenshots go to ``<output_dir>/screenshots/<page>.png``.
    """
    binary = find_chromium()
    if binary is None:
        raise ConfigError("checking the report needs Chromium: apt-get install -y chromium")
    out = Path(output_dir)
    shots = out / "screenshots"
    shots.mkdir(exist_ok=True)

    def check(page: Path) -> PageCheck:
        return check_page(page, binary, shots / f"{page.stem}.png" if screenshots else None)

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="chromium") as pool:
        return list(pool.map(check, sorted(out.glob("*.html"))))


def check_summary(checks: Sequence[PageCheck]) -> str:
    """One line per page: figures drawn, errors, remote scripts."""
    lines = []
    for check in checks:
        verdict = "ok" if check.ok else "FAILED"
        lines.append(
            f"{check.page:<28} {check.drawn}/{check.figures} figures drawn, "
            f"{len(check.errors)} script errors, {check.remote_scripts} remote scripts: {verdict}"
        )
        lines.extend(f"    {error}" for error in check.errors)
    return "\n".join(lines)


def as_records(checks: Sequence[PageCheck]) -> list[dict[str, Any]]:
    return [asdict(check) for check in checks]
