"""The study: what the chapter notebooks need beyond the benchmarks, and running them as a report.

The notebooks under ``notebooks/`` (one per chapter, ``NN_name.ipynb``) walk
through the "Task Package Services Benchmark Report". This package owns:

* **A chapter's session** (:func:`start` -> :class:`Session`): the size it
  runs at (``fast`` for CI, ``default``, ``full``), the stores it may use, and
  :meth:`Session.measure`, which runs a measurement on the *live* service
  when its URL is set and the server answers, and otherwise reads the
  committed *reference* result from ``data/reference/`` (labelled with the
  machine and date that produced it). It always prints which it used.
* **Scratch namespaces** on shared servers (:func:`scratch_url`): a
  PostgreSQL schema, a MySQL database, a Redis key prefix of the study's own,
  dropped afterwards; nothing else on the server is touched.
* **Measurements no benchmark module offers**: the claim query's SQLite plan,
  the indexes each store really has, claim round trips under a backlog,
  high-priority latency under a backlog, a rate-limited downstream, tasks
  under injected failures, the cost of the executor's metrics, tests per
  module; and thin wrappers for experiments that live elsewhere (a CLI
  command's JSON, a crash experiment). Each returns plain JSON data, so it
  can be stored as a reference.
* **The recommendation** (:func:`recommend`, :func:`impact_of`): section 1.7
  of the report redone from the chapters' summaries.
* **Running the report** (:func:`run_study`): every notebook through
  papermill into an output folder, an HTML page per chapter (nbconvert, with
  plotly.js embedded once per page and no other script to fetch, so the
  report works offline), one ``index.html``, and :func:`check_report`, which
  opens the pages in headless Chromium and checks every figure drew.

Design rules:

* **Paths come from the package**, never from the working directory.
* **Chapters are discovered**, not listed: a notebook named ``NN_slug.ipynb``
  in ``notebooks/`` is a chapter; its first heading is its title.
* **No password is shown or stored**: URLs are printed redacted and reference
  files are scrubbed.
* Notebook machinery (papermill, nbconvert, plotly, ipywidgets) and server
  drivers are imported inside the functions that use them; a missing one
  names its ``pip install 'taskbench[...]'`` line.

The modules follow that list:

* :mod:`~taskbench.study.session`: the checkout's paths, a chapter's session,
  reference results and summaries, the notebooks' figures and widgets;
* :mod:`~taskbench.study.servers`: the server backends, probed, and scratch
  namespaces on them;
* :mod:`~taskbench.study.measurements`: the measurements run in-process;
* :mod:`~taskbench.study.experiments`: the wrappers for experiments that live
  elsewhere (CLI commands, crash experiments, the test suite and its coverage);
* :mod:`~taskbench.study.recommendation`: section 1.7 redone;
* :mod:`~taskbench.study.report`: running the chapters into HTML pages and an index;
* :mod:`~taskbench.study.browser`: checking the pages in headless Chromium.

Every public name of theirs is importable from here, as it was before the
split (``from taskbench import study``, then ``study.start(...)``). A
module-level setting is read in the module that defines it, so patch it
there (``study.browser.CHROMIUM_TIMEOUT_S``), not here.
"""

from __future__ import annotations

