"""The campaign: hypothesis draws the cases, each case is judged, and the verdicts are counted.

:func:`run_campaign` runs the :data:`ENTRY_POINTS` against one store (PURGED)
outside pytest, in an event loop of its own. A case ends as a clean success,
a TaskbenchError (the input is refused), or a finding: any other exception,
a hang (no answer in :data:`CASE_TIMEOUT_S`), a corrupted task, a wrong
answer, a password in a message, a log record or the command's output, or a
warning. After each store case the canaries are read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import hypothesis
from hypothesis.strategies import SearchStrategy

from taskbench.errors import ConfigError, TaskbenchError
from taskbench.faults.hostile.findings import (
    CampaignResult,
    Finding,
    Refused,
    StoreBroken,
    Tally,
    Violation,
    describe_exception,
    short,
)
from taskbench.faults.hostile.store_cases import enqueue_cases, store_calls
from taskbench.faults.hostile.store_checks import StoreChecks
from taskbench.faults.hostile.url_cases import (
    COORDINATOR_SCHEMES,
    STORE_SCHEMES,
    CliCase,
    UrlCase,
    cli_cases,
    url_cases,
)
from taskbench.faults.hostile.url_checks import (
    judge_cli,
    leaked,
    open_and_close,
    results_directory,
    run_cli_in_process,
)
from taskbench.faults.secrets import exception_texts, scan
from taskbench.faults.servers import free_port
from taskbench.stores import open_store
from taskbench.urls import redact

T = TypeVar("T")


ENTRY_POINTS = ("enqueue", "store-calls", "open_store", "open_coordinator", "cli")
STORE_ENTRY_POINTS = ("enqueue", "store-calls")
CASE_TIMEOUT_S = 30.0


ACCEPTED, REFUSED = "accepted", "refused"


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
