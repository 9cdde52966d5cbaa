"""CPU seconds and peak memory of the benchmark process and of a local store server.

:func:`find_server` finds the process that serves a store URL on this
machine: the one listening on the URL's port on a loopback address
(``127.0.0.1``, ``localhost``, ``::1``), or on its Unix socket (a host that
is a path, as in ``postgresql://%2Fvar%2Frun%2Fpostgresql/db``).
:class:`ResourceMonitor` then measures, over one benchmark step, the CPU
seconds and the peak resident memory of this process and of that server's
whole process tree (PostgreSQL runs a backend process per connection: they
are summed).

Design rules:

* **psutil only**, and it never stops a benchmark: a server that is remote,
  not found, or not readable (another user's processes without privileges)
  gives ``None`` figures and a ``server_note`` that says why.
* **CPU is a difference of totals.** Each process's total counts its own
  time and that of its children that have exited, so a backend that ends
  during the run is not lost.
* **No thread in the measured process.** A sampling thread here costs the
  benchmark far more than its own few microseconds: each wake-up takes the
  GIL from the event loop (measured: a thread sampling every 0.2 s made
  the memory-store drain 8% slower per task). So this process's peak is
  the kernel's own high-water mark (``VmHWM``), reset at the start of the
  step through ``/proc/self/clear_refs``: exact, and free. The server's
  tree is **sampled** every :data:`SAMPLE_EVERY_S` by a separate sampler
  process (``python -m taskbench.bench.resources PID...``): the peak of a
  short spike can be missed, never overstated. Where the high-water mark
  cannot be reset (not Linux, or no permission), the sampler samples this
  process too.
"""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psutil

SAMPLE_EVERY_S = 0.2
SAMPLER_TIMEOUT_S = 10.0
"""How long the sampler process gets to answer once told to stop."""
CLEAR_REFS, STATUS = "/proc/self/clear_refs", "/proc/self/status"
RESET_PEAK_RSS = "5"
"""Written to ``clear_refs``, resets the process's VmHWM (Linux 4.0 and later)."""
MB = 1024.0 * 1024.0
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "ip6-localhost"})
DEFAULT_PORTS = {
    "postgresql": 5432,
    "postgres": 5432,
    "redis": 6379,
    "rediss": 6379,
    "mysql": 3306,
    "mysql+pymysql": 3306,
    "mariadb": 3306,
}
"""Schemes with a server, and the port a URL without one means."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a local server listens: a TCP port on loopback, or a Unix socket path."""

    port: int | None = None
    socket_path: str | None = None

    def __str__(self) -> str:
        return f"port {self.port}" if self.port is not None else f"socket {self.socket_path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceUsage:
    """What one measured step cost, here and on the server."""

    bench_cpu_s: float
    bench_peak_rss_mb: float
    server_cpu_s: float | None = None
    server_peak_rss_mb: float | None = None
    server_processes: int | None = None
    """The most processes the server's tree had at one sample."""
    server_note: str = ""
    """Why the server figures are missing, or which process they are ("pid 2181 (postgres)")."""


