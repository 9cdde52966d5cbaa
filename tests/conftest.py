"""Test-run wide hooks: report which backends really ran."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tests.backends import STORE_BACKENDS

_BACKENDS = [*STORE_BACKENDS, "etcd"]
_ALIASES = {"mariadb": "mysql", "postgresql": "postgres"}
_PARAM = re.compile(r"\[([^\]]+)\]$")
_ran: Counter[str] = Counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" or not report.passed:
        return
    match = _PARAM.search(report.nodeid)
    if match is None:
        return
    params = match[1].replace("sqlite-legacy", "sqlite_legacy").split("-")
    for part in params:
        name = part.replace("sqlite_legacy", "sqlite-legacy")
        name = _ALIASES.get(name, name)
        if name in _BACKENDS:
            _ran[name] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    ran = ", ".join(f"{name} ({count})" for name, count in sorted(_ran.items()))
    terminalreporter.write_line(f"backends that ran (passed tests): {ran or 'none'}")
