"""The benchmark subcommands: ``bench``, ``overhead``, ``backlog`` and ``peers``.

    taskbench bench --store URL --mode drain --tasks N --concurrency C --workload SPEC
    taskbench bench --store URL --mode open --rate R --duration S --concurrency C --workload SPEC
                    [--producer inline|process]
    taskbench bench --store URL --mode closed --tasks N --concurrency C --workload SPEC
                    [--warmup N|Ns] [--repeats N] [--no-metrics]
                    [--no-save] [--results-dir DIR] [--json]
    taskbench overhead --store URL --tasks N --concurrency C [--repeats N]

Design rules: every value is checked while it is parsed, and each mode's
required and forbidden options right after, so bad input exits 2 before a
store is opened; every run is saved (one Parquet file, a row per repeat)
unless ``--no-save``; ``--json`` prints one object (a run's figures, or with
``--repeats`` more than 1, every repeat and the summary).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskbench.bench.drain import EXECUTORS, DrainConfig, DrainResult, check_store_url
from taskbench.bench.load import (
    MODES,
    OVERHEAD_TARGET,
    PRODUCERS,
    LoadConfig,
    LoadResult,
    Overhead,
    Result,
    check_number,
    config_params,
    load_config,
    measure_overhead,
    parse_warmup,
    run_repeats,
    save_results,
    summarise_repeats,
    tasks_per_cpu_s,
)
from taskbench.bench.metrics import Percentiles
from taskbench.bench.resources import ResourceUsage
from taskbench.bench.workloads import ACCEPTED_FORMS, Workload, parse_workload
from taskbench.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    Subcommand,
    add_store_option,
    argument,
    positive_int,
)
from taskbench.errors import ConfigError
from taskbench.urls import redact

if TYPE_CHECKING:
    from taskbench.bench.compare import Comparison

MODE_OPTIONS = {
    "drain": ({"tasks"}, {"rate", "duration", "producer"}),
    "open": ({"rate", "duration"}, {"tasks", "executor"}),
    "closed": ({"tasks"}, {"rate", "duration", "executor", "producer"}),
}
"""Per mode: the options it needs, and those it refuses."""


def _workload(raw: str) -> Workload:
    return parse_workload(raw)


def _rate(raw: str) -> float:
    return check_number(_float(raw), "rate")


def _duration(raw: str) -> float:
    return check_number(_float(raw), "duration")


def _float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"expected a number, got {raw!r}") from None


def _add_store(parser: argparse.ArgumentParser) -> None:
    add_store_option(
        parser,
        "store URL, e.g. memory://, sqlite:///bench.db, redis://127.0.0.1:6379/0?prefix=b: "
        "(it is PURGED first: give the benchmark a store of its own)",
    )


def _add_saving(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repeats",
        default=1,
        type=argument(positive_int),
        metavar="N",
        help="runs to make, each from an emptied store (default: %(default)s)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write a results file")
    parser.add_argument(
        "--results-dir",
        type=Path,
        metavar="DIR",
        help="where results files go (default: $TASKBENCH_RESULTS_DIR, else data/runs/)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout and nothing else"
    )


def _add_load(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        default="drain",
        choices=MODES,
        help="how tasks arrive: drain (all first), open (at --rate, whatever happens), "
        "closed (one per client at a time) (default: %(default)s)",
    )
    parser.add_argument(
        "--tasks", type=argument(positive_int), metavar="N", help="drain, closed: tasks to run"
    )
    parser.add_argument(
        "--rate", type=argument(_rate), metavar="R", help="open: arrivals per second"
    )
    parser.add_argument(
        "--duration", type=argument(_duration), metavar="S", help="open: seconds of arrivals"
    )
    parser.add_argument(
        "--producer",
        choices=PRODUCERS,
        help="open: where the producer runs: a process of its own (the default when the "
        "store can be shared by processes) or inline, beside the executor",
    )
    parser.add_argument(
        "--warmup",
        type=argument(parse_warmup),
        metavar="N|Ns",
        help="run but do not time the first N tasks (drain, closed) or N seconds (open, closed)",
    )
    parser.add_argument(
        "--no-metrics",
        action="store_true",
        help="record no latency, duplicates or resources (to measure the harness's overhead)",
    )


def _add_executor(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--concurrency",
        required=True,
        type=argument(positive_int),
        metavar="C",
        help="tasks run at once (closed: also the number of clients)",
    )
    parser.add_argument(
        "--workload",
        required=default is None,
        default=default,
        type=argument(_workload),
        metavar="SPEC",
        help=f"what each task is and does: {', '.join(ACCEPTED_FORMS)}, joined by '+'",
    )
    parser.add_argument(
        "--executor",
        choices=list(EXECUTORS),
        help="drain: who runs the tasks (default: taskbench)",
    )


def configure_bench(parser: argparse.ArgumentParser) -> None:
    _add_store(parser)
    _add_load(parser)
    _add_executor(parser, default=None)
    _add_saving(parser)


# -- printing -------------------------------------------------------------------------


def _percentiles(label: str, values: Percentiles | None) -> list[str]:
    if values is None:
        return []
    return [
        f"{label:<13}p50 {values.p50:.1f}  p95 {values.p95:.1f}  p99 {values.p99:.1f}  "
        f"max {values.max:.1f}"
    ]


def _resources(usage: ResourceUsage | None, cpu_s: float, rss_mb: float) -> str:
    line = f"resources    cpu {cpu_s:.2f} s, max rss {rss_mb:.0f} MB"
    if usage is None:
        return line
    if usage.server_cpu_s is None:
        return f"{line}; server: {usage.server_note}"
    return (
        f"{line}; server {usage.server_note}: cpu {usage.server_cpu_s:.2f} s, "
        f"peak rss {usage.server_peak_rss_mb or 0:.0f} MB ({usage.server_processes} processes)"
    )


def _outcome(result: Result) -> str:
    unknown = "?"
    duplicates = unknown if result.duplicates is None else f"{result.duplicates:,}"
    failed = unknown if result.failed is None else f"{result.failed:,}"
    return (
        f"outcome      {result.succeeded:,} succeeded, {result.dead:,} dead, "
        f"{result.lost:,} lost, {duplicates} duplicates, {failed} failed attempts"
    )


def _drain_lines(result: DrainResult) -> list[str]:
    return [
        f"mode         drain  (warm-up {result.warmup} tasks)",
        f"store        {result.store}",
        f"executor     {result.executor}  (concurrency {result.concurrency})",
        f"workload     {result.workload}",
        f"tasks        {result.tasks:,}",
        f"enqueue      {result.enqueue_tps:,.0f} tasks/s",
        f"drain        {result.drain_tps:,.0f} tasks/s in {result.drain_s:.2f} s",
    ]


def _load_lines(result: LoadResult) -> list[str]:
    offered = "" if result.offered_tps is None else f" (offered {result.offered_tps:,.0f})"
    achieved = "?" if result.achieved_tps is None else f"{result.achieved_tps:,.0f}"
    shape = f"rate {result.rate:g}/s for {result.duration_s:g} s, " if result.rate else ""
    producer = f", producer {result.producer}" if result.producer else ""
    return [
        f"mode         {result.mode}  ({shape}warm-up {result.warmup}{producer})",
        f"store        {result.store}",
        f"executor     {result.executor}  (concurrency {result.concurrency})",
        f"workload     {result.workload}",
        f"tasks        {result.tasks:,} sent, {result.measured or 0:,} measured",
        f"throughput   {achieved} tasks/s{offered} in {result.elapsed_s:.2f} s",
    ]


def summary(result: Result) -> str:
    """A run's figures, one per line (ms: origin -> finish, origin -> start, start -> finish;
    the open loop's queue wait = send lag + enqueue round trip + wake-up, task by task)."""
    head = _drain_lines(result) if isinstance(result, DrainResult) else _load_lines(result)
    timed = _percentiles("latency ms", result.latency_ms)
    timed += _percentiles("queue ms", result.queue_ms)
    if isinstance(result, LoadResult):  # the queue wait's three parts, task by task
        timed += _percentiles(" send lag ms", result.send_lag_ms)
        timed += _percentiles(" enqueue ms", result.enqueue_ms)
        timed += _percentiles(" wake ms", result.wake_ms)
    timed += _percentiles("service ms", result.service_ms)
    resources = _resources(result.resources, result.cpu_s, result.max_rss_mb)
    return "\n".join([*head, *timed, _outcome(result), resources])


