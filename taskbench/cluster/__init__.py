"""Distributed experiments on local worker processes: the library behind the ``worker``,
``cluster`` and ``failover`` commands (:mod:`taskbench.cli.distributed` only parses
their arguments).

* :mod:`~taskbench.cluster.options`: :class:`WorkerOptions`, checked before anything starts;
* :mod:`~taskbench.cluster.worker`: one worker process (:func:`serve`);
* :mod:`~taskbench.cluster.local`: :class:`LocalCluster` of worker processes, and
  :func:`account` for every task read back from the store;
* :mod:`~taskbench.cluster.scaling`: throughput with N processes (:func:`measure_scaling`);
* :mod:`~taskbench.cluster.failover`: kill the leader K times under load
  (:func:`measure_failover`).

The stores given to the experiments are **purged first**: give them a store
(and a coordinator prefix) of their own.
"""

from __future__ import annotations

from taskbench.cluster.failover import (
    FailoverResult,
    failover_report,
    format_failover,
    measure_failover,
)
from taskbench.cluster.local import Accounting, LocalCluster, account, local_cluster
from taskbench.cluster.options import WorkerOptions
from taskbench.cluster.scaling import (
    ThroughputRun,
    cluster_report,
    format_cluster,
    measure_scaling,
    measure_throughput,
)
from taskbench.cluster.worker import serve

__all__ = [
    "Accounting",
    "FailoverResult",
    "LocalCluster",
    "ThroughputRun",
    "WorkerOptions",
    "account",
    "cluster_report",
    "failover_report",
    "format_cluster",
    "format_failover",
    "local_cluster",
    "measure_failover",
    "measure_scaling",
    "measure_throughput",
    "serve",
]
