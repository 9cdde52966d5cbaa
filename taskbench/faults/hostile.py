"""Hostile input: generated URLs, tasks, store calls and command lines, judged case by case.

What this module owns: the hypothesis strategies that make hostile input, the
checks that judge each generated case, and :func:`run_campaign`, which runs
them outside pytest and counts what happened, so that the figure "N generated
cases per entry point, zero unexpected exceptions, zero corrupted tasks" can
be measured (``python -m taskbench.faults.hostile --store URL``). The tests run
the same campaign with fewer examples.

The entry points (:data:`ENTRY_POINTS`):

* ``enqueue``: tasks made by ``Task.new`` with hostile arguments, or built by
  hand so that they skip it, enqueued in batches of one to three;
* ``store-calls``: every other store call with hostile arguments (workers,
  limits, times, ids, forged leases, outcomes carrying hostile results and
  errors, statuses, epochs, live-worker lists);
* ``open_store`` and ``open_coordinator``: generated URLs, opened when they
  point somewhere harmless;
* ``cli``: ``taskbench bench --store URL ...``, run in-process with a UTF-8
  stdout that fails on unencodable text as a real pipe does.

Design rules:

* **A case ends one of three ways**: a clean success, a TaskbenchError (the
  input is refused), or a finding: any other exception, a hang (no answer in
  ``CASE_TIMEOUT_S``), a corrupted task, a wrong answer, or a password of the
  URL showing up in a message, a log record or the command's output.
* **Canaries.** Before the store entry points run, the store is purged and
  canary tasks are planted, one in each state (queued far in the future,
  running under a long lease, succeeded, dead, retried). Their times are
  fixed, so planting is deterministic. After every case they are read back
  and compared field by field with their snapshot.
* **Accepted input round-trips.** An enqueued task reads back equal to what
  was given (strings code point for code point); a store call that applied
  leaves exactly the state its contract describes, computed here from the
  model; a refused call changes nothing; every stored time is finite.
* **Never a live server by accident.** Generated URLs connect only to a
  loopback port nothing listens on, to host names that fail before any DNS
  query, to SQLite files in a scratch directory, or to memory; fully random
  strings are parsed, never opened. The store under test is the only server
  state touched, and it is purged: give the campaign a store of its own.
* **Finite hostile times stay below the canaries.** They are drawn within
  +-``FINITE_LIMIT`` seconds, and canaries live at ``FAR``: a call that
  accepts such a time can only touch the tasks made for its case. A
  non-finite time must be refused (the model's times are finite POSIX
  seconds); one that is accepted shows up as a changed canary or a stored
  non-finite time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import io
import json
import logging
import math
import os
import re
import reprlib
import shutil
import socket
import sys
import tempfile
import time
import traceback
import uuid
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from taskbench.errors import ConfigError, MissingDependencyError, TaskbenchError
from taskbench.faults.secrets import exception_texts, scan, scan_texts
from taskbench.model import (
    MAX_ID_LENGTH,
    MAX_MAX_ATTEMPTS,
    MAX_NAME_LENGTH,
    MAX_PAYLOAD_BYTES,
    Lease,
    Outcome,
    Task,
    TaskPriority,
    TaskStatus,
)
from taskbench.stores import TaskStore, open_store
from taskbench.urls import redact

try:
    import hypothesis
    from hypothesis import strategies as st
    from hypothesis.strategies import SearchStrategy
except ImportError:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(
        "taskbench.faults.hostile needs hypothesis: pip install 'taskbench[dev]'"
    ) from None

T = TypeVar("T")

ENTRY_POINTS = ("enqueue", "store-calls", "open_store", "open_coordinator", "cli")
STORE_ENTRY_POINTS = ("enqueue", "store-calls")
CASE_TIMEOUT_S = 30.0
RESULTS_DIR_VARIABLE = "TASKBENCH_RESULTS_DIR"
"""Where the CLI saves its runs: the campaign points it into its scratch directory."""
ACCEPTED, REFUSED = "accepted", "refused"
FINITE_LIMIT = 1e12
FAR = 1e13
"""Canaries are due, and their leases expire, at this time or later."""
CANARY_NOW = 10.0
CANARY_OWNER = "canary-owner-7f3a"
BAIT_WORKER = "bait-worker"
BAIT_RUN_AT = 100.0
BAIT_NOW = 200.0
BAIT_LEASE_S = 100.0
RESET_AFTER_CHARS = 32 * 1024 * 1024
"""Purge (and replant the canaries) once accepted payloads add up to this much."""
KEPT_PER_SIGNATURE = 5
"""Findings kept in full per (entry point, kind, what); the rest are only counted."""

# -- what a campaign reports ----------------------------------------------------------


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


# -- strategies: text, numbers, payloads ------------------------------------------------
# Each strategy is built once (functools.cache): building and validating one costs
# more than drawing from it, and the composites below draw from them on every case.

SQL_INJECTION = (
    "'; DROP TABLE taskbench_tasks; --",
    "x' OR '1'='1",
    '" OR 1=1 --',
    "`; DROP DATABASE tb; --",
    "1; SELECT pg_sleep(5); --",
    "1' AND SLEEP(5) AND '1",
    "$1",
    "%s",
    "%(id)s",
    "?",
    "?1",
    ":name",
    "\\",
    "\\'",
    "' || (SELECT version()) || '",
    "*/ SELECT 1 /*",
)
LUA_INJECTION = (
    "]] redis.call('FLUSHALL') --[[",
    "') redis.call('DEL', KEYS[1]) --",
    '"]],"x":["',
    '{"a":',
    "cjson.null",
    "\\u0000",
    "%016d",
    "{tb}:",
    "*",
    "task:",
    "queued:3",
    "\r\nFLUSHALL\r\n",
    "*1\r\n$8\r\nFLUSHALL\r\n",
)
ODD_UNICODE = (
    "é",
    "e\u0301",
    "ß",
    "İ",
    "ﬁ",
    "\u202e",
    "\u200b",
    "\ufeff",
    "\ufffe",
    "\uffff",
    "😀",
    "👩\u200d👩\u200d👧",
    "\U0010ffff",
    "\x7f",
    "\x1b[31m",
    "\t",
    "\r\n",
    " ",
)
LONG_UNITS = ("x", "é", "😀", "'", "\\", "\ud800", "a\x00")
LONG_LENGTHS = (MAX_ID_LENGTH, MAX_ID_LENGTH + 1, MAX_NAME_LENGTH, MAX_NAME_LENGTH + 1, 2_001)
"""Around the limits of ids, names, workers and stored errors."""
HUGE_LENGTHS = (65_536, MAX_PAYLOAD_BYTES - 2, MAX_PAYLOAD_BYTES + 1)
"""Around the payload limit: only payloads, results and errors get these."""
BIG_INTS = (2**31, 2**63, 2**64, 10**20, 10**400, 10**5000, -(2**63) - 1)
ODD_VALUES: tuple[object, ...] = (
    set(),
    frozenset({1}),
    (1, 2),
    Decimal("1.5"),
    Decimal("NaN"),
    Fraction(1, 3),
    1j,
    b"bytes",
    bytearray(b"\xff"),
    Ellipsis,
)


@functools.cache
def big_ints() -> SearchStrategy[int]:
    """One of BIG_INTS (drawn by index: hypothesis cannot even repr a 5,000-digit int)."""
    return st.integers(0, len(BIG_INTS) - 1).map(BIG_INTS.__getitem__)


@functools.cache
def beyond_floats() -> SearchStrategy[int]:
    """Ints too big for a float (10**400, -(10**400)): out of range, yet not past the canaries."""
    return st.sampled_from([400, -400]).map(lambda e: 10 ** abs(e) * (1 if e > 0 else -1))


NESTING_DEPTHS = (10, 998, 999, 1000, 1001, 5_000, 20_000)
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


def repeat(unit: str, length: int) -> str:
    """``unit`` repeated to exactly ``length`` characters."""
    return (unit * (length // len(unit) + 1))[:length]


@functools.cache
def long_text(huge: bool = False) -> SearchStrategy[str]:
    lengths = LONG_LENGTHS + HUGE_LENGTHS if huge else LONG_LENGTHS
    return st.builds(repeat, st.sampled_from(LONG_UNITS), st.sampled_from(lengths))


@functools.cache
def hostile_text(huge: bool = False) -> SearchStrategy[str]:
    """Short text mixing injections, odd Unicode, lone surrogates and NUL; or a long one
    (``huge``: up to past the payload limit, for payloads, results and errors)."""
    piece = st.one_of(
        st.text(max_size=12),
        st.sampled_from(SQL_INJECTION + LUA_INJECTION + ODD_UNICODE),
        SURROGATES,
        st.just("\x00"),
    )
    mixed = st.lists(piece, max_size=5).map("".join)
    return st.one_of(mixed, mixed, mixed, long_text(huge))


@functools.cache
def wrong_types() -> SearchStrategy[object]:
    return st.one_of(st.none(), st.booleans(), st.binary(max_size=8), st.sampled_from(ODD_VALUES))


@functools.cache
def odd_numbers(finite_limit: float | None = None) -> SearchStrategy[float | int]:
    """Numbers out of range: NaN, infinities, subnormals, huge ints, negatives, zeros."""
    if finite_limit is None:
        return st.one_of(st.floats(), st.integers(-3, 1_003), big_ints())
    finite = st.floats(min_value=-finite_limit, max_value=finite_limit)
    beyond = st.sampled_from([math.nan, math.inf, -math.inf])
    return st.one_of(finite, beyond, st.integers(-3, 1_003), beyond_floats())


@functools.cache
def hostile_numbers(finite_limit: float | None = None) -> SearchStrategy[object]:
    """What a caller may pass where a number is checked: odd numbers, or not numbers at all."""
    not_numbers = st.sampled_from(["1", "nan", " 2 ", "1e3"])
    return st.one_of(odd_numbers(finite_limit), not_numbers, wrong_types())


@functools.cache
def hostile_times() -> SearchStrategy[object]:
    """A task's ``run_at``/``now`` (Task.new checks their type): finite ones stay below FAR."""
    return hostile_numbers(FINITE_LIMIT)


