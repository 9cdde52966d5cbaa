"""The ``results`` subcommand: list the saved benchmark runs, and compare two of them.

    taskbench results list [--kind K] [--store S] [--last N] [--results-dir DIR] [--json]
    taskbench results compare RUN_A RUN_B [--metric NAME] [--results-dir DIR] [--json]

A run is one results file (one row per repeat), named by its ``run_id`` or
any unambiguous prefix of it, as ``list`` shows. ``compare`` puts RUN_B
beside RUN_A: the ratio of medians of one metric (B / A) with its bootstrap
confidence interval and verdict (:func:`taskbench.bench.compare.compare`).

Design rules: the files are read through :mod:`taskbench.bench.results`
(DuckDB over Parquet) and never written; a run id or metric that is not
there is a ConfigError naming what is; store URLs are shown as saved,
which is with their passwords scrubbed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskbench.cli.common import EXIT_OK, Subcommand, argument, positive_int
from taskbench.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

HEADLINE_METRICS = ("drain_tps", "achieved_tps", "latency_p99_ms")
"""The figures ``list`` shows (median over the run's repeats), when a run has them."""
DEFAULT_METRIC = {"drain": "drain_tps", "open": "achieved_tps", "closed": "achieved_tps"}
LOWER_IS_BETTER_SUFFIXES = ("_ms", "_s", "_mb", "lost", "duplicates", "dead", "failed")
SHOWN_WIDTH = {"run_id": 12, "recorded_at": 19}
"""Text columns cut in the table: an id prefix is enough to name a run; times to the second."""
TEXT_COLUMNS = ("run_id", "kind", "store", "workload", "executor", "mode")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results-dir",
        type=Path,
        metavar="DIR",
        help="where the results files are (default: $TASKBENCH_RESULTS_DIR, else data/runs/)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def configure_results(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="one line per saved run, newest last")
    listing.add_argument("--kind", help="only runs of this kind (drain, open, closed, ...)")
    listing.add_argument("--store", help="only runs whose store URL contains this text")
    listing.add_argument("--last", type=argument(positive_int), metavar="N", help="newest N runs")
    _add_common(listing)
    comparing = actions.add_parser("compare", help="RUN_B against RUN_A on one metric")
    comparing.add_argument("run_a", metavar="RUN_A", help="the baseline run (id or id prefix)")
    comparing.add_argument("run_b", metavar="RUN_B", help="the run compared with it")
    comparing.add_argument(
        "--metric", help="a numeric column (default: drain_tps or achieved_tps, by kind)"
    )
    _add_common(comparing)


# -- list -----------------------------------------------------------------------------


def _runs(directory: Path | None, kind: str | None) -> pd.DataFrame:
    from taskbench.bench.results import load_runs

    return load_runs(directory) if kind is None else load_runs(directory, kind=kind)


def _first(values: pd.Series) -> Any:
    present = values.dropna()
    return None if present.empty else present.iloc[0]


def _median(values: pd.Series) -> float | None:
    present = values.dropna()
    return None if present.empty else float(present.median())


def run_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One summary per run: identity, repeats, and the median of each headline metric."""
    rows = []
    for run_id, group in frame.groupby("run_id", sort=False):
        row: dict[str, Any] = {"run_id": run_id, "repeats": len(group)}
        row["recorded_at"] = str(group["recorded_at"].min())
        for column in ("kind", "store", "workload", "executor"):
            row[column] = _first(group[column]) if column in group else None
        for metric in HEADLINE_METRICS:
            row[metric] = _median(group[metric]) if metric in group else None
        rows.append(row)
    return rows


def _select(rows: list[dict[str, Any]], store: str | None, last: int | None) -> list[Any]:
    if store is not None:
        rows = [row for row in rows if store in str(row["store"] or "")]
    return rows[-last:] if last else rows


def _cell(row: dict[str, Any], column: str) -> str:
    value = row[column]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column in SHOWN_WIDTH:
        return str(value)[: SHOWN_WIDTH[column]]
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as aligned text columns, or a line saying there is nothing."""
    if not rows:
        return "no saved runs match"
    columns = ["run_id", "recorded_at", "kind", "store", "workload", "repeats"]
    columns += [m for m in HEADLINE_METRICS if any(row[m] is not None for row in rows)]
    lines = [columns, *([_cell(row, c) for c in columns] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def run_list(args: argparse.Namespace) -> int:
    rows = _select(run_rows(_runs(args.results_dir, args.kind)), args.store, args.last)
    if args.json:
        print(json.dumps({"runs": rows}))
    else:
        print(format_table(rows))
    return EXIT_OK


# -- compare --------------------------------------------------------------------------


def find_run(frame: pd.DataFrame, wanted: str) -> pd.DataFrame:
    """The rows of the one run whose id is ``wanted`` or starts with it; ConfigError if not one."""
    ids = sorted({str(run_id) for run_id in frame["run_id"]})
    matches = [run_id for run_id in ids if run_id == wanted] or [
        run_id for run_id in ids if run_id.startswith(wanted)
    ]
    if not matches:
        raise ConfigError(f"no saved run {wanted!r} (see: taskbench results list)")
    if len(matches) > 1:
        raise ConfigError(f"run id {wanted!r} is ambiguous: {', '.join(matches[:5])}")
    return frame[frame["run_id"] == matches[0]]


def _numeric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in TEXT_COLUMNS and frame[c].dtype.kind in "if"]


def _values(run: pd.DataFrame, metric: str) -> list[float]:
    if metric not in run or run[metric].dropna().empty:
        known = ", ".join(_numeric_columns(run.dropna(axis=1, how="all")))
        raise ConfigError(f"run {run['run_id'].iloc[0]} has no {metric!r}; it has: {known}")
    return [float(v) for v in run[metric].dropna()]


def higher_is_better(metric: str) -> bool:
    """Throughputs are better higher; times, sizes and failure counts lower."""
    return not metric.endswith(LOWER_IS_BETTER_SUFFIXES)


def comparison(frame: pd.DataFrame, run_a: str, run_b: str, metric: str | None) -> dict[str, Any]:
    """RUN_B against RUN_A on ``metric``: both summaries and the bootstrap comparison."""
    from taskbench.bench.compare import compare, summarise

    before, after = find_run(frame, run_a), find_run(frame, run_b)
    chosen = metric or DEFAULT_METRIC.get(str(_first(before["kind"])), "drain_tps")
    old, new = _values(before, chosen), _values(after, chosen)
    result = compare(old, new, higher_is_better=higher_is_better(chosen))
    return {
        "metric": chosen,
        "run_a": str(before["run_id"].iloc[0]),
        "run_b": str(after["run_id"].iloc[0]),
        "a": dataclasses.asdict(summarise(old)),
        "b": dataclasses.asdict(summarise(new)),
        "comparison": dataclasses.asdict(result) | {"verdict": result.verdict},
        "describe": result.describe(),
    }


def _comparison_text(found: dict[str, Any]) -> str:
    lines = [f"metric   {found['metric']}"]
    for side in ("a", "b"):
        values = found[side]
        lines.append(
            f"{side.upper():<9}{found[f'run_{side}']}: median {values['median']:,.3f} "
            f"(n={values['n']}, IQR {values['iqr']:,.3f})"
        )
    lines.append(f"B / A    {found['describe'].removeprefix('after/before ')}")
    return "\n".join(lines)


def run_compare(args: argparse.Namespace) -> int:
    found = comparison(_runs(args.results_dir, None), args.run_a, args.run_b, args.metric)
    print(json.dumps(found) if args.json else _comparison_text(found))
    return EXIT_OK


def run_results(args: argparse.Namespace) -> int:
    return run_list(args) if args.action == "list" else run_compare(args)


COMMANDS = {
    "results": Subcommand(
        help="list the saved benchmark runs, or compare two of them",
        configure=configure_results,
        run=run_results,
    ),
}
