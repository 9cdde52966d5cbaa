"""Token buckets: the executor's rate limits, global and per task name.

A :class:`TokenBucket` holds up to ``burst`` tokens and gains ``rate`` tokens a
second; running a task takes one. :class:`RateLimiter` combines one optional
global bucket with optional per-name buckets and takes a token from each
bucket that applies *only when all of them have one*, so a task waiting on
its name's bucket does not waste a global token.

Time comes from an injectable monotonic clock, so the arithmetic is tested
without sleeping.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from taskbench.errors import ConfigError

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate`` tasks per second on average, with bursts of up to ``burst``."""

    rate: float
    burst: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ConfigError(f"a rate limit must be a positive tasks/s, got {self.rate!r}")
        if not (math.isfinite(self.burst) and self.burst >= 1):
            raise ConfigError(f"a rate limit's burst must be at least 1, got {self.burst!r}")

    @classmethod
    def of(cls, value: float | RateLimit) -> RateLimit:
        return value if isinstance(value, RateLimit) else cls(float(value))


class TokenBucket:
    """One bucket; starts full."""

    def __init__(self, limit: RateLimit, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._tokens = limit.burst
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        gained = (now - self._updated) * self.limit.rate
        self._tokens = min(self.limit.burst, self._tokens + gained)
        self._updated = now

    def wait_time(self) -> float:
        """Seconds until a token is available (0 if one is available now)."""
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.limit.rate)

    def take(self) -> None:
        """Take a token (callers check :meth:`wait_time` first)."""
        self._tokens -= 1.0


class RateLimiter:
    """A global bucket and per-name buckets; :meth:`acquire` waits for all that apply."""

    def __init__(
        self,
        overall: float | RateLimit | None = None,
        per_name: Mapping[str, float | RateLimit] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._overall = None if overall is None else TokenBucket(RateLimit.of(overall), clock)
        self._per_name = {
            name: TokenBucket(RateLimit.of(limit), clock)
            for name, limit in (per_name or {}).items()
        }

    @property
    def active(self) -> bool:
        return self._overall is not None or bool(self._per_name)

    def _buckets(self, name: str) -> list[TokenBucket]:
        buckets = [self._per_name[name]] if name in self._per_name else []
        return buckets if self._overall is None else [self._overall, *buckets]

    def try_acquire(self, name: str) -> float:
        """Take the tokens for one ``name`` task and return 0, or return how long to wait."""
        buckets = self._buckets(name)
        wait = max((b.wait_time() for b in buckets), default=0.0)
        if wait == 0.0:
            for bucket in buckets:
                bucket.take()
        return wait

    async def acquire(self, name: str) -> None:
        """Wait until a ``name`` task may start, and take its tokens."""
        while (wait := self.try_acquire(name)) > 0:
            await asyncio.sleep(wait)
