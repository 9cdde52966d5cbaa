"""The ``taskbench`` command: one subcommand per job, each with its own ``--help``.

    taskbench bench --store URL --tasks N --concurrency C --workload SPEC
                    [--executor taskbench|asyncio|threads] [--json]
    taskbench backlog --store URL --backlog N [--samples S] [--json]
    taskbench peers [--peers huey-fsync,pgqueuer,...] [--tasks N] [--concurrency C]

Design rules:

* **Subcommands are tables.** Each module of :data:`GROUPS` (``bench.py``:
  bench, overhead, backlog, peers; ``wakeup.py``; ``scorecard.py``;
  ``results.py``; ``distributed.py``: worker, cluster, failover;
  ``faults.py``; ``study.py``) has a ``COMMANDS`` table mapping a
  name to a :class:`~taskbench.cli.common.Subcommand`: a function that adds
  its arguments to a parser and a function that runs it and returns the exit
  code. Adding a subcommand is one entry and two functions in its module.
* **Validate before anything starts.** Arguments are checked while they are
  parsed (argparse ``type=`` functions that call the library's own checks),
  so a bad value prints the :class:`~taskbench.errors.TaskbenchError`
  message on stderr and exits 2 before any store is opened.
* **Exit codes**: 0 done, 1 a TaskbenchError at run time, 2 bad usage,
  130 interrupted. Never a traceback for an error of ours.
* **stdout is for results.** ``--json`` prints exactly one JSON object and
  nothing else; progress bars go to stderr, and only when stdout is a TTY.
* **Output never fails on a character.** A store path from the command line
  may hold a byte that is not UTF-8 (a lone surrogate in Python): while a
  command runs, stdout and stderr escape what their encoding cannot hold
  (``backslashreplace``) instead of raising in the middle of a report.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
from collections.abc import Callable, Iterator, Sequence

from taskbench.cli import bench, distributed, faults, results, scorecard, study, wakeup
from taskbench.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, LOG_LEVELS, Subcommand
from taskbench.errors import TaskbenchError

# -- the table of subcommands ---------------------------------------------------------

GROUPS = (bench, wakeup, scorecard, results, distributed, faults, study)
"""The modules that define subcommands, each in a ``COMMANDS`` table, in help order."""

SUBCOMMANDS: dict[str, Subcommand] = {
    name: command for group in GROUPS for name, command in group.COMMANDS.items()
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskbench", description="A task executor, task stores and their benchmarks."
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more on stderr: -v warnings (e.g. dead letters), -vv info, -vvv debug",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, subcommand in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=subcommand.help, description=subcommand.help)
        subcommand.configure(sub)
        sub.set_defaults(run=subcommand.run)
    return parser


def _fail(message: str, code: int) -> int:
    print(f"taskbench: error: {message}", file=sys.stderr)
    return code


@contextlib.contextmanager
def lenient_output() -> Iterator[None]:
    """stdout and stderr escape what their encoding cannot hold, until the block ends."""
    changed: list[tuple[io.TextIOWrapper, str]] = []
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            changed.append((stream, stream.errors))
            stream.reconfigure(errors="backslashreplace")
    try:
        yield
    finally:
        for stream, errors in changed:
            with contextlib.suppress(ValueError):  # closed meanwhile
                stream.reconfigure(errors=errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (exit 2 on bad usage), run the subcommand, return its exit code."""
    with lenient_output():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    level = LOG_LEVELS[min(args.verbose, len(LOG_LEVELS) - 1)]
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except TaskbenchError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
