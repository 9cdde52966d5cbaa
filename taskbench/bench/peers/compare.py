"""Run the peers and taskbench on the same workload, same servers, same run.

:func:`run_peers` is the entry point (``taskbench peers`` calls it). For
each peer it:

1. makes sure the peer's pinned environment exists (``environment.py``);
2. runs the peer's drain script by file path with that environment's Python
   and parses its one JSON line (``report.py``);
3. runs ``python -m taskbench.cli bench ... --workload noop --json`` with the
   project's own Python on the comparable store, in a place of its own
   (``isolation.py``), and cleans that place up afterwards.

Design rules: every name is validated before anything is installed or run
(an unknown peer is a ConfigError); subprocess failures become
BenchmarkError with the end of the child's stderr; progress goes through
``out``, results come back as values.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from taskbench.bench.peers import isolation
from taskbench.bench.peers.catalog import PeerSpec, peer_spec
from taskbench.bench.peers.environment import ensure_environment
from taskbench.bench.peers.report import PeerResult, last_json_object, parse_peer_line
from taskbench.errors import BenchmarkError, ConfigError
from taskbench.urls import redact

DEFAULT_URLS = {
    "postgres": "postgresql://postgres@127.0.0.1:5432/test",
    "redis": "redis://127.0.0.1:6379/0",
}
RUN_TIMEOUT_S = 1800
STDERR_TAIL_CHARS = 1500
PROJECT_ROOT = Path(__file__).resolve().parents[3]

Out = Callable[[str], None]


def _check_counts(tasks: int, concurrency: int) -> None:
    for name, value in (("tasks", tasks), ("concurrency", concurrency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def server_url(spec: PeerSpec, urls: dict[str, str]) -> str:
    """The base URL of the server ``spec`` needs ('' for SQLite); ConfigError if absent."""
    if spec.server == "sqlite":
        return ""
    url = urls.get(spec.server)
    if not url:
        raise ConfigError(f"peer {spec.name} needs a {spec.server} URL (urls[{spec.server!r}])")
    return url


def run_json(command: Sequence[str | Path], what: str) -> str:
    """Run ``command``; its stdout, or BenchmarkError with the end of its stderr."""
    try:
        done = subprocess.run(
            [str(part) for part in command],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
            cwd=PROJECT_ROOT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchmarkError(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        tail = done.stderr[-STDERR_TAIL_CHARS:]
        raise BenchmarkError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def run_peer(
    spec: PeerSpec, python: Path, base_url: str, tasks: int, concurrency: int
) -> PeerResult:
    """Run ``spec``'s drain script and parse its result line."""
    command: list[str | Path] = [python, spec.script_path, "--tasks", str(tasks)]
    command += ["--concurrency", str(concurrency), *spec.script_args]
    if spec.server == "redis":
        command += ["--url", isolation.with_redis_db(base_url, isolation.PEER_REDIS_DB)]
    elif spec.server == "postgres":
        command += ["--url", base_url.partition("?")[0]]
    return parse_peer_line(run_json(command, f"peer {spec.name}"))


@contextmanager
def our_store_url(spec: PeerSpec, base_url: str) -> Iterator[str]:
    """A store URL for our side of ``spec``'s comparison, cleaned up on exit."""
    name = isolation.fresh_name()
    location = base_url.partition("?")[0]
    if spec.server == "sqlite":
        with tempfile.TemporaryDirectory(prefix="taskbench-peers-") as folder:
            query = f"?{spec.ours_options}" if spec.ours_options else ""
            yield f"sqlite:///{folder}/ours.db{query}"  # urlunsplit would drop a slash
        return
    option = f"schema={name}" if spec.server == "postgres" else f"prefix={name}:"
    try:
        yield isolation.with_query(base_url, "&".join(filter(None, [option, spec.ours_options])))
    finally:
        if spec.server == "postgres":
            isolation.drop_schema(location, name)
        else:
            isolation.delete_prefix(location, f"{name}:")


def run_ours(store_url: str, tasks: int, concurrency: int) -> float:
    """Our drain_tps on ``store_url`` through ``taskbench bench --json``."""
    command = [sys.executable, "-m", "taskbench.cli", "bench", "--store", store_url]
    command += ["--tasks", str(tasks), "--concurrency", str(concurrency)]
    command += ["--workload", "noop", "--json"]
    record = last_json_object(run_json(command, f"taskbench bench on {redact(store_url)}"))
    tasks_per_s = record.get("drain_tps")
    if isinstance(tasks_per_s, bool) or not isinstance(tasks_per_s, int | float):
        raise BenchmarkError(f"taskbench bench printed no drain_tps: {record!r}")
    return float(tasks_per_s)


def compare_one(
    spec: PeerSpec, tasks: int, concurrency: int, urls: dict[str, str], out: Out
) -> PeerResult:
    """One peer and ours, measured back to back."""
    base_url = server_url(spec, urls)
    python = ensure_environment(spec, out=out)
    out(f"peers: {spec.name}: draining {tasks} tasks at concurrency {concurrency}")
    theirs = run_peer(spec, python, base_url, tasks, concurrency)
    out(f"peers: {spec.name}: {theirs.drain_tps:,.0f} tasks/s; now taskbench on {spec.server}")
    shown = redact(base_url.partition("?")[0]) if base_url else "sqlite"
    label = f"{shown}?{spec.ours_options}" if spec.ours_options else shown
    try:
        with our_store_url(spec, base_url) as store_url:
            ours = run_ours(store_url, tasks, concurrency)
    except BenchmarkError as exc:  # keep the peer's figure; say why ours is missing
        out(f"peers: {spec.name}: taskbench failed, its column stays n/a: {exc}")
        return theirs.with_ours(label, None)
    out(f"peers: {spec.name}: taskbench {ours:,.0f} tasks/s")
    return theirs.with_ours(label, ours)


def run_peers(
    peers: list[str],
    *,
    tasks: int,
    concurrency: int,
    urls: dict[str, str],
    out: Out = print,
) -> list[PeerResult]:
    """Measure each peer and taskbench side by side (see the module docstring)."""
    _check_counts(tasks, concurrency)
    if not peers:
        raise ConfigError("name at least one peer")
    specs = [peer_spec(name) for name in peers]
    for spec in specs:
        server_url(spec, urls)
    return [compare_one(spec, tasks, concurrency, urls, out) for spec in specs]
