"""Workload specs: every accepted form parses, every bad one names the accepted forms."""

from __future__ import annotations

import random

import pytest

from taskbench.bench.workloads import (
    ACCEPTED_FORMS,
    TASK_NAME,
    WorkloadFailure,
    parse_workload,
)
from taskbench.errors import ConfigError
from taskbench.model import Task

TASK = Task.new(TASK_NAME, now=1_700_000_000.0)


@pytest.mark.parametrize(
    ("spec", "steps"),
    [
        ("noop", 1),
        ("sleep:0", 1),
        ("sleep:2.5", 1),
        ("cpu:10", 1),
        ("flaky:0", 1),
        ("flaky:1", 1),
        ("FLAKY:0.25", 1),
        (" sleep:1 + flaky:0.5 ", 2),
        ("noop+cpu:1+sleep:0", 3),
    ],
)
def test_accepted_specs_parse(spec: str, steps: int) -> None:
    workload = parse_workload(spec)
    assert (workload.spec, len(workload.steps)) == (spec.strip(), steps)
    assert workload.task_name == TASK_NAME


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "   ",
        "bogus",
        "noop:1",
        "sleep",
        "sleep:",
        "sleep:abc",
        "sleep:-1",
        "sleep:inf",
        "cpu:nan",
        "flaky:1.5",
        "flaky:-0.1",
        "noop+",
        "noop++noop",
    ],
)
def test_bad_specs_raise_config_error_listing_the_accepted_forms(spec: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_workload(spec)
    message = str(caught.value)
    assert all(form in message for form in ACCEPTED_FORMS), message


def test_a_non_string_spec_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_workload(42)


def test_a_parsed_workload_passes_through() -> None:
    workload = parse_workload("noop")
    assert parse_workload(workload) is workload


@pytest.mark.parametrize("spec", ["noop", "sleep:0", "sleep:1", "cpu:50", "flaky:0", "noop+cpu:1"])
async def test_both_handlers_succeed_when_nothing_fails(spec: str) -> None:
    workload = parse_workload(spec)
    assert await workload.handle(TASK) is None
    assert workload.handle_sync(TASK) is None


async def test_flaky_one_always_fails_with_a_retryable_error() -> None:
    workload = parse_workload("flaky:1")
    with pytest.raises(WorkloadFailure):
        await workload.handle(TASK)
    with pytest.raises(WorkloadFailure):
        workload.handle_sync(TASK)
    assert not issubclass(WorkloadFailure, ConfigError)


def test_flaky_fails_in_about_the_given_proportion() -> None:
    saved = random.getstate()
    random.seed(20240601)  # deterministic: the bound below cannot flake
    workload = parse_workload("flaky:0.3")
    failures = 0
    try:
        for _ in range(2_000):
            try:
                workload.handle_sync(TASK)
            except WorkloadFailure:
                failures += 1
    finally:
        random.setstate(saved)
    assert 500 < failures < 700, failures