@functools.cache
def odd_times() -> SearchStrategy[float | int | None]:
    """A store call's ``now`` (typed, not type-checked): odd numbers below FAR, or None."""
    return st.one_of(st.none(), odd_numbers(FINITE_LIMIT))


def nest(leaf: object, depth: int) -> object:
    """``leaf`` wrapped ``depth`` times, alternating lists and dicts (built without recursion)."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@functools.cache
def payload_leaves() -> SearchStrategy[object]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        big_ints(),
        st.floats(),
        hostile_text(huge=True),
        wrong_types(),
    )


@functools.cache
def hostile_payloads() -> SearchStrategy[object]:
    """Payloads and results: nested, deep (past the recursion limits), huge, not JSON."""
    keys = st.one_of(hostile_text(), st.integers(), st.floats(), st.none(), st.booleans())
    nested = st.recursive(
        payload_leaves(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)
        ),
        max_leaves=8,
    )
    deep = st.builds(nest, payload_leaves(), st.sampled_from(NESTING_DEPTHS))
    return st.one_of(nested, nested, deep, long_text(huge=True))


def json_text(value: object) -> str:
    """``value`` as JSON text however odd (NaN, repr() of the rest), or ``[]`` if it cannot be."""
    try:
        return json.dumps(value, default=repr)
    except (ValueError, TypeError, RecursionError):
        return "[]"


def deep_json_text(depth: int) -> str:
    return "[" * depth + "]" * depth


@functools.cache
def payload_texts() -> SearchStrategy[str]:
    """``payload_json`` of a hand-built task: JSON-ish text that Task.new would never make."""
    odd_json = st.sampled_from(
        [
            '"\ud800"',
            '"\\ud800"',
            '"\x00"',
            '"\\u0000"',
            "NaN",
            "-Infinity",
            "1e999",
            " 1 ",
            '{"a":1,"a":2}',
            "",
            "nul",
            "[1,]",
        ]
    )
    deep = st.builds(deep_json_text, st.sampled_from(NESTING_DEPTHS))
    encoded = hostile_payloads().map(json_text)
    return st.one_of(odd_json, deep, hostile_text(huge=True), encoded)


# -- strategies: task fields ----------------------------------------------------------

CANARY_IDS = (
    "canary-queued",
    "canary-queued-low",
    "canary-running",
    "canary-succeeded",
    "canary-dead",
    "canary-retried",
)
LOOK_ALIKE_IDS = tuple(
    variant
    for canary in CANARY_IDS
    for variant in (canary + " ", canary.upper(), " " + canary, canary + "\t", canary + "\u200b")
)
"""Ids that are not a canary's but that a sloppy collation or trim would confuse with one."""
LOOK_ALIKE_WORKERS = (BAIT_WORKER + " ", BAIT_WORKER.upper(), BAIT_WORKER + "\u200b", "")


@functools.cache
def task_ids() -> SearchStrategy[object]:
    return st.one_of(
        st.uuids().map(lambda u: u.hex),
        hostile_text(),
        st.sampled_from(CANARY_IDS + LOOK_ALIKE_IDS),
        st.integers(),
        wrong_types(),
    )


@functools.cache
def priorities() -> SearchStrategy[object]:
    names = ["low", "HIGH", "Critical", "urgent", " high", "high\x00", "NORMAL "]
    return st.one_of(st.sampled_from(list(TaskPriority)), st.sampled_from(names), hostile_numbers())


@functools.cache
def max_attempts() -> SearchStrategy[object]:
    edges = [0, 1, MAX_MAX_ATTEMPTS, MAX_MAX_ATTEMPTS + 1, -1]
    return st.one_of(st.sampled_from(edges), hostile_numbers())


@functools.cache
def names() -> SearchStrategy[object]:
    return st.one_of(st.just("job"), hostile_text(), st.integers(), wrong_types())


@dataclass(frozen=True, slots=True)
class NewTask:
    """``Task.new(name, payload, **options)`` with generated arguments."""

    name: Any
    payload: Any
    options: dict[str, Any]

    def build(self) -> Task:
        return Task.new(self.name, self.payload, **self.options)


@dataclass(frozen=True, slots=True)
class HandBuiltTask:
    """A ``Task(...)`` built field by field, skipping Task.new's checks."""

    fields: dict[str, Any]

    def build(self) -> Task:
        return Task(**self.fields)


