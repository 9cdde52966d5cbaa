"""Where a benchmark's time goes: run it under a profiler, get a table and a text rendering.

``report = await profile(lambda: run_drain("memory://", tasks=10_000, ...))``
runs the coroutine that the factory makes under pyinstrument (a sampling
profiler, the default) or cProfile (a deterministic one, in the standard
library) and returns a :class:`ProfileReport`: the top functions by self
time (``function``, ``location``, ``self_s``, ``total_s``, ``share`` of the
profiled wall time), the profiler's own text rendering, and the coroutine's
result. The bottleneck chapter of the notebooks reads it.

Design rules:

* **Async, in the caller's loop.** :func:`profile` is a coroutine, so a
  notebook ``await``\\ s it in Jupyter's running loop and a test in
  pytest-asyncio's. It profiles the whole thread, not one task: an executor
  spreads its work over many asyncio tasks, and they all count (pyinstrument
  runs with ``async_mode="disabled"`` for that reason). Work in other
  threads (the PyMySQL pool, the thread baseline) is not seen.
* **One row shape for both profilers**, so a notebook can switch profiler
  without changing its table. Recursive calls count once in ``total_s``.
* pyinstrument is imported only when it is used (it is installed with the
  ``notebooks`` extra; cProfile needs nothing), and pandas only in
  :meth:`ProfileReport.to_frame`; a missing one raises MissingDependencyError
  naming ``pip install 'taskbench[notebooks]'``.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from taskbench.bench.environment import requires_extra
from taskbench.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]
    from pyinstrument.frame import Frame

T = TypeVar("T")

PROFILERS = ("pyinstrument", "cprofile")
DEFAULT_TOP = 25
DEFAULT_INTERVAL_S = 0.001
"""pyinstrument's sampling interval (its own default): a few thousand samples for a
drain of a few seconds; finer intervals make the text rendering slow."""
BUILTIN_LOCATION = "<built-in>"
TASKBENCH_ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds the ``taskbench`` package (editable installs are not on sys.path)."""

