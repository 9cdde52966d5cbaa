"""Before/after comparison: the bootstrap interval must tell a real slowdown from noise.

The synthetic measurements imitate five repeats of a throughput benchmark on
a real machine: 1000 tasks/s with 2 % multiplicative noise (log-normal,
sigma 0.02), which is what repeated drains show on a quiet laptop or CI box.
With five repeats the 95 % interval of the ratio of medians is then about
±3 % wide, so:

* a 20 % slowdown (x0.8, ten noise sigmas) is always significant;
* a 2 % slowdown (x0.98, one sigma) usually is NOT: five repeats cannot
  resolve it, and saying so is the honest answer (the calibration test
  checks it is flagged in well under half of the noise draws);
* no change is flagged about as often as 1 - confidence allows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from taskbench.bench.compare import Comparison, compare, compare_paired, summarise
from taskbench.errors import ConfigError

BASE_TPS = 1000.0
NOISE_SIGMA = 0.02
REPEATS = 5
NOISE_SEED = 7
CALIBRATION_DRAWS = 100


def noisy(scale: float, seed: int) -> list[float]:
    """Five repeats of a 1000 tasks/s measurement scaled by ``scale``, 2 % noise."""
    noise = np.random.default_rng(seed).normal(0.0, NOISE_SIGMA, REPEATS)
    return [BASE_TPS * scale * math.exp(n) for n in noise]


def slowdown(scale: float, seed: int) -> Comparison:
    """Compare independent noisy repeats before and after a change of ``scale``."""
    return compare(noisy(1.0, seed), noisy(scale, seed + 10_000))


def test_a_twenty_percent_slowdown_is_significant_and_worse() -> None:
    result = slowdown(0.8, NOISE_SEED)
    assert result.significant
    assert result.ci_low <= result.ratio <= result.ci_high < 1.0
    assert result.ratio == pytest.approx(0.8, rel=0.05)
    assert result.verdict == "worse"
    assert (result.n_before, result.n_after) == (REPEATS, REPEATS)


def test_a_two_percent_slowdown_is_within_the_noise_of_five_repeats() -> None:
    result = slowdown(0.98, NOISE_SEED)
    assert not result.significant
    assert result.ci_low < 1.0 < result.ci_high
    assert result.verdict == "no significant change"


def test_identical_measurements_are_not_significant() -> None:
    values = noisy(1.0, NOISE_SEED)
    result = compare(values, values)
    assert result.ratio == 1.0
    assert result.ci_low < 1.0 < result.ci_high
    assert not result.significant


def test_the_interval_is_calibrated_over_many_noise_draws() -> None:
    """Flag rates over 100 noise draws: x0.8 always, x0.98 rarely, no change about 5 %."""

    def flagged(scale: float) -> int:
        return sum(slowdown(scale, seed).significant for seed in range(CALIBRATION_DRAWS))

    assert flagged(0.8) == CALIBRATION_DRAWS
    assert flagged(0.98) < CALIBRATION_DRAWS * 0.4  # about 20 % (power of five repeats)
    assert flagged(1.0) <= CALIBRATION_DRAWS * 0.12  # about 5 % (1 - confidence)


def test_lower_is_better_turns_the_verdict_around() -> None:
    latency_before, latency_after = noisy(1.0, 1), noisy(0.8, 2)
    assert compare(latency_before, latency_after, higher_is_better=False).verdict == "better"
    assert compare(latency_before, latency_after, higher_is_better=True).verdict == "worse"


def test_the_same_seed_gives_the_same_interval() -> None:
    before, after = noisy(1.0, 3), noisy(0.97, 4)
    assert compare(before, after, seed=11) == compare(before, after, seed=11)


def test_the_seed_drives_the_resampling() -> None:
    """With 40 values the bootstrap quantiles are nearly continuous, so seeds differ."""
    before = [v for seed in range(8) for v in noisy(1.0, seed)]
    after = [v for seed in range(8, 16) for v in noisy(0.97, seed)]
    one, other = compare(before, after, seed=11), compare(before, after, seed=12)
    assert (one.ci_low, one.ci_high) != (other.ci_low, other.ci_high)
    assert one.ratio == other.ratio


def test_a_higher_confidence_widens_the_interval() -> None:
    before, after = noisy(1.0, 5), noisy(0.9, 6)
    narrow, wide = compare(before, after, confidence=0.8), compare(before, after, confidence=0.99)
    assert wide.ci_low <= narrow.ci_low and narrow.ci_high <= wide.ci_high
    assert (wide.ci_low, wide.ci_high) != (narrow.ci_low, narrow.ci_high)


def test_describe_is_one_line_with_the_ratio_interval_and_verdict() -> None:
    line = slowdown(0.8, NOISE_SEED).describe()
    assert "\n" not in line
    assert line.startswith("after/before 0.")
    assert "95% CI" in line and "n=5/5" in line and line.endswith("worse")


@pytest.mark.parametrize(
    ("before", "after", "fragment"),
    [
        ([], [1.0], "before must be a non-empty"),
        ([1.0], [], "after must be a non-empty"),
        ([1.0, 0.0], [1.0], "before must be positive"),
        ([1.0], [-2.0], "after must be positive"),
        ([1.0, math.nan], [1.0], "NaN or infinite"),
        ([1.0], [math.inf], "NaN or infinite"),
        ([1.0], ["fast"], "sequence of numbers"),
    ],
)
def test_bad_values_are_config_errors(
    before: list[float], after: list[float], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        compare(before, after)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"confidence": 1.0}, "confidence must be between"),
        ({"confidence": 0.0}, "confidence must be between"),
        ({"resamples": 0}, "resamples must be a positive integer"),
    ],
)
def test_bad_settings_are_config_errors(options: dict[str, float], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        compare([1.0], [1.0], **options)  # type: ignore[arg-type]


def test_summarise_gives_median_spread_and_range() -> None:
    summary = summarise([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (summary.median, summary.q1, summary.q3, summary.iqr) == (3.0, 2.0, 4.0, 2.0)
    assert (summary.min, summary.max, summary.n) == (1.0, 5.0, 5)
    assert summary.relative_iqr == pytest.approx(2.0 / 3.0)
    assert summarise([0.0, 0.0]).relative_iqr == math.inf


@pytest.mark.parametrize("values", [[], [math.nan], [1.0, math.inf]])
def test_summarise_refuses_bad_values(values: list[float]) -> None:
    with pytest.raises(ConfigError):
        summarise(values)


def test_more_repeats_give_a_narrower_interval() -> None:
    """The interval shrinks about as 1/sqrt(n): 45 repeats a side, about a third of 5's."""

    def width(repeats: int) -> float:
        rng = np.random.default_rng(NOISE_SEED)
        before = BASE_TPS * np.exp(rng.normal(0.0, NOISE_SIGMA, repeats))
        after = 0.98 * BASE_TPS * np.exp(rng.normal(0.0, NOISE_SIGMA, repeats))
        result = compare(before.tolist(), after.tolist())
        return result.ci_high - result.ci_low

    assert width(45) < 0.6 * width(5)


