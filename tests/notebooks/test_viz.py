"""The figure builders: pure functions, so their rules are checked on the figures they return."""

from __future__ import annotations

import pandas as pd
import pytest

from taskbench import viz
from taskbench.bench.compare import compare


def test_log_ticks_are_labelled_in_full_across_the_range() -> None:
    axis = viz.log_ticks([0.03, 4.0])
    assert axis["type"] == "log"
    assert axis["ticktext"][:3] == ["0.01", "0.02", "0.05"]
    assert "1" in axis["ticktext"] and "5" in axis["ticktext"]
    assert min(axis["tickvals"]) <= 0.03 and max(axis["tickvals"]) >= 4.0
    wide = viz.log_ticks([1.0, 1e6])
    assert wide["ticktext"] == ["1", "10", "100", "1000", "10000", "100000", "1e+06"]
    assert viz.log_ticks([0.0, -1.0]) == {"type": "log"}


def test_before_after_writes_the_ratio_and_its_interval_on_the_figure() -> None:
    before, after = [10.0, 11.0, 12.0, 10.5], [5.0, 5.5, 6.0, 5.2]
    comparison = compare(before, after, higher_is_better=False)
    figure = viz.before_after(before, after, comparison, title="t", y_title="ms")
    (note,) = figure.layout.annotations
    assert f"{comparison.ratio:.3g}" in note.text and "better" in note.text
    assert f"{comparison.ci_low:.3g}" in note.text
    assert [list(trace.y) for trace in figure.data] == [before, after]


def test_index_matrix_marks_what_a_backend_lacks() -> None:
    indexes = {"legacy": {}, "postgres": {"ix_claim": ["status", "priority"]}}
    figure = viz.index_matrix(indexes, title="t")
    (heat,) = figure.data
    assert list(heat.x) == ["legacy", "postgres"]
    assert [list(row) for row in heat.z] == [[0, 1]]
    assert heat.text[0] == ["missing", "present"]


def test_ratio_forest_colours_follow_significance_and_direction() -> None:
    rows = [
        {"name": "faster", "ratio": 0.5, "ci_low": 0.4, "ci_high": 0.6, "better": "lower"},
        {"name": "slower", "ratio": 0.5, "ci_low": 0.4, "ci_high": 0.6, "better": "higher"},
        {"name": "noise", "ratio": 0.9, "ci_low": 0.7, "ci_high": 1.1, "better": "lower"},
    ]
    (points,) = viz.ratio_forest(rows, title="t").data
    colours = dict(zip(points.y, points.marker.color, strict=True))
    assert colours == {
        "faster": viz.BEFORE_AFTER[1],
        "slower": viz.BEFORE_AFTER[0],
        "noise": viz.NEUTRAL,
    }


def test_grouped_bars_draw_one_trace_per_group_with_error_bars() -> None:
    frame = pd.DataFrame(
        {"x": ["a", "b", "a"], "y": [2.0, 3.0, 4.0], "g": ["one", "one", "two"],
         "lo": [1.0, 2.0, 3.0], "hi": [3.0, 5.0, 4.5]}
    )  # fmt: skip
    figure = viz.grouped_bars(frame, x="x", y="y", group="g", low="lo", high="hi",
                              title="t", y_title="y")  # fmt: skip
    assert [trace.name for trace in figure.data] == ["one", "two"]
    assert list(figure.data[0].error_y.array) == [1.0, 2.0]
    assert list(figure.data[0].error_y.arrayminus) == [1.0, 1.0]


def test_timeline_turns_counts_per_bin_into_rates() -> None:
    figure = viz.timeline({"a": [1, 0, 3]}, 0.5, title="t", y_title="per s", dashed={"a"})
    (line,) = figure.data
    assert list(line.x) == [0.0, 0.5, 1.0] and list(line.y) == [2.0, 0.0, 6.0]
    assert line.line.dash == "dot"


def test_coverage_bars_flag_modules_under_80_percent() -> None:
    rows = [
        {"module": "taskbench.executor", "statements": 300, "covered": 290, "percent": 96.7},
        {"module": "taskbench.stores.redis", "statements": 200, "covered": 100, "percent": 50.0},
    ]
    (bars,) = viz.coverage_bars(rows, title="t").data
    assert list(bars.y) == ["executor", "stores.redis"]
    assert list(bars.x) == [96.7, 50.0]
    assert bars.marker.color[0] != bars.marker.color[1]
    assert [list(pair) for pair in bars.customdata] == [[290, 300], [100, 200]]


def test_latency_spectrum_spaces_the_tail_and_draws_the_target() -> None:
    rows = [
        {"percentile": 0.0, "ms": 0.1},
        {"percentile": 90.0, "ms": 1.0},
        {"percentile": 99.0, "ms": 4.0},
        {"percentile": 99.9, "ms": 9.0},
        {"percentile": 100.0, "ms": 12.0},
    ]
    figure = viz.latency_spectrum({"a": rows, "b": rows[:3]}, title="t", target_ms=10.0)
    first, second = figure.data
    assert list(first.x[:4]) == pytest.approx([1.0, 10.0, 100.0, 1000.0])
    assert first.x[4] == pytest.approx(10_000.0)  # the maximum, a decade past p99.9
    assert list(second.x) == pytest.approx([1.0, 10.0, 100.0])
    assert list(first.y) == [0.1, 1.0, 4.0, 9.0, 12.0]
    assert figure.layout.xaxis.ticktext[-1] == "max"
    (target,) = figure.layout.shapes
    assert target.y0 == target.y1 == 10.0
