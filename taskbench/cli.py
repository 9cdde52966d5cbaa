"""The ``taskbench`` command: one subcommand per job, each with its own ``--help``.

    taskbench bench --store URL --tasks N --concurrency C --workload SPEC
                    [--executor taskbench|asyncio|threads] [--json]
    taskbench backlog --store URL --backlog N [--samples S] [--json]
    taskbench peers [--peers huey-fsync,pgqueuer,...] [--tasks N] [--concurrency C]

Design rules:

* **Subcommands are a table.** :data:`SUBCOMMANDS` maps a name to a
  :class:`Subcommand`: a function that adds its arguments to a parser and a
  function that runs it and returns the exit code. Adding ``results``,
  ``peers`` or ``worker`` is one entry and two functions.
* **Validate before anything starts.** Arguments are checked while they are
  parsed (argparse ``type=`` functions that call the library's own checks),
  so a bad value prints the :class:`~taskbench.errors.TaskbenchError`
  message on stderr and exits 2 before any store is opened.
* **Exit codes**: 0 done, 1 a TaskbenchError at run time, 2 bad usage,
  130 interrupted. Never a traceback for an error of ours.
* **stdout is for results.** ``--json`` prints exactly one JSON object and
  nothing else; progress bars go to stderr, and only when stdout is a TTY.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from taskbench.bench.drain import (
    EXECUTORS,
    DrainConfig,
    DrainResult,
    check_positive,
    check_store_url,
    drain,
)
from taskbench.bench.workloads import ACCEPTED_FORMS, Workload, parse_workload
from taskbench.errors import TaskbenchError
from taskbench.urls import redact

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
LOG_LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)
"""The log level for no ``-v``, ``-v``, ``-vv``, ``-vvv`` (logs go to stderr)."""

T = TypeVar("T")


def _argument(check: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type=`` that reports a TaskbenchError as a usage error (exit 2)."""

    def convert(raw: str) -> T:
        try:
            return check(raw)
        except TaskbenchError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = check.__name__
    return convert


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
    return check_positive(value, "the value")


def _workload(raw: str) -> Workload:
    return parse_workload(raw)


# -- bench --------------------------------------------------------------------------


def configure_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        required=True,
        type=_argument(check_store_url),
        metavar="URL",
        help="store URL, e.g. memory://, sqlite:///bench.db, redis://127.0.0.1:6379/0?prefix=b: "
        "(it is PURGED first: give the benchmark a store of its own)",
    )
    parser.add_argument(
        "--tasks",
        required=True,
        type=_argument(_positive_int),
        metavar="N",
        help="how many tasks to enqueue and drain",
    )
    parser.add_argument(
        "--concurrency",
        required=True,
        type=_argument(_positive_int),
        metavar="C",
        help="tasks run at once",
    )
    parser.add_argument(
        "--workload",
        required=True,
        type=_argument(_workload),
        metavar="SPEC",
        help=f"what each task does: {', '.join(ACCEPTED_FORMS)}, joined by '+'",
    )
    parser.add_argument(
        "--executor",
        default="taskbench",
        choices=list(EXECUTORS),
        help="who runs the tasks (default: %(default)s)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout and nothing else"
    )


def _summary(result: DrainResult) -> str:
    latency = result.latency_ms
    return "\n".join(
        [
            f"store        {result.store}",
            f"executor     {result.executor}  (concurrency {result.concurrency})",
            f"workload     {result.workload}",
            f"tasks        {result.tasks:,}",
            f"enqueue      {result.enqueue_tps:,.0f} tasks/s",
            f"drain        {result.drain_tps:,.0f} tasks/s in {result.drain_s:.2f} s",
            f"latency ms   p50 {latency.p50:.1f}  p95 {latency.p95:.1f}  p99 {latency.p99:.1f}",
            f"outcome      {result.succeeded:,} succeeded, {result.dead:,} dead, "
            f"{result.lost:,} lost, {result.duplicates:,} duplicates, "
            f"{result.failed:,} failed attempts",
            f"resources    wall {result.wall_s:.2f} s, cpu {result.cpu_s:.2f} s, "
            f"max rss {result.max_rss_mb:.0f} MB",
        ]
    )


