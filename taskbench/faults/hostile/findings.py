"""What a hostile-input campaign reports, and the exceptions a check ends a case with.

:class:`Finding` (a case that did not end cleanly, grouped by its
:attr:`~Finding.signature`), :class:`Tally` and :class:`CampaignResult`
(counts per entry point, and the first few findings of each signature);
:class:`Violation` and :class:`Refused`, which a check raises, and
:class:`StoreBroken`, on which an entry point stops; and :func:`short` and
:func:`describe_exception`, which describe a case or an error in bounded
ASCII and never raise.
"""

from __future__ import annotations

import dataclasses
import re
import reprlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

KEPT_PER_SIGNATURE = 5
"""Findings kept in full per (entry point, kind, what); the rest are only counted."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One case that did not end cleanly: ``kind`` says how, ``detail`` what happened."""

    entry_point: str
    kind: str
    """``exception``, ``hang``, ``corrupted``, ``wrong-answer`` or ``leak``."""
    detail: str
    case: str
    """The generated case, shortened and ASCII-escaped."""

    @property
    def signature(self) -> str:
        """What groups findings of one cause: the entry point, the kind, and the detail
        with its quoted values and numbers masked (``_``), cut to 72 characters."""
        what = MASKED.sub("_", self.detail)[:72]
        return f"{self.entry_point} {self.kind}: {what}"


MASKED = re.compile(r"'[^']*'|\"[^\"]*\"|\b\d[\w.+-]*")
"""Quoted values and numbers, masked in a finding's signature."""
UNEXPECTED_KINDS = frozenset({"exception", "hang"})
CORRUPTION_KINDS = frozenset({"corrupted", "wrong-answer"})


@dataclass(slots=True)
class Tally:
    """How the cases of one entry point ended."""

    cases: int = 0
    accepted: int = 0
    refused: int = 0
    findings: int = 0


@dataclass(slots=True)
class CampaignResult:
    """Counts per entry point, and the findings (the first few of each signature)."""

    store: str
    examples: int
    seconds: float = 0.0
    tallies: dict[str, Tally] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    signatures: Counter[str] = field(default_factory=Counter)

    def count(self, kinds: frozenset[str]) -> int:
        return sum(n for f, n in self._by_kind().items() if f in kinds)

    def _by_kind(self) -> Counter[str]:
        kinds: Counter[str] = Counter()
        for signature, n in self.signatures.items():
            kinds[signature.split(" ", 2)[1].rstrip(":")] += n
        return kinds

    @property
    def cases(self) -> int:
        return sum(t.cases for t in self.tallies.values())

    @property
    def unexpected(self) -> int:
        """Exceptions other than TaskbenchError, and hangs."""
        return self.count(UNEXPECTED_KINDS)

    @property
    def corrupted(self) -> int:
        """Changed canaries, accepted input that did not round-trip, wrong answers."""
        return self.count(CORRUPTION_KINDS)

    @property
    def leaks(self) -> int:
        return self.count(frozenset({"leak"}))

    def record(self, finding: Finding) -> None:
        self.signatures[finding.signature] += 1
        self.tallies[finding.entry_point].findings += 1
        if self.signatures[finding.signature] <= KEPT_PER_SIGNATURE:
            self.findings.append(finding)

    def summary(self) -> str:
        """A plain-text table: one line per entry point, then each finding signature."""
        lines = [f"store {self.store}: {self.cases:,} cases in {self.seconds:.0f} s"]
        lines.append(f"{'entry point':18} {'cases':>7} {'accepted':>9} {'refused':>8} findings")
        for name, t in self.tallies.items():
            lines.append(f"{name:18} {t.cases:7,} {t.accepted:9,} {t.refused:8,} {t.findings:,}")
        lines.append(
            f"unexpected exceptions {self.unexpected}, corrupted tasks {self.corrupted}, "
            f"leaked passwords {self.leaks}"
        )
        lines.extend(f"  {n:6,} x {sig}" for sig, n in self.signatures.most_common())
        return "\n".join(lines)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "examples": self.examples,
            "seconds": self.seconds,
            "cases": self.cases,
            "unexpected": self.unexpected,
            "corrupted": self.corrupted,
            "leaks": self.leaks,
            "tallies": {k: dataclasses.asdict(v) for k, v in self.tallies.items()},
            "signatures": dict(self.signatures),
            "findings": [dataclasses.asdict(f) for f in self.findings],
        }


class Refused(Exception):
    """Raised by a check: input refused cleanly, though not with an exception of ours
    (the command line's exit 1 or 2 with a message)."""


class StoreBroken(Exception):
    """The store under test can no longer plant canaries: the entry point stops there."""


class Violation(Exception):
    """Raised by a check: the case ended in a finding of ``kind`` (not a driver error)."""

    def __init__(self, kind: str, detail: str, *, replant: bool = False) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.replant = replant
        """The store is left unable to judge later cases: plant the canaries afresh."""


# -- describing cases -------------------------------------------------------------------

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 4, 60, 60, 40
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = 4
_SHORT.maxdict = 16  # every field of a hand-built task


def short(value: object) -> str:
    """A bounded, ASCII-only repr that never raises (deep nesting, 5,000-digit ints...)."""
    try:
        if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            return "[" + ", ".join(short(item) for item in value) + "]"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            inner = ", ".join(
                f"{f.name}={short(getattr(value, f.name))}" for f in dataclasses.fields(value)
            )
            return f"{type(value).__name__}({inner})"
        return ascii(_SHORT.repr(value))[1:-1]
    except (ValueError, RecursionError, OverflowError) as exc:
        return f"<{type(value).__name__}: repr failed with {type(exc).__name__}>"


def describe_exception(error: BaseException) -> str:
    """``Type: message`` shortened, ASCII-only, for a finding."""
    try:
        message = str(error)
    except Exception:  # a message that cannot even be printed is still a finding
        message = "<unprintable>"
    return f"{type(error).__name__}: {ascii(message[:300])[1:-1]}"
