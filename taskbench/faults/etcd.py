"""Throwaway etcd members on free loopback ports: start, find the raft leader, kill, stop.

Experiments that need a real etcd (the study's chapters, the cluster tests)
start their own here rather than touching a shared one or the usual port
2379: ports are found by binding port 0, data lives in a directory the caller
owns, and ``stop`` ends every member (SIGTERM, then SIGKILL). The binary is
``etcd`` on PATH or ``$TASKBENCH_ETCD_BIN``; Debian ships it as
``etcd-server`` (etcd 3.4).

Elections are tuned short (``--heartbeat-interval 50 --election-timeout 500``)
so a killed raft leader is replaced in about a second.

    with local_etcd(tmp_dir) as url:      # "etcd://127.0.0.1:PORT"
        ...
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from taskbench.errors import CoordinatorUnavailableError, MissingDependencyError
from taskbench.faults.servers import free_ports

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
INSTALL_HINT = "apt-get install -y etcd-server etcd-client"


def find_etcd() -> str | None:
    """The etcd executable (``$TASKBENCH_ETCD_BIN`` or ``etcd`` on PATH), or None."""
    return os.environ.get("TASKBENCH_ETCD_BIN") or shutil.which("etcd")


def etcd_binary() -> str:
    """The etcd executable; MissingDependencyError with the install line when absent."""
    binary = find_etcd()
    if binary is None:
        raise MissingDependencyError(f"this needs the etcd binary: {INSTALL_HINT}")
    return binary


@dataclass
class EtcdMember:
    """One etcd process: its name, ports and data directory."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self, binary: str, initial_cluster: str, token: str) -> list[str]:
        client_url = f"http://{self.endpoint}"
        return [
            binary,
            *("--name", self.name, "--data-dir", str(self.data_dir)),
            *("--listen-client-urls", client_url, "--advertise-client-urls", client_url),
            *("--listen-peer-urls", self.peer_url),
            *("--initial-advertise-peer-urls", self.peer_url),
            *("--initial-cluster", initial_cluster, "--initial-cluster-token", token),
            *("--initial-cluster-state", "new"),
            *("--heartbeat-interval", "50", "--election-timeout", "500"),
            *("--logger", "zap", "--log-level", "warn"),
        ]

    def status(self) -> dict[str, object] | None:
        """The member's /v3/maintenance/status (JSON gateway), or None if it does not answer."""
        request = urllib.request.Request(
            f"http://{self.endpoint}/v3/maintenance/status", data=b"{}", method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=1.0) as response:
                status: dict[str, object] = json.load(response)
                return status
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL: the member dies without a word to its peers (a crash)."""
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is None or not self.running:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class EtcdCluster:
    """``size`` etcd members on free loopback ports, started together under ``root``."""

    root: Path
    size: int = 1
    members: list[EtcdMember] = field(default_factory=list)

    @property
    def endpoints(self) -> str:
        """``host:port,host:port,...``: the location part of an ``etcd://`` URL."""
        return ",".join(member.endpoint for member in self.members)

    @property
    def url(self) -> str:
        return f"etcd://{self.endpoints}"

    def start(self) -> EtcdCluster:
        """Start every member and wait until raft has a leader (or raise and stop them)."""
        binary = etcd_binary()
        ports = free_ports(2 * self.size)
        pairs = zip(ports[::2], ports[1::2], strict=True)
        self.members = [self._new_member(i, *pair) for i, pair in enumerate(pairs)]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        token = f"tb-{os.getpid()}-{ports[0]}"
        for member in self.members:
            with (member.data_dir.parent / f"{member.name}.log").open("wb") as log:
                command = member.command(binary, initial, token)
                member.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_ready()
        return self

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def leader(self) -> EtcdMember | None:
        """The member raft currently elects as leader, if a running member knows one."""
        for member in self.members:
            status = member.status() if member.running else None
            if status is None:
                continue
            header = status.get("header")
            member_id = header.get("member_id") if isinstance(header, dict) else None
            if member_id is not None and member_id == status.get("leader"):
                return member
        return None

    def _new_member(self, index: int, client_port: int, peer_port: int) -> EtcdMember:
        data_dir = self.root / f"m{index}" / "data"
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        return EtcdMember(f"m{index}", client_port, peer_port, data_dir)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if any(not m.running for m in self.members):
                break
            if self.leader() is not None:
                return
            time.sleep(0.1)
        self.stop()
        raise CoordinatorUnavailableError(f"etcd did not start; see the logs under {self.root}")


@contextmanager
def local_etcd(root: Path, size: int = 1) -> Iterator[str]:
    """Run ``size`` throwaway etcd members under ``root`` and yield their ``etcd://`` URL."""
    cluster = EtcdCluster(root, size).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()
