"""Strategies for the URL and command-line entry points: URLs that reach nothing that matters.

Generated URLs (:func:`url_cases`) connect only to a loopback port nothing
listens on, to host names that fail before any DNS query, to SQLite files in
a scratch directory, or to memory; fully random strings are parsed, never
opened. The passwords put in them (:data:`PASSWORDS`) are distinctive enough
to look for in what comes out. :func:`cli_cases` makes ``taskbench bench``
command lines around such URLs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from taskbench.errors import TaskbenchError
from taskbench.faults.hostile.values import hostile_text, wrong_types

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
