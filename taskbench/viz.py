"""The study's figures: pure functions from measurements to plotly figures.

Each builder takes plain data (mappings, sequences or a pandas DataFrame in
long form) and returns a ``plotly.graph_objects.Figure``; none measures,
reads files or shows anything. The notebooks call ``fig.show()``; how a
figure is rendered (and that plotly.js is embedded for offline HTML) is set
once per chapter by :func:`taskbench.study.use_offline_figures`.

Design rules:

* **One look.** Every figure goes through :func:`_finish` (template, size,
  title, axis titles, legend), so chapters look alike.
* **Say where numbers come from.** Builders that compare backends take the
  series label as given; callers pass labels that mark reference results
  (``Sourced.label``) so a figure never passes a committed number off as live.
* **Ratios carry their interval.** :func:`before_after` writes the ratio of
  medians and its bootstrap confidence interval on the figure itself.
* plotly (and pandas, for DataFrame input) come with the ``notebooks`` extra;
  importing this module without them raises MissingDependencyError.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from taskbench.bench.environment import requires_extra

with requires_extra("drawing the study's figures"):
    import plotly.graph_objects as go  # type: ignore[import-untyped]

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

    from taskbench.bench.compare import Comparison

TEMPLATE = "plotly_white"
HEIGHT = 450
PALETTE = ("#1f77b4", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
BEFORE_AFTER = ("#d62728", "#2ca02c")
"""Before in red, after in green."""
NEUTRAL = "#52606d"

__all__ = [
    "before_after",
    "grouped_bars",
    "index_matrix",
    "latency_bars",
    "latency_spectrum",
    "lines",
    "log_ticks",
    "profile_bars",
    "ratio_forest",
    "test_counts",
    "timeline",
]


def _finish(
    figure: go.Figure,
    title: str,
    x_title: str = "",
    y_title: str = "",
    *,
    height: int = HEIGHT,
    top: int = 80,
    **layout: Any,
) -> go.Figure:
    """The shared look: template, title, size, margins, legend above the plot, axis titles."""
    figure.update_layout(
        template=TEMPLATE,
        title={"text": title, "x": 0.01, "xanchor": "left"},
        height=height,
        margin={"l": 70, "r": 30, "t": top, "b": 60},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1},
        **layout,
    )
    figure.update_xaxes(title_text=x_title)
    figure.update_yaxes(title_text=y_title)
    return figure


def log_ticks(values: Sequence[float]) -> dict[str, Any]:
    """Axis settings for a log axis over ``values``: ticks at 1-2-5 steps, labelled in full.

    Plotly's own log ticks label the steps between powers of ten with their
    first digit only ("2", "5"), which reads as nonsense on a short range.
    """
    positive = [value for value in values if value > 0]
    if not positive:
        return {"type": "log"}
    low, high = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    steps = (1, 2, 5) if high - low <= 4 else (1,)
    ticks = [step * 10.0**power for power in range(low, high + 1) for step in steps]
    return {"type": "log", "tickvals": ticks, "ticktext": [f"{tick:g}" for tick in ticks]}


def latency_bars(percentiles: Mapping[str, float], title: str) -> go.Figure:
    """Bars of latency percentiles (``{"p50": ms, "p95": ms, ...}``), labelled with the values."""
    names = list(percentiles)
    values = [percentiles[name] for name in names]
    bars = go.Bar(
        x=names,
        y=values,
        text=[f"{value:.1f} ms" for value in values],
        textposition="outside",
        marker_color=PALETTE[0],
    )
    return _finish(go.Figure(bars), title, "percentile", "latency (ms)")


def grouped_bars(
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    group: str | None = None,
    low: str | None = None,
    high: str | None = None,
    title: str,
    y_title: str,
    log_y: bool = False,
    colours: Mapping[str, str] | None = None,
) -> go.Figure:
    """Bars of ``y`` per ``x``, one colour per ``group`` (or as ``colours`` names them),
    with error bars from ``low``/``high``."""
    figure = go.Figure()
    groups = [None] if group is None else list(dict.fromkeys(frame[group]))
    for i, name in enumerate(groups):
        part = frame if name is None else frame[frame[group] == name]
        figure.add_bar(
            x=list(part[x]),
            y=list(part[y]),
            name=str(name) if name is not None else y_title,
            marker_color=(colours or {}).get(str(name), PALETTE[i % len(PALETTE)]),
            error_y=_error_bars(part, y, low, high),
            showlegend=name is not None,
        )
    figure.update_layout(barmode="group")
    if log_y:
        figure.update_yaxes(**log_ticks(list(frame[y])))
    return _finish(figure, title, x, y_title)


def _error_bars(part: pd.DataFrame, y: str, low: str | None, high: str | None) -> dict[str, Any]:
    if low is None or high is None:
        return {"visible": False}
    return {
        "type": "data",
        "symmetric": False,
        "array": list(part[high] - part[y]),
        "arrayminus": list(part[y] - part[low]),
        "visible": True,
    }


def lines(
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    group: str,
    title: str,
    x_title: str,
    y_title: str,
    log_x: bool = False,
    log_y: bool = False,
) -> go.Figure:
    """One line with markers per ``group``: ``y`` against ``x``."""
    figure = go.Figure()
    for i, name in enumerate(dict.fromkeys(frame[group])):
        part = frame[frame[group] == name].sort_values(x)
        figure.add_scatter(
            x=list(part[x]),
            y=list(part[y]),
            mode="lines+markers",
            name=str(name),
            line={"color": PALETTE[i % len(PALETTE)]},
        )
    if log_x:
        figure.update_xaxes(**log_ticks(list(frame[x])))
    if log_y:
        figure.update_yaxes(**log_ticks(list(frame[y])))
    return _finish(figure, title, x_title, y_title)


def _spectrum_x(percentile: float, beyond: float) -> float:
    """Where a percentile sits on the spectrum's axis: 1 / (1 - p), the maximum at ``beyond``."""
    return beyond if percentile >= 100.0 else 1.0 / (1.0 - percentile / 100.0)


