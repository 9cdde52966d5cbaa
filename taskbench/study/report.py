"""Running the report: every chapter notebook through papermill, an HTML page each, one index.

**Chapters are discovered**, not listed (:func:`chapters`): a notebook named
``NN_slug.ipynb`` in ``notebooks/`` is a chapter; its first heading is its
title. :func:`run_study` runs them into an output folder (those that read the
other chapters' summaries last); :func:`render_html` makes each an HTML page
with nbconvert, with plotly.js embedded once per page and no other script to
fetch, so the report works offline; :func:`write_index` links them from
``index.html``. papermill and nbconvert are imported inside the functions
that use them.
"""

from __future__ import annotations

import html
import json
import os
import re
import tempfile
import time
from collections.abc import (
    Callable,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import taskbench
from taskbench.bench.environment import git_state, machine, requires_extra, scrub
from taskbench.errors import ConfigError
from taskbench.study.session import (
    DEFAULT_OUTPUT_DIR,
    NOTEBOOKS_DIR,
    SIZES,
    without_uri_grammar,
)

CHAPTER_FILE = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")
MARKDOWN_MARKS = re.compile(r"[*`]")
"""Emphasis and code marks, dropped from an abstract shown as plain text."""


KERNEL = "python3"


def study_paths_exist() -> None:
    """Raise ConfigError unless taskbench runs from a checkout that holds the notebooks."""
    if not NOTEBOOKS_DIR.is_dir():
        raise ConfigError(
            f"the study needs a checkout of taskbench: no notebooks in {NOTEBOOKS_DIR}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Chapter:
    """A chapter notebook: ``NN_slug.ipynb``, titled by its first heading.

    A notebook whose metadata holds ``{"taskbench": {"reads_summaries": true}}``
    reads the other chapters' summaries, so it runs after them.
    """

    slug: str
    path: Path
    title: str
    abstract: str
    reads_summaries: bool = False


def _read_notebook(path: Path) -> dict[str, Any]:
    notebook: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return notebook


def _title_and_abstract(notebook: Mapping[str, Any]) -> tuple[str, str]:
    markdown = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown"]
    lines = "\n".join(markdown).splitlines()
    title = next((line.lstrip("# ").strip() for line in lines if line.startswith("# ")), "")
    body = next((line.strip() for line in lines if line.strip() and line[0] not in "#>|-*"), "")
    return title, MARKDOWN_MARKS.sub("", body)


def chapters(directory: Path = NOTEBOOKS_DIR) -> list[Chapter]:
    """Every chapter notebook in ``directory``, in order."""
    found = []
    for path in sorted(directory.glob("*.ipynb")):
        if CHAPTER_FILE.match(path.name):
            notebook = _read_notebook(path)
            title, abstract = _title_and_abstract(notebook)
            reads = bool(notebook["metadata"].get("taskbench", {}).get("reads_summaries"))
            found.append(
                Chapter(
                    slug=path.stem, path=path, title=title, abstract=abstract, reads_summaries=reads
                )
            )
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class ChapterRun:
    """How one chapter ran: where its outputs are, how long it took, its error if any."""

    chapter: Chapter
    notebook: Path
    html: Path
    seconds: float
    error: str | None


def chapter_parameters(size: str, output_dir: Path) -> dict[str, Any]:
    """The papermill parameters every chapter takes from ``taskbench study``."""
    return {
        "FAST": size == "fast",
        "FULL": size == "full",
        "INTERACTIVE": False,
        "REFRESH_REFERENCE": size == "full",
        "OUTPUT_DIR": str(output_dir),
    }


def execute_chapter(chapter: Chapter, output_dir: Path, size: str) -> ChapterRun:
    """Run one chapter with papermill into ``output_dir`` and render its HTML page."""
    without_uri_grammar()
    with requires_extra("running the study's notebooks"):
        import papermill  # type: ignore[import-untyped]
    executed = output_dir / chapter.path.name
    started = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(
            str(chapter.path),
            str(executed),
            parameters=chapter_parameters(size, output_dir),
            kernel_name=KERNEL,
            cwd=str(output_dir),
            progress_bar=False,
        )
    except papermill.PapermillExecutionError as exc:
        error = scrub(f"{exc.ename}: {exc.evalue}")
    seconds = time.perf_counter() - started
    page = render_html(executed, output_dir / f"{chapter.slug}.html")
    return ChapterRun(chapter=chapter, notebook=executed, html=page, seconds=seconds, error=error)


OFFLINE_TEMPLATE = """\
{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""
"""nbconvert's lab page without the scripts it would fetch from CDNs (require.js,
MathJax, mermaid, the widget manager): the report must work offline."""


def render_html(notebook: Path, target: Path) -> Path:
    """An HTML page of an executed notebook that needs no network."""
    with requires_extra("rendering the study's HTML"):
        from nbconvert import HTMLExporter
    with tempfile.TemporaryDirectory(prefix="taskbench-template-") as templates:
        Path(templates, "taskbench.html.j2").write_text(OFFLINE_TEMPLATE, encoding="utf-8")
        exporter = HTMLExporter(  # type: ignore[no-untyped-call]
            extra_template_paths=[templates], template_file="taskbench.html.j2"
        )
        body, _ = exporter.from_filename(str(notebook))
    target.write_text(scrub(body), encoding="utf-8")
    return target


INDEX_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #1f2933; line-height: 1.5; }
h1 { font-size: 1.8rem; margin-bottom: .2rem; } .meta { color: #52606d; }
ul { list-style: none; padding: 0; } li { margin: .8rem 0; } a { color: #0b5cad; }
.failed { color: #b00020; font-weight: bold; }
"""


def _index_entry(run: ChapterRun) -> str:
    status = f' <span class="failed">failed: {html.escape(run.error)}</span>' if run.error else ""
    return (
        f'<li><a href="{html.escape(run.html.name)}">{html.escape(run.chapter.title)}</a>'
        f" <span class=meta>({run.seconds:.0f} s)</span>{status}"
        f"<br>{html.escape(run.chapter.abstract)}</li>"
    )


def write_index(output_dir: Path, runs: Sequence[ChapterRun], size: str) -> Path:
    """``index.html``: one link per chapter, with its abstract, time and any failure."""
    box = machine()
    commit = git_state().get("commit") or "unknown"
    meta = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, size {size}, {box['cpu_model']} "
        f"({box['cpu_count']} CPUs), taskbench {taskbench.__version__}, commit {str(commit)[:7]}"
    )
    entries = "\n".join(_index_entry(run) for run in runs)
    page = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>taskbench study</title><style>{INDEX_STYLE}</style></head><body>"
        "<h1>taskbench: the Task Package Services Benchmark Report, measured</h1>"
        f"<p class=meta>{html.escape(meta)}</p><ul>{entries}</ul></body></html>\n"
    )
    target = output_dir / "index.html"
    target.write_text(page, encoding="utf-8")
    return target


