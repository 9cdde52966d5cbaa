"""Strategies for hostile values: text, numbers, times and payloads.

Short text mixing SQL and Lua injections, odd Unicode, lone surrogates and
NUL, or text around the length limits (:func:`hostile_text`); numbers out of
range, and things that are not numbers at all (:func:`hostile_numbers`);
times whose finite values stay below the canaries (:func:`hostile_times`);
payloads nested past the recursion limits, huge, or not JSON
(:func:`hostile_payloads`, :func:`payload_texts`).
"""

from __future__ import annotations

import functools
import json
import math
from decimal import Decimal
from fractions import Fraction

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from taskbench.faults.hostile.canaries import FINITE_LIMIT
from taskbench.model import (
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PAYLOAD_BYTES,
)

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
