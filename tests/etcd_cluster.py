"""Throwaway etcd members for tests: the library's (taskbench/faults/etcd.py), made to skip.

A test never touches a shared etcd or the usual port 2379: each cluster binds
port 0 to find free ports, keeps its data in a temporary directory, and is
stopped (SIGTERM, then SIGKILL) when the test ends. Without the etcd binary
(``apt-get install -y etcd-server etcd-client``; Debian ships etcd 3.4) a test
that starts a cluster is skipped, and fails in CI, where every backend must run.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from taskbench.faults import etcd
from taskbench.faults.etcd import EtcdMember, find_etcd
from taskbench.faults.servers import free_ports
from tests.backends import all_backends_required

__all__ = ["EtcdCluster", "EtcdMember", "free_ports"]


@dataclass
class EtcdCluster(etcd.EtcdCluster):
    """:class:`taskbench.faults.etcd.EtcdCluster`, skipping (failing in CI) without etcd."""

    def start(self) -> EtcdCluster:
        if find_etcd() is None:
            message = f"etcd tests need the etcd binary: {etcd.INSTALL_HINT}"
            if all_backends_required():
                pytest.fail(f"{message}; in CI every backend must run")
            pytest.skip(message)
        super().start()
        return self