# -- paired (interleaved) runs ---------------------------------------------------------


def drifting_pairs(scale: float, seed: int, repeats: int = 10) -> tuple[list[float], list[float]]:
    """Interleaved runs on a machine whose load moves both runs of a pair by up to ±40 %."""
    rng = np.random.default_rng(seed)
    load = np.exp(rng.uniform(-0.4, 0.4, repeats))
    before = BASE_TPS * load * np.exp(rng.normal(0.0, NOISE_SIGMA, repeats))
    after = BASE_TPS * scale * load * np.exp(rng.normal(0.0, NOISE_SIGMA, repeats))
    return before.tolist(), after.tolist()


def test_pairing_cancels_a_drifting_load_that_hides_a_change_unpaired() -> None:
    before, after = drifting_pairs(0.9, NOISE_SEED)
    paired = compare_paired(before, after)
    assert paired.significant and paired.verdict == "worse"
    assert paired.ratio == pytest.approx(0.9, rel=0.03)
    assert paired.ci_low <= paired.ratio <= paired.ci_high < 1.0
    assert not compare(before, after).significant  # the same values, unpaired: lost in the load


def test_paired_five_repeats_flag_a_20_percent_change_and_rarely_a_2_percent_one() -> None:
    def flagged(scale: float) -> int:
        draws = (drifting_pairs(scale, seed, repeats=5) for seed in range(CALIBRATION_DRAWS))
        return sum(compare_paired(*pairs).significant for pairs in draws)

    assert flagged(0.8) == CALIBRATION_DRAWS
    assert flagged(0.98) < CALIBRATION_DRAWS * 0.4


def test_paired_values_must_pair_up() -> None:
    with pytest.raises(ConfigError, match="as many after as before"):
        compare_paired([1.0, 2.0], [1.0])
    with pytest.raises(ConfigError, match="before must be positive"):
        compare_paired([0.0], [1.0])