def run_bench(args: argparse.Namespace) -> int:
    config = DrainConfig.create(
        args.store,
        tasks=args.tasks,
        concurrency=args.concurrency,
        workload=args.workload,
        executor=args.executor,
    )
    progress = sys.stdout.isatty() and not args.json
    result = asyncio.run(drain(config, progress=progress))
    if args.json:
        print(json.dumps(result.to_json_dict()))
    else:
        print(_summary(result))
    return EXIT_OK


# -- backlog --------------------------------------------------------------------------


def configure_backlog(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        required=True,
        type=_argument(check_store_url),
        metavar="URL",
        help="store URL (PURGED first), e.g. sqlite:///backlog.db?profile=legacy",
    )
    parser.add_argument(
        "--backlog",
        required=True,
        type=_argument(_positive_int),
        metavar="N",
        help="queued tasks to fill the store with before timing claims",
    )
    parser.add_argument(
        "--samples", default=200, type=_argument(_positive_int), help="claim round trips timed"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_backlog(args: argparse.Namespace) -> int:
    from taskbench.bench.backlog import claim_latency

    result = asyncio.run(claim_latency(args.store, args.backlog, samples=args.samples))
    figures = dataclasses.asdict(result) | {"store": redact(args.store)}
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"{figures['store']}: backlog {result.backlog:,}, claim+finish round trip "
            f"p50 {result.p50_ms:.3f} ms, p95 {result.p95_ms:.3f} ms ({result.samples} samples)"
        )
    return EXIT_OK


# -- peers ----------------------------------------------------------------------------


def _peer_names(raw: str) -> list[str]:
    from taskbench.bench.peers import peer_spec

    names = [name.strip() for name in raw.split(",") if name.strip()]
    for name in names:
        peer_spec(name)
    return names


def configure_peers(parser: argparse.ArgumentParser) -> None:
    from taskbench.bench.peers import DEFAULT_URLS, PEERS

    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        type=_argument(_peer_names),
        help="comma-separated peers to run (default: %(default)s)",
    )
    parser.add_argument("--tasks", default=20_000, type=_argument(_positive_int), metavar="N")
    parser.add_argument("--concurrency", default=50, type=_argument(_positive_int), metavar="C")
    for server, url in DEFAULT_URLS.items():
        parser.add_argument(
            f"--{server}",
            default=url,
            type=_argument(check_store_url),
            metavar="URL",
            help=f"the {server} server both sides use (default: %(default)s)",
        )


def run_peers(args: argparse.Namespace) -> int:
    from taskbench.bench.peers import DEFAULT_URLS, format_table, run_peers

    urls = {server: getattr(args, server) for server in DEFAULT_URLS}
    log = functools.partial(print, file=sys.stderr)
    results = run_peers(
        args.peers, tasks=args.tasks, concurrency=args.concurrency, urls=urls, out=log
    )
    print(format_table(results))
    return EXIT_OK


# -- the table of subcommands ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subcommand:
    """How to add a subcommand's arguments to its parser, and how to run it."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


SUBCOMMANDS: dict[str, Subcommand] = {
    "bench": Subcommand(
        help="enqueue N tasks into a store, drain them with an executor, report the figures",
        configure=configure_bench,
        run=run_bench,
    ),
    "backlog": Subcommand(
        help="fill a store with a backlog and time its claim round trip",
        configure=configure_backlog,
        run=run_backlog,
    ),
    "peers": Subcommand(
        help="drain the same workload through huey, pgqueuer, arq and saq and through ours",
        configure=configure_peers,
        run=run_peers,
    ),
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


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (exit 2 on bad usage), run the subcommand, return its exit code."""
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


if __name__ == "__main__":
    sys.exit(main())