HAND_BUILT_FIELDS: dict[str, SearchStrategy[Any]] = {
    "priority": priorities(),
    "status": st.one_of(st.sampled_from(list(TaskStatus)), hostile_text()),
    "attempts": hostile_numbers(),
    "max_attempts": max_attempts(),
    "run_at": hostile_times(),
    "created_at": hostile_times(),
    "started_at": hostile_times(),
    "finished_at": hostile_times(),
    "lease_owner": st.one_of(hostile_text(), wrong_types()),
    "lease_expires_at": hostile_times(),
    "last_error": st.one_of(hostile_text(), wrong_types()),
    "result_json": st.one_of(payload_texts(), wrong_types()),
}


@functools.cache
def new_tasks() -> SearchStrategy[NewTask]:
    options = st.fixed_dictionaries(
        {},
        optional={
            "priority": priorities(),
            "max_attempts": max_attempts(),
            "run_at": hostile_times(),
            "id": task_ids(),
            "now": hostile_times(),
        },
    )
    return st.builds(NewTask, names(), hostile_payloads(), options)


@st.composite
def hand_built_tasks(draw: st.DrawFn) -> HandBuiltTask:
    fields = {
        "id": draw(task_ids()),
        "name": draw(names()),
        "payload_json": draw(payload_texts()),
        "run_at": 1_000.0,
        "created_at": 1_000.0,
    }
    overrides = draw(st.fixed_dictionaries({}, optional=HAND_BUILT_FIELDS))
    return HandBuiltTask({**fields, **overrides})


@functools.cache
def enqueue_cases() -> SearchStrategy[list[NewTask | HandBuiltTask]]:
    one = st.one_of(new_tasks(), hand_built_tasks())
    return st.lists(one, min_size=1, max_size=3)


# -- strategies: store calls ------------------------------------------------------------

BAIT = "<bait>"
"""Stands for the id of the task made for the case (a 'bait'), filled in when it runs."""


@dataclass(frozen=True, slots=True)
class LeaseSpec:
    """A lease to present: the bait's own (task_id BAIT, attempt 1, owner BAIT_WORKER) or forged."""

    task_id: Any = BAIT
    attempt: Any = 1
    owner: Any = BAIT_WORKER

    def resolve(self, bait_id: str) -> Lease:
        task_id = bait_id if self.task_id == BAIT else self.task_id
        return Lease(task_id=task_id, attempt=self.attempt, owner=self.owner)


@functools.cache
def lease_specs() -> SearchStrategy[LeaseSpec]:
    owners = st.one_of(st.just(BAIT_WORKER), st.sampled_from(LOOK_ALIKE_WORKERS), hostile_text())
    attempts = st.one_of(st.just(1), st.sampled_from([0, 2, -1, 2**31, 2**63, 10**30]))
    ids = st.one_of(st.just(BAIT), st.sampled_from(CANARY_IDS + LOOK_ALIKE_IDS), hostile_text())
    return st.one_of(st.just(LeaseSpec()), st.builds(LeaseSpec, ids, attempts, owners))


@dataclass(frozen=True, slots=True)
class Claim:
    worker: Any
    limit: Any
    lease_s: Any
    now: Any


@dataclass(frozen=True, slots=True)
class Finish:
    outcome: str
    """``succeeded``, ``retry`` or ``dead``: which Outcome factory makes it."""
    lease: LeaseSpec
    result: Any
    error: Any
    now: Any
    run_at: Any


@dataclass(frozen=True, slots=True)
class Extend:
    lease: LeaseSpec
    lease_s: Any
    now: Any


@dataclass(frozen=True, slots=True)
class Release:
    lease: LeaseSpec


@dataclass(frozen=True, slots=True)
class RequeueExpired:
    now: Any
    epoch: Any


@dataclass(frozen=True, slots=True)
class RequeueAbandoned:
    live_workers: Any
    """Given with CANARY_OWNER added when it is a list (so the running canary stays live)."""
    now: Any
    epoch: Any


@dataclass(frozen=True, slots=True)
class GetMany:
    ids: Any


@dataclass(frozen=True, slots=True)
class ListDead:
    limit: Any


@dataclass(frozen=True, slots=True)
class RequeueDead:
    ids: Any
    now: Any


@dataclass(frozen=True, slots=True)
class Purge:
    statuses: Any


@dataclass(frozen=True, slots=True)
class WaitForWork:
    timeout: Any


StoreCall = (
    Claim
    | Finish
    | Extend
    | Release
    | RequeueExpired
    | RequeueAbandoned
    | GetMany
    | ListDead
    | RequeueDead
    | Purge
    | WaitForWork
)
NEEDS_CLAIMED_BAIT = (Finish, Extend, Release, RequeueExpired, RequeueAbandoned)


@functools.cache
def workers() -> SearchStrategy[object]:
    return st.one_of(st.sampled_from(LOOK_ALIKE_WORKERS), hostile_text(), wrong_types())


@functools.cache
def counts() -> SearchStrategy[object]:
    return st.one_of(st.integers(1, 5), hostile_numbers())


@functools.cache
def epochs() -> SearchStrategy[object]:
    return st.one_of(st.none(), st.integers(-2, 2**53 + 2), hostile_numbers())


@functools.cache
def id_lists(with_canaries: bool) -> SearchStrategy[object]:
    """Ids to look up; the exact canary ids only where the call only reads."""
    known = CANARY_IDS + LOOK_ALIKE_IDS if with_canaries else LOOK_ALIKE_IDS
    one = st.one_of(hostile_text(), st.sampled_from(known), st.integers(), wrong_types())
    return st.one_of(st.lists(one, max_size=4), st.tuples(one), hostile_text())


def not_a_status(value: object) -> bool:
    return not any(value == s or value is s for s in TaskStatus)


@functools.cache
def status_lists() -> SearchStrategy[object]:
    odd = st.sampled_from(["QUEUED", " queued", "Dead", "running\x00", "all", "*", "%"])
    one = st.one_of(odd, hostile_text(), st.integers(), st.binary(max_size=4))
    return st.one_of(st.lists(one.filter(not_a_status), max_size=3), hostile_text())


@functools.cache
def live_worker_lists() -> SearchStrategy[object]:
    one = st.one_of(st.sampled_from(LOOK_ALIKE_WORKERS), hostile_text(), wrong_types())
    return st.one_of(
        st.lists(one, max_size=3),
        st.just(BAIT_WORKER),
        st.sampled_from([None, 7, b"bait-worker", {CANARY_OWNER: 1}]),
    )


@functools.cache
def wait_timeouts() -> SearchStrategy[object]:
    small = st.floats(min_value=-1.0, max_value=0.05)
    return st.one_of(small, st.sampled_from([math.nan, -math.inf, 0, -1, 5e-324, -(10**400)]))