def latency_spectrum(
    series: Mapping[str, Sequence[Mapping[str, float]]],
    title: str,
    *,
    target_ms: float | None = None,
    y_title: str = "milliseconds",
) -> go.Figure:
    """Latency by percentile, one line per series, as HdrHistogram's plots draw it.

    ``series`` maps a label to ``percentile_spectrum`` rows (``{"percentile":
    p, "ms": v}``). The x axis is 1 / (1 - p) on a log scale, so 90 %, 99 %
    and 99.9 % are equally far apart and the tail gets the room; the maximum
    sits one decade past the last percentile. ``target_ms`` draws the target
    as a dashed line.
    """
    finite = [r["percentile"] for rows in series.values() for r in rows if r["percentile"] < 100]
    beyond = 10.0 * _spectrum_x(max(finite, default=99.0), 1.0)
    figure = go.Figure()
    for i, (label, rows) in enumerate(series.items()):
        figure.add_scatter(
            x=[_spectrum_x(row["percentile"], beyond) for row in rows],
            y=[row["ms"] for row in rows],
            mode="lines+markers",
            name=label,
            line={"color": PALETTE[i % len(PALETTE)]},
            hovertemplate="p%{customdata}: %{y:.3g} ms",
            customdata=[f"{row['percentile']:g}" for row in rows],
        )
    ticks = [p for p in (0.0, 50.0, 90.0, 99.0, 99.9, 99.99) if _spectrum_x(p, beyond) < beyond]
    figure.update_xaxes(
        type="log",
        tickvals=[_spectrum_x(p, beyond) for p in ticks] + [beyond],
        ticktext=[f"{p:g}%" for p in ticks] + ["max"],
    )
    values = [row["ms"] for rows in series.values() for row in rows]
    figure.update_yaxes(**log_ticks([*values, *([target_ms] if target_ms else [])]))
    if target_ms is not None:
        figure.add_hline(
            y=target_ms,
            line={"dash": "dash", "color": NEUTRAL},
            annotation_text=f"target {target_ms:g} ms",
            annotation_position="top left",
        )
    return _finish(figure, title, "percentile", y_title)


