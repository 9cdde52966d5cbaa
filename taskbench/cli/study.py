"""The ``study`` subcommand: run every notebook headless and render the HTML report.

    taskbench study [--out DIR] [--fast | --full] [--only NN[,NN...]] [--jobs N] [--no-check]

Each chapter notebook runs through papermill into ``DIR`` (default
``reports/`` in the checkout), is rendered to HTML, and ``DIR/index.html``
links them. ``--fast`` is the CI size; ``--full`` runs at full size and
refreshes the committed reference results in ``data/reference/`` from every
reachable server. When Chromium is installed the pages are then opened
headless and every figure must have drawn (screenshots in ``DIR/screenshots``).
Exit 0 when every chapter ran and the check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from taskbench.cli.common import EXIT_FAILED, EXIT_OK, Subcommand, argument, positive_int


def _chapters(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def configure_study(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the executed notebooks, HTML pages and index.html go (default: reports/)",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--fast", action="store_true", help="smallest sizes (CI; a few minutes)")
    size.add_argument(
        "--full",
        action="store_true",
        help="full sizes; also refreshes data/reference/ from every reachable server",
    )
    parser.add_argument(
        "--only",
        type=_chapters,
        metavar="NN[,NN]",
        help="run only the chapters whose file name starts with these (e.g. 00,03)",
    )
    parser.add_argument(
        "--jobs",
        type=argument(positive_int),
        default=1,
        metavar="N",
        help="chapters run side by side (quicker, noisier timings; for CI) (default: 1)",
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip opening the pages in headless Chromium"
    )


def _check(out: Path, log: functools.partial[None]) -> bool:
    """Open the pages in Chromium when it is installed; True unless a page failed."""
    from taskbench.study import check_report, check_summary, find_chromium

    if find_chromium() is None:
        log("chromium not found: the rendered pages were not checked (apt-get install chromium)")
        return True
    checks = check_report(out)
    log(check_summary(checks))
    return all(check.ok for check in checks)


def run_study(args: argparse.Namespace) -> int:
    from taskbench.study import run_study as run

    size = "fast" if args.fast else "full" if args.full else "default"
    log = functools.partial(print, file=sys.stderr)
    study = run(args.out, size=size, only=args.only, jobs=args.jobs, log=log)
    checked = args.no_check or _check(study.index.parent, log)
    print(f"{study.index}  ({len(study.runs)} chapters in {study.seconds:.0f} s)")
    return EXIT_OK if checked and not study.failed else EXIT_FAILED


COMMANDS = {
    "study": Subcommand(
        help="run the study's notebooks headless and render the HTML report with its index",
        configure=configure_study,
        run=run_study,
    ),
}