def local_endpoint(url: str) -> Endpoint | None:
    """The endpoint of ``url``'s server if it is on this machine, else None."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        return None
    host = unquote(parts.hostname or "")
    if host.startswith("/"):
        return Endpoint(socket_path=host)
    if host not in LOOPBACK:
        return None
    return Endpoint(port=parts.port or DEFAULT_PORTS[scheme])


def _listens_on_port(port: int) -> int | None:
    for connection in psutil.net_connections(kind="inet"):
        address = connection.laddr
        if connection.status == psutil.CONN_LISTEN and address and address.port == port:
            return connection.pid
    return None


def _listens_on_socket(path: str) -> int | None:
    for connection in psutil.net_connections(kind="unix"):
        address = connection.laddr
        if isinstance(address, str) and address and Path(address).is_relative_to(path):
            return connection.pid
    return None


def find_server(url: str) -> tuple[psutil.Process | None, str]:
    """The process serving ``url`` on this machine (or None), and a note saying which or why."""
    endpoint = local_endpoint(url)
    if endpoint is None:
        return None, "no local server (in-process store, or a remote host)"
    try:
        if endpoint.port is not None:
            pid = _listens_on_port(endpoint.port)
        else:
            pid = _listens_on_socket(endpoint.socket_path or "")
        if pid is None:
            return None, f"no readable process listens on {endpoint}"
        process = psutil.Process(pid)
        return process, f"pid {pid} ({process.name()}) on {endpoint}"
    except (psutil.Error, OSError) as exc:
        return None, f"cannot inspect the server on {endpoint}: {type(exc).__name__}"


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def _cpu_total(process: psutil.Process) -> float:
    """User + system seconds of ``process`` and of its exited children."""
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def tree_cpu_s(root: psutil.Process) -> float:
    """CPU seconds used so far by ``root`` and every process below it."""
    total = 0.0
    for process in _tree(root):
        with contextlib.suppress(psutil.Error):
            total += _cpu_total(process)
    return total


def tree_rss(root: psutil.Process) -> tuple[int, int]:
    """Resident bytes summed over ``root``'s tree, and how many processes it has."""
    total, count = 0, 0
    for process in _tree(root):
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
            count += 1
    return total, count


def reset_own_peak() -> bool:
    """Reset this process's resident high-water mark (``VmHWM``); False where it cannot be."""
    try:
        Path(CLEAR_REFS).write_text(RESET_PEAK_RSS)
    except OSError:
        return False
    return own_peak_rss() is not None


def own_peak_rss() -> int | None:
    """This process's resident high-water mark in bytes (None where the kernel does not say)."""
    try:
        status = Path(STATUS).read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