from taskbench.study.browser import (
    CHROMIUM_ATTEMPTS,
    CHROMIUM_FLAGS,
    CHROMIUM_TIMEOUT_S,
    CONSOLE_ERROR,
    ERROR_HOOK,
    FIGURE_DIV,
    REMOTE_SCRIPT,
    RENDER_BUDGET_MS,
    SCREENSHOT_SIZE,
    PageCheck,
    as_records,
    check_page,
    check_report,
    check_summary,
    find_chromium,
)
from taskbench.study.experiments import (
    COVERAGE_TIMEOUT_S,
    DISTRIBUTED_OPTIONS,
    cli_json,
    count_tests,
    coverage_by_module,
    crash_run,
    distributed_option,
    server_installed,
)
from taskbench.study.measurements import (
    DOWNSTREAM_RETRY,
    TIMELINE_BIN_S,
    Downstream,
    Overloaded,
    claim_plan,
    claim_round_trips,
    downstream_run,
    fault_run,
    index_drift,
    interleaved,
    priority_latency,
    quiet_logs,
    store_indexes,
    summarise_ms,
)
from taskbench.study.measurements import _bins as _bins  # private, read by a test
from taskbench.study.recommendation import (
    IMPROVEMENTS,
    SERVER_STORES,
    impact_of,
    recommend,
)
from taskbench.study.report import (
    CHAPTER_FILE,
    INDEX_STYLE,
    KERNEL,
    MARKDOWN_MARKS,
    OFFLINE_TEMPLATE,
    Chapter,
    ChapterRun,
    StudyRun,
    chapter_parameters,
    chapters,
    execute_chapter,
    render_html,
    run_study,
    study_paths_exist,
    write_index,
)
from taskbench.study.servers import (
    PROBE_TIMEOUT_S,
    SERVER_VARIABLES,
    Backend,
    find_backends,
    probe,
    scratch_url,
)
from taskbench.study.session import (
    CHECKOUT_ROOT,
    DEFAULT_OUTPUT_DIR,
    EMBEDDED,
    ETCD_VARIABLE,
    JSON,
    NOTEBOOKS_DIR,
    REFERENCE_DIR,
    SIZES,
    Measure,
    References,
    Session,
    Sourced,
    drain_controls,
    machine_label,
    pick_size,
    read_summary,
    start,
    use_offline_figures,
    without_uri_grammar,
)

__all__ = [
    "CHAPTER_FILE",
    "CHECKOUT_ROOT",
    "CHROMIUM_ATTEMPTS",
    "CHROMIUM_FLAGS",
    "CHROMIUM_TIMEOUT_S",
    "CONSOLE_ERROR",
    "COVERAGE_TIMEOUT_S",
    "DEFAULT_OUTPUT_DIR",
    "DISTRIBUTED_OPTIONS",
    "DOWNSTREAM_RETRY",
    "EMBEDDED",
    "ERROR_HOOK",
    "ETCD_VARIABLE",
    "FIGURE_DIV",
    "IMPROVEMENTS",
    "INDEX_STYLE",
    "JSON",
    "KERNEL",
    "MARKDOWN_MARKS",
    "NOTEBOOKS_DIR",
    "OFFLINE_TEMPLATE",
    "PROBE_TIMEOUT_S",
    "REFERENCE_DIR",
    "REMOTE_SCRIPT",
    "RENDER_BUDGET_MS",
    "SCREENSHOT_SIZE",
    "SERVER_STORES",
    "SERVER_VARIABLES",
    "SIZES",
    "TIMELINE_BIN_S",
    "Backend",
    "Chapter",
    "ChapterRun",
    "Downstream",
    "Measure",
    "Overloaded",
    "PageCheck",
    "References",
    "Session",
    "Sourced",
    "StudyRun",
    "as_records",
    "chapter_parameters",
    "chapters",
    "check_page",
    "check_report",
    "check_summary",
    "claim_plan",
    "claim_round_trips",
    "cli_json",
    "count_tests",
    "coverage_by_module",
    "crash_run",
    "distributed_option",
    "downstream_run",
    "drain_controls",
    "execute_chapter",
    "fault_run",
    "find_backends",
    "find_chromium",
    "impact_of",
    "index_drift",
    "interleaved",
    "machine_label",
    "pick_size",
    "priority_latency",
    "probe",
    "quiet_logs",
    "read_summary",
    "recommend",
    "render_html",
    "run_study",
    "scratch_url",
    "server_installed",
    "start",
    "store_indexes",
    "study_paths_exist",
    "summarise_ms",
    "use_offline_figures",
    "without_uri_grammar",
    "write_index",
]
