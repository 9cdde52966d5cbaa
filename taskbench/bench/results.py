"""Benchmark results: one Parquet file per run, queried together with DuckDB.

Writing: :func:`save_run` turns a run's measurements (one per repeat: a
:class:`~taskbench.bench.drain.DrainResult`, its ``to_json_dict()``, or any
mapping of that shape) into flat rows and writes them to a file of their own
under :func:`results_dir`. Reading: :func:`connect` opens an in-memory DuckDB
connection with a ``runs`` view over every file; :func:`load_runs` and
:func:`latest` return pandas DataFrames. :func:`merge_histograms` adds up
the latency histograms that runs stored, so repeats and runs can be merged
into one percentile.

Design rules:

* **Append-only, one file per run, atomic.** A run is written to a hidden
  temporary file in the results folder, then ``os.replace``'d to its final
  ``<kind>-<time>-<id>.parquet`` name: a run interrupted by Ctrl-C leaves no
  half-written file, and two runs never write the same file.
* **Never a held database file.** Reading opens an in-memory DuckDB
  connection with a view over ``read_parquet('<dir>/*.parquet',
  union_by_name=true)``; a notebook holding it open blocks no other run, and
  files with different columns (a new metric) still read together.
* **Flat rows.** Nested mappings are flattened (``latency_ms.p50`` becomes
  ``latency_p50_ms``, ``other.x`` becomes ``other_x``); the environment and
  the parameters are stored as JSON text (columns ``env`` and ``params``)
  and an encoded HdrHistogram as base64 text (column ``hist``).
* **No password on disk.** Every ``scheme://user:password@`` in a row,
  its parameters or its environment is scrubbed before writing.
* **Optional packages are imported inside the functions that need them**
  (pyarrow to write; duckdb and pandas to read), so importing this module
  is cheap; a missing one raises MissingDependencyError naming
  ``pip install 'taskbench[notebooks]'``.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from hdrh.histogram import HdrHistogram

from taskbench.bench.environment import describe_environment, requires_extra, scrub
from taskbench.bench.metrics import HIGHEST_US, LOWEST_US, SIGNIFICANT_FIGURES
from taskbench.errors import ConfigError

if TYPE_CHECKING:
    import duckdb
    import pandas as pd  # type: ignore[import-untyped]

RESULTS_DIR_VARIABLE = "TASKBENCH_RESULTS_DIR"
CHECKOUT_ROOT = Path(__file__).resolve().parents[2]
CHECKOUT_RESULTS = CHECKOUT_ROOT / "data" / "runs"
USER_RESULTS = Path("~/.local/share/taskbench/runs")
RUN_GLOB = "*.parquet"
FILE_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
VIEW = "runs"
FILE_MODE = 0o644
"""Results are for sharing (mkstemp would leave them readable by their owner only)."""

IDENTITY_COLUMNS = ("run_id", "kind", "repeat", "recorded_at")
"""Columns every row starts with, before the measurement's own."""
JSON_COLUMNS = ("env", "params")
HIST_COLUMN = "hist"
RESERVED = frozenset((*IDENTITY_COLUMNS, *JSON_COLUMNS, HIST_COLUMN))

EMPTY_RUNS = """
SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS kind, NULL::BIGINT AS repeat,
       NULL::TIMESTAMP WITH TIME ZONE AS recorded_at, NULL::VARCHAR AS env,
       NULL::VARCHAR AS params, NULL::VARCHAR AS hist
WHERE false
"""
"""The ``runs`` view when no run has been saved yet: the base columns, no rows."""

ORDER = "recorded_at, run_id, repeat"
NEWEST_FIRST = "recorded_at DESC, run_id DESC"


class HasJsonDict(Protocol):
    """A result that publishes itself as a JSON dict (DrainResult does)."""

    def to_json_dict(self) -> dict[str, Any]: ...


