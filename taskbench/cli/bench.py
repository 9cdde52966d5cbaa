"""The benchmark subcommands: ``bench``, ``backlog`` and ``peers``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import sys

from taskbench.bench.drain import EXECUTORS, DrainConfig, DrainResult, check_store_url, drain
from taskbench.bench.workloads import ACCEPTED_FORMS, Workload, parse_workload
from taskbench.cli.common import EXIT_OK, Subcommand, argument, positive_int
from taskbench.urls import redact


def _workload(raw: str) -> Workload:
    return parse_workload(raw)


def configure_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        required=True,
        type=argument(check_store_url),
        metavar="URL",
        help="store URL, e.g. memory://, sqlite:///bench.db, redis://127.0.0.1:6379/0?prefix=b: "
        "(it is PURGED first: give the benchmark a store of its own)",
    )
    parser.add_argument(
        "--tasks",
        required=True,
        type=argument(positive_int),
        metavar="N",
        help="how many tasks to enqueue and drain",
    )
    parser.add_argument(
        "--concurrency",
        required=True,
        type=argument(positive_int),
        metavar="C",
        help="tasks run at once",
    )
    parser.add_argument(
        "--workload",
        required=True,
        type=argument(_workload),
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
        type=argument(check_store_url),
        metavar="URL",
        help="store URL (PURGED first), e.g. sqlite:///backlog.db?profile=legacy",
    )
    parser.add_argument(
        "--backlog",
        required=True,
        type=argument(positive_int),
        metavar="N",
        help="queued tasks to fill the store with before timing claims",
    )
    parser.add_argument(
        "--samples", default=200, type=argument(positive_int), help="claim round trips timed"
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
        type=argument(_peer_names),
        help="comma-separated peers to run (default: %(default)s)",
    )
    parser.add_argument("--tasks", default=20_000, type=argument(positive_int), metavar="N")
    parser.add_argument("--concurrency", default=50, type=argument(positive_int), metavar="C")
    for server, url in DEFAULT_URLS.items():
        parser.add_argument(
            f"--{server}",
            default=url,
            type=argument(check_store_url),
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


COMMANDS = {
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