class Sampler:
    """A process of its own that samples the resident memory of some process trees.

    ``Sampler(trees)`` starts ``python -m taskbench.bench.resources`` with
    the root pids; :meth:`stop` closes its stdin, and it answers with the
    peak of each tree (summed resident bytes) and the most processes each
    had at one sample. Its wake-ups never touch this process's GIL.
    """

    def __init__(self, roots: Sequence[int], every_s: float = SAMPLE_EVERY_S) -> None:
        command = [sys.executable, "-m", "taskbench.bench.resources", str(every_s)]
        self._process = subprocess.Popen(
            [*command, *map(str, roots)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._roots = len(roots)

    def stop(self) -> list[tuple[int, int]]:
        """Stop sampling: (peak resident bytes, most processes) per tree, zeros if it failed."""
        try:
            answer, _ = self._process.communicate(input="", timeout=SAMPLER_TIMEOUT_S)
            peaks = [tuple(map(int, line.split())) for line in answer.splitlines()]
        except (subprocess.TimeoutExpired, ValueError):
            self._process.kill()
            self._process.wait()
            peaks = []
        if len(peaks) != self._roots or any(len(peak) != 2 for peak in peaks):
            return [(0, 0)] * self._roots
        return [(peak[0], peak[1]) for peak in peaks]


def sample_trees(roots: Sequence[int], every_s: float) -> list[tuple[int, int]]:
    """Sample each tree's resident memory until stdin closes; the peaks (the sampler's loop)."""
    processes: list[psutil.Process | None] = []
    for pid in roots:
        try:
            processes.append(psutil.Process(pid))
        except psutil.Error:
            processes.append(None)
    peaks = [(0, 0)] * len(roots)
    while True:
        for index, process in enumerate(processes):
            if process is not None:
                rss, count = tree_rss(process)
                peaks[index] = (max(peaks[index][0], rss), max(peaks[index][1], count))
        readable, _, _ = select.select([sys.stdin], [], [], every_s)
        if readable and not sys.stdin.read(1):
            return peaks


class ResourceMonitor:
    """Measure one step: ``with ResourceMonitor(server) as monitor: ...; monitor.usage``."""

    def __init__(self, server: psutil.Process | None = None, note: str = "") -> None:
        self._me = psutil.Process()
        self._server = server
        self._note = note
        self._cpu_start = (0.0, 0.0)
        self._exact_own_peak = False
        self._sampler: Sampler | None = None
        self._peaks = [0, 0, 0]  # bench rss, server rss, server processes
        self.usage: ResourceUsage | None = None

    @classmethod
    def for_store(cls, url: str) -> ResourceMonitor:
        """A monitor of this process and of ``url``'s server, when it is local."""
        server, note = find_server(url)
        return cls(server, note)

    def __enter__(self) -> ResourceMonitor:
        self._exact_own_peak = reset_own_peak()
        roots = [] if self._exact_own_peak else [self._me.pid]
        if self._server is not None:
            roots.append(self._server.pid)
        self._cpu_start = (_cpu_total(self._me), self._server_cpu())
        self._sample()
        self._sampler = Sampler(roots) if roots else None
        return self

    def __exit__(self, *exc_info: object) -> None:
        sampled = self._sampler.stop() if self._sampler is not None else []
        self._sample()
        self._fold_in(sampled)
        self.usage = self._usage()

    def _fold_in(self, sampled: list[tuple[int, int]]) -> None:
        """The sampler's peaks, in the order of its roots: this process (if sampled), the server."""
        peaks = self._peaks
        if not self._exact_own_peak and sampled:
            peaks[0] = max(peaks[0], sampled.pop(0)[0])
        if self._server is not None and sampled:
            rss, count = sampled.pop(0)
            peaks[1], peaks[2] = max(peaks[1], rss), max(peaks[2], count)
        if self._exact_own_peak:
            peaks[0] = max(peaks[0], own_peak_rss() or 0)

    def _server_cpu(self) -> float:
        if self._server is None:
            return 0.0
        try:
            return tree_cpu_s(self._server)
        except psutil.Error as exc:
            self._lost(exc)
            return 0.0

    def _lost(self, error: psutil.Error) -> None:
        self._note = f"server process unreadable: {type(error).__name__}"
        self._server = None

    def _sample(self) -> None:
        """One sample taken here, at the start and at the end of the step."""
        peaks = self._peaks
        with contextlib.suppress(psutil.Error):
            peaks[0] = max(peaks[0], self._me.memory_info().rss)
        if self._server is not None:
            rss, count = tree_rss(self._server)
            peaks[1], peaks[2] = max(peaks[1], rss), max(peaks[2], count)

    def _usage(self) -> ResourceUsage:
        bench_cpu = _cpu_total(self._me) - self._cpu_start[0]
        bench_rss = self._peaks[0] / MB
        server_cpu = self._server_cpu() - self._cpu_start[1]
        if self._server is None:
            return ResourceUsage(
                bench_cpu_s=bench_cpu, bench_peak_rss_mb=bench_rss, server_note=self._note
            )
        return ResourceUsage(
            bench_cpu_s=bench_cpu,
            bench_peak_rss_mb=bench_rss,
            server_cpu_s=server_cpu,
            server_peak_rss_mb=self._peaks[1] / MB,
            server_processes=self._peaks[2],
            server_note=self._note,
        )


@contextlib.contextmanager
def monitored(url: str, enabled: bool = True) -> Iterator[ResourceMonitor | None]:
    """A running :class:`ResourceMonitor` for ``url`` (None when ``enabled`` is false)."""
    if not enabled:
        yield None
        return
    monitor = ResourceMonitor.for_store(url)
    with monitor:
        yield monitor


def main(argv: Sequence[str]) -> None:
    """The sampler process: ``python -m taskbench.bench.resources EVERY_S PID...``."""
    every_s, roots = float(argv[0]), [int(pid) for pid in argv[1:]]
    for rss, count in sample_trees(roots, every_s):
        print(rss, count)


if __name__ == "__main__":
    main(sys.argv[1:])