__all__ = ["PROFILERS", "ProfileReport", "ProfileRow", "profile"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileRow:
    """One function: time spent in its own code (self) and with its callees (total)."""

    function: str
    location: str
    """``path:line``, the path shortened to its import path (``taskbench/executor.py:42``)."""
    self_s: float
    total_s: float
    share: float
    """``self_s`` as a fraction of the profiled wall time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileReport(Generic[T]):
    """The top functions by self time, the profiler's text, and what the coroutine returned."""

    profiler: str
    duration_s: float
    rows: tuple[ProfileRow, ...]
    text: str = field(repr=False)
    result: T = field(repr=False)

    def records(self) -> list[dict[str, Any]]:
        """The rows as plain dicts (``pandas.DataFrame(report.records())``)."""
        return [asdict(row) for row in self.rows]

    def to_frame(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame, in order of self time."""
        with requires_extra("a profile table"):
            import pandas as pd
        columns = [name for name in ProfileRow.__dataclass_fields__]
        return pd.DataFrame(self.records(), columns=columns)


# -- shared ------------------------------------------------------------------------------


def _import_roots() -> list[Path]:
    """Folders modules are imported from (``sys.path`` and taskbench's own), longest first."""
    roots = {Path(entry or ".").absolute() for entry in sys.path} | {TASKBENCH_ROOT}
    return sorted(roots, key=lambda root: -len(root.parts))


def short_path(path: str) -> str:
    """``path`` relative to the innermost folder it is imported from (its import path)."""
    if not path or path == "~":
        return BUILTIN_LOCATION
    if path.startswith("<"):
        return path
    full = Path(path)
    for root in _import_roots():
        if full.is_relative_to(root):
            return full.relative_to(root).as_posix()
    return full.as_posix()


@dataclass(slots=True)
class _Tally:
    """Self and total seconds of one function, summed over the places it was seen."""

    self_s: float = 0.0
    total_s: float = 0.0


Key = tuple[str, str, int]
"""(function, file, line): one function."""


def _rows(tallies: dict[Key, _Tally], duration_s: float, top: int) -> tuple[ProfileRow, ...]:
    ranked = sorted(tallies.items(), key=lambda item: (-item[1].self_s, -item[1].total_s))
    return tuple(
        ProfileRow(
            function=function,
            location=f"{short_path(file)}:{line}" if line else short_path(file),
            self_s=tally.self_s,
            total_s=tally.total_s,
            share=tally.self_s / duration_s if duration_s > 0 else 0.0,
        )
        for (function, file, line), tally in ranked[:top]
    )


def _check(profiler: str, top: int, interval_s: float) -> None:
    if profiler not in PROFILERS:
        raise ConfigError(f"unknown profiler {profiler!r}; known: {', '.join(PROFILERS)}")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(f"top must be a positive integer, got {top!r}")
    if not interval_s > 0:
        raise ConfigError(f"interval_s must be a positive number of seconds, got {interval_s!r}")


# -- pyinstrument ------------------------------------------------------------------------


def _walk(frame: Frame, ancestors: frozenset[Key]) -> Iterator[tuple[Key, Frame, bool]]:
    """Every real frame under ``frame``, with whether its function is already on the stack."""
    for child in frame.children:
        if child.is_synthetic:
            continue
        key = (child.function, child.file_path or "", child.line_no or 0)
        yield key, child, key in ancestors
        yield from _walk(child, ancestors | {key})


def _pyinstrument_tallies(root: Frame) -> dict[Key, _Tally]:
    tallies: dict[Key, _Tally] = {}
    root_key = (root.function, root.file_path or "", root.line_no or 0)
    entries = [(root_key, root, False), *_walk(root, frozenset({root_key}))]
    for key, frame, recursive in entries:
        tally = tallies.setdefault(key, _Tally())
        tally.self_s += frame.total_self_time
        if not recursive:
            tally.total_s += frame.time
    return tallies


async def _with_pyinstrument(
    factory: Callable[[], Awaitable[T]], top: int, interval_s: float
) -> ProfileReport[T]:
    with requires_extra("profiling with pyinstrument"):
        from pyinstrument import Profiler
    profiler = Profiler(interval=interval_s, async_mode="disabled")
    profiler.start()
    try:
        result = await factory()
    finally:
        session = profiler.stop()
    root = session.root_frame()
    tallies = _pyinstrument_tallies(root) if root is not None else {}
    return ProfileReport(
        profiler="pyinstrument",
        duration_s=session.duration,
        rows=_rows(tallies, session.duration, top),
        text=profiler.output_text(unicode=True, color=False),
        result=result,
    )


# -- cProfile ----------------------------------------------------------------------------


def _cprofile_tallies(stats: pstats.Stats) -> dict[Key, _Tally]:
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    raw = stats.stats  # type: ignore[attr-defined]
    return {
        (function, file, line): _Tally(self_s=self_s, total_s=total_s)
        for (file, line, function), (_, _, self_s, total_s, _) in raw.items()
    }


def _cprofile_text(profiler: cProfile.Profile, top: int) -> str:
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats(pstats.SortKey.TIME).print_stats(top)
    return buffer.getvalue()


async def _with_cprofile(factory: Callable[[], Awaitable[T]], top: int) -> ProfileReport[T]:
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    try:
        result = await factory()
    finally:
        profiler.disable()
        duration_s = time.perf_counter() - started
    tallies = _cprofile_tallies(pstats.Stats(profiler))
    return ProfileReport(
        profiler="cprofile",
        duration_s=duration_s,
        rows=_rows(tallies, duration_s, top),
        text=_cprofile_text(profiler, top),
        result=result,
    )


# -- entry point -------------------------------------------------------------------------


async def profile(
    coro_factory: Callable[[], Awaitable[T]],
    *,
    profiler: str = "pyinstrument",
    top: int = DEFAULT_TOP,
    interval_s: float = DEFAULT_INTERVAL_S,
) -> ProfileReport[T]:
    """Await ``coro_factory()`` under ``profiler``; the ``top`` functions by self time.

    ``interval_s`` is pyinstrument's sampling interval (cProfile records
    every call). ConfigError for an unknown profiler or a bad number.
    """
    _check(profiler, top, interval_s)
    if profiler == "cprofile":
        return await _with_cprofile(coro_factory, top)
    return await _with_pyinstrument(coro_factory, top, interval_s)
