"""Coordinators, opened by URL: ``open_coordinator("etcd://10.0.0.1:2379,10.0.0.2:2379?ttl=5")``.

A coordinator elects one leader among processes, stamps its leadership with a
fencing epoch and lists the live workers. The scheme picks the backend
(imported only when used); query-string options become its keyword arguments.
See :mod:`taskbench.coordination.base` for the contract every backend keeps,
and :mod:`taskbench.urls` for the URL rules.
"""

from __future__ import annotations

from typing import Any

from taskbench.coordination.base import (
    BaseCoordinator,
    Coordinator,
    Leadership,
)
from taskbench.errors import CoordinatorUnavailableError, SessionExpiredError
from taskbench.urls import Backend, Registry

COORDINATORS = Registry(
    "coordinator",
    {
        "etcd": Backend("taskbench.coordination.etcd", "EtcdCoordinator", "etcd"),
        "redis": Backend("taskbench.coordination.redis", "RedisCoordinator", "redis"),
        "rediss": Backend("taskbench.coordination.redis", "RedisCoordinator", "redis"),
    },
)


def open_coordinator(url: str, **options: Any) -> Coordinator:
    """A coordinator for ``url`` (not yet connected: ``await c.open()`` or ``async with``).

    Keyword ``options`` override the URL's query-string options (e.g. a Redis
    ``epoch_source``, which a URL cannot carry). Raises ConfigError for a
    malformed URL, an unknown scheme or option, or bad timing (ttl <= 0,
    refresh >= ttl), and MissingDependencyError (with the pip line) for a
    missing driver.
    """
    coordinator: Coordinator = COORDINATORS.open(url, **options)
    return coordinator


__all__ = [
    "COORDINATORS",
    "BaseCoordinator",
    "Coordinator",
    "CoordinatorUnavailableError",
    "Leadership",
    "SessionExpiredError",
    "open_coordinator",
]