def profile_bars(rows: Sequence[Mapping[str, Any]], title: str, top: int = 15) -> go.Figure:
    """Horizontal bars of the functions with the most self time (``ProfileReport.records()``)."""
    chosen = list(rows)[:top][::-1]
    labels = [f"{row['function']}  ({row['location']})" for row in chosen]
    bars = go.Bar(
        x=[100.0 * row["share"] for row in chosen],
        y=labels,
        orientation="h",
        text=[f"{100.0 * row['share']:.1f}%" for row in chosen],
        textposition="outside",
        marker_color=PALETTE[0],
    )
    figure = go.Figure(bars)
    figure.update_yaxes(automargin=True, tickfont={"size": 11})
    return _finish(figure, title, "share of wall time spent in the function itself (%)", "",
                   height=max(HEIGHT, 32 * len(chosen) + 140))  # fmt: skip


def index_matrix(indexes: Mapping[str, Mapping[str, Sequence[str]]], title: str) -> go.Figure:
    """Which backend has which index (name and columns): a presence grid, absent in red."""
    keys = sorted(
        {(name, tuple(cols)) for found in indexes.values() for name, cols in found.items()}
    )
    backends = list(indexes)
    present = [
        [
            1 if tuple(indexes[b].get(name, ())) == cols and name in indexes[b] else 0
            for b in backends
        ]
        for name, cols in keys
    ]
    labels = [f"{name} ({', '.join(cols)})" for name, cols in keys]
    heat = go.Heatmap(
        z=present,
        x=backends,
        y=labels,
        zmin=0,
        zmax=1,
        colorscale=[[0, BEFORE_AFTER[0]], [1, BEFORE_AFTER[1]]],
        showscale=False,
        text=[["present" if cell else "missing" for cell in row] for row in present],
        texttemplate="%{text}",
        xgap=3,
        ygap=3,
    )
    figure = go.Figure(heat)
    figure.update_yaxes(automargin=True, autorange="reversed")
    return _finish(figure, title, "backend", "", height=max(300, 60 * len(keys) + 160))


def before_after(
    before: Sequence[float],
    after: Sequence[float],
    comparison: Comparison,
    *,
    title: str,
    y_title: str,
    labels: tuple[str, str] = ("before", "after"),
    log_y: bool = False,
) -> go.Figure:
    """Every measurement before and after, as points over a box, with the ratio and its CI."""
    figure = go.Figure()
    for values, label, colour in zip((before, after), labels, BEFORE_AFTER, strict=True):
        figure.add_box(
            y=list(values),
            name=label,
            boxpoints="all",
            jitter=0.4,
            pointpos=0,
            marker={"color": colour, "size": 5, "opacity": 0.6},
            line={"color": colour},
        )
    figure.add_annotation(
        text=_ratio_text(comparison, labels),
        xref="paper",
        yref="paper",
        x=0.5,
        y=1.0,
        yanchor="bottom",
        showarrow=False,
        font={"size": 13},
    )
    if log_y:
        figure.update_yaxes(**log_ticks([*before, *after]))
    return _finish(figure, title, "", y_title, showlegend=False, top=110)


def _ratio_text(comparison: Comparison, labels: tuple[str, str]) -> str:
    return (
        f"{labels[1]} / {labels[0]} (medians) = <b>{comparison.ratio:.3g}</b>, "
        f"{comparison.confidence:.0%} bootstrap CI {comparison.ci_low:.3g}-"
        f"{comparison.ci_high:.3g} ({comparison.verdict})"
    )


def _ratio_colour(row: Mapping[str, Any]) -> str:
    """Green if the change is significant and the better way, red if the worse way, else grey."""
    if row["ci_low"] <= 1.0 <= row["ci_high"]:
        return NEUTRAL
    improved = (row["ratio"] < 1.0) == (row["better"] == "lower")
    return BEFORE_AFTER[1] if improved else BEFORE_AFTER[0]