Measurement = Mapping[str, Any] | HasJsonDict
Histogram: TypeAlias = HdrHistogram | str | bytes

__all__ = [
    "connect",
    "encode_histogram",
    "flatten",
    "latest",
    "load_runs",
    "merge_histograms",
    "percentile_spectrum",
    "percentiles_ms",
    "results_dir",
    "save_run",
]


# -- where -------------------------------------------------------------------------------


def results_dir(directory: str | os.PathLike[str] | None = None) -> Path:
    """The results folder: ``directory``, else ``$TASKBENCH_RESULTS_DIR``, else the default.

    The default is the checkout's ``data/runs/`` when taskbench runs from a
    checkout (a ``pyproject.toml`` beside the package), else
    ``~/.local/share/taskbench/runs``.
    """
    chosen = directory or os.environ.get(RESULTS_DIR_VARIABLE)
    if chosen:
        return Path(chosen).expanduser()
    if (CHECKOUT_ROOT / "pyproject.toml").is_file():
        return CHECKOUT_RESULTS
    return USER_RESULTS.expanduser()


# -- rows --------------------------------------------------------------------------------


def _flat_name(key: str, sub: str) -> str:
    """``latency_ms`` + ``p50`` -> ``latency_p50_ms``; ``other`` + ``x`` -> ``other_x``."""
    stem, underscore, unit = key.rpartition("_")
    if underscore and unit in {"ms", "us", "s", "mb"}:
        return f"{stem}_{sub}_{unit}"
    return f"{key}_{sub}"


def _scalar(value: Any) -> Any:
    """A Parquet-friendly scalar: strings scrubbed, lists and the like as JSON text."""
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(json.dumps(value, default=str))


def flatten(measurement: Measurement) -> dict[str, Any]:
    """One measurement as flat columns (nested mappings flattened one level deep, recursively)."""
    data = measurement if isinstance(measurement, Mapping) else measurement.to_json_dict()
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            for sub, inner in flatten(value).items():
                flat[_flat_name(str(key), sub)] = inner
        else:
            flat[str(key)] = _scalar(value)
    return flat


def encode_histogram(histogram: Histogram) -> str:
    """The base64 text of an HdrHistogram (``HdrHistogram.encode()``), as stored in ``hist``."""
    if isinstance(histogram, str):
        return histogram
    if isinstance(histogram, bytes):
        return histogram.decode("ascii")
    encoded: bytes = histogram.encode()
    return encoded.decode("ascii")


def _json(value: Mapping[str, Any]) -> str:
    return scrub(json.dumps(value, sort_keys=True, default=str))


def _check_row_keys(row: Mapping[str, Any]) -> None:
    clashes = sorted(RESERVED & row.keys())
    if clashes:
        raise ConfigError(f"measurement fields {clashes} clash with the columns save_run writes")


def build_rows(
    kind: str,
    measurements: Sequence[Measurement],
    *,
    env: Mapping[str, Any],
    params: Mapping[str, Any],
    histograms: Sequence[Histogram | None],
    run_id: str,
) -> list[dict[str, Any]]:
    """The rows of one run: identity columns, the flat measurement, env, params, hist."""
    recorded_at = datetime.now(UTC)
    env_json, params_json = _json(env), _json(params)
    rows = []
    for repeat, (measurement, histogram) in enumerate(zip(measurements, histograms, strict=True)):
        flat = flatten(measurement)
        _check_row_keys(flat)
        identity = {"run_id": run_id, "kind": kind, "repeat": repeat, "recorded_at": recorded_at}
        extra = {"env": env_json, "params": params_json}
        hist = None if histogram is None else encode_histogram(histogram)
        rows.append({**identity, **flat, **extra, HIST_COLUMN: hist})
    return rows


# -- write -------------------------------------------------------------------------------


