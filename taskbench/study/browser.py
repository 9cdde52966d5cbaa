"""Checking the report in a real browser: every page opened in headless Chromium.

:func:`check_report` opens each HTML page of a report (:func:`check_page`)
and tells, per page (:class:`PageCheck`), how many figures drew, which
script errors it logged, and how many scripts it would fetch from the
network; with a screenshot of each. Chromium runs in a process group of its
own, killed whole when it hangs for :data:`CHROMIUM_TIMEOUT_S` (a test
patches that here, in the module that reads it).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import (
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from taskbench.errors import ConfigError

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
RENDER_BUDGET_MS = 5_000
"""Chromium's virtual time for a page's scripts to run before its DOM is read."""
SCREENSHOT_SIZE = (1280, 14_000)
"""Tall enough for the longest chapter: Chromium's --screenshot takes the window only."""


ERROR_HOOK = """<script>
(function () {
  function report(kind, detail) { console.log("TASKBENCH-JS-ERROR " + kind + ": " + detail); }
  window.addEventListener("error", function (event) {
    var target = event.target || {};
    report("error", event.message || ("failed to load " + (target.src || target.href)));
  }, true);
  window.addEventListener("unhandledrejection", function (event) {
    report("unhandled rejection", event.reason);
  });
  var original = console.error;
  console.error = function () {
    report("console.error", Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
})();
</script>"""
"""Injected first into a copy of each page under check, so that errors Chromium
logs only as plain console lines (failed loads, console.error) are recognisable."""
CONSOLE_ERROR = re.compile(r'CONSOLE[^\]]*\] "(TASKBENCH-JS-ERROR [^"]*|Uncaught [^"]*)"')
FIGURE_DIV = re.compile(r'<div [^>]*class="plotly-graph-div')
REMOTE_SCRIPT = re.compile(r"<script[^>]+src=[\"']?(?:https?:)?//", re.IGNORECASE)


@dataclass(frozen=True, slots=True, kw_only=True)
class PageCheck:
    """What Chromium saw on one page."""

    page: str
    figures: int
    drawn: int
    errors: tuple[str, ...]
    remote_scripts: int
    screenshot: str | None

    @property
    def ok(self) -> bool:
        return self.drawn == self.figures and not self.errors and not self.remote_scripts


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable on PATH, or None."""
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    return next((path for name in names if (path := shutil.which(name))), None)


CHROMIUM_TIMEOUT_S = 90.0
CHROMIUM_ATTEMPTS = 3


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    """Run headless Chromium to completion; None if it hung in every attempt.

    Chromium starts helper processes (zygote, renderer, GPU) that outlive a
    killed parent, so each run gets a process group of its own and a timeout
    kills the whole group. A headless run very occasionally never exits on a
    loaded machine (twice in some hundred runs here, while a normal
    run took 5-15 s); two retries are allowed before the page counts as failed.
    """
    for attempt in range(CHROMIUM_ATTEMPTS):  # a fresh profile: a killed run leaves its lock
        command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}-{attempt}", *args]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=CHROMIUM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            continue
        return subprocess.CompletedProcess(command, process.returncode, out, err)
    return None


def _drawn_figures(dom: str) -> int:
    """How many figure divs of the rendered page hold plotly's SVG."""
    starts = [match.start() for match in FIGURE_DIV.finditer(dom)] + [len(dom)]
    return sum('class="main-svg"' in dom[a:b] for a, b in itertools.pairwise(starts))


def check_page(page: Path, binary: str, screenshot: Path | None) -> PageCheck:
    """Open ``page`` in headless Chromium: figures drawn, script errors, remote scripts.

    The page is opened as a copy with :data:`ERROR_HOOK` first in its head; one
    Chromium run prints the rendered DOM and, if asked, saves a screenshot.
    """
    source = page.read_text(encoding="utf-8")
    width, height = SCREENSHOT_SIZE
    shot = [f"--window-size={width},{height}", f"--screenshot={screenshot}"] if screenshot else []
    with tempfile.TemporaryDirectory(prefix="taskbench-chromium-") as scratch:
        hooked = Path(scratch) / page.name
        hooked.write_text(source.replace("<head>", "<head>" + ERROR_HOOK, 1), encoding="utf-8")
        shown = _chromium(
            binary,
            Path(scratch) / "profile",
            "--enable-logging=stderr",
            "--v=0",
            f"--virtual-time-budget={RENDER_BUDGET_MS}",
            *shot,
            "--dump-dom",
            hooked.as_uri(),
        )
    hung = f"chromium did not finish in {CHROMIUM_ATTEMPTS} x {CHROMIUM_TIMEOUT_S:.0f} s"
    return PageCheck(
        page=page.name,
        figures=len(FIGURE_DIV.findall(source)),
        drawn=_drawn_figures(shown.stdout) if shown else 0,
        errors=tuple(CONSOLE_ERROR.findall(shown.stderr)) if shown else (hung,),
        remote_scripts=len(REMOTE_SCRIPT.findall(source)),
        screenshot=str(screenshot) if screenshot is not None and screenshot.exists() else None,
    )


def check_report(
    output_dir: str | os.PathLike[str], *, screenshots: bool = True, jobs: int = 2
) -> list[PageCheck]:
    """Check every HTML page in ``output_dir`` in headless Chromium (ConfigError if absent),
    ``jobs`` pages at a time. Screenshots go to ``<output_dir>/screenshots/<page>.png``.
    """
    binary = find_chromium()
    if binary is None:
        raise ConfigError("checking the report needs Chromium: apt-get install -y chromium")
    out = Path(output_dir)
    shots = out / "screenshots"
    shots.mkdir(exist_ok=True)

    def check(page: Path) -> PageCheck:
        return check_page(page, binary, shots / f"{page.stem}.png" if screenshots else None)

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="chromium") as pool:
        return list(pool.map(check, sorted(out.glob("*.html"))))


def check_summary(checks: Sequence[PageCheck]) -> str:
    """One line per page: figures drawn, errors, remote scripts."""
    lines = []
    for check in checks:
        verdict = "ok" if check.ok else "FAILED"
        lines.append(
            f"{check.page:<28} {check.drawn}/{check.figures} figures drawn, "
            f"{len(check.errors)} script errors, {check.remote_scripts} remote scripts: {verdict}"
        )
        lines.extend(f"    {error}" for error in check.errors)
    return "\n".join(lines)


def as_records(checks: Sequence[PageCheck]) -> list[dict[str, Any]]:
    return [asdict(check) for check in checks]
