"""``python -m taskbench.faults.hostile``: the campaign's command line.

:func:`configure` and :func:`run` also make the ``taskbench faults hostile``
subcommand (:mod:`taskbench.cli.faults`); :func:`main` is the standalone
command that ``__main__`` runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from taskbench.errors import ConfigError, TaskbenchError
from taskbench.faults.hostile.campaign import ENTRY_POINTS, check_entry_points, run_campaign


def _examples(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"expected a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"expected at least 1 example, got {value}")
    return value


def _entry_points(raw: str) -> list[str]:
    return check_entry_points([name for name in raw.split(",") if name])


def configure(parser: argparse.ArgumentParser) -> None:
    """The campaign's arguments (for ``python -m`` here, and a ``taskbench faults`` entry)."""
    from taskbench.cli.common import add_store_option, argument

    add_store_option(parser, "a store of its own: PURGED")
    parser.add_argument(
        "--examples", type=argument(_examples), default=10_000, metavar="N", help="per entry point"
    )
    parser.add_argument(
        "--entry-points",
        type=argument(_entry_points),
        default=list(ENTRY_POINTS),
        metavar="NAMES",
        help=f"comma-separated, of {','.join(ENTRY_POINTS)} (default: all)",
    )
    parser.add_argument("--seed", type=int, default=None, help="repeat a campaign exactly")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Run the campaign and print it; exit 1 if anything but a clean case was found."""
    entry_points = args.entry_points
    result = run_campaign(args.store, args.examples, entry_points=entry_points, seed=args.seed)
    print(json.dumps(result.to_json_dict()) if args.json else result.summary())
    return 0 if not (result.unexpected or result.corrupted or result.leaks) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taskbench.faults.hostile",
        description="Run the hostile-input campaign against a store of its own (it is PURGED).",
    )
    configure(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except TaskbenchError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
