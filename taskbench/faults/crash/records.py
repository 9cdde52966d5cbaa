"""Probe tasks and the record files: what the workers and the experiment both read and write.

A probe task's payload is text awkward to encode (quotes, escapes, non-ASCII,
emoji); its handler returns the task, the attempt, a ``run`` unique to the
execution and a digest of the payload (:func:`probe_result`), so a stored
result can be checked against the task that was written
(:func:`result_is_intact`).

Every worker appends to files of its own in the experiment's directory:
``runs-<pid>.log``, one line per execution started, and ``acks-<pid>.log``,
one line per completion the store acknowledged. A line is a :class:`Record`,
``id attempt run``. :func:`append_lines` writes lines (one O_APPEND write,
fsynced if asked); :func:`read_records` and :class:`LineCounter` read them
back, complete lines only (a line a kill cut short is not read).
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from taskbench.model import Task

TASK_NAME = "crash-probe"
MAX_ATTEMPTS = 1_000
"""Every claim spends an attempt, killed ones too: dead letters must not hide a loss."""
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 \"'\\/{}[]:,é€中🙂\n\t"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- probe tasks -----------------------------------------------------------------------


def probe_task(index: int, rng: random.Random) -> Task:
    """A task whose payload is text awkward to encode (quotes, escapes, non-ASCII, emoji)."""
    text = "".join(rng.choices(ALPHABET, k=rng.randint(8, 400)))
    return Task.new(
        TASK_NAME, {"n": index, "text": text}, id=f"probe-{index:07d}", max_attempts=MAX_ATTEMPTS
    )


def probe_tasks(count: int, seed: int) -> list[Task]:
    rng = random.Random(seed)
    return [probe_task(index, rng) for index in range(count)]


def probe_result(task: Task, run: str) -> dict[str, Any]:
    """What the handler returns: the task, the attempt, this execution's unique ``run``,
    and a digest of the payload it was given."""
    digest = _sha256(task.payload_json)
    return {"task": task.id, "attempt": task.attempts, "run": run, "payload_sha256": digest}


def result_is_intact(stored: Task, original: Task) -> bool:
    """Whether ``stored``'s result is one its handler could have returned for ``original``."""
    result = stored.result
    if not isinstance(result, dict) or not isinstance(result.get("run"), str):
        return False
    return result == probe_result(replace(original, attempts=stored.attempts), result["run"])


def _run_of(task: Task) -> str | None:
    result = task.result if task.result_json else None
    return result.get("run") if isinstance(result, dict) else None


@dataclass(frozen=True, slots=True)
class Record:
    """One line of a runs or acks file: which execution of which task."""

    task_id: str
    attempt: int
    run: str

    def line(self) -> str:
        return f"{self.task_id} {self.attempt} {self.run}"

    @classmethod
    def parse(cls, line: str) -> Record:
        task_id, attempt, run = line.split(" ")
        return cls(task_id, int(attempt), run)


# -- record files ----------------------------------------------------------------------


def append_lines(path: Path, lines: Sequence[str], *, fsync: bool) -> None:
    """Append ``lines`` in one write (O_APPEND); fsync if asked."""
    if not lines:
        return
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, "".join(f"{line}\n" for line in lines).encode())
        if fsync:
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_records(directory: Path, kind: str) -> list[Record]:
    """Every complete line of the ``<kind>-*.log`` files (``runs`` or ``acks``)."""
    records = []
    for path in sorted(directory.glob(f"{kind}-*.log")):
        for line in path.read_bytes().split(b"\n")[:-1]:  # the tail after the last \n is cut
            records.append(Record.parse(line.decode()))
    return records


class LineCounter:
    """How many lines the workers' ``<kind>-*.log`` files hold, reading only what is new."""

    def __init__(self, directory: Path, kind: str) -> None:
        self.directory = directory
        self.kind = kind
        self.count = 0
        self._lines: dict[Path, int] = {}
        self._offsets: dict[Path, int] = {}

    def refresh(self) -> int:
        for path in self.directory.glob(f"{self.kind}-*.log"):
            with path.open("rb") as file:
                file.seek(self._offsets.get(path, 0))
                complete = file.read().rpartition(b"\n")[0]
            if complete:
                lines = complete.count(b"\n") + 1
                self.count += lines
                self._lines[path] = self._lines.get(path, 0) + lines
                self._offsets[path] = self._offsets.get(path, 0) + len(complete) + 1
        return self.count

    def of(self, pid: int) -> int:
        """The lines of one worker's file (as of the last refresh)."""
        return self._lines.get(self.directory / f"{self.kind}-{pid}.log", 0)
