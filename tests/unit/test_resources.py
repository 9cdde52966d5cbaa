"""Resource figures of the benchmark process and of a local server, from real processes.

The "server" is a small Python program started here: it listens on a free
loopback port, keeps a helper child alive (as PostgreSQL keeps its
background processes), and on each connection runs a child that burns
``SPIN_CPU_S`` of CPU and exits. Its CPU must reach the server's figure
through the parent's count of exited children. Only lower bounds are
asserted: a busy machine can only add time.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from taskbench.bench import resources
from taskbench.bench.resources import (
    Endpoint,
    ResourceMonitor,
    Sampler,
    find_server,
    local_endpoint,
    monitored,
)

SPIN_CPU_S = 0.5

SERVER = f"""
import socket, subprocess, sys
SPIN = "import time\\nwhile time.process_time() < {SPIN_CPU_S}: pass"
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
print(listener.getsockname()[1], flush=True)
try:
    while True:
        connection, _ = listener.accept()
        subprocess.run([sys.executable, "-c", SPIN], check=True)
        connection.sendall(b"done\\n")
        connection.close()
finally:
    helper.kill()
"""


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[subprocess.Popen[str], int]]:
    process = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    try:
        yield process, port
    finally:
        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
        process.kill()
        process.wait()
        process.stdout.close()


def _ask_for_a_spin(port: int) -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=60) as connection,
        connection.makefile() as replies,
    ):
        assert replies.readline() == "done\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("postgresql://u:pw@127.0.0.1/test", Endpoint(port=5432)),
        ("postgresql://localhost:5433/test?schema=x", Endpoint(port=5433)),
        ("redis://[::1]:6380/0", Endpoint(port=6380)),
        ("mysql://u@localhost/db", Endpoint(port=3306)),
        (
            "postgresql://%2Fvar%2Frun%2Fpostgresql/test",
            Endpoint(socket_path="/var/run/postgresql"),
        ),
        ("postgresql://db.example.org/test", None),
        ("redis://10.0.0.5:6379/0", None),
        ("memory://", None),
        ("sqlite:///tmp/x.db", None),
    ],
)
def test_only_loopback_and_socket_servers_are_local(url: str, endpoint: Endpoint | None) -> None:
    assert local_endpoint(url) == endpoint


def test_the_server_is_found_by_its_listening_port(
    server: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = server
    found, note = find_server(f"redis://127.0.0.1:{port}/0")
    assert found is not None and found.pid == process.pid
    assert note.startswith(f"pid {process.pid} (") and f"port {port}" in note


def test_a_port_nobody_listens_on_gives_no_server_and_says_so() -> None:
    port = _free_port()
    found, note = find_server(f"redis://127.0.0.1:{port}/0")
    assert found is None
    assert note == f"no readable process listens on port {port}"
    with monitored(f"redis://127.0.0.1:{port}/0") as monitor:
        pass
    assert monitor is not None and monitor.usage is not None
    assert monitor.usage.server_cpu_s is None and "no readable process" in monitor.usage.server_note


def test_the_server_tree_counts_children_that_exited_during_the_step(
    server: tuple[subprocess.Popen[str], int],
) -> None:
    _, port = server
    with monitored(f"redis://127.0.0.1:{port}/0") as monitor:
        _ask_for_a_spin(port)
    assert monitor is not None and monitor.usage is not None
    usage = monitor.usage
    assert usage.server_cpu_s is not None and usage.server_cpu_s >= 0.9 * SPIN_CPU_S
    assert usage.server_processes is not None and usage.server_processes >= 2  # the helper
    assert usage.server_peak_rss_mb is not None and usage.server_peak_rss_mb > 1


def test_this_process_cpu_and_peak_memory_are_measured() -> None:
    with ResourceMonitor() as monitor:
        baseline = psutil.Process().memory_info().rss / 2**20
        start = time.process_time()
        while time.process_time() - start < 0.3:
            pass
        ballast = b"x" * (64 * 2**20)
        time.sleep(0.05)
    usage = monitor.usage
    assert usage is not None and len(ballast) == 64 * 2**20
    assert usage.bench_cpu_s >= 0.3
    assert usage.bench_peak_rss_mb >= baseline + 50
    assert usage.server_cpu_s is None and usage.server_processes is None


def test_no_monitor_when_metrics_are_off() -> None:
    with monitored("memory://", enabled=False) as monitor:
        assert monitor is None


def _touched(megabytes: int) -> bytearray:
    """``megabytes`` of memory, every page written, so it is resident."""
    block = bytearray(megabytes * 2**20)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    return block


def _baseline_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _samplers() -> list[psutil.Process]:
    """This process's sampler children (the module's fake server is a child too)."""
    found = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if "taskbench.bench.resources" in child.cmdline():
                found.append(child)
    return found


def test_a_spike_freed_before_the_step_ends_is_in_the_peak() -> None:
    """The kernel's high-water mark sees it; a sample every 0.2 s would miss it."""
    with ResourceMonitor() as monitor:
        baseline = _baseline_mb()
        spike = _touched(200)
        del spike
    assert monitor.usage is not None
    assert monitor.usage.bench_peak_rss_mb >= baseline + 150


def test_each_step_starts_its_own_peak() -> None:
    spike = _touched(200)
    del spike
    with ResourceMonitor() as monitor:
        baseline = _baseline_mb()
    assert monitor.usage is not None
    assert monitor.usage.bench_peak_rss_mb < baseline + 100


def test_the_monitor_runs_no_thread_and_no_process_without_a_server() -> None:
    threads = threading.active_count()
    with monitored("memory://") as monitor:
        assert threading.active_count() == threads
        assert _samplers() == []
    assert monitor is not None and monitor.usage is not None


def test_a_local_server_is_sampled_by_a_process_not_a_thread(
    server: tuple[subprocess.Popen[str], int],
) -> None:
    _, port = server
    threads = threading.active_count()
    with monitored(f"redis://127.0.0.1:{port}/0"):
        assert threading.active_count() == threads
        samplers = _samplers()
        assert len(samplers) == 1
    assert not samplers[0].is_running()


def test_the_sampler_reports_the_peak_of_a_tree_it_watched() -> None:
    grow = "b = bytearray(120 * 2**20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
    child = subprocess.Popen([sys.executable, "-c", grow + "import time; time.sleep(30)"])
    try:
        sampler = Sampler([child.pid], every_s=0.05)
        deadline = time.monotonic() + 20
        while psutil.Process(child.pid).memory_info().rss < 120 * 2**20:
            assert time.monotonic() < deadline, "the child never grew"
            time.sleep(0.05)
        time.sleep(0.2)
        [(peak, processes)] = sampler.stop()
    finally:
        child.kill()
        child.wait()
    assert peak >= 120 * 2**20
    assert processes == 1


def test_without_a_resettable_peak_the_sampler_samples_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resources, "CLEAR_REFS", "/nonexistent/clear_refs")
    with ResourceMonitor() as monitor:
        assert len(_samplers()) == 1
        baseline = _baseline_mb()
        ballast = _touched(100)
        time.sleep(0.6)
    assert monitor.usage is not None and len(ballast) == 100 * 2**20
    assert monitor.usage.bench_peak_rss_mb >= baseline + 80
