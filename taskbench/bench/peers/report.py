"""A peer's measurement, parsed from its one JSON line, and the side-by-side table.

Design rules:

* **One line in, one value out.** A peer script prints exactly one JSON
  object; :func:`parse_peer_line` takes the last line that looks like one
  (libraries may log before it), checks every field's type, and raises
  BenchmarkError, quoting the line, when something is missing or wrong.
* **Ours travels with theirs.** :class:`PeerResult` carries the taskbench
  figure measured in the same run (``ours_store``, ``ours_tps``), so the
  ratio is computed in one place (:func:`ratio`) and never typed by hand.
* **Plain text.** :func:`format_table` renders a Markdown pipe table, which
  reads in a terminal and pastes into ``docs/benchmarks/peers.md`` as is.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskbench.errors import BenchmarkError

FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "peer": (str,),
    "version": (str,),
    "config": (str,),
    "tasks": (int,),
    "concurrency": (int,),
    "enqueue_s": (int, float),
    "drain_s": (int, float),
    "drain_tps": (int, float),
    "completed": (int,),
}
HEADERS = ("peer", "version", "config", "theirs tasks/s", "ours", "ours tasks/s", "ours/theirs")


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerResult:
    """One peer's drain, and ours on the comparable store, from the same run."""

    peer: str
    version: str
    config: str
    tasks: int
    concurrency: int
    enqueue_s: float
    drain_s: float
    drain_tps: float
    completed: int
    ours_store: str = ""
    ours_tps: float | None = None

    @property
    def ratio(self) -> float | None:
        """ours / theirs, or None when either figure is missing."""
        return ratio(self.ours_tps, self.drain_tps)

    def with_ours(self, store: str, tasks_per_s: float | None) -> PeerResult:
        return dataclasses.replace(self, ours_store=store, ours_tps=tasks_per_s)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """``ours / theirs``; None if either is missing or theirs is not positive."""
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def last_json_object(output: str) -> dict[str, Any]:
    """The last line of ``output`` that is a JSON object; BenchmarkError if none is."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BenchmarkError(f"not valid JSON ({exc}): {line[:200]!r}") from None
            if isinstance(value, dict):
                return value
    raise BenchmarkError(f"no JSON object in the output: {output[-200:]!r}")


def _check_fields(record: dict[str, Any]) -> None:
    for name, kinds in FIELD_TYPES.items():
        value = record.get(name)
        if isinstance(value, bool) or not isinstance(value, kinds):
            expected = " or ".join(kind.__name__ for kind in kinds)
            raise BenchmarkError(f"peer result field {name!r} should be {expected}: {record!r}")


def parse_peer_line(output: str) -> PeerResult:
    """The :class:`PeerResult` a peer script printed (extra fields are ignored)."""
    record = last_json_object(output)
    _check_fields(record)
    values = {name: record[name] for name in FIELD_TYPES}
    for name in ("enqueue_s", "drain_s", "drain_tps"):
        values[name] = float(values[name])
    return PeerResult(**values)


def _figure(value: float | None, template: str) -> str:
    return "n/a" if value is None else template.format(value)


def _row(result: PeerResult) -> tuple[str, ...]:
    return (
        result.peer,
        result.version,
        result.config.replace("|", "/"),
        _figure(result.drain_tps, "{:,.0f}"),
        result.ours_store or "n/a",
        _figure(result.ours_tps, "{:,.0f}"),
        _figure(result.ratio, "{:.2f}x"),
    )


def format_table(results: Sequence[PeerResult]) -> str:
    """The side-by-side comparison as a Markdown pipe table."""
    rows = [HEADERS, *(_row(result) for result in results)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(HEADERS))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(HEADERS), rule, *(line(row) for row in rows[1:])])