@functools.cache
def store_calls() -> SearchStrategy[StoreCall]:
    times, stamps, results = odd_times(), odd_numbers(FINITE_LIMIT), hostile_payloads()
    errors = hostile_text(huge=True)
    outcomes = st.sampled_from(["succeeded", "retry", "dead"])
    calls: list[SearchStrategy[Any]] = [
        st.builds(Claim, workers(), counts(), counts(), times),
        st.builds(Finish, outcomes, lease_specs(), results, errors, stamps, stamps),
        st.builds(Extend, lease_specs(), counts(), times),
        st.builds(Release, lease_specs()),
        st.builds(RequeueExpired, times, epochs()),
        st.builds(RequeueAbandoned, live_worker_lists(), times, epochs()),
        st.builds(GetMany, id_lists(with_canaries=True)),
        st.builds(ListDead, counts()),
        st.builds(RequeueDead, id_lists(with_canaries=False), times),
        st.builds(Purge, status_lists()),
        st.builds(WaitForWork, wait_timeouts()),
    ]
    return st.one_of(*calls)


# -- strategies: URLs and command lines ----------------------------------------------------

STORE_SCHEMES = ("memory", "sqlite", "postgresql", "postgres", "redis", "rediss", "mysql")
COORDINATOR_SCHEMES = ("etcd", "redis", "rediss")
ODD_SCHEMES = ("SQLITE", "Redis", "mysql+pymysql", "mariadb", "http", "file", "1x", "a b", "")
OPTION_NAMES = (
    "schema",
    "pool_size",
    "connect_timeout",
    "synchronous_commit",
    "prefix",
    "socket_timeout",
    "max_connections",
    "synchronous",
    "profile",
    "busy_timeout_ms",
    "ttl",
    "refresh",
    "safety_margin",
    "election",
    "worker_id",
    "poll_interval",
    "epoch_source",
    "host",
    "password",
)
OPTION_VALUES = (
    "",
    "0",
    "-1",
    "0.05",
    "1",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "9" * 30,
    "true",
    "OFF",
    "legacy",
    "public",
    "pg_catalog",
    "tb_hostile",
    "{tb}:",
    "%00",
    "%ZZ",
    "a b",
)
PASSWORDS = ("Pw-5ecret-q7", "p@a..b#w/rd?x9", "pct%41%2Fenc-pw", "ünïcødé-pw-3", "sp ace-pw-4")
"""Passwords put in generated URLs, distinctive enough to grep for in what comes out.
The raw '#', '?' and '/' of the second end the location early: what is left of
the host ('a..b') then fails before any DNS query."""
USERS = ("", "user", "us@er", "root", "%00", "\ud800", "' OR 1=1 --", "u:ser")
ODD_HOSTS = ("a..b", "x" * 64, "\ud800x", "\x00", "[::1", "[zz]", ".", "a..b,c..d")
"""Hosts that fail before any DNS query (IDNA or parse errors), so any port goes."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "")
BAD_PORTS = ("65536", "-1", "abc", "99999999999", "+1", "٣٣", "1.5", " 1", "0x10", "0")
"""Port texts that do not parse, or port 0: with them a loopback host reaches nothing."""
PATHS = ("", "/", "/0", "/15", "/16", "/-1", "/db", "/tb_hostile", "/%2F", "/a/b", "/\x00")


@dataclass(frozen=True, slots=True)
class UrlCase:
    """A URL to open; ``connect`` when it points somewhere harmless (else only parsed)."""

    url: Any
    connect: bool
    password: str | None = None


@functools.cache
def _location(dead_port: int) -> SearchStrategy[str]:
    loopback = st.sampled_from(LOOPBACK_HOSTS)
    live_free = st.builds(lambda h: f"{h}:{dead_port}", loopback)
    unparsable = st.builds(lambda h, p: f"{h}:{p}", loopback, st.sampled_from(BAD_PORTS))
    odd = st.builds(lambda h, p: f"{h}{p}", st.sampled_from(ODD_HOSTS), st.sampled_from(["", ":1"]))
    cluster = st.just(f"127.0.0.1:{dead_port},[::1]:{dead_port}")
    return st.one_of(live_free, unparsable, odd, cluster)


def query_pair(name: str, value: str, quoted: bool) -> str:
    if not quoted:
        return f"{name}={value}"
    return f"{quote(name, errors='surrogatepass')}={quote(value, errors='surrogatepass')}"


@functools.cache
def _query() -> SearchStrategy[str]:
    name = st.one_of(st.sampled_from(OPTION_NAMES), hostile_text())
    value = st.one_of(st.sampled_from(OPTION_VALUES), hostile_text())
    pair = st.builds(query_pair, name, value, st.booleans())
    return st.lists(pair, max_size=3).map(lambda pairs: "?" + "&".join(pairs) if pairs else "")


@st.composite
def _structured_urls(draw: st.DrawFn, dead_port: int, schemes: Sequence[str]) -> UrlCase:
    scheme = draw(st.sampled_from(tuple(schemes) + ODD_SCHEMES))
    user = draw(st.sampled_from(USERS))
    password = draw(st.one_of(st.none(), st.sampled_from(PASSWORDS)))
    quoted = draw(st.booleans())
    secret = "" if password is None else ":" + (quote(password, safe="") if quoted else password)
    userinfo = f"{user}{secret}@" if user or password else ""
    url = f"{scheme}://{userinfo}{draw(_location(dead_port))}"
    url += draw(st.sampled_from(PATHS)) + draw(_query())
    return UrlCase(url, connect=True, password=password)


@st.composite
def _sqlite_urls(draw: st.DrawFn, sandbox: str) -> UrlCase:
    name = draw(hostile_text().filter(lambda s: not {"/", "?", "#"} & set(s) and ".." not in s))
    query = draw(_query())
    return UrlCase(f"sqlite:///{sandbox}/{name[:300]}{query}", connect=True)


@functools.cache
def _raw_urls(schemes: Sequence[str]) -> SearchStrategy[UrlCase]:
    glued = st.builds(lambda s, t: f"{s}://{t}", st.sampled_from(tuple(schemes)), hostile_text())
    anything = st.one_of(st.text(), glued, wrong_types(), st.integers())
    return st.builds(UrlCase, anything, st.just(False))


@functools.cache
def url_cases(dead_port: int, sandbox: str, schemes: Sequence[str]) -> SearchStrategy[UrlCase]:
    """URLs for open_store/open_coordinator: structured (opened), SQLite in ``sandbox``, raw."""
    return st.one_of(
        _structured_urls(dead_port, schemes),
        _structured_urls(dead_port, schemes),
        _sqlite_urls(sandbox),
        _raw_urls(schemes),
        st.just(UrlCase("memory://", connect=True)),
    )


@dataclass(frozen=True, slots=True)
class CliCase:
    argv: tuple[str, ...]
    password: str | None = None


COUNT_TEXTS = ("1", "2", "0", "-1", "1.5", "abc", "", "٣", "1e3", "9" * 5000, " 1", "0x1", "+1")
CHEAP_WORKLOADS = ("noop", "sleep:0", "cpu:1", "flaky:0.5", "noop+noop", "flaky:1")


def _refuses(check: Callable[[str], object], text: str) -> bool:
    try:
        check(text)
    except TaskbenchError:
        return True
    except Exception:  # our checks should raise ours: let the campaign find it
        return True
    return False


def _refused_workload(text: str) -> bool:
    from taskbench.bench.workloads import parse_workload

    return _refuses(parse_workload, text)


def _refused_store_url(url: str) -> bool:
    from taskbench.bench.drain import check_store_url

    return _refuses(check_store_url, url)


@st.composite
def cli_cases(draw: st.DrawFn, dead_port: int, sandbox: str) -> CliCase:
    """``taskbench [-v...] bench --store URL --tasks N ...``: safe URLs, or ones it must refuse."""
    harmless = st.one_of(_structured_urls(dead_port, STORE_SCHEMES), _sqlite_urls(sandbox))
    refused = st.text().filter(_refused_store_url).map(lambda u: UrlCase(u, connect=False))
    case = draw(st.one_of(harmless, refused, st.just(UrlCase("memory://", True))))
    workload = st.one_of(st.sampled_from(CHEAP_WORKLOADS), hostile_text().filter(_refused_workload))
    argv = ["-v"] * draw(st.integers(0, 3)) + ["bench", "--store", case.url]
    argv += ["--tasks", draw(st.sampled_from(COUNT_TEXTS))]
    argv += ["--concurrency", draw(st.sampled_from(COUNT_TEXTS))]
    argv += ["--workload", draw(workload)]
    if draw(st.booleans()):
        argv.append("--json")
    if draw(st.booleans()):
        argv += ["--executor", draw(st.one_of(st.sampled_from(["asyncio", "threads"]), st.text()))]
    return CliCase(tuple(argv), case.password)


# -- checking: canaries and round trips ----------------------------------------------------


def _canary_tasks() -> list[Task]:
    def canary(name: str, task_id: str, payload: Any = None, **options: Any) -> Task:
        return Task.new(name, payload, id=task_id, now=1.0, **options)

    return [
        canary(
            "canary.queued",
            "canary-queued",
            {"t": "é😀'\";--", "n": [1, 2.5, None]},
            priority="high",
            run_at=FAR,
        ),
        canary(
            "canary'); DROP TABLE x;--",
            "canary-queued-low",
            "x" * 1000,
            priority="low",
            run_at=2 * FAR,
        ),
        canary("canary.running", "canary-running", run_at=0.0, max_attempts=5),
        canary("canary.succeeded", "canary-succeeded", run_at=0.0),
        canary("canary.dead", "canary-dead", run_at=0.0, max_attempts=1),
        canary("canary.retried", "canary-retried", run_at=0.0),
    ]


async def plant_canaries(store: TaskStore) -> dict[str, Task]:
    """Purge ``store`` and plant one canary in each state; return them as read back."""
    await store.purge()
    await store.enqueue(_canary_tasks())
    held = {t.id: t.lease for t in await store.claim(CANARY_OWNER, 10, lease_s=FAR, now=CANARY_NOW)}
    await store.finish(
        [
            Outcome.succeeded(held["canary-succeeded"], {"ok": "ü"}, now=CANARY_NOW + 1),
            Outcome.dead(held["canary-dead"], "boom ' \" é", now=CANARY_NOW + 2),
            Outcome.retry(held["canary-retried"], "again", run_at=FAR, now=CANARY_NOW + 3),
        ]
    )
    return {t.id: t for t in await store.get_many(list(CANARY_IDS))}


def same_value(stored: object, expected: object) -> bool:
    """Equal; numbers as the doubles a store keeps (2**64 + 3 is stored as 2.0**64)."""
    if is_number(stored) and is_number(expected):
        assert isinstance(stored, int | float) and isinstance(expected, int | float)
        with contextlib.suppress(OverflowError):
            return float(stored) == float(expected)
    return stored == expected


def differing_fields(stored: Task, expected: Task, skip: Sequence[str] = ()) -> list[str]:
    """The fields where ``stored`` differs from ``expected``."""
    names = [f.name for f in dataclasses.fields(Task) if f.name not in skip]
    return [n for n in names if not same_value(getattr(stored, n), getattr(expected, n))]


def is_finite(value: object) -> bool:
    """A finite number that a float can hold (10**400 is not: it overflows)."""
    if not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def non_finite_times(task: Task) -> list[str]:
    times = ("run_at", "created_at", "started_at", "finished_at", "lease_expires_at")
    values = {name: getattr(task, name) for name in times}
    return [f"{k}={short(v)}" for k, v in values.items() if v is not None and not is_finite(v)]


def expect_same(stored: Task | None, expected: Task, what: str, skip: Sequence[str] = ()) -> None:
    """Raise a Violation unless ``stored`` has every field of ``expected`` (and finite times)."""
    if stored is None:
        raise Violation("corrupted", f"{what}: task {expected.id!r} is gone")
    odd = non_finite_times(stored)
    if odd:
        raise Violation("corrupted", f"{what}: a stored time is not finite ({', '.join(odd)})")
    fields = differing_fields(stored, expected, skip)
    if fields:
        shown = ", ".join(f"{n}={short(getattr(stored, n))}" for n in fields[:4])
        raise Violation("corrupted", f"{what}: task {expected.id!r} differs in {shown}")


def plain_id(value: object) -> bool:
    """Whether ``value`` can be looked up without the lookup itself being hostile input."""
    if not isinstance(value, str) or not value or "\x00" in value or len(value) > MAX_ID_LENGTH:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def after_finish(task: Task, outcome: Outcome) -> Task:
    """The task an applied ``outcome`` leaves, as the contract says."""
    cleared = replace(task, lease_owner=None, lease_expires_at=None, status=outcome.status)
    if outcome.status is TaskStatus.QUEUED:
        assert outcome.run_at is not None
        return replace(cleared, run_at=outcome.run_at, finished_at=None, last_error=outcome.error)
    error = task.last_error if outcome.error is None else outcome.error
    return replace(
        cleared, finished_at=outcome.finished_at, result_json=outcome.result_json, last_error=error
    )


def after_release(task: Task) -> Task:
    return replace(
        task,
        status=TaskStatus.QUEUED,
        attempts=task.attempts - 1,
        finished_at=None,
        lease_owner=None,
        lease_expires_at=None,
    )


def make_outcome(call: Finish, lease: Lease) -> Outcome:
    if call.outcome == "succeeded":
        return Outcome.succeeded(lease, call.result, now=call.now)
    if call.outcome == "retry":
        return Outcome.retry(lease, call.error, run_at=call.run_at, now=call.now)
    return Outcome.dead(lease, call.error, now=call.now)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- the store entry points ---------------------------------------------------------------


class StoreChecks:
    """The checks of the two store entry points, against one open store with canaries."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.canaries: dict[str, Task] = {}
        self.accepted_chars = 0
        self.stored_ids: set[str] = set()
        """Ids enqueued by earlier cases since the last reset (a clash with one is fine)."""
        self.baits = 0
        self.token = uuid.uuid4().hex[:8]

    async def reset(self) -> None:
        self.canaries = await plant_canaries(self.store)
        self.accepted_chars = 0
        self.stored_ids.clear()

    async def check_canaries(self) -> None:
        found = await self.get_exact(list(CANARY_IDS))
        for task_id, planted in self.canaries.items():
            expect_same(found.get(task_id), planted, "canary")

    async def get_exact(self, ids: list[str]) -> dict[str, Task]:
        """get_many, checking that it returns only tasks it was asked for."""
        found = await self.store.get_many(ids)
        strays = [t.id for t in found if t.id not in ids]
        if strays:
            raise Violation("wrong-answer", f"get_many returned ids not asked for: {short(strays)}")
        return {t.id: t for t in found}

    # -- enqueue ------------------------------------------------------------------------

    async def enqueue(self, specs: list[NewTask | HandBuiltTask]) -> None:
        tasks = [spec.build() for spec in specs]
        try:
            await self.store.enqueue(tasks)
        except TaskbenchError:
            await self.expect_absent(tasks)
            raise
        self.stored_ids.update(t.id for t in tasks)
        stored = await self.get_exact([t.id for t in tasks])
        for task in tasks:
            expect_same(stored.get(task.id), task, "round trip")
        self.accepted_chars += sum(len(t.payload_json) for t in tasks)
        if self.accepted_chars > RESET_AFTER_CHARS:
            await self.reset()

    async def expect_absent(self, tasks: list[Task]) -> None:
        """A refused batch wrote nothing: none of its new (plain, non-canary) ids exists."""
        known = self.stored_ids.union(CANARY_IDS, LOOK_ALIKE_IDS)
        ids = [t.id for t in tasks if plain_id(t.id) and t.id not in known]
        if not ids:
            return
        found = await self.get_exact(ids)
        if found:
            raise Violation("corrupted", f"a refused enqueue stored {short(sorted(found))}")

    # -- store calls: the bait ----------------------------------------------------------

    async def new_bait(self, claimed: bool) -> Task:
        self.baits += 1
        bait_id = f"bait-{self.token}-{self.baits}"
        bait = Task.new("bait", {"n": self.baits}, id=bait_id, run_at=BAIT_RUN_AT, now=BAIT_RUN_AT)
        await self.store.enqueue([bait])
        if not claimed:
            return bait
        held = await self.store.claim(BAIT_WORKER, 10_000, lease_s=BAIT_LEASE_S, now=BAIT_NOW)
        for task in held:
            if task.id == bait.id:
                return task
        detail = f"claim at now={BAIT_NOW} did not hand out a due task"
        raise Violation("corrupted", detail, replant=True)

    async def bait_state(self, bait: Task) -> Task | None:
        return (await self.get_exact([bait.id])).get(bait.id)

    async def store_call(self, call: StoreCall) -> None:
        bait = await self.new_bait(claimed=isinstance(call, NEEDS_CLAIMED_BAIT))
        try:
            await self.perform(call, bait)
        except TaskbenchError:
            expect_same(await self.bait_state(bait), bait, "after a refused call")
            raise

    async def perform(self, call: StoreCall, bait: Task) -> None:
        handlers: dict[type, Callable[[Any, Task], Awaitable[None]]] = {
            Claim: self.claim,
            Finish: self.finish,
            Extend: self.extend,
            Release: self.release,
            RequeueExpired: self.requeue_expired,
            RequeueAbandoned: self.requeue_abandoned,
            GetMany: self.get_many,
            ListDead: self.list_dead,
            RequeueDead: self.requeue_dead,
            Purge: self.purge,
            WaitForWork: self.wait_for_work,
        }
        await handlers[type(call)](call, bait)

    # -- store calls: one check each ----------------------------------------------------

    async def claim(self, call: Claim, bait: Task) -> None:
        claimed = await self.store.claim(
            call.worker, call.limit, lease_s=call.lease_s, now=call.now
        )
        stored = await self.get_exact([t.id for t in claimed])
        for task in claimed:
            if task.id in CANARY_IDS or task.lease_owner != call.worker:
                raise Violation("wrong-answer", f"claim returned {short(task)}")
            expect_same(stored.get(task.id), task, "claimed task as returned")
        if bait.id in stored and call.now is not None:
            expected = replace(
                bait,
                status=TaskStatus.RUNNING,
                attempts=1,
                started_at=call.now,
                lease_owner=call.worker,
                lease_expires_at=call.now + call.lease_s,
            )
            expect_same(stored[bait.id], expected, "bait after claim")

    async def finish(self, call: Finish, bait: Task) -> None:
        lease = call.lease.resolve(bait.id)
        outcome = make_outcome(call, lease)
        applied = await self.store.finish([outcome])
        current = lease == bait.lease
        expected = after_finish(bait, outcome) if current else bait
        expect_same(await self.bait_state(bait), expected, "bait after finish")
        if applied != int(current):
            raise Violation(
                "wrong-answer", f"finish applied {applied} for a current={current} lease"
            )

    async def extend(self, call: Extend, bait: Task) -> None:
        lease = call.lease.resolve(bait.id)
        extended = await self.store.extend([lease], lease_s=call.lease_s, now=call.now)
        current = lease == bait.lease
        if extended != int(current):
            raise Violation("wrong-answer", f"extend counted {extended}, current={current}")
        skip = ("lease_expires_at",) if current and call.now is None else ()
        expires = call.now + call.lease_s if current and call.now is not None else None
        expected = replace(bait, lease_expires_at=expires) if expires is not None else bait
        expect_same(await self.bait_state(bait), expected, "bait after extend", skip)

    async def release(self, call: Release, bait: Task) -> None:
        lease = call.lease.resolve(bait.id)
        released = await self.store.release([lease])
        current = lease == bait.lease
        expected = after_release(bait) if current else bait
        expect_same(await self.bait_state(bait), expected, "bait after release")
        if released != int(current):
            raise Violation("wrong-answer", f"release counted {released}, current={current}")

    async def requeue_expired(self, call: RequeueExpired, bait: Task) -> None:
        await self.store.requeue_expired(now=call.now, epoch=call.epoch)
        expired = call.now is None or (is_number(call.now) and call.now > BAIT_NOW + BAIT_LEASE_S)
        await self.expect_requeued(bait, call.now, expired)

    async def requeue_abandoned(self, call: RequeueAbandoned, bait: Task) -> None:
        live = call.live_workers
        if isinstance(live, list):
            live = [CANARY_OWNER, *live]
        await self.store.requeue_abandoned(live, now=call.now, epoch=call.epoch)
        collection = isinstance(live, Collection) and not isinstance(live, str | bytes)
        abandoned = collection and BAIT_WORKER not in live
        await self.expect_requeued(bait, call.now, abandoned)

    async def expect_requeued(self, bait: Task, now: Any, requeued: bool) -> None:
        """The bait's lease was lost (``requeued``) or it is untouched."""
        if not requeued:
            expect_same(await self.bait_state(bait), bait, "bait not requeued")
            return
        expected = replace(after_release(bait), attempts=bait.attempts, run_at=now)
        skip = ("last_error",) if now is not None else ("last_error", "run_at")
        stored = await self.bait_state(bait)
        expect_same(stored, expected, "bait after a lost lease", skip)
        if stored is not None and not stored.last_error:
            raise Violation("wrong-answer", "a requeued lease left no last_error")

    async def get_many(self, call: GetMany, bait: Task) -> None:
        found = await self.store.get_many(call.ids)
        wanted = list(call.ids) if isinstance(call.ids, list | tuple | str) else []
        for task in found:
            if task.id not in wanted:
                raise Violation("wrong-answer", f"get_many returned {task.id!r}, not asked for")
            if non_finite_times(task):
                raise Violation("corrupted", f"a stored time is not finite: {short(task)}")

    async def list_dead(self, call: ListDead, bait: Task) -> None:
        for task in await self.store.list_dead(limit=call.limit):
            if task.status is not TaskStatus.DEAD:
                raise Violation("wrong-answer", f"list_dead returned {short(task)}")

    async def requeue_dead(self, call: RequeueDead, bait: Task) -> None:
        requeued = await self.store.requeue_dead(call.ids, now=call.now)
        if requeued:
            raise Violation("wrong-answer", f"requeue_dead revived {requeued} unnamed tasks")

    async def purge(self, call: Purge, bait: Task) -> None:
        purged = await self.store.purge(call.statuses)
        if purged:
            raise Violation("corrupted", f"purge of no real status deleted {purged} tasks")

    async def wait_for_work(self, call: WaitForWork, bait: Task) -> None:
        await self.store.wait_for_work(call.timeout)


