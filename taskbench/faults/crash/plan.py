"""The plan of a crash or restart experiment, checked before anything starts.

:meth:`CrashPlan.create` picks what the experiment runs on: a SQLite file
in its directory or a server it starts (``postgres``, ``redis``,
``mariadb``), with a durability setting; or an existing store by URL, which
no one will crash. It then checks every figure and raises a ConfigError
naming what was wrong: the counts of tasks, workers and faults, the times,
the kind of experiment (:data:`EXPERIMENTS`), that a server fault has a
server process to strike, and that a given store can be shared by worker
processes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from taskbench.errors import ConfigError
from taskbench.faults.servers import SERVERS, Setting, find_setting
from taskbench.stores import open_store
from taskbench.stores.base import Capability
from taskbench.urls import redact

EXPERIMENTS = ("crash", "restart")
"""The kinds a result is saved under (``save_run(kind=...)``)."""


def _check_count(value: int, what: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_seconds(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class CrashPlan:
    """One experiment; make it with :meth:`create`, which checks everything first.

    ``server`` is ``sqlite`` (a file in the experiment's directory) or a server
    this module starts (``postgres``, ``redis``, ``mariadb``) with ``setting``;
    or ``url`` names an existing store (it is PURGED) that no one will crash.
    """

    server: str
    setting: Setting | None
    url: str | None = None
    tasks: int = 400
    worker_kills: int = 3
    server_kills: int = 0
    server_restarts: int = 0
    workers: int = 1
    concurrency: int = 8
    task_ms: float = 10.0
    lease_s: float = 3.0
    downtime_s: float = 0.5
    seed: int = field(default_factory=lambda: random.randrange(2**31))
    experiment: str = "crash"

    @classmethod
    def create(
        cls,
        *,
        server: str | None = None,
        setting: str | None = None,
        url: str | None = None,
        **kw: Any,
    ) -> CrashPlan:
        """Validate (ConfigError naming the fault) before anything starts."""
        chosen = _choose_setting(server, setting, url)
        plan = cls(server=chosen.server if chosen else "url", setting=chosen, url=url, **kw)
        plan.check()
        return plan

    @property
    def faults(self) -> int:
        return self.worker_kills + self.server_kills + self.server_restarts

    def check(self) -> None:
        for name in ("worker_kills", "server_kills", "server_restarts"):
            _check_count(getattr(self, name), name.replace("_", " "))
        for name in ("workers", "concurrency"):
            _check_count(getattr(self, name), name, minimum=1)
        _check_count(self.tasks, "tasks", minimum=self.faults + 1)
        _check_seconds(self.lease_s, "lease_s")
        _check_seconds(self.downtime_s, "downtime_s")
        if self.task_ms < 0:
            raise ConfigError(f"task_ms must be >= 0, got {self.task_ms!r}")
        if self.experiment not in EXPERIMENTS:
            raise ConfigError(f"experiment must be one of {EXPERIMENTS}, got {self.experiment!r}")
        if self.server_kills + self.server_restarts and self.server not in SERVERS:
            raise ConfigError(
                f"{self.server} has no server process to kill or restart; "
                f"servers: {', '.join(SERVERS)}"
            )
        if self.url is not None:
            _check_shared(self.url)


def _choose_setting(server: str | None, setting: str | None, url: str | None) -> Setting | None:
    if (server is None) == (url is None):
        raise ConfigError("give either a store URL or a server to start (not both)")
    if url is not None:
        if setting is not None:
            raise ConfigError("a setting applies to a server the experiment starts, not to a URL")
        return None
    assert server is not None
    return find_setting(server, setting)


def _check_shared(url: str) -> None:
    store = open_store(url)
    if Capability.MULTI_PROCESS not in store.capabilities:
        raise ConfigError(f"{redact(url)} cannot be shared by worker processes")
