"""What a distributed worker process runs with: :class:`WorkerOptions`, checked once.

The ``worker``, ``cluster`` and ``failover`` commands, the experiments in
:mod:`taskbench.cluster` and the tests build their worker processes from one
:class:`WorkerOptions`; :meth:`WorkerOptions.create` checks everything before
anything starts (ConfigError naming the bad value), and :meth:`WorkerOptions.argv`
is the command line that starts a worker process with them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskbench.bench.drain import check_positive, check_store_url
from taskbench.bench.workloads import parse_workload
from taskbench.coordination import COORDINATORS, open_coordinator
from taskbench.coordination.base import check_seconds
from taskbench.distributed import Mode, check_duty_period, check_mode
from taskbench.errors import ConfigError
from taskbench.stores import Capability, open_store
from taskbench.urls import options_for, redact


def check_shared_store_url(url: str) -> str:
    """A store URL that several processes can share (not ``memory://``)."""
    check_store_url(url)
    if Capability.MULTI_PROCESS not in open_store(url).capabilities:
        raise ConfigError(f"{redact(url)} cannot be shared between processes; use a server store")
    return url


def check_coordinator_url(url: str) -> str:
    """``url`` if it names a known coordinator (driver installed) with valid options."""
    backend, parts = COORDINATORS.resolve(url)
    options_for(backend, parts.query)
    return url


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    """Everything a worker process needs; :meth:`create` checks it all (ConfigError)."""

    store: str
    coordinator: str
    concurrency: int
    workload: str = "noop"
    ttl: float | None = None
    """None: the coordinator URL's ``ttl`` option, else its default."""
    refresh: float | None = None
    duty_period: float = 1.0
    mode: Mode = Mode.LEADER
    lease: float = 30.0
    grace: float = 10.0
    self_fencing: bool = True
    connect_timeout: float = 5.0

    @classmethod
    def create(cls, **options: Any) -> WorkerOptions:
        made = cls(**options)
        check_shared_store_url(made.store)
        check_coordinator_url(made.coordinator)
        check_positive(made.concurrency, "concurrency")
        parse_workload(made.workload)
        check_duty_period(made.duty_period)
        check_mode(made.mode)
        check_seconds(made.lease, "lease")
        check_seconds(made.grace, "grace")
        open_coordinator(made.coordinator, **made.coordinator_options())  # checks the timings
        return made

    def coordinator_options(self, worker_id: str | None = None) -> dict[str, Any]:
        options: dict[str, Any] = {"connect_timeout": self.connect_timeout}
        if self.ttl is not None:
            options["ttl"] = self.ttl
        if self.refresh is not None:
            options["refresh"] = self.refresh
        if worker_id is not None:
            options["worker_id"] = worker_id
        return options

    def argv(self, worker_id: str, record: Path) -> list[str]:
        """The command line of a worker process with these options."""
        command = [sys.executable, "-m", "taskbench.cli", "-v", "worker"]
        command += ["--store", self.store, "--coordinator", self.coordinator]
        command += ["--concurrency", str(self.concurrency), "--workload", self.workload]
        command += ["--duty-period", str(self.duty_period)]
        command += ["--mode", self.mode.value, "--lease", str(self.lease)]
        command += ["--grace", str(self.grace), "--connect-timeout", str(self.connect_timeout)]
        command += ["--worker-id", worker_id, "--record", str(record)]
        if self.ttl is not None:
            command += ["--ttl", str(self.ttl)]
        if self.refresh is not None:
            command += ["--refresh", str(self.refresh)]
        if not self.self_fencing:
            command.append("--no-self-fencing")
        return command


def describe(options: WorkerOptions) -> dict[str, Any]:
    """The options an experiment's report names (URLs redacted)."""
    return {
        "store": redact(options.store),
        "coordinator": redact(options.coordinator),
        "workload": options.workload,
        "concurrency": options.concurrency,
        "mode": options.mode.value,
        "ttl": options.ttl,
    }
