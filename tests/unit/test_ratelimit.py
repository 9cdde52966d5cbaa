"""Token-bucket arithmetic, on a fake clock."""

from __future__ import annotations

import pytest

from taskbench.errors import ConfigError
from taskbench.ratelimit import RateLimit, RateLimiter, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_full_and_refills_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(rate=10.0, burst=3.0), clock)
    for _ in range(3):
        assert bucket.wait_time() == 0.0
        bucket.take()
    assert bucket.wait_time() == pytest.approx(0.1)
    clock.now = 0.05
    assert bucket.wait_time() == pytest.approx(0.05)
    clock.now = 10.0
    assert bucket.wait_time() == 0.0
    for _ in range(3):
        bucket.take()
    assert bucket.wait_time() == pytest.approx(0.1)  # refill is capped at the burst


def test_limiter_takes_from_every_bucket_only_when_all_have_a_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(overall=100.0, per_name={"slow": 1.0}, clock=clock)
    assert limiter.try_acquire("slow") == 0.0
    assert limiter.try_acquire("slow") == pytest.approx(1.0)
    # the refused "slow" task did not spend the global token:
    clock.now = 0.01
    assert limiter.try_acquire("fast") == 0.0
    assert limiter.try_acquire("fast") == pytest.approx(0.01)


def test_an_unlimited_limiter_is_inactive() -> None:
    assert not RateLimiter().active
    assert RateLimiter().try_acquire("anything") == 0.0


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_bad_rates_are_refused(rate: float) -> None:
    with pytest.raises(ConfigError):
        RateLimit(rate)
    with pytest.raises(ConfigError):
        RateLimit(1.0, burst=0.5)