def _spread(results: Sequence[Result]) -> str:
    lines = [f"over {len(results)} repeats (median, IQR, min-max)"]
    for name, values in summarise_repeats(results).items():
        lines.append(
            f"  {name:<16}{values.median:,.3f}  IQR {values.iqr:,.3f}  "
            f"({values.min:,.3f}-{values.max:,.3f})"
        )
    return "\n".join(lines)


def _json_object(results: Sequence[Result], saved: Path | None) -> dict[str, Any]:
    where = {"results_file": None if saved is None else str(saved)}
    if len(results) == 1:
        return results[0].to_json_dict() | where
    spread = {name: dataclasses.asdict(s) for name, s in summarise_repeats(results).items()}
    return {"repeats": [r.to_json_dict() for r in results], "summary": spread} | where


def _print(results: Sequence[Result], saved: Path | None, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_json_object(results, saved)))
        return
    print("\n\n".join(summary(result) for result in results))
    if len(results) > 1:
        print(f"\n{_spread(results)}")
    if saved is not None:
        print(f"\nsaved        {saved}")


# -- running --------------------------------------------------------------------------


def _usage_error(message: str) -> int:
    print(f"taskbench bench: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _check_mode_options(args: argparse.Namespace) -> None:
    """ConfigError if ``--mode`` lacks an option it needs or is given one it refuses."""
    needed, refused = MODE_OPTIONS[args.mode]
    for name in sorted(needed):
        if getattr(args, name) is None:
            raise ConfigError(f"--mode {args.mode} needs --{name}")
    for name in sorted(refused):
        if getattr(args, name) is not None:
            raise ConfigError(f"--{name} does not apply to --mode {args.mode}")


def _config(args: argparse.Namespace) -> LoadConfig:
    _check_mode_options(args)
    options = {"concurrency": args.concurrency, "workload": args.workload}
    options |= {"warmup": args.warmup, "metrics": not args.no_metrics}
    if args.mode == "open":
        options |= {"rate": args.rate, "duration": args.duration, "producer": args.producer}
    else:
        options["tasks"] = args.tasks
    if args.mode == "drain":
        options["executor"] = args.executor or "taskbench"
    return load_config(args.mode, args.store, **options)


def run_bench(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
    except ConfigError as exc:
        return _usage_error(str(exc))
    progress = sys.stdout.isatty() and not args.json
    results = asyncio.run(run_repeats(config, args.repeats, progress=progress))
    saved = None
    if not args.no_save:
        params = config_params(config, args.repeats)
        saved = save_results(results, params=params, directory=args.results_dir)
    _print(results, saved, args.json)
    return EXIT_OK


# -- overhead -------------------------------------------------------------------------


def configure_overhead(parser: argparse.ArgumentParser) -> None:
    _add_store(parser)
    parser.add_argument("--tasks", required=True, type=argument(positive_int), metavar="N")
    _add_executor(parser, default="noop")
    _add_saving(parser)
    parser.set_defaults(repeats=5)


def _listed(values: Sequence[float]) -> str:
    return ", ".join(f"{value:,.0f}" for value in values)


def _overhead_text(overhead: Overhead, saved: Path | None) -> str:
    lines = [
        f"drain_tps with metrics        {_listed([r.drain_tps for r in overhead.on])}",
        f"drain_tps without metrics     {_listed([r.drain_tps for r in overhead.off])}",
        f"tasks/cpu-s with metrics      {_listed([tasks_per_cpu_s(r) for r in overhead.on])}",
        f"tasks/cpu-s without metrics   {_listed([tasks_per_cpu_s(r) for r in overhead.off])}",
        f"drain_tps   with / without, paired: {overhead.wall.describe()}",
        f"tasks/cpu-s with / without, paired: {overhead.cpu.describe()}",
        f"hooks alone: {overhead.hook_cpu_us:.2f} us of CPU per task, beside "
        f"{overhead.drain_cpu_us:.1f} us per task for the drain: ratio {overhead.hook_ratio:.3f}",
        _against_target("drain_tps", overhead.wall),
        _against_target("tasks/cpu-s", overhead.cpu),
    ]
    if saved is not None:
        lines.append(f"saved        {saved}")
    return "\n".join(lines)


def _against_target(name: str, comparison: Comparison) -> str:
    """Whether the ratio, and its whole interval, reach OVERHEAD_TARGET."""
    met = "met" if comparison.ratio >= OVERHEAD_TARGET else "NOT met"
    interval = "wholly above" if comparison.ci_low >= OVERHEAD_TARGET else "reaching below"
    return (
        f"target {name} ratio >= {OVERHEAD_TARGET}: {comparison.ratio:.3f}, {met} "
        f"({comparison.confidence:.0%} CI {comparison.ci_low:.3f}-{comparison.ci_high:.3f}, "
        f"{interval} it)"
    )


def _comparison_json(comparison: Comparison) -> dict[str, Any]:
    return dataclasses.asdict(comparison) | {"verdict": comparison.verdict}


def _overhead_json(overhead: Overhead, saved: Path | None) -> dict[str, Any]:
    return {
        "with_metrics": [r.to_json_dict() for r in overhead.on],
        "without_metrics": [r.to_json_dict() for r in overhead.off],
        "drain_tps": _comparison_json(overhead.wall),
        "tasks_per_cpu_s": _comparison_json(overhead.cpu),
        "hook_cpu_us_per_task": overhead.hook_cpu_us,
        "drain_cpu_us_per_task": overhead.drain_cpu_us,
        "hook_ratio": overhead.hook_ratio,
        "results_file": None if saved is None else str(saved),
    }


def run_overhead(args: argparse.Namespace) -> int:
    config = DrainConfig.create(
        args.store,
        tasks=args.tasks,
        concurrency=args.concurrency,
        workload=args.workload,
        executor=args.executor or "taskbench",
    )
    overhead = asyncio.run(measure_overhead(config, args.repeats))
    saved = None
    if not args.no_save:
        params = config_params(config, args.repeats) | {"mode": "overhead"}
        runs: list[Result] = [*overhead.on, *overhead.off]
        saved = save_results(runs, params=params, directory=args.results_dir, kind="overhead")
    if args.json:
        print(json.dumps(_overhead_json(overhead, saved)))
    else:
        print(_overhead_text(overhead, saved))
    return EXIT_OK


# -- backlog --------------------------------------------------------------------------


def configure_backlog(parser: argparse.ArgumentParser) -> None:
    add_store_option(parser, "store URL (PURGED first), e.g. sqlite:///backlog.db?profile=legacy")
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
        help="load a store (drain, open or closed loop) with an executor, report and save "
        "the figures",
        configure=configure_bench,
        run=run_bench,
    ),
    "overhead": Subcommand(
        help="drain with metrics on and off, interleaved, and compare: the harness's own cost",
        configure=configure_overhead,
        run=run_overhead,
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
