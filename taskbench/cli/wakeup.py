"""The ``wakeup`` subcommand: how quickly an arrival starts, at half a store's drain rate.

    taskbench wakeup --store URL [--store URL ...] [--drain-tasks N] [--drain-repeats N]
                     [--duration S] [--warmup S] [--concurrency C] [--shares S,S]
                     [--no-save] [--results-dir DIR] [--json]

Each store is drained (:func:`taskbench.bench.arrivals.measure_wakeup`) to
find its throughput, then loaded by an open loop at each share of it (a
quarter and a half by default); the table gives the enqueue -> start
percentiles against the 10 ms target, judged at half. Each store's open
loops are saved as one run (kind ``wakeup``, a row per share with its
histograms, the drain's median in its parameters), so the chart can be
drawn again from the file: ``percentile_spectrum([row.queue_hist])`` for a
row of ``latest("wakeup", store=URL)``.
Every value is checked while parsing (exit 2); the stores are PURGED first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from taskbench.bench.arrivals import (
    TARGET_P99_MS,
    TARGET_SHARE,
    Measured,
    WakeupPlan,
    check_shares,
    measure_wakeup,
    open_config,
    table,
)
from taskbench.bench.load import check_number, config_params, save_results
from taskbench.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    Subcommand,
    add_store_option,
    argument,
    positive_int,
)
from taskbench.errors import ConfigError


def _number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"expected a number of seconds, got {raw!r}") from None


def _seconds(raw: str) -> float:
    return check_number(_number(raw), "seconds")


def _seconds_or_zero(raw: str) -> float:
    return check_number(_number(raw), "seconds", allow_zero=True)


def _shares(raw: str) -> tuple[float, ...]:
    return check_shares([_number(part) for part in raw.split(",")])


def configure(parser: argparse.ArgumentParser) -> None:
    add_store_option(
        parser, "a store to measure (repeat for several); it is PURGED first", action="append"
    )
    plan = WakeupPlan()
    sizes = parser.add_argument_group("sizes")
    sizes.add_argument(
        "--drain-tasks", default=plan.drain_tasks, type=argument(positive_int), metavar="N"
    )
    sizes.add_argument(
        "--drain-repeats", default=plan.drain_repeats, type=argument(positive_int), metavar="N"
    )
    sizes.add_argument("--duration", default=plan.duration, type=argument(_seconds), metavar="S")
    sizes.add_argument(
        "--warmup", default=plan.warmup, type=argument(_seconds_or_zero), metavar="S"
    )
    sizes.add_argument(
        "--concurrency", default=plan.concurrency, type=argument(positive_int), metavar="C"
    )
    sizes.add_argument(
        "--shares",
        default=plan.shares,
        type=argument(_shares),
        metavar="S,S",
        help="the shares of the median drain throughput to offer, one open loop each "
        f"(default: {','.join(f'{share:g}' for share in plan.shares)}; the target is judged "
        f"at {TARGET_SHARE:g})",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write results files")
    parser.add_argument("--results-dir", type=Path, metavar="DIR", help="where results go")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout and nothing else"
    )


def _plan(args: argparse.Namespace) -> WakeupPlan:
    return WakeupPlan.create(
        drain_tasks=args.drain_tasks,
        drain_repeats=args.drain_repeats,
        duration=args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
        shares=args.shares,
    )


def _save(url: str, measured: Measured, plan: WakeupPlan, directory: Path | None) -> Path:
    """The store's open loops as one run, a row per share (each row has its ``rate``)."""
    first = measured.wakeups[0]
    params = config_params(open_config(url, first.rate, plan)) | {
        "rate": None,
        "shares": list(plan.shares),
        "drain_tps": first.drain_tps,
        "drain_tasks": plan.drain_tasks,
        "drain_repeats": plan.drain_repeats,
    }
    return save_results(measured.open_runs, params=params, directory=directory, kind="wakeup")


def _text(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'store':<48} {'drain/s':>9} {'share':>5} {'offered/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'p99.9 ms':>9} {'wake p99':>9} {'lag p99':>8} {'lost':>5}  p99 < {TARGET_P99_MS:g} ms"
    ]
    for row in rows:
        lines.append(
            f"{row['store'][:48]:<48} {row['drain_tps']:>9,} {row['share']:>5g} {row['rate']:>9,} "
            f"{row['queue_p50_ms']:>8.2f} {row['queue_p99_ms']:>8.2f} "
            f"{row['queue_p99.9_ms']:>9.2f} {row['wake_p99_ms']:>9.2f} "
            f"{row['send_lag_p99_ms'] or 0.0:>8.2f} {row['lost']:>5}  "
            f"{'met' if row['met'] else 'NOT met'}"
        )
    return "\n".join(lines)


async def _measure_all(
    urls: list[str], plan: WakeupPlan, save: bool, directory: Path | None
) -> tuple[list[Measured], list[Path]]:
    measured, saved = [], []
    for url in urls:
        one = await measure_wakeup(url, plan)
        measured.append(one)
        if save:
            saved.append(_save(url, one, plan, directory))
    return measured, saved


def run(args: argparse.Namespace) -> int:
    try:
        plan = _plan(args)
    except ConfigError as exc:  # a pair of values that disagree (warm-up past the duration)
        print(f"taskbench wakeup: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    measured, saved = asyncio.run(
        _measure_all(args.store, plan, not args.no_save, args.results_dir)
    )
    wakeups = [wakeup for one in measured for wakeup in one.wakeups]
    if args.json:
        published = {
            "target_p99_ms": TARGET_P99_MS,
            "stores": [wakeup.to_json_dict() for wakeup in wakeups],
            "results_files": [str(path) for path in saved],
        }
        print(json.dumps(published))
    else:
        print(_text(table(wakeups)))
        for path in saved:
            print(f"saved        {path}")
    return EXIT_OK


COMMANDS = {
    "wakeup": Subcommand(
        help="drain each store, then run the open loop at half that rate: p99 enqueue->start "
        "against the 10 ms target",
        configure=configure,
        run=run,
    ),
}
