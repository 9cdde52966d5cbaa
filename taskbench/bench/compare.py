"""Before/after comparison of repeated measurements, with a bootstrap confidence interval.

A benchmark repeated a few times gives a few numbers per version; the
question "did it get faster?" is answered by :func:`compare`: the ratio of
the medians (after / before) and a percentile-bootstrap confidence interval
of that ratio. The change is *significant* when the interval excludes 1.0.
:func:`compare_paired` is the same for interleaved runs (before and after
measured in turn, pair by pair): the median of the per-pair ratios, with
the pairs resampled together, so a load that drifts slowly over the
session (a shared machine) cancels out of each pair instead of widening
the interval. :func:`summarise` gives the median and spread a table prints
beside it.

Design rules:

* **Medians, not means**: one run disturbed by the machine moves a mean,
  not a median.
* **Honest about noise.** With five repeats whose noise is about 2 %, the
  interval is about ±3 % wide, so a 2 % change is reported as not
  significant: it cannot be told apart from noise with that few repeats.
  Repeat more (or quieten the machine) to resolve smaller changes.
* **Vectorised and reproducible.** All resamples are drawn in one NumPy
  call per side from ``numpy.random.default_rng(seed)``; the same inputs
  and seed give the same interval.
* **Strict input.** Empty, non-finite or (for :func:`compare`) non-positive
  values raise :class:`~taskbench.errors.ConfigError`.
* NumPy (installed with the ``notebooks`` extra) is imported at module top:
  the whole module needs it. Without it, importing this module raises
  MissingDependencyError naming ``pip install 'taskbench[notebooks]'``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from taskbench.bench.environment import requires_extra
from taskbench.errors import ConfigError

with requires_extra("comparing benchmark results"):
    import numpy as np
    import numpy.typing as npt

Values = npt.NDArray[np.float64]

__all__ = ["Comparison", "Summary", "compare", "compare_paired", "summarise"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """The median and spread of repeated measurements."""

    median: float
    q1: float
    q3: float
    iqr: float
    relative_iqr: float
    """``iqr / |median|`` (infinite when the median is 0): the noise, as a fraction."""
    min: float
    max: float
    n: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """After vs before: the ratio of medians and its bootstrap confidence interval."""

    ratio: float
    """median(after) / median(before)."""
    ci_low: float
    ci_high: float
    confidence: float
    significant: bool
    """The interval excludes 1.0."""
    higher_is_better: bool
    n_before: int
    n_after: int

    @property
    def verdict(self) -> str:
        """``"better"``, ``"worse"`` or ``"no significant change"``."""
        if not self.significant:
            return "no significant change"
        return "better" if (self.ratio > 1.0) == self.higher_is_better else "worse"

    def describe(self) -> str:
        """One line, e.g. ``after/before 0.800 (95% CI 0.781-0.819, n=5/5): -20.0%, worse``."""
        return (
            f"after/before {self.ratio:.3f} "
            f"({self.confidence:.0%} CI {self.ci_low:.3f}-{self.ci_high:.3f}, "
            f"n={self.n_before}/{self.n_after}): {self.ratio - 1.0:+.1%}, {self.verdict}"
        )


def _as_values(values: Sequence[float], what: str, *, positive: bool) -> Values:
    """``values`` as a float array, or ConfigError if empty, non-finite or (if asked) <= 0."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a sequence of numbers, got {values!r}") from None
    if array.ndim != 1 or array.size == 0:
        raise ConfigError(f"{what} must be a non-empty, flat sequence of numbers")
    if not np.all(np.isfinite(array)):
        raise ConfigError(f"{what} contains NaN or infinite values: {array.tolist()}")
    if positive and np.any(array <= 0):
        raise ConfigError(f"{what} must be positive (a ratio of medians needs it)")
    return array


def summarise(values: Sequence[float]) -> Summary:
    """Median, quartiles, IQR, min, max and count of ``values`` (finite, non-empty)."""
    array = _as_values(values, "values", positive=False)
    q1, median, q3 = (float(q) for q in np.quantile(array, [0.25, 0.5, 0.75]))
    iqr = q3 - q1
    return Summary(
        median=median,
        q1=q1,
        q3=q3,
        iqr=iqr,
        relative_iqr=iqr / abs(median) if median else math.inf,
        min=float(array.min()),
        max=float(array.max()),
        n=int(array.size),
    )


def _check_settings(confidence: float, resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be between 0 and 1, got {confidence!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ConfigError(f"resamples must be a positive integer, got {resamples!r}")


def bootstrap_medians(values: Values, resamples: int, rng: np.random.Generator) -> Values:
    """The medians of ``resamples`` resamples (with replacement) of ``values``, in one draw."""
    picks = rng.integers(0, values.size, size=(resamples, values.size))
    medians: Values = np.median(values[picks], axis=1)
    return medians


def compare(
    before: Sequence[float],
    after: Sequence[float],
    *,
    higher_is_better: bool = True,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Ratio of medians after/before, with a percentile-bootstrap confidence interval.

    ``higher_is_better`` only names the direction (throughput: True; latency:
    False) for :attr:`Comparison.verdict`; the interval does not depend on it.
    """
    _check_settings(confidence, resamples)
    old = _as_values(before, "before", positive=True)
    new = _as_values(after, "after", positive=True)
    rng = np.random.default_rng(seed)
    ratios = bootstrap_medians(new, resamples, rng) / bootstrap_medians(old, resamples, rng)
    ratio = float(np.median(new) / np.median(old))
    return _comparison(ratio, ratios, confidence, higher_is_better, (old.size, new.size))


def _comparison(
    ratio: float, resampled: Values, confidence: float, higher_is_better: bool, n: tuple[int, int]
) -> Comparison:
    """``ratio`` with the percentile interval of its ``resampled`` values."""
    tail = (1.0 - confidence) / 2.0
    low, high = (float(q) for q in np.quantile(resampled, [tail, 1.0 - tail]))
    return Comparison(
        ratio=ratio,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        significant=high < 1.0 or low > 1.0,
        higher_is_better=higher_is_better,
        n_before=int(n[0]),
        n_after=int(n[1]),
    )


def compare_paired(
    before: Sequence[float],
    after: Sequence[float],
    *,
    higher_is_better: bool = True,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """The median of the ratios ``after[i] / before[i]``, with a bootstrap interval over pairs.

    For runs made in interleaved pairs: whatever slows both runs of a pair
    down (the machine's load at that moment) cancels in their ratio.
    ``before`` and ``after`` must be the same length (ConfigError otherwise).
    """
    _check_settings(confidence, resamples)
    old = _as_values(before, "before", positive=True)
    new = _as_values(after, "after", positive=True)
    if old.size != new.size:
        raise ConfigError(f"paired values need as many after as before ({new.size} != {old.size})")
    ratios = new / old
    medians = bootstrap_medians(ratios, resamples, np.random.default_rng(seed))
    return _comparison(
        float(np.median(ratios)), medians, confidence, higher_is_better, (old.size, new.size)
    )
