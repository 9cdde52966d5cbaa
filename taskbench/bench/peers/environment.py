"""The peers' own virtual environments: created on demand, pinned, never the project's.

The peers cannot share the project's environment (arq pins redis-py < 6,
ours needs a newer one) nor, in general, each other's, so each
:class:`~taskbench.bench.peers.catalog.PeerSpec` names an environment under
one root folder: ``$TASKBENCH_PEERS_VENV`` or ``~/.cache/taskbench/peers-venv``.

Design rules:

* **Idempotent.** An environment records the requirement lines it was built
  with (:data:`MARKER`); when they match it is reused as it is, otherwise it
  is rebuilt from scratch with ``python -m venv --clear`` and ``pip install``.
* **Ordinary clients only.** ``venv`` and ``pip`` run as subprocesses; a
  failure raises BenchmarkError carrying the end of pip's output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from taskbench.bench.peers.catalog import PeerSpec
from taskbench.errors import BenchmarkError

ROOT_VARIABLE = "TASKBENCH_PEERS_VENV"
DEFAULT_ROOT = Path("~/.cache/taskbench/peers-venv")
MARKER = "taskbench-requirements.txt"
INSTALL_TIMEOUT_S = 900
OUTPUT_TAIL_CHARS = 2000


def peers_root() -> Path:
    """The folder that holds every peer environment."""
    return Path(os.environ.get(ROOT_VARIABLE) or DEFAULT_ROOT).expanduser()


def python_of(folder: Path) -> Path:
    return folder / "bin" / "python"


def _run(command: Sequence[str | Path], what: str) -> None:
    try:
        done = subprocess.run(
            [str(part) for part in command],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchmarkError(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-OUTPUT_TAIL_CHARS:]
        raise BenchmarkError(f"{what} failed (exit {done.returncode}):\n{output}")


def _is_current(folder: Path, requirements: tuple[str, ...]) -> bool:
    marker = folder / MARKER
    return (
        python_of(folder).exists()
        and marker.exists()
        and (marker.read_text().splitlines() == list(requirements))
    )


def ensure_environment(
    spec: PeerSpec, *, root: Path | None = None, out: Callable[[str], None] = print
) -> Path:
    """The Python of ``spec``'s environment, building it first if it is missing or stale."""
    folder = (root or peers_root()) / spec.environment
    if _is_current(folder, spec.requirements):
        return python_of(folder)
    out(f"peers: installing {' '.join(spec.requirements)} into {folder}")
    _run([sys.executable, "-m", "venv", "--clear", folder], f"creating {folder}")
    pip: list[str | Path] = [
        python_of(folder),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    _run([*pip, *spec.requirements], f"installing {spec.name}'s requirements")
    (folder / MARKER).write_text("\n".join(spec.requirements) + "\n")
    return python_of(folder)