def _check_name(value: object, what: str) -> None:
    """``value`` goes into a file name: letters, digits, ``_`` and ``-`` only."""
    if not isinstance(value, str) or not FILE_NAME_PART.match(value):
        raise ConfigError(f"{what} must be letters, digits, '_' or '-', got {value!r}")


def _check_run(
    kind: str, run_id: str | None, measurements: Sequence[Measurement], histograms: Sequence[Any]
) -> None:
    _check_name(kind, "kind")
    if run_id is not None:
        _check_name(run_id, "run_id")
    if not measurements:
        raise ConfigError("a run needs at least one measurement")
    if len(histograms) != len(measurements):
        raise ConfigError(
            f"{len(histograms)} histograms for {len(measurements)} measurements: give one each"
        )


def _store_urls(measurements: Sequence[Measurement]) -> list[str]:
    stores = (flatten(m).get("store") for m in measurements)
    return sorted({store for store in stores if isinstance(store, str)})


def _write_atomically(rows: list[dict[str, Any]], target: Path) -> None:
    """Write ``rows`` as Parquet to a temporary file beside ``target``, then rename it."""
    with requires_extra("saving benchmark results"):
        import pyarrow as pa  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    table = pa.Table.from_pylist(rows)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".parquet.tmp")
    os.close(handle)
    try:
        pq.write_table(table, temporary)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_run(
    kind: str,
    measurements: Sequence[Measurement],
    *,
    params: Mapping[str, Any] | None = None,
    env: Mapping[str, Any] | None = None,
    histograms: Sequence[Histogram | None] | None = None,
    directory: str | os.PathLike[str] | None = None,
    run_id: str | None = None,
) -> Path:
    """Write one run (one row per measurement) to its own Parquet file; return its path.

    ``kind`` names the benchmark (``"drain"``, ``"backlog"``...). ``env``
    defaults to :func:`~taskbench.bench.environment.describe_environment` of
    the measurements' stores; ``histograms``, when given, holds one
    HdrHistogram (or its encoded text, or None) per measurement.
    """
    histograms = list(histograms) if histograms is not None else [None] * len(measurements)
    _check_run(kind, run_id, measurements, histograms)
    run_id = run_id or uuid.uuid4().hex
    if env is None:
        env = describe_environment(_store_urls(measurements))
    rows = build_rows(
        kind, measurements, env=env, params=params or {}, histograms=histograms, run_id=run_id
    )
    folder = results_dir(directory)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = folder / f"{kind}-{stamp}-{run_id[:12]}.parquet"
    _write_atomically(rows, target)
    return target


# -- read --------------------------------------------------------------------------------


