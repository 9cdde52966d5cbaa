"""The ``scorecard`` subcommand: the report's criteria measured per store, beside its words.

    taskbench scorecard [--stores [NAME=]URL,...] [--fast] [--results-dir DIR] [--json]

Design rules: every URL is checked while it is parsed (unknown scheme, bad
option, missing driver: exit 2); then every store is opened once in a
scratch place of its own before anything is measured, so an unreachable
server fails in seconds (exit 1, naming the store) rather than minutes in.
Without ``--stores`` the rows are :func:`~taskbench.bench.scorecard.default_stores`
(a server whose ``TASKBENCH_TEST_*_URL`` is unset gets a "not configured"
row, not an error). The table prints each of the report's four headings
with the report's own word (``report``) first; ``--json`` prints one object
whose numbers are JSON numbers (NaN as null).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskbench.bench.drain import check_store_url
from taskbench.cli.common import EXIT_FAILED, EXIT_OK, Subcommand, argument
from taskbench.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

MEASURED_OR_SKIPPED = ("measured", "not configured")
"""Row statuses that are not a failure of the run."""


def parse_stores(raw: str) -> dict[str, str]:
    """``"URL,NAME=URL,..."`` as row name -> URL (a bare URL is named by its backend)."""
    from taskbench.bench.scorecard import backend_of

    stores: dict[str, str] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, sep, url = item.partition("=")
        if not sep or "://" in name:
            name, url = "", item
        url = check_store_url(url)
        name = name.strip() or backend_of(url)
        if name in stores:
            raise ConfigError(f"store {name!r} is given twice; name them: NAME=URL,NAME2=URL")
        stores[name] = url
    if not stores:
        raise ConfigError("--stores needs at least one store URL")
    return stores


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stores",
        type=argument(parse_stores),
        metavar="[NAME=]URL,...",
        help="stores to measure, comma-separated (default: memory, SQLite and the servers "
        "in TASKBENCH_TEST_{POSTGRES,REDIS,MYSQL}_URL); each is measured in a scratch "
        "schema, database, key prefix or file of its own",
    )
    parser.add_argument(
        "--fast", action="store_true", help="the FAST plan (seconds per store), not FULL"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        metavar="DIR",
        help="where saved crash runs are read from (default: $TASKBENCH_RESULTS_DIR, else "
        "data/runs/)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout and nothing else"
    )


# -- printing -------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-ready value: NaN and None as None, NumPy scalars as Python numbers."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def card_json(card: pd.DataFrame) -> dict[str, Any]:
    """The scorecard as one JSON object: criteria, and per store its columns and the
    report's words (null where the report did not rate the store)."""
    from taskbench.bench.scorecard import CRITERIA, report_rating

    stores = {}
    for name, row in card.iterrows():
        columns = {column: _plain(value) for column, value in row.items()}
        words = {c: report_rating(str(row["backend"]), c) for c in CRITERIA}
        stores[str(name)] = columns | {"report": words}
    return {"criteria": {k: list(v) for k, v in CRITERIA.items()}, "stores": stores}


def card_text(card: pd.DataFrame) -> str:
    """A table per criterion (the report's word first), then status and notes per store."""
    from taskbench.bench.scorecard import by_criterion, report_rating

    blocks = []
    for criterion, table in by_criterion(card).items():
        shown = table.astype(object).where(table.notna(), "-")
        blocks.append(f"## {criterion}\n{_rounded(shown).to_string()}")
    overall = [report_rating(str(b), "Overall") or "-" for b in card["backend"]]
    status = card[["backend", "status", "url"]].astype(object).where(card.notna(), "-")
    status.insert(0, "report Overall", overall)
    blocks.append(f"## Stores\n{status.to_string()}")
    notes = [f"{name}: {note}" for name, note in card["notes"].items() if note]
    blocks.append("## Notes\n" + "\n".join(notes))
    return "\n\n".join(blocks)


def _number(value: object) -> object:
    """A float as a reader wants it: 33,561 and 2.08 and 0.0144 (3 significant figures)."""
    if not isinstance(value, float):
        return value
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _rounded(table: pd.DataFrame) -> pd.DataFrame:
    return table.map(_number)


def _failed_rows(card: pd.DataFrame) -> list[str]:
    bad = card[~card["status"].isin(MEASURED_OR_SKIPPED)]
    return [f"{name} ({row['status']})" for name, row in bad.iterrows()]


# -- running --------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from taskbench.bench.scorecard import check_reachable, default_stores, measure_scorecard

    stores: dict[str, str | None] = args.stores or default_stores()
    asyncio.run(check_reachable(stores))
    progress = sys.stderr.isatty() and not args.json
    card = asyncio.run(
        measure_scorecard(stores, fast=args.fast, directory=args.results_dir, progress=progress)
    )
    print(json.dumps(card_json(card)) if args.json else card_text(card))
    failed = _failed_rows(card)
    if failed:
        print(f"taskbench scorecard: error: not measured: {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


COMMANDS = {
    "scorecard": Subcommand(
        help="measure the report's criteria for each store and print them beside its "
        "Low/Medium/High words",
        configure=configure,
        run=run,
    ),
}