# -- the URL and command-line entry points ---------------------------------------------------


def leaked(texts: Sequence[str], password: str | None) -> bool:
    """Whether ``password`` shows in ``texts`` in any form (raw, quoted, escaped...);
    the URL-decoded form too, since a URL may carry the password quoted."""
    if password is None:
        return False
    secrets = [password] + ([unquote(password)] if unquote(password) != password else [])
    return bool(scan_texts({str(i): text for i, text in enumerate(texts)}, secrets))


async def open_and_close(opener: Callable[[str], Any], case: UrlCase) -> None:
    target = opener(case.url)
    if case.connect:
        await target.open()
        await target.close()


@dataclass(frozen=True, slots=True)
class CliRun:
    code: int | None
    stdout: str
    stderr: str
    crash: str | None = None


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """Undo what the CLI's logging.basicConfig does to the root logger."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@contextlib.contextmanager
def results_directory(path: str) -> Iterator[str]:
    """Point $TASKBENCH_RESULTS_DIR at ``path`` for a while: the CLI saves runs there."""
    before = os.environ.get(RESULTS_DIR_VARIABLE)
    os.environ[RESULTS_DIR_VARIABLE] = path
    try:
        yield path
    finally:
        if before is None:
            del os.environ[RESULTS_DIR_VARIABLE]
        else:
            os.environ[RESULTS_DIR_VARIABLE] = before


def _exit_code(exit: SystemExit) -> int:
    return exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)


def run_cli_in_process(argv: Sequence[str]) -> CliRun:
    """``taskbench ARGV`` in this process: stdout strict UTF-8 (as a pipe), stderr lenient."""
    from taskbench.cli import main

    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", errors="strict")
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", errors="backslashreplace")
    code: int | None = None
    crash = None
    with _logging_restored(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exit:
            code = _exit_code(exit)
        except Exception:
            crash = traceback.format_exc()
        with contextlib.suppress(Exception):
            out.flush()
        err.flush()
    texts = [b.getvalue().decode("utf-8", "replace") for b in (out_bytes, err_bytes)]
    return CliRun(code, texts[0], texts[1], crash)


def judge_cli(case: CliCase, run: CliRun) -> None:
    """Exit 0, or 1/2 with a message on stderr; never a traceback; never the password."""
    if run.crash is not None:
        last = run.crash.strip().splitlines()[-1]
        raise Violation("exception", f"the CLI raised {ascii(last)[1:-1][:300]}")
    if run.code not in (0, 1, 2) or "Traceback" in run.stderr:
        raise Violation("exception", f"exit {run.code}, stderr {short(run.stderr[-300:])}")
    if run.code != 0 and "error:" not in run.stderr:
        raise Violation("wrong-answer", f"exit {run.code} with no message: {short(run.stderr)}")
    if leaked([run.stdout, run.stderr], case.password):
        raise Violation("leak", "the password shows in the command's output")
    if run.code != 0:
        raise Refused(run.stderr[-300:])


# -- the campaign -----------------------------------------------------------------------------


class _CapturedLogs(logging.Handler):
    """Collects taskbench's log records (DEBUG and up) while a case runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.texts.append(self.format(record))


