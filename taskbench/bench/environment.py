"""Where a benchmark ran: the machine, the interpreter, the code and the stores.

:func:`describe_environment` returns one JSON-ready dict that
:mod:`taskbench.bench.results` stores beside every measurement (column
``env``), so a figure can always say which commit, machine and package
versions produced it. :func:`describe_store` is the hook for what only a
server knows (its version, its durability settings): it asks the store's
optional ``describe()`` method, which backends may add when they want to.
:func:`requires_extra` is how the results layer imports its optional
packages.

Design rules:

* **Standard library and psutil only** (both always installed), so
  describing the environment never needs an extra.
* **Never fails, never leaks.** Every probe that can fail (git, /proc, a
  store's ``describe()``) degrades to ``None`` or an ``error`` entry; every
  URL passes through :func:`taskbench.urls.redact`, so a password never
  reaches a results file.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from taskbench.errors import MissingDependencyError
from taskbench.urls import redact

PACKAGES = (
    "taskbench",
    "aetcd",
    "asyncpg",
    "duckdb",
    "hdrhistogram",
    "numpy",
    "pandas",
    "psutil",
    "pyarrow",
    "pyinstrument",
    "pymysql",
    "redis",
    "sqlalchemy",
)
"""Distributions whose versions are recorded (those not installed are left out)."""

CHECKOUT_ROOT = Path(__file__).resolve().parents[2]
"""The repository root when taskbench runs from a checkout (it holds ``.git``)."""

GIT_TIMEOUT_S = 5.0
GIT_HEAD = ("git", "rev-parse", "HEAD")
GIT_STATUS = ("git", "status", "--porcelain", "--untracked-files=no")
CPUINFO = Path("/proc/cpuinfo")
PASSWORD_IN_TEXT = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]*@")
"""A ``scheme://user:password@`` anywhere in a message (its password is replaced)."""

__all__ = [
    "describe_environment",
    "describe_store",
    "requires_extra",
]


@contextmanager
def requires_extra(feature: str, extra: str = "notebooks") -> Iterator[None]:
    """Wrap optional imports: an ImportError becomes MissingDependencyError with the pip line.

    ``with requires_extra("loading results"): import duckdb``
    """
    try:
        yield
    except ImportError as exc:
        missing = exc.name or "an optional package"
        raise MissingDependencyError(
            f"{feature} needs {missing}: pip install 'taskbench[{extra}]'"
        ) from None


def _git(*command: str) -> str | None:
    """The stripped stdout of a git command run in the checkout, or None."""
    if not (CHECKOUT_ROOT / ".git").exists():
        return None
    try:
        done = subprocess.run(
            command,
            cwd=CHECKOUT_ROOT,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state() -> dict[str, object]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout taskbench runs from."""
    commit = _git(*GIT_HEAD)
    status = _git(*GIT_STATUS) if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else what platform knows."""
    try:
        for line in CPUINFO.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, object]:
    """Host name, CPUs, memory and operating system."""
    return {
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cpu_physical": psutil.cpu_count(logical=False),
        "cpu_model": cpu_model(),
        "memory_total_bytes": psutil.virtual_memory().total,
        "os": platform.platform(),
    }


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """``{distribution: version}`` for each of ``names`` that is installed."""
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def describe_environment(store_urls: Iterable[str] = ()) -> dict[str, object]:
    """What produced a measurement: git, time (UTC), machine, Python, packages, stores.

    ``store_urls`` are recorded redacted. JSON types only.
    """
    return {
        "git": git_state(),
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "packages": package_versions(),
        "stores": [redact(url) for url in store_urls],
    }


def scrub(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return PASSWORD_IN_TEXT.sub(r"\g<head>***@", text)


def _redacted(details: Mapping[str, Any]) -> dict[str, object]:
    """``details`` with every URL password in its string values scrubbed."""
    return {
        str(key): scrub(value) if isinstance(value, str) else value
        for key, value in details.items()
    }


async def describe_store(store: object) -> dict[str, object]:
    """What the store says about its server (version, durability...), via ``store.describe()``.

    A store without ``describe`` gives ``{}``; ``describe`` may be sync or async
    and must return a mapping. A failure is recorded as ``{"error": ...}``,
    never raised: describing must not stop a benchmark.
    """
    describe = getattr(store, "describe", None)
    if not callable(describe):
        return {}
    try:
        details = describe()
        if inspect.isawaitable(details):
            details = await details
    except Exception as exc:
        return {"error": scrub(f"{type(exc).__name__}: {exc}")}
    if not isinstance(details, Mapping):
        return {"error": f"describe() returned {type(details).__name__}, not a mapping"}
    return _redacted(details)
