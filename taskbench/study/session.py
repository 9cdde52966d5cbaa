"""A chapter's session: its size, its backends, and live measurements or committed references.

What this module owns:

* **The checkout's layout** (:data:`CHECKOUT_ROOT` and the folders under it):
  paths come from the package, never from the working directory.
* **A chapter's session** (:func:`start` -> :class:`Session`): the size it
  runs at (``fast`` for CI, ``default``, ``full``), the stores it may use, and
  :meth:`Session.measure`, which runs a measurement on the *live* service
  when its URL is set and the server answers, and otherwise reads the
  committed *reference* result from ``data/reference/`` (labelled with the
  machine and date that produced it). It always prints which it used.
* **References and summaries** (:class:`References`, :func:`read_summary`):
  reference files and summaries are scrubbed of passwords.
* **Notebook set-up**: plotly figures that work offline
  (:func:`use_offline_figures`) and the quickstart's widgets
  (:func:`drain_controls`); plotly and ipywidgets are imported inside them.

Probing the servers and their scratch namespaces are :mod:`taskbench.study.servers`.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import sys
import tempfile
import uuid
from collections.abc import (
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import taskbench
from taskbench.bench.environment import git_state, machine, requires_extra, scrub
from taskbench.errors import ConfigError
from taskbench.faults.etcd import EtcdCluster, find_etcd
from taskbench.study.servers import Backend, find_backends, scratch_url

CHECKOUT_ROOT = Path(taskbench.__file__).resolve().parents[1]
NOTEBOOKS_DIR = CHECKOUT_ROOT / "notebooks"
REFERENCE_DIR = CHECKOUT_ROOT / "data" / "reference"
DEFAULT_OUTPUT_DIR = CHECKOUT_ROOT / "reports"


SIZES = ("fast", "default", "full")
EMBEDDED = ("memory", "sqlite", "sqlite-legacy")


ETCD_VARIABLE = "TASKBENCH_TEST_ETCD_URL"


JSON = Any
"""Plain JSON data: what a measurement returns and a reference file stores."""
Measure = Callable[[str], Awaitable[JSON]]


def pick_size(fast: bool, full: bool) -> str:
    """``fast``, ``full`` or ``default``; ConfigError if both flags are set."""
    if fast and full:
        raise ConfigError("a chapter runs either FAST or FULL, not both")
    return "fast" if fast else "full" if full else "default"


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