@contextlib.contextmanager
def _captured_taskbench_logs() -> Iterator[_CapturedLogs]:
    logger = logging.getLogger("taskbench")
    handler = _CapturedLogs()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def free_port() -> int:
    """A loopback port nobody listens on (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_examples(
    strategy: SearchStrategy[T], check: Callable[[T], None], examples: int, seed: int | None
) -> None:
    """Let hypothesis draw ``examples`` cases from ``strategy`` and call ``check`` on each."""

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    @hypothesis.given(strategy)
    def generated(case: T) -> None:
        check(case)

    if seed is not None:
        generated = hypothesis.seed(seed)(generated)
    generated()


class Campaign:
    """Runs the entry points against one store; the results accumulate in ``result``."""

    def __init__(self, store_url: str, examples: int, seed: int | None) -> None:
        self.store_url = store_url
        self.examples = examples
        self.seed = seed
        self.result = CampaignResult(store=redact(store_url), examples=examples)
        self.runner = asyncio.Runner()
        self.sandbox = tempfile.mkdtemp(prefix="taskbench-hostile-")
        self.dead_port = free_port()
        self.checks: StoreChecks | None = None
        self.logs = _CapturedLogs()
        self.store_password = urlsplit(store_url).password
        self.warnings: list[warnings.WarningMessage] = []
        self.needs_replant = False
        self.broken = False
        """The store under test could not plant canaries: later cases are not judged."""

    def run(self, entry_points: Sequence[str]) -> CampaignResult:
        started = time.perf_counter()
        try:
            with (
                _captured_taskbench_logs() as self.logs,
                warnings.catch_warnings(record=True) as seen,
            ):
                warnings.simplefilter("always")
                self.warnings = seen
                for entry_point in entry_points:
                    self.run_entry_point(entry_point)
        finally:
            self.close()
        self.result.seconds = time.perf_counter() - started
        return self.result

    def close(self) -> None:
        if self.checks is not None:
            with contextlib.suppress(TaskbenchError):
                self.runner.run(self.checks.store.purge())
            self.runner.run(self.checks.store.close())
        self.runner.close()
        shutil.rmtree(self.sandbox, ignore_errors=True)

    def run_entry_point(self, entry_point: str) -> None:
        self.result.tallies[entry_point] = Tally()
        self.broken = False
        if entry_point in STORE_ENTRY_POINTS:
            self.runner.run(self.open_store_under_test())
            self.replant_or_stop(entry_point, None)
            if self.broken:
                return
        strategy, check = self.entry_point(entry_point)
        run_examples(
            strategy, lambda case: self.one_case(entry_point, check, case), self.examples, self.seed
        )

    async def open_store_under_test(self) -> None:
        """Open the store the first time (an error here is the caller's: it raises)."""
        if self.checks is None:
            store = open_store(self.store_url)
            await store.open()
            self.checks = StoreChecks(store)

    def entry_point(
        self, name: str
    ) -> tuple[SearchStrategy[Any], Callable[[Any], Awaitable[None]]]:
        from taskbench.coordination import open_coordinator

        checks = self.checks
        table: dict[str, tuple[SearchStrategy[Any], Callable[[Any], Awaitable[None]]]] = {
            "open_store": (self.urls(STORE_SCHEMES), lambda c: open_and_close(open_store, c)),
            "open_coordinator": (
                self.urls(COORDINATOR_SCHEMES),
                lambda c: open_and_close(open_coordinator, c),
            ),
            "cli": (cli_cases(self.dead_port, self.sandbox), self.cli),
        }
        if checks is not None:
            table["enqueue"] = (enqueue_cases(), checks.enqueue)
            table["store-calls"] = (store_calls(), checks.store_call)
        if name not in table:
            raise ValueError(f"unknown entry point {name!r}; known: {', '.join(ENTRY_POINTS)}")
        return table[name]

    def urls(self, schemes: Sequence[str]) -> SearchStrategy[UrlCase]:
        return url_cases(self.dead_port, self.sandbox, schemes)

    async def cli(self, case: CliCase) -> None:
        with results_directory(os.path.join(self.sandbox, "results")) as results:
            judge_cli(case, await asyncio.to_thread(run_cli_in_process, case.argv))
        if case.password is not None and scan([results], [case.password]):
            raise Violation("leak", "the password shows in a results file the command wrote")

    # -- one case -------------------------------------------------------------------------

    def one_case(
        self, entry_point: str, check: Callable[[Any], Awaitable[None]], case: Any
    ) -> None:
        if self.broken:  # the rest of the examples are drawn, but no longer judged
            return
        tally = self.result.tallies[entry_point]
        tally.cases += 1
        self.logs.texts.clear()
        verdict = self.runner.run(self.judge(check, case, self.password_of(case)))
        if verdict == ACCEPTED:
            tally.accepted += 1
        elif verdict == REFUSED:
            tally.refused += 1
        elif isinstance(verdict, Finding):
            self.record(entry_point, verdict, case)
        self.after_case(entry_point, case)
        self.record_warnings(entry_point, case)

    def record_warnings(self, entry_point: str, case: Any) -> None:
        """Warnings raised during the case (they may be a case late: some come at GC)."""
        for seen in self.warnings:
            detail = f"{seen.category.__name__}: {ascii(str(seen.message))[1:-1][:200]}"
            self.record(entry_point, Finding("", "warning", detail, ""), case)
        self.warnings.clear()

    def password_of(self, case: Any) -> str | None:
        """The password to look for: the case URL's, else the store under test's."""
        password = getattr(case, "password", None)
        return password if isinstance(password, str) else self.store_password

    def record(self, entry_point: str, finding: Finding, case: Any) -> None:
        self.result.record(replace(finding, entry_point=entry_point, case=short(case)))

    async def judge(
        self, check: Callable[[Any], Awaitable[None]], case: Any, password: str | None
    ) -> Finding | str:
        """Run one case: ACCEPTED, REFUSED (a TaskbenchError), or a Finding."""
        verdict = ACCEPTED
        try:
            async with asyncio.timeout(CASE_TIMEOUT_S):
                await check(case)
        except Violation as violation:
            self.needs_replant = violation.replant
            return Finding("", violation.kind, violation.detail, "")
        except (TaskbenchError, Refused) as error:
            if leaked(exception_texts(error), password):
                return Finding("", "leak", f"a {type(error).__name__} message carries it", "")
            verdict = REFUSED
        except TimeoutError:
            return Finding("", "hang", f"no answer in {CASE_TIMEOUT_S:g} s", "")
        except Exception as error:
            return Finding("", "exception", describe_exception(error), "")
        if leaked(self.logs.texts, password):
            return Finding("", "leak", "a log record carries it", "")
        return verdict

    def after_case(self, entry_point: str, case: Any) -> None:
        """Canaries intact (store entry points); the sandbox emptied (URL entry points)."""
        if entry_point not in STORE_ENTRY_POINTS:
            empty_directory(self.sandbox)
            return
        finding = self.runner.run(self.canary_finding())
        if finding is not None:
            self.record(entry_point, finding, case)
        if finding is not None or self.needs_replant:
            self.needs_replant = False
            self.replant_or_stop(entry_point, case)

    def replant_or_stop(self, entry_point: str, case: Any) -> None:
        """Plant the canaries afresh; if the store cannot, stop judging this entry point."""
        try:
            self.runner.run(self.replant())
        except StoreBroken as broken:
            self.broken = True
            detail = f"the store stopped working: {broken}"
            self.record(entry_point, Finding("", "corrupted", detail, ""), case)

    async def replant(self) -> None:
        """After a changed canary: plant afresh, so that later cases are judged on their own."""
        assert self.checks is not None
        try:
            await self.checks.reset()
        except Exception as error:
            raise StoreBroken(
                f"planting canaries afresh failed: {describe_exception(error)}"
            ) from None

    async def canary_finding(self) -> Finding | None:
        assert self.checks is not None
        try:
            await self.checks.check_canaries()
        except Violation as violation:
            return Finding("", violation.kind, violation.detail, "")
        except Exception as error:
            detail = f"reading the canaries back: {describe_exception(error)}"
            return Finding("", "exception", detail, "")
        return None


def empty_directory(path: str) -> None:
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def check_entry_points(entry_points: Sequence[str]) -> list[str]:
    """``entry_points`` as a list; ConfigError if one is unknown or there are none."""
    unknown = [name for name in entry_points if name not in ENTRY_POINTS]
    if unknown or not entry_points:
        shown = ", ".join(map(repr, unknown)) or "none given"
        raise ConfigError(f"unknown entry points: {shown}; known: {', '.join(ENTRY_POINTS)}")
    return list(entry_points)


def run_campaign(
    store_url: str,
    examples: int = 10_000,
    *,
    entry_points: Sequence[str] = ENTRY_POINTS,
    seed: int | None = None,
) -> CampaignResult:
    """Run ``examples`` generated cases per entry point against ``store_url``; count them.

    The store is PURGED (first, between entry points, and at the end): give the
    campaign a store of its own. Runs its own event loop, so call it from
    synchronous code (or ``asyncio.to_thread``). ``seed`` makes it repeatable.
    """
    check_entry_points(entry_points)
    return Campaign(store_url, examples, seed).run(entry_points)


# -- python -m taskbench.faults.hostile ---------------------------------------------------------


def _examples(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"expected a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"expected at least 1 example, got {value}")
    return value


def _entry_points(raw: str) -> list[str]:
    return check_entry_points([name for name in raw.split(",") if name])


def configure(parser: argparse.ArgumentParser) -> None:
    """The campaign's arguments (for ``python -m`` here, and a ``taskbench faults`` entry)."""
    from taskbench.bench.drain import check_store_url
    from taskbench.cli.common import argument

    parser.add_argument(
        "--store",
        required=True,
        type=argument(check_store_url),
        metavar="URL",
        help="a store of its own: PURGED",
    )
    parser.add_argument(
        "--examples", type=argument(_examples), default=10_000, metavar="N", help="per entry point"
    )
    parser.add_argument(
        "--entry-points",
        type=argument(_entry_points),
        default=list(ENTRY_POINTS),
        metavar="NAMES",
        help=f"comma-separated, of {','.join(ENTRY_POINTS)} (default: all)",
    )
    parser.add_argument("--seed", type=int, default=None, help="repeat a campaign exactly")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Run the campaign and print it; exit 1 if anything but a clean case was found."""
    entry_points = args.entry_points
    result = run_campaign(args.store, args.examples, entry_points=entry_points, seed=args.seed)
    print(json.dumps(result.to_json_dict()) if args.json else result.summary())
    return 0 if not (result.unexpected or result.corrupted or result.leaks) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taskbench.faults.hostile",
        description="Run the hostile-input campaign against a store of its own (it is PURGED).",
    )
    configure(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except TaskbenchError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