@dataclass(frozen=True, slots=True, kw_only=True)
class StudyRun:
    """Every chapter's run, the index page, and the total time."""

    runs: tuple[ChapterRun, ...]
    index: Path
    seconds: float

    @property
    def failed(self) -> list[ChapterRun]:
        return [run for run in self.runs if run.error is not None]


def _run_chapters(
    chosen: Sequence[Chapter], out: Path, size: str, jobs: int, log: Callable[[str], None]
) -> list[ChapterRun]:
    """Run ``chosen``, ``jobs`` at a time (each in a kernel of its own); in order of the list."""

    def run(chapter: Chapter) -> ChapterRun:
        log(f"running {chapter.slug} ...")
        done = execute_chapter(chapter, out, size)
        failure = f", FAILED: {done.error}" if done.error else ""
        log(f"  {chapter.slug}: {done.seconds:.0f} s{failure}")
        return done

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="chapter") as pool:
        return list(pool.map(run, chosen))


def run_study(
    output_dir: str | os.PathLike[str] | None = None,
    *,
    size: str = "default",
    only: Sequence[str] | None = None,
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> StudyRun:
    """Run every chapter (or those whose slug starts with one of ``only``) into ``output_dir``.

    ``jobs`` > 1 runs chapters side by side: quicker, but they share the
    machine, so their timings mean less (for CI, not for figures to quote).
    Chapters that read the others' summaries run after the rest.
    """
    study_paths_exist()
    if size not in SIZES:
        raise ConfigError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be a positive integer, got {jobs!r}")
    out = Path(output_dir or DEFAULT_OUTPUT_DIR).absolute()
    out.mkdir(parents=True, exist_ok=True)
    chosen = [c for c in chapters() if not only or c.slug.startswith(tuple(only))]
    if not chosen:
        raise ConfigError(f"no chapter matches {list(only or [])}; see {NOTEBOOKS_DIR}")
    started = time.perf_counter()
    first = [chapter for chapter in chosen if not chapter.reads_summaries]
    last = [chapter for chapter in chosen if chapter.reads_summaries]
    runs = _run_chapters(first, out, size, jobs, log) + _run_chapters(last, out, size, jobs, log)
    index = write_index(out, runs, size)
    return StudyRun(runs=tuple(runs), index=index, seconds=time.perf_counter() - started)