def connect(directory: str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a ``runs`` view over every saved run.

    The view lists the files at query time, so runs saved later show up too
    (when the folder held no run at all, the view stays empty: reconnect).
    Close the connection when done (or use it as a context manager).
    """
    with requires_extra("reading benchmark results"):
        import duckdb
    folder = results_dir(directory)
    connection = duckdb.connect(":memory:")
    if any(folder.glob(RUN_GLOB)):
        runs = connection.read_parquet(str(folder / RUN_GLOB), union_by_name=True)
    else:
        runs = connection.sql(EMPTY_RUNS)
    runs.create_view(VIEW)
    return connection


def _condition(column: str, wanted: Any) -> duckdb.Expression:
    import duckdb

    field = duckdb.ColumnExpression(column)
    if isinstance(wanted, list | tuple | set | frozenset):
        return field.isin(*(duckdb.ConstantExpression(value) for value in wanted))
    return field == duckdb.ConstantExpression(wanted)


def _filtered(
    connection: duckdb.DuckDBPyConnection, filters: Mapping[str, Any]
) -> duckdb.DuckDBPyRelation:
    """The ``runs`` view where each column equals its value (or is in its list)."""
    runs = connection.table(VIEW)
    unknown = sorted(set(filters) - set(runs.columns))
    if unknown:
        raise ConfigError(f"unknown result columns {unknown}; known: {', '.join(runs.columns)}")
    for column, wanted in filters.items():
        runs = runs.filter(_condition(column, wanted))
    return runs


def _to_frame(relation: duckdb.DuckDBPyRelation) -> pd.DataFrame:
    with requires_extra("reading benchmark results"):
        import pandas  # noqa: F401  (DuckDB's .df() needs it)
    return relation.order(ORDER).df()


def load_runs(directory: str | os.PathLike[str] | None = None, **filters: Any) -> pd.DataFrame:
    """Every saved row whose columns equal ``filters`` (a list/tuple value means "one of").

    ``load_runs(kind="drain", store=["memory://", "sqlite:///t.db"])``.
    An unknown column raises ConfigError listing the known ones.
    """
    with connect(directory) as connection:
        return _to_frame(_filtered(connection, filters))


def latest(
    kind: str, directory: str | os.PathLike[str] | None = None, **filters: Any
) -> pd.DataFrame:
    """The rows of the most recent run of ``kind`` that matches ``filters`` (empty if none)."""
    with connect(directory) as connection:
        matching = _filtered(connection, {"kind": kind, **filters})
        newest = matching.order(NEWEST_FIRST).limit(1).fetchall()
        if not newest:
            return _to_frame(matching)
        run_id = newest[0][matching.columns.index("run_id")]
        return _to_frame(_filtered(connection, {"kind": kind, **filters, "run_id": run_id}))


# -- histograms --------------------------------------------------------------------------


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def merge_histograms(encoded: Iterable[str | bytes | None]) -> HdrHistogram:
    """One HdrHistogram holding every sample of the encoded ones (missing values skipped).

    ``merge_histograms(load_runs(kind="drain")["hist"])`` (not ``.hist``,
    a pandas method). The result reads in microseconds, like
    :class:`~taskbench.bench.metrics.LatencySeries`.
    """
    merged = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    for text in encoded:
        if text is None or _is_missing(text):
            continue
        try:
            merged.decode_and_add(encode_histogram(text))
        except Exception as exc:
            raise ConfigError(f"not an encoded HdrHistogram: {type(exc).__name__}: {exc}") from None
    return merged


def percentiles_ms(
    encoded: Iterable[str | bytes | None], percentiles: Iterable[float] = (50.0, 99.0, 99.9)
) -> dict[str, float]:
    """Percentiles in ms of the merged histograms, keyed ``p50``, ``p99``, ``p99.9``, ...

    ``percentiles_ms(latest("open", store=url)["queue_hist"])``: the open
    loop's enqueue -> start wait over every saved repeat (NaN when empty).
    """
    merged = merge_histograms(encoded)
    empty = merged.get_total_count() == 0
    return {
        f"p{q:g}": math.nan if empty else merged.get_value_at_percentile(q) / 1000.0
        for q in percentiles
    }


SPECTRUM_PERCENTILES = (0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0)
"""Where :func:`percentile_spectrum` reads a histogram: denser toward the tail."""


def percentile_spectrum(
    encoded: Iterable[str | bytes | None], percentiles: Iterable[float] = SPECTRUM_PERCENTILES
) -> list[dict[str, float]]:
    """``[{"percentile": p, "ms": value}, ...]`` of the merged histograms, as HdrHistogram's
    percentile-distribution plots show them (empty when there is no sample).

    Percentiles beyond what the samples can tell (99.99 of 1,000 samples) are
    left out, except 100 (the maximum): a row per distinct rank.
    """
    merged = merge_histograms(encoded)
    total = merged.get_total_count()
    rows: list[dict[str, float]] = []
    for percentile in percentiles:
        if 0 < percentile < 100 and total * (100.0 - percentile) / 100.0 < 1 - 1e-9:
            continue
        ms = merged.get_value_at_percentile(percentile) / 1000.0
        rows.append({"percentile": percentile, "ms": ms})
    return rows if total else []
