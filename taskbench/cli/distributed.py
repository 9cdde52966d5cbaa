"""The distributed subcommands: ``worker``, ``cluster`` and ``failover`` (arguments only).

    taskbench worker --store URL --coordinator URL --concurrency C [--ttl S] [--workload SPEC]
    taskbench cluster --workers N[,N...] --store URL --coordinator URL --tasks T ...
    taskbench failover --store URL --coordinator URL --kills K --ttl S --tasks T --json

``worker`` runs one :class:`~taskbench.distributed.DistributedExecutor` until
SIGTERM or SIGINT (then it resigns, drains and exits 0). ``cluster`` and
``failover`` run local worker *processes* (``python -m taskbench.cli worker``)
on the same store and coordinator: ``cluster`` times a drain with N processes
(several N side by side, with the speed-up over the first); ``failover``
kills the leader process K times (found through the coordinator), starts a
replacement each time, and reports how long the cluster went without an
acting leader, then accounts for every task.

This module only turns arguments into a checked
:class:`~taskbench.cluster.WorkerOptions` and prints what the experiments in
:mod:`taskbench.cluster` return. A bad value exits 2 with our message
(everything is checked before anything starts); a server that does not answer
within ``--connect-timeout`` exits 1. No traceback.

The stores given to ``cluster`` and ``failover`` are **purged first**; give
them a store (and a coordinator prefix) of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

from taskbench.bench.workloads import ACCEPTED_FORMS, parse_workload
from taskbench.cli.common import EXIT_OK, EXIT_USAGE, Subcommand, argument, positive_int
from taskbench.cluster.failover import (
    SIGNALS,
    failover_report,
    format_failover,
    measure_failover,
)
from taskbench.cluster.options import (
    WorkerOptions,
    check_coordinator_url,
    check_shared_store_url,
)
from taskbench.cluster.scaling import cluster_report, format_cluster, measure_scaling
from taskbench.cluster.worker import serve
from taskbench.coordination.base import check_seconds
from taskbench.distributed import Mode
from taskbench.errors import ConfigError

# -- checking input -------------------------------------------------------------------


def seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"expected a number of seconds, got {raw!r}") from None
    return check_seconds(value, "the value")


def non_negative_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"expected a whole number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"expected a number >= 0, got {value}")
    return value


def worker_counts(raw: str) -> list[int]:
    """``1,2,4``: the cluster sizes to run side by side."""
    counts = [positive_int(part) for part in raw.split(",")]
    if len(set(counts)) != len(counts):
        raise ConfigError(f"each cluster size once, please: {raw!r}")
    return counts


def add_worker_arguments(parser: argparse.ArgumentParser, *, ttl_required: bool = False) -> None:
    """The options every distributed command passes on to its worker processes."""
    add_service_arguments(parser, ttl_required=ttl_required)
    add_tuning_arguments(parser)


def add_service_arguments(parser: argparse.ArgumentParser, *, ttl_required: bool) -> None:
    """Where the shared store and the coordinator are, and the session timings."""
    parser.add_argument(
        "--store",
        required=True,
        type=argument(check_shared_store_url),
        metavar="URL",
        help="the shared store, e.g. postgresql://postgres@127.0.0.1/test?schema=dist",
    )
    parser.add_argument(
        "--coordinator",
        required=True,
        type=argument(check_coordinator_url),
        metavar="URL",
        help="etcd://host:port[,host:port...] or redis://host:port/db (options: prefix, election)",
    )
    parser.add_argument(
        "--ttl",
        required=ttl_required,
        type=argument(seconds),
        metavar="S",
        help="coordinator session TTL: a dead worker is noticed after it "
        "(default: the URL's ttl option, else 10)",
    )
    parser.add_argument(
        "--refresh", type=argument(seconds), metavar="S", help="session refresh (ttl/3)"
    )
    parser.add_argument(
        "--connect-timeout",
        default=5.0,
        type=argument(seconds),
        metavar="S",
        help="give up on an unreachable server after this (default: %(default)s)",
    )


def add_tuning_arguments(parser: argparse.ArgumentParser) -> None:
    """What each worker runs, and how."""
    parser.add_argument(
        "--concurrency",
        default=10,
        type=argument(positive_int),
        metavar="C",
        help="tasks each worker runs at once (default: %(default)s)",
    )
    parser.add_argument(
        "--workload",
        default="noop",
        type=argument(_workload_spec),
        metavar="SPEC",
        help=f"what each task does: {', '.join(ACCEPTED_FORMS)}, joined by '+' "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--duty-period",
        default=1.0,
        type=argument(seconds),
        metavar="S",
        help="how often the leader requeues expired and abandoned leases (default: %(default)s)",
    )
    parser.add_argument(
        "--mode",
        default="leader",
        choices=[mode.value for mode in Mode],
        help="leader: one elected, fenced leader runs the duties; leaderless: every worker "
        "does, unfenced (default: %(default)s)",
    )
    parser.add_argument(
        "--lease",
        default=30.0,
        type=argument(seconds),
        metavar="S",
        help="task lease, extended while a task runs (default: %(default)s)",
    )
    parser.add_argument(
        "--grace",
        default=10.0,
        type=argument(seconds),
        metavar="S",
        help="on SIGTERM, running tasks get this long to finish (default: %(default)s)",
    )
    parser.add_argument(
        "--no-self-fencing",
        dest="self_fencing",
        action="store_false",
        help="study knob: act on a won epoch until the store refuses it",
    )


def _workload_spec(raw: str) -> str:
    parse_workload(raw)
    return raw


def worker_options(args: argparse.Namespace) -> WorkerOptions:
    """The options of ``args`` (ConfigError for a combination that is not valid)."""
    return WorkerOptions.create(
        store=args.store,
        coordinator=args.coordinator,
        concurrency=args.concurrency,
        workload=args.workload,
        ttl=args.ttl,
        refresh=args.refresh,
        duty_period=args.duty_period,
        mode=Mode(args.mode),
        lease=args.lease,
        grace=args.grace,
        self_fencing=args.self_fencing,
        connect_timeout=args.connect_timeout,
    )


def usage_error(exc: ConfigError) -> int:
    print(f"taskbench: error: {exc}", file=sys.stderr)
    return EXIT_USAGE


# -- worker ---------------------------------------------------------------------------


def configure_worker(parser: argparse.ArgumentParser) -> None:
    add_worker_arguments(parser)
    parser.add_argument("--worker-id", help="this worker's name (default: host-pid-random)")
    parser.add_argument(
        "--record", type=Path, metavar="DIR", help="append the timeline and executed ids here"
    )
    parser.add_argument("--json", action="store_true", help="print the counters as JSON at exit")


def run_worker(args: argparse.Namespace) -> int:
    try:
        options = worker_options(args)
    except ConfigError as exc:
        return usage_error(exc)
    stats = asyncio.run(serve(options, args.worker_id, args.record))
    counters = asdict(stats)
    if args.json:
        print(json.dumps(counters))
    else:
        print(", ".join(f"{name} {count}" for name, count in counters.items()))
    return EXIT_OK


# -- cluster: throughput with N processes ---------------------------------------------


def configure_cluster(parser: argparse.ArgumentParser) -> None:
    add_worker_arguments(parser)
    parser.add_argument(
        "--workers",
        required=True,
        type=argument(worker_counts),
        metavar="N[,N...]",
        help="worker processes; several sizes run one after the other, in one invocation",
    )
    parser.add_argument(
        "--tasks", required=True, type=argument(positive_int), metavar="T", help="tasks to drain"
    )
    add_run_arguments(parser)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        default=600.0,
        type=argument(seconds),
        metavar="S",
        help="give up on a drain after this (default: %(default)s)",
    )
    parser.add_argument(
        "--record", type=Path, metavar="DIR", help="keep the workers' logs and timelines here"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_cluster(args: argparse.Namespace) -> int:
    try:
        options = worker_options(args)
    except ConfigError as exc:
        return usage_error(exc)
    runs = asyncio.run(
        measure_scaling(
            options,
            counts=args.workers,
            tasks=args.tasks,
            timeout=args.timeout,
            record=args.record,
        )
    )
    report = cluster_report(options, args.tasks, runs)
    print(json.dumps(report) if args.json else format_cluster(report))
    return EXIT_OK


# -- failover: kill the leader (leaderless: a worker), time the recovery ---------------


def configure_failover(parser: argparse.ArgumentParser) -> None:
    add_worker_arguments(parser, ttl_required=True)
    parser.set_defaults(workload="sleep:100")
    parser.add_argument(
        "--workers",
        default=3,
        type=argument(at_least_two),
        metavar="N",
        help="worker processes (default: %(default)s)",
    )
    parser.add_argument(
        "--kills",
        required=True,
        type=argument(non_negative_int),
        metavar="K",
        help="how many times to disrupt the leader",
    )
    parser.add_argument(
        "--tasks",
        required=True,
        type=argument(positive_int),
        metavar="T",
        help="tasks, enqueued in K+1 waves: one before each disruption, one after",
    )
    parser.add_argument(
        "--signal",
        default="KILL",
        choices=list(SIGNALS),
        help="KILL: a crash (failover after the TTL, a replacement is started); TERM: a "
        "graceful handover; STOP: a pause past the TTL, then SIGCONT (the old leader returns "
        "deposed: see --no-self-fencing)",
    )
    add_run_arguments(parser)


def at_least_two(raw: str) -> int:
    count = positive_int(raw)
    if count < 2:
        raise ConfigError("a failover needs at least 2 workers")
    return count


def run_failover(args: argparse.Namespace) -> int:
    try:
        options = worker_options(args)
        if options.mode is Mode.LEADERLESS and args.signal == "TERM":
            raise ConfigError("in leaderless mode a SIGTERM hands nothing over: use --signal KILL")
    except ConfigError as exc:
        return usage_error(exc)
    result = asyncio.run(
        measure_failover(
            options,
            workers=args.workers,
            kills=args.kills,
            tasks=args.tasks,
            signum=SIGNALS[args.signal],
            timeout=args.timeout,
            record=args.record,
        )
    )
    report = failover_report(
        options, result, signal_name=args.signal, workers=args.workers, kills=args.kills
    )
    print(json.dumps(report) if args.json else format_failover(report))
    return EXIT_OK


COMMANDS = {
    "worker": Subcommand(
        help="run one distributed worker (executor + membership + election) until SIGTERM",
        configure=configure_worker,
        run=run_worker,
    ),
    "cluster": Subcommand(
        help="drain T tasks with N local worker processes (several N side by side)",
        configure=configure_cluster,
        run=run_cluster,
    ),
    "failover": Subcommand(
        help="kill the leader worker K times under load; time each failover, account for tasks "
        "(leaderless: kill a worker, time until its tasks are requeued)",
        configure=configure_failover,
        run=run_failover,
    ),
}
