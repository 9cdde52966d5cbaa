"""The study, run as a reader would: every chapter notebook through ``taskbench study --fast``.

One run of the real command (papermill, the venv's kernel, nbconvert) per
test session writes every chapter's executed notebook, HTML page and JSON
summary into a temporary folder; the tests then assert on what the chapters
computed (values, never timings), on the HTML (offline, no password), and,
with Chromium, on what a browser draws. The notebooks themselves must be
committed without outputs, and everything they import must be declared.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from taskbench import study
from taskbench.faults.secrets import scan
from tests.backends import SERVER_ENV, all_backends_required

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENVIRONMENT = yaml.safe_load((ROOT / "environment.yml").read_text())
STUDY_TIMEOUT_S = 1_200

pytestmark = pytest.mark.timeout(STUDY_TIMEOUT_S + 60)


# -- the committed notebooks -----------------------------------------------------------------


def _notebook(path: Path) -> dict[str, Any]:
    notebook: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return notebook


def _code_cells(path: Path) -> list[dict[str, Any]]:
    return [cell for cell in _notebook(path)["cells"] if cell["cell_type"] == "code"]


def test_every_notebook_is_a_chapter() -> None:
    assert [path.name for path in NOTEBOOKS] == [c.path.name for c in study.chapters()]
    assert {"00_quickstart", "01_compare", "02_bottlenecks", "03_improvements"} <= {
        c.slug for c in study.chapters()
    }
    assert all(chapter.title and chapter.abstract for chapter in study.chapters())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    for cell in _code_cells(path):
        assert cell["outputs"] == [], f"{path.name} has outputs: strip them before committing"
        assert cell["execution_count"] is None, f"{path.name} has execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_first_code_cell_holds_the_parameters(path: Path) -> None:
    first = _code_cells(path)[0]
    assert "parameters" in first["metadata"].get("tags", [])
    source = "".join(first["source"])
    for knob in ("FAST", "FULL", "INTERACTIVE", "REFRESH_REFERENCE", "OUTPUT_DIR"):
        assert re.search(rf"^{knob} = ", source, re.MULTILINE), f"{path.name} lacks {knob}"


def _imports(path: Path) -> set[str]:
    """Top-level module names every code cell of ``path`` imports."""
    names: set[str] = set()
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    for cell in _code_cells(path):
        tree = compile("".join(cell["source"]), path.name, "exec", flags=flags)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared(extras: set[str]) -> set[str]:
    project = PYPROJECT["project"]
    chosen = [*project["dependencies"]]
    for extra in extras:
        chosen.extend(project["optional-dependencies"][extra])
    return {_requirement_name(requirement) for requirement in chosen}


def _environment_extras() -> set[str]:
    (pip,) = [d["pip"] for d in ENVIRONMENT["dependencies"] if isinstance(d, dict)]
    (line,) = pip
    match = re.fullmatch(r"-e \.\[([a-z,]+)\]", line)
    assert match is not None, line
    return set(match[1].split(","))


def test_notebook_imports_are_declared_and_installed_by_environment_yml() -> None:
    """Every module a notebook imports comes from the standard library, taskbench, or a
    distribution declared in the dependencies or in an extra environment.yml installs."""
    declared = _declared(_environment_extras())
    distributions = importlib.metadata.packages_distributions()
    imported = set().union(*(_imports(path) for path in NOTEBOOKS))
    assert {"taskbench", "pandas"} <= imported
    for module in sorted(imported - set(sys.stdlib_module_names) - {"taskbench"}):
        providers = {name.lower().replace("_", "-") for name in distributions.get(module, [])}
        assert providers & declared, (
            f"notebooks import {module!r}, which no declared extra installs"
        )


def test_the_study_command_needs_only_the_notebooks_extra() -> None:
    needed = {"papermill", "nbconvert", "ipykernel", "plotly", "ipywidgets", "pandas", "numpy"}
    assert needed <= _declared({"notebooks"})
    assert "notebooks" in _environment_extras()


# -- one run of the whole study ----------------------------------------------------------------


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``taskbench study --fast`` into a temporary folder, once per module.

    Chapters run three at a time (``--jobs 3``): the tests assert on values,
    never on timings, so sharing the machine costs nothing but noise.
    """
    out = tmp_path_factory.mktemp("report")
    command = ["study", "--fast", "--jobs", "3", "--no-check", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "taskbench.cli", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=STUDY_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"taskbench study failed:\n{done.stderr[-4000:]}"
    assert done.stdout.strip().startswith(str(out / "index.html")), done.stdout
    yield out


def summary(report: Path, chapter: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((report / f"{chapter}.json").read_text())
    assert found["chapter"] == chapter and found["size"] == "fast"
    return found


def test_every_chapter_ran_cleanly_into_a_page_and_a_summary(report: Path) -> None:
    index = (report / "index.html").read_text()
    for chapter in study.chapters():
        assert (report / f"{chapter.slug}.json").is_file()
        assert (report / f"{chapter.slug}.html").is_file()
        assert f'href="{chapter.slug}.html"' in index
        for cell in _code_cells(report / f"{chapter.slug}.ipynb"):
            for output in cell["outputs"]:
                assert output["output_type"] != "error", f"{chapter.slug}: {output.get('evalue')}"
                assert output.get("name") != "stderr", f"{chapter.slug}: {output.get('text')}"


def test_quickstart_accounts_for_every_task(report: Path) -> None:
    found = summary(report, "00_quickstart")
    assert found["store"] == "sqlite" and found["source"] == "live"
    assert found["succeeded"] == found["tasks"] > 0
    assert found["lost"] == found["duplicates"] == found["dead"] == 0
    assert found["drain_tps"] > 0


def test_compare_measures_every_store_and_executor(report: Path) -> None:
    found = summary(report, "01_compare")
    assert {"memory", "sqlite", "sqlite-legacy"} <= set(found["stores"])
    assert len(found["stores"]) == 6, "server stores come live or from the reference results"
    for store, row in found["stores"].items():
        assert row["status"] == "measured", store
        assert row["consistency_errors"] == 0, f"{store} lost or doubled a task"
        assert row["drain_tps"] > 0 and row["claim_p50_ms"] > 0
    assert {row["executor"] for row in found["executors"]} == {"taskbench", "asyncio", "threads"}
    for ratio in found["executor_ratios"].values():
        assert 0 < ratio["ci_low"] <= ratio["ratio"] <= ratio["ci_high"]
    options = {row["option"]: row for row in found["distributed"]}
    assert set(options) == set(study.DISTRIBUTED_OPTIONS)
    for option, row in options.items():
        assert row["lost"] == row["stale_writes_accepted"] == 0, option
        assert row["tasks_per_s"] > 0 and 0 < row["failover_p50_s"] <= row["failover_max_s"]


def test_bottlenecks_find_the_scan_and_its_cost(report: Path) -> None:
    found = summary(report, "02_bottlenecks")
    legacy, improved = found["claim_plan"]["sqlite-legacy"], found["claim_plan"]["sqlite"]
    assert any(step.startswith("SCAN taskbench_tasks") for step in legacy)
    assert any("USE TEMP B-TREE FOR ORDER BY" in step for step in legacy)
    assert any("INDEX ix_taskbench_tasks_claim" in step for step in improved)
    assert not any(step.startswith("SCAN taskbench_tasks") for step in improved)
    at_largest = found["claim_p50_ms_at_largest_backlog"]
    assert at_largest["sqlite-legacy"] > at_largest["sqlite"]
    assert found["profiles"]["sqlite"]["top"], "the profiler ranked no function"
    assert set(found["scaling_slopes"]) >= {"memory", "sqlite"}
    assert set(found["process_slopes"]) >= {"sqlite"}
    assert {point["value"] for point in found["process_points"]} == {1, 2}
    assert all(point["drain_tps"] > 0 for point in found["process_points"])
    wakeup = found["wakeup"]
    assert set(wakeup) >= {"memory", "sqlite"}
    for backend, figures in wakeup.items():
        assert [figure["share"] for figure in figures] == [0.5], backend
        (figure,) = figures
        queue = figure["queue_ms"]
        assert figure["lost"] == 0 and figure["rate"] > 0, backend
        assert 0 < queue["p50"] <= queue["p99"] <= queue["p99.9"], backend
        assert figure["met"] == (queue["p99"] < 10.0), backend
        assert figure["producer"] == ("inline" if backend == "memory" else "process"), backend


def test_improvements_before_and_after(report: Path) -> None:
    found = summary(report, "03_improvements")
    assert found["drift_before"] > 0
    assert found["drift_after"] == 0
    assert found["index"]["ci_high"] < 1.0, "the claim index must make claims cheaper"
    rate = found["rate_limit"]
    assert rate["refused_before"] > rate["refused_after"]
    assert rate["amplification_after"] < rate["amplification_before"]
    assert found["priority"]["priority_p50_ms"] < found["priority"]["fifo_p50_ms"]
    for run in found["faults"]["runs"]:
        assert run["lost"] == 0
        assert run["succeeded"] + run["dead"] == run["tasks"]
        assert run["duplicates"] <= 8, "duplicates are bounded by the tasks in flight"
        if run["retry"]:
            assert run["dead"] == 0
    assert found["tests"]["total"] > 0 and found["tests"]["contract"] > 0
    coverage = found["coverage"]
    assert coverage["tests"] == ["tests/unit"]
    assert 0 < coverage["modules"]["taskbench.stores.memory"] <= 100
    assert coverage["modules"]["taskbench.executor"] > 50, "the unit tests drive the executor"
    execution = found["execution"]
    assert execution["before_tps"] == 0 and execution["ratio"] > 1.0
    for run in execution["runs"]:
        assert run["succeeded"] == run["tasks"] and run["lost"] == 0


def test_distributed_workers_execute_and_survive_their_leader(report: Path) -> None:
    found = summary(report, "04_distributed")
    assert {run["mode"] for run in found["cluster"]} == {"leader", "leaderless"}
    for run in found["cluster"]:
        assert run["succeeded"] == run["tasks"] and run["lost"] == run["duplicates"] == 0
    assert {row["signal"] for row in found["failover"]} == {"KILL", "TERM"}
    for row in found["failover"]:
        assert row["stale writes accepted"] == 0 and row["lost"] == 0
        assert row["succeeded"] == row["tasks"]


def test_reliability_keeps_what_each_setting_promises(report: Path) -> None:
    found = summary(report, "05_reliability")
    assert {run["label"].split(": ")[0].removesuffix(" (reference)") for run in found["crash"]} >= {
        "sqlite",
        "redis",
    }
    for run in found["crash"]:
        finished = run["succeeded"] + run["dead"] + run["lost_missing"] + run["lost_unfinished"]
        assert finished == run["tasks"], run["label"]
        if run["survives_process_crash"]:
            assert run["lost"] == run["corrupted"] == 0, run["label"]
    assert found["soak"]["lost"] == 0 and found["soak"]["succeeded"] == found["soak"]["tasks"]
    assert found["hostile"]["cases"] > 0
    assert {run["label"].split(":")[0] for run in found["restarts"]} >= {"redis"}
    for run in found["restarts"]:
        assert run["server_restarts"] > 0, run["label"]
        assert run["lost"] == run["corrupted"] == 0, run["label"]
    backups = {row["store"].removesuffix(" (reference)"): row for row in found["backups"]}
    assert "sqlite" in backups
    for store, row in backups.items():
        assert row["mismatches"] == row["order_mismatches"] == 0 and row["writable"], store
        assert row["tasks"] > 0


def test_recommendation_reads_the_other_chapters(report: Path) -> None:
    found = summary(report, "06_recommendation")
    assert found["inputs"] == {
        chapter.slug: "live" for chapter in study.chapters() if chapter.slug != "06_recommendation"
    }
    assert {row["name"] for row in found["impact"]} == {name for name, _, _ in study.IMPROVEMENTS}
    services = [row["service"] for row in found["recommendation"]]
    assert services[:3] == ["TaskExecutor", "TaskStore for production", "TaskStore for development"]
    assert {"TaskStore durability", "DistributedExecutor"} <= set(services)


def test_every_server_measurement_has_a_committed_reference(report: Path) -> None:
    """So that a machine without the servers still gets every figure."""
    references = study.References()
    for chapter in study.chapters():
        for name, backends in summary(report, chapter.slug)["sources"].items():
            for backend in set(backends) & set(study.SERVER_VARIABLES):
                path = references.path(chapter.slug, name, backend)
                assert path.is_file(), f"no reference for {path}: run taskbench study --full"
                assert references.load(chapter.slug, name, backend) is not None


def _passwords() -> list[str]:
    found = []
    for variable in SERVER_ENV.values():
        password = urlsplit(os.environ.get(variable, "")).password
        if password:
            found.append(password)
    return found


def test_no_password_reaches_the_report(report: Path) -> None:
    passwords = _passwords()
    if not passwords:
        pytest.skip("no server URL with a password is configured")
    found = scan([report], passwords)  # raw, URL-quoted, JSON, HTML-escaped... in every file
    assert not found, "\n".join(map(str, found))


def test_pages_fetch_no_script_from_the_network(report: Path) -> None:
    for page in report.glob("*.html"):
        assert not study.REMOTE_SCRIPT.search(page.read_text(encoding="utf-8")), page.name


def _chromium_or_skip() -> None:
    if study.find_chromium() is None:
        message = "the report check needs Chromium (apt-get install -y chromium)"
        if all_backends_required():
            pytest.fail(f"{message}; in CI it must run")
        pytest.skip(message)


def test_every_figure_draws_in_chromium_without_script_errors(report: Path) -> None:
    _chromium_or_skip()
    checks = study.check_report(report)
    assert {check.page for check in checks} >= {f"{c.slug}.html" for c in study.chapters()}
    for check in checks:
        assert check.ok, study.check_summary([check])
        if check.page != "index.html":
            assert check.figures > 0, f"{check.page} has no figure"
            assert check.screenshot is not None and Path(check.screenshot).stat().st_size > 0
