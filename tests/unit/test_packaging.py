"""The packaging files agree with each other: pyproject.toml, environment.yml, py.typed."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENVIRONMENT = yaml.safe_load((ROOT / "environment.yml").read_text())


def _pip_lines() -> list[str]:
    pip_sections = [d["pip"] for d in ENVIRONMENT["dependencies"] if isinstance(d, dict)]
    assert len(pip_sections) == 1
    return list(pip_sections[0])


def test_environment_python_satisfies_requires_python() -> None:
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert minimum is not None
    pinned = [
        d for d in ENVIRONMENT["dependencies"] if isinstance(d, str) and d.startswith("python")
    ]
    assert len(pinned) == 1
    major, minor = pinned[0].split("=")[1].split(".")[:2]
    assert (int(major), int(minor)) >= (int(minimum[1]), int(minimum[2]))
    assert "pip" in ENVIRONMENT["dependencies"]


def test_environment_installs_this_package_with_existing_extras() -> None:
    (line,) = _pip_lines()
    match = re.fullmatch(r"-e \.\[([a-z,]+)\]", line)
    assert match is not None, line
    extras = set(match[1].split(","))
    declared = set(PYPROJECT["project"]["optional-dependencies"])
    assert "notebooks" in extras
    assert extras <= declared, extras - declared


def test_every_backend_has_its_extra() -> None:
    declared = set(PYPROJECT["project"]["optional-dependencies"])
    assert {"postgres", "redis", "mysql", "etcd", "notebooks", "dev"} <= declared


def test_package_is_typed() -> None:
    assert (ROOT / "taskbench" / "py.typed").exists()