def ratio_forest(rows: Sequence[Mapping[str, Any]], title: str) -> go.Figure:
    """Each change's after/before ratio with its confidence interval, on a log axis around 1.

    ``rows`` hold ``name``, ``ratio``, ``ci_low``, ``ci_high`` and ``better``
    (``"lower"`` or ``"higher"``). A point is green when its interval excludes 1
    on the better side, red on the worse side, grey when it includes 1.
    """
    ordered = list(rows)[::-1]
    figure = go.Figure(
        go.Scatter(
            x=[row["ratio"] for row in ordered],
            y=[row["name"] for row in ordered],
            mode="markers+text",
            text=[f"{row['ratio']:.3g}" for row in ordered],
            textposition="top center",
            marker={"size": 12, "color": [_ratio_colour(row) for row in ordered]},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [row["ci_high"] - row["ratio"] for row in ordered],
                "arrayminus": [row["ratio"] - row["ci_low"] for row in ordered],
            },
            showlegend=False,
        )
    )
    figure.add_vline(x=1.0, line_dash="dash", line_color=NEUTRAL)
    values = [v for row in ordered for v in (row["ci_low"], row["ci_high"], 1.0)]
    figure.update_xaxes(**log_ticks(values))
    figure.update_yaxes(automargin=True)
    height = max(300, 60 * len(ordered) + 140)
    return _finish(figure, title, "after / before (log scale; 1 = no change)", "", height=height)


def timeline(
    series: Mapping[str, Sequence[int]],
    bin_s: float,
    *,
    title: str,
    y_title: str,
    colours: Mapping[str, str] | None = None,
    dashed: Collection[str] = (),
) -> go.Figure:
    """One step line per series: a count per ``bin_s``-second bin, as a rate, against time."""
    figure = go.Figure()
    for i, (name, counts) in enumerate(series.items()):
        colour = (colours or {}).get(name, PALETTE[i % len(PALETTE)])
        figure.add_scatter(
            x=[round(k * bin_s, 6) for k in range(len(counts))],
            y=[count / bin_s for count in counts],
            mode="lines",
            line={"shape": "hv", "color": colour, "dash": "dot" if name in dashed else "solid"},
            name=name,
        )
    return _finish(figure, title, "time since start (s)", y_title)


def coverage_bars(rows: Sequence[Mapping[str, Any]], title: str) -> go.Figure:
    """Horizontal bars of line coverage per module, the module's size in the hover."""
    figure = go.Figure(
        go.Bar(
            x=[row["percent"] for row in rows],
            y=[row["module"].removeprefix("taskbench.") for row in rows],
            orientation="h",
            marker_color=[PALETTE[0] if row["percent"] >= 80 else PALETTE[1] for row in rows],
            customdata=[[row["covered"], row["statements"]] for row in rows],
            hovertemplate="%{y}: %{x:.1f}% (%{customdata[0]} of %{customdata[1]} lines)"
            "<extra></extra>",
        )
    )
    figure.update_xaxes(range=[0, 100])
    figure.update_yaxes(automargin=True, autorange="reversed", tickfont={"size": 11})
    height = max(HEIGHT, 20 * len(rows) + 160)
    return _finish(figure, title, "lines covered (%)", "", height=height)


def test_counts(rows: Sequence[Mapping[str, Any]], title: str) -> go.Figure:
    """Horizontal bars of collected tests per test file, one colour per kind of test."""
    figure = go.Figure()
    kinds = list(dict.fromkeys(row["kind"] for row in rows))
    for i, kind in enumerate(kinds):
        chosen = [row for row in rows if row["kind"] == kind]
        figure.add_bar(
            x=[row["tests"] for row in chosen],
            y=[row["file"].removeprefix("tests/") for row in chosen],
            orientation="h",
            name=kind,
            marker_color=PALETTE[i % len(PALETTE)],
        )
    figure.update_yaxes(automargin=True, autorange="reversed", tickfont={"size": 11})
    return _finish(figure, title, "tests collected", "", height=max(HEIGHT, 22 * len(rows) + 160))
