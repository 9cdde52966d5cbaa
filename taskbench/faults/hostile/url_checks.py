"""Judging the URL and command-line entry points: no traceback, and no password shown.

URLs are opened and closed (:func:`open_and_close`). The CLI runs in this
process with a UTF-8 stdout that fails on unencodable text as a real pipe
does (:func:`run_cli_in_process`), and must exit 0, or 1 or 2 with a message
(:func:`judge_cli`). :func:`leaked` finds a password, in any form, in the
texts that came out.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from taskbench.faults.hostile.findings import Refused, Violation, short
from taskbench.faults.hostile.url_cases import CliCase, UrlCase
from taskbench.faults.secrets import scan_texts

RESULTS_DIR_VARIABLE = "TASKBENCH_RESULTS_DIR"
"""Where the CLI saves its runs: the campaign points it into its scratch directory."""


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
