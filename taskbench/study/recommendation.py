"""The recommendation: section 1.7 of the report redone from the chapters' summaries.

:func:`recommend` sets each of the report's choices beside the numbers that
bear on it, one ``_*_row`` helper per row, leaving out a row whose chapters
are missing; :func:`impact_of` lists the improvements measured in chapter 3
with their ratio, interval and better direction.
"""

from __future__ import annotations

from collections.abc import (
    Mapping,
)
from typing import Any

IMPROVEMENTS = (
    ("P1.2 SQLite claim round trip (claim index)", "index", "lower"),
    ("P1.3 distributed throughput, most processes / one", "execution", "higher"),
    ("P2.1 downstream calls per task (rate limit)", "rate_limit", "lower"),
    ("P2.2 urgent task latency (priority)", "priority", "lower"),
    ("P2.3 tasks that succeed under faults (retries)", "faults", "higher"),
    ("P3.1 no-op throughput with metrics recorded", "metrics_cost", "higher"),
)
"""(label, key in the improvements chapter's summary, which direction is better)."""
SERVER_STORES = ("postgres", "mysql", "redis")


def impact_of(improvements: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per improvement measured in chapter 3: its ratio, interval and better direction."""
    rows = []
    for name, key, better in IMPROVEMENTS:
        if key in improvements:
            found = improvements[key]
            ratio = {k: found[k] for k in ("ratio", "ci_low", "ci_high")}
            rows.append({"name": name, **ratio, "better": better})
    return rows


def _tps(compared: Mapping[str, Any], store: str) -> str:
    found = compared["stores"].get(store)
    return f"{found['drain_tps']:,.0f} tasks/s" if found else "n/a"


def _claim(bottlenecks: Mapping[str, Any], store: str) -> str:
    found = bottlenecks.get("claim_p50_ms_at_largest_backlog", {}).get(store)
    return f"claim {found:.2f} ms" if found is not None else "claim n/a"


def _executor_row(compared: Mapping[str, Any], improved: Mapping[str, Any]) -> dict[str, str]:
    ratios = compared["executor_ratios"]
    rate, priority = improved["rate_limit"], improved["priority"]
    return {
        "service": "TaskExecutor",
        "report chose": "keep it; add rate limiting, prioritisation and error handling",
        "measured": (
            f"ours/asyncio x{ratios['noop: taskbench/asyncio']['ratio']:.2f} (no-op), "
            f"x{ratios['sleep:2: taskbench/asyncio']['ratio']:.2f} (sleep:2); ours/threads "
            f"x{ratios['noop: taskbench/threads']['ratio']:.2f}; calls per task "
            f"{rate['amplification_before']:.2f} -> {rate['amplification_after']:.2f} with the "
            f"rate limit; urgent p50 {priority['fifo_p50_ms']:.0f} -> "
            f"{priority['priority_p50_ms']:.0f} ms with priorities"
        ),
        "supported choice": "keep it, with the three features on: each pays for itself",
    }


def _production_row(compared: Mapping[str, Any], bottlenecks: Mapping[str, Any]) -> dict[str, str]:
    servers = [store for store in SERVER_STORES if store in compared["stores"]]
    sql = [store for store in servers if store != "redis"]
    best = max(sql, key=lambda store: compared["stores"][store]["drain_tps"], default=None)
    return {
        "service": "TaskStore for production",
        "report chose": "PostgreSQL",
        "measured": "; ".join(
            f"{store} {_tps(compared, store)}, {_claim(bottlenecks, store)}" for store in servers
        ),
        "supported choice": (
            f"{best}: the faster of the durable, multi-host SQL stores in this run"
            if best
            else "no server store measured"
        ),
    }


def _development_row(compared: Mapping[str, Any], bottlenecks: Mapping[str, Any]) -> dict[str, str]:
    return {
        "service": "TaskStore for development",
        "report chose": "SQLite",
        "measured": (
            f"sqlite {_tps(compared, 'sqlite')}, {_claim(bottlenecks, 'sqlite')}; legacy "
            f"{_tps(compared, 'sqlite-legacy')}, {_claim(bottlenecks, 'sqlite-legacy')}"
        ),
        "supported choice": "SQLite, improved profile: no server, and with the claim index it "
        "no longer slows down as the queue grows",
    }


def _redis_row(compared: Mapping[str, Any], bottlenecks: Mapping[str, Any]) -> dict[str, str]:
    return {
        "service": "TaskStore: Redis",
        "report chose": "a cache layer or temporary storage",
        "measured": f"redis {_tps(compared, 'redis')}, {_claim(bottlenecks, 'redis')}",
        "supported choice": "fast; its durability is the server's persistence setting, so keep "
        "it for work that may be redone",
    }


def _distributed_row(distributed: Mapping[str, Any]) -> dict[str, str]:
    leader = [run for run in distributed["cluster"] if run["mode"] == "leader"]
    one = next((run["tasks_per_s"] for run in leader if run["workers"] == 1), None)
    most = max(leader, key=lambda run: run["workers"], default=None)
    speedup = (
        f"x{most['tasks_per_s'] / one:.2f} with {most['workers']} processes"
        if most and one
        else "n/a"
    )
    kills = [row for row in distributed["failover"] if row["signal"] == "KILL"]
    worst = max((row["failover max (s)"] for row in kills), default=float("nan"))
    stale = sum(row["stale writes accepted"] for row in distributed["failover"])
    lost = sum(row["lost"] for row in distributed["failover"])
    return {
        "service": "DistributedExecutor",
        "report chose": "improve the current one: add task execution and error handling",
        "measured": (
            f"0 tasks/s before (placeholder); now {speedup}; failover after kill -9 at most "
            f"{worst:.2f} s (TTL {distributed['ttl']:g} s); {stale} stale writes accepted, "
            f"{lost} tasks lost"
        ),
        "supported choice": "the executing, fenced DistributedExecutor, on etcd or Redis",
    }


def _durability_row(reliability: Mapping[str, Any]) -> dict[str, str]:
    runs = reliability["crash"]
    promised = [run for run in runs if run["survives_process_crash"]]
    kept = [run["label"] for run in promised if run["lost"] == 0 and run["corrupted"] == 0]
    losing = [f"{run['label']} lost {run['lost']}" for run in runs if run["lost"]]
    return {
        "service": "TaskStore durability",
        "report chose": "SQLite and PostgreSQL: ACID; Redis: limited durability",
        "measured": f"0 lost, 0 corrupted: {', '.join(kept) or 'none'}; "
        f"losses: {', '.join(losing) or 'none'}",
        "supported choice": "durability is a setting: run every store with the settings that "
        "kept every acknowledged task here (Redis: appendfsync always)",
    }


def recommend(summaries: Mapping[str, Mapping[str, Any] | None]) -> list[dict[str, str]]:
    """Section 1.7's choices beside the numbers that bear on them.

    ``summaries`` maps a chapter's slug to its summary (None if missing); a row
    is left out when the chapters it needs are missing.
    """
    compared, improved = summaries.get("01_compare"), summaries.get("03_improvements")
    bottlenecks = summaries.get("02_bottlenecks") or {}
    rows = []
    if compared and improved:
        rows.append(_executor_row(compared, improved))
    if compared:
        rows.extend(
            [_production_row(compared, bottlenecks), _development_row(compared, bottlenecks)]
        )
        if "redis" in compared["stores"]:
            rows.append(_redis_row(compared, bottlenecks))
    if reliability := summaries.get("05_reliability"):
        rows.append(_durability_row(reliability))
    if distributed := summaries.get("04_distributed"):
        rows.append(_distributed_row(distributed))
    return rows
