"""The ``faults`` subcommand: crash, restart, soak, hostile-input and backup experiments,
each with its own ``--help``.

    taskbench faults crash   (--server sqlite|postgres|redis|mariadb [--setting S] | --store URL)
                             [--tasks N] [--kills K] [--server-kills M] [--json]
    taskbench faults restart --server postgres|redis|mariadb [--restarts R] [--workers W] [--json]
    taskbench faults soak    --store URL --tasks N [--concurrency C] [--json]
    taskbench faults hostile --store URL [--examples N] [--entry-points NAMES] [--seed S] [--json]
    taskbench faults backup  --store URL [--tasks N] [--json]

``crash`` and ``restart`` run :mod:`taskbench.faults.crash`: worker
subprocesses execute probe tasks while workers are SIGKILLed and the server
(one the experiment starts itself, on a free port, with the chosen setting)
is killed -9 or restarted cleanly; then every task is audited. ``soak`` runs
:mod:`taskbench.faults.soak`. Each run is saved with ``save_run`` (kinds
``crash``, ``restart``, ``soak``) unless ``--no-save``. ``hostile`` and
``backup`` are :mod:`taskbench.faults.hostile` and :mod:`taskbench.faults.backup`,
whose own ``configure`` adds their arguments (the same as ``python -m`` gives
them); each experiment's module is imported only when that experiment runs.

Design rules: arguments are checked while parsed, and the plan as a whole
(e.g. server kills asked of SQLite, which has no server) before anything
starts, so bad input exits 2 with our message; ``--json`` prints one object
and nothing else; a store given by URL is PURGED first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskbench.bench.drain import check_store_url
from taskbench.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    ConfiguredOnUse,
    Subcommand,
    add_store_option,
    argument,
    positive_int,
)
from taskbench.errors import ConfigError

CRASH_SERVERS = ("sqlite", "postgres", "redis", "mariadb")
RESTART_SERVERS = ("postgres", "redis", "mariadb")


def _count(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"expected a whole number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"expected a number >= 0, got {value}")
    return value


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"expected a number, got {raw!r}") from None
    if not 0 < value < float("inf"):
        raise ConfigError(f"expected a positive number, got {raw!r}")
    return value


def _milliseconds(raw: str) -> float:
    return 0.0 if raw.strip() in {"0", "0.0"} else _seconds(raw)


def _settings_help(servers: tuple[str, ...]) -> str:
    from taskbench.faults.servers import DEFAULT_SETTINGS, SETTINGS

    listed = "; ".join(
        f"{server}: {', '.join(SETTINGS[server])} (default {DEFAULT_SETTINGS[server]})"
        for server in servers
    )
    return f"durability setting - {listed}"


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout and nothing else"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        metavar="DIR",
        help="save the run here (default: $TASKBENCH_RESULTS_DIR, else data/runs/)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not save the run")


def _add_run_shape(parser: argparse.ArgumentParser, *, tasks: int, workers: int) -> None:
    parser.add_argument(
        "--tasks",
        default=tasks,
        type=argument(positive_int),
        metavar="N",
        help="probe tasks, enqueued batch by batch over the run (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", default=workers, type=argument(positive_int), metavar="W", help="processes"
    )
    parser.add_argument(
        "--concurrency", default=8, type=argument(positive_int), metavar="C", help="per worker"
    )
    parser.add_argument(
        "--task-ms", default=10.0, type=argument(_milliseconds), metavar="MS", help="task length"
    )
    parser.add_argument(
        "--lease", default=3.0, type=argument(_seconds), metavar="S", help="task lease"
    )
    parser.add_argument(
        "--downtime", default=0.5, type=argument(_seconds), metavar="S", help="server down time"
    )
    parser.add_argument("--seed", type=int, help="fault timing seed (default: random)")
    _add_output(parser)


def _configure_crash(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--server", choices=CRASH_SERVERS, help="start a throwaway server (or a SQLite file)"
    )
    where.add_argument(
        "--store",
        type=argument(check_store_url),
        metavar="URL",
        help="an existing shared store (PURGED first); only workers are killed",
    )
    parser.add_argument("--setting", metavar="S", help=_settings_help(CRASH_SERVERS))
    parser.add_argument(
        "--kills", default=3, type=argument(_count), metavar="K", help="worker SIGKILLs"
    )
    parser.add_argument(
        "--server-kills", default=0, type=argument(_count), metavar="M", help="server kill -9s"
    )
    _add_run_shape(parser, tasks=400, workers=1)


def _configure_restart(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server", required=True, choices=RESTART_SERVERS, help="the server to start and restart"
    )
    parser.add_argument("--setting", metavar="S", help=_settings_help(RESTART_SERVERS))
    parser.add_argument(
        "--restarts", default=2, type=argument(_count), metavar="R", help="clean restarts"
    )
    parser.add_argument(
        "--server-kills", default=0, type=argument(_count), metavar="M", help="server kill -9s"
    )
    _add_run_shape(parser, tasks=400, workers=2)


def _configure_soak(parser: argparse.ArgumentParser) -> None:
    add_store_option(parser, "a shared store (PURGED first), e.g. sqlite:///soak.db")
    parser.add_argument(
        "--tasks", required=True, type=argument(positive_int), metavar="N", help="tasks to run"
    )
    parser.add_argument(
        "--concurrency",
        default=50,
        type=argument(positive_int),
        metavar="C",
        help="the worker's concurrency (default: %(default)s)",
    )
    parser.add_argument(
        "--backlog", default=10_000, type=argument(positive_int), metavar="B", help="kept queued"
    )
    parser.add_argument(
        "--sample",
        default=1.0,
        type=argument(_seconds),
        metavar="S",
        help="seconds between samples",
    )
    _add_output(parser)


def _configure_hostile(parser: argparse.ArgumentParser) -> None:
    from taskbench.faults import hostile

    hostile.configure(parser)


def _configure_backup(parser: argparse.ArgumentParser) -> None:
    from taskbench.faults import backup

    backup.configure(parser)


def configure_faults(parser: argparse.ArgumentParser) -> None:
    experiments = parser.add_subparsers(
        dest="experiment", required=True, metavar="EXPERIMENT", parser_class=ConfiguredOnUse
    )
    for name, experiment in EXPERIMENTS.items():
        experiments.add_parser(
            name, help=experiment.help, description=experiment.help, configure=experiment.configure
        )


# -- running ----------------------------------------------------------------------------


def _usage_error(error: ConfigError) -> int:
    print(f"taskbench: error: {error}", file=sys.stderr)
    return EXIT_USAGE


def _plan_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "tasks": args.tasks,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "task_ms": args.task_ms,
        "lease_s": args.lease,
        "downtime_s": args.downtime,
        "server_kills": args.server_kills,
    }
    if args.seed is not None:
        options["seed"] = args.seed
    return options


def _crash_text(result: dict[str, Any]) -> str:
    expected = {True: "yes", False: "no", None: "unknown"}[result["survives_process_crash"]]
    return "\n".join(
        [
            f"store        {result['store']}  ({result['server']}, setting {result['setting']}; "
            f"expected to survive a process crash: {expected})",
            f"faults       {result['worker_kills']} worker kills, {result['server_kills']} server "
            f"kills, {result['server_restarts']} clean restarts",
            f"tasks        {result['tasks']:,}: {result['succeeded']:,} succeeded, "
            f"{result['dead']:,} dead",
            f"lost         {result['lost']:,} ({result['lost_missing']:,} missing, "
            f"{result['lost_unfinished']:,} unfinished, {result['lost_completions']:,} "
            f"acknowledged completions forgotten)",
            f"corrupted    {result['corrupted']:,}",
            f"duplicates   {result['duplicates']:,} tasks ran twice or more, "
            f"{result['extra_executions']:,} extra runs; "
            f"{result['in_flight_at_faults']:,} were in flight at the faults",
            f"store errors {result['store_errors']:,} seen by workers; "
            f"wall {result['wall_s']:.1f} s; seed {result['seed']}",
        ]
    )


def _save(args: argparse.Namespace, save: Callable[[Any, Any], Path], result: Any) -> None:
    if not args.no_save:
        path = save(result, args.results_dir)
        if not args.json:
            print(f"saved        {path}")


def _run_plan(args: argparse.Namespace, plan_kwargs: dict[str, Any]) -> int:
    from taskbench.faults.crash import CrashPlan, run_experiment, save_result

    try:
        plan = CrashPlan.create(**plan_kwargs, **_plan_options(args))
    except ConfigError as error:
        return _usage_error(error)
    result = asyncio.run(run_experiment(plan))
    figures = result.to_json_dict()
    print(json.dumps(figures) if args.json else _crash_text(figures))
    _save(args, save_result, result)
    return EXIT_OK


def run_crash(args: argparse.Namespace) -> int:
    where = {"url": args.store} if args.store else {"server": args.server}
    return _run_plan(
        args, {**where, "setting": args.setting, "worker_kills": args.kills, "experiment": "crash"}
    )


def run_restart(args: argparse.Namespace) -> int:
    return _run_plan(
        args,
        {
            "server": args.server,
            "setting": args.setting,
            "worker_kills": 0,
            "server_restarts": args.restarts,
            "experiment": "restart",
        },
    )


def _soak_text(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"store        {result['store']}",
            f"tasks        {result['tasks']:,}: {result['succeeded']:,} succeeded, "
            f"{result['lost']:,} lost, {result['tasks_per_s']:,.0f} tasks/s over "
            f"{result['wall_s']:.0f} s",
            f"worker RSS   warm {result['rss_warm_mb']:.1f} MB, max {result['rss_max_mb']:.1f} "
            f"MB, last {result['rss_last_mb']:.1f} MB",
            f"RSS trend    {result['rss_slope_mb_per_100k']:+.3f} MB per 100k tasks "
            f"(second half, {len(result['samples'])} samples)",
        ]
    )


def run_soak(args: argparse.Namespace) -> int:
    from taskbench.faults.soak import SoakPlan, save_result
    from taskbench.faults.soak import run_soak as soak

    try:
        plan = SoakPlan.create(
            args.store,
            tasks=args.tasks,
            concurrency=args.concurrency,
            backlog=args.backlog,
            sample_s=args.sample,
        )
    except ConfigError as error:
        return _usage_error(error)
    result = asyncio.run(soak(plan))
    figures = result.to_json_dict()
    print(json.dumps(figures) if args.json else _soak_text(figures))
    _save(args, save_result, result)
    return EXIT_OK


def run_hostile(args: argparse.Namespace) -> int:
    from taskbench.faults import hostile

    return hostile.run(args)


def run_backup(args: argparse.Namespace) -> int:
    from taskbench.faults import backup

    return backup.run(args)


def run_faults(args: argparse.Namespace) -> int:
    return EXPERIMENTS[args.experiment].run(args)


EXPERIMENTS: dict[str, Subcommand] = {
    "crash": Subcommand(
        help="kill -9 workers (and the server) mid-run; count lost, duplicated, corrupted tasks",
        configure=_configure_crash,
        run=run_crash,
    ),
    "restart": Subcommand(
        help="restart the server mid-run; workers must reconnect and lose nothing acknowledged",
        configure=_configure_restart,
        run=run_restart,
    ),
    "soak": Subcommand(
        help="run N tasks through a store, sampling the worker's memory (max RSS and its trend)",
        configure=_configure_soak,
        run=run_soak,
    ),
    "hostile": Subcommand(
        help="generated hostile input against a store (PURGED), the URL openers and the CLI",
        configure=_configure_hostile,
        run=run_hostile,
    ),
    "backup": Subcommand(
        help="back a store (PURGED) up, restore it elsewhere, compare every task; time both",
        configure=_configure_backup,
        run=run_backup,
    ),
}
"""The experiments under ``taskbench faults``, each a subcommand of its own."""

COMMANDS = {
    "faults": Subcommand(
        help="fault experiments: crash, restart, soak, hostile, backup "
        "(see taskbench faults EXPERIMENT --help)",
        configure=configure_faults,
        run=run_faults,
    ),
}
