"""The wake-up figure: drain to find the throughput, then the open loop at half of it."""

from __future__ import annotations

import pytest

from taskbench.bench.arrivals import TARGET_SHARE, WakeupPlan, measure_wakeup, table
from taskbench.errors import ConfigError


async def test_each_open_loop_is_offered_its_share_of_the_median_drain() -> None:
    plan = WakeupPlan.create(
        drain_tasks=500, drain_repeats=3, duration=1.0, warmup=0.2, shares=[0.5, 0.2]
    )
    measured = await measure_wakeup("memory://", plan)
    drains = sorted(result.drain_tps for result in measured.drains)
    assert len(drains) == 3
    assert [w.share for w in measured.wakeups] == [0.2, 0.5]
    for wakeup, run in zip(measured.wakeups, measured.open_runs, strict=True):
        assert wakeup.drain_tps == drains[1]
        assert wakeup.rate == run.rate == pytest.approx(wakeup.share * drains[1])
        assert wakeup.lost == 0 and run.succeeded == run.tasks
    wakeup = measured.at_target
    assert wakeup is not None and wakeup.share == TARGET_SHARE
    assert 0 < wakeup.queue_ms["p50"] <= wakeup.queue_ms["p99"] <= wakeup.queue_ms["p99.9"]
    spectrum = [row["ms"] for row in wakeup.spectrum]
    assert spectrum == sorted(spectrum) and wakeup.spectrum[-1]["percentile"] == 100.0
    assert wakeup.met == (wakeup.queue_ms["p99"] < 10.0)
    (row,) = table([wakeup])
    assert row["queue_p99_ms"] == wakeup.queue_ms["p99"] and row["lost"] == 0


@pytest.mark.parametrize(
    ("sizes", "named"),
    [
        ({"drain_tasks": 0}, "drain tasks"),
        ({"drain_repeats": -1}, "drain repeats"),
        ({"duration": 0}, "duration"),
        ({"warmup": -1.0}, "warmup"),
        ({"warmup": 10.0, "duration": 10.0}, "shorter than the duration"),
        ({"shares": []}, "shares of the drain"),
        ({"shares": [0.5, 1.5]}, "shares of the drain"),
        ({"shares": [0.5, 0.5]}, "shares of the drain"),
        ({"shares": [0.0]}, "a share of the drain"),
        ({"concurrency": 1.5}, "concurrency"),
    ],
)
def test_bad_sizes_are_refused_by_name(sizes: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        WakeupPlan.create(**sizes)  # type: ignore[arg-type]
