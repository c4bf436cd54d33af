"""The report's plots: matplotlib figures rendered to SVG text, inlined in the HTML (no files,
no network). Figures are built without pyplot (no global figure state: safe in any thread) on
the Agg-free SVG backend; text stays text (``svg.fonttype: none``), small and searchable.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

from serval.evaluation.analysis.quality import QualityPoint
from serval.evaluation.analysis.reference import ColumnKind

MAX_CATEGORIES = 12  # the most frequent categories shown; the rest are summed as "other"
_STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "serval-report",  # stable ids: the same data gives the same file
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_REFERENCE_COLOR = "#555555"


def quality_plot(
    points: Mapping[int, Sequence[QualityPoint]], metric: str, threshold: float | None
) -> str:
    """Quality per version over time, one line each, and the threshold as a dashed line."""
    figure, axes = _figure(7.5, 3.2)
    for version, series in points.items():
        shown = [point for point in series if point.value is not None]
        if shown:
            times = [datetime.fromtimestamp(point.start, UTC) for point in shown]
            axes.plot(
                times,
                [point.value for point in shown],
                marker="o",
                label=f"v{version}",
                color=_color(f"v{version}"),
            )
    if threshold is not None:
        axes.axhline(threshold, color="#c0392b", linestyle="--", linewidth=1, label="threshold")
    axes.set_ylabel(metric)
    axes.set_xlabel("prediction time (UTC)")
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]  # untyped in matplotlib
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes.legend(loc="best", frameon=False)
    return _svg(figure)


def drift_plot(scores: Mapping[int, Mapping[str, float]], threshold: float, method: str) -> str:
    """Drift score per subject (rows) and version (bars), with the threshold line."""
    subjects = sorted({subject for by_subject in scores.values() for subject in by_subject})
    figure, axes = _figure(7.5, 0.9 + 0.35 * len(subjects) * max(1, len(scores)) ** 0.5)
    height = 0.8 / max(1, len(scores))
    positions = np.arange(len(subjects))
    for index, (version, by_subject) in enumerate(scores.items()):
        values = [by_subject.get(subject, np.nan) for subject in subjects]
        axes.barh(
            positions + index * height,
            values,
            height,
            label=f"v{version}",
            color=_color(f"v{version}"),
        )
    axes.axvline(threshold, color="#c0392b", linestyle="--", linewidth=1, label="threshold")
    axes.set_yticks(positions + height * (len(scores) - 1) / 2, subjects)
    axes.invert_yaxis()
    axes.set_xlabel(f"{method} score")
    axes.legend(loc="lower right", frameon=False)
    return _svg(figure)


def distribution_plot(
    reference: np.ndarray[Any, Any] | None,
    current: Mapping[int, np.ndarray[Any, Any]],
    kind: ColumnKind,
    label: str,
) -> str:
    """The distribution of each version's values against the reference's: step histograms
    of shares over common bins (numbers), or grouped bars of shares (categories)."""
    figure, axes = _figure(5.6, 2.8)
    series: dict[str, np.ndarray[Any, Any]] = {}
    if reference is not None and len(reference):
        series["reference"] = reference
    series.update({f"v{version}": values for version, values in current.items() if len(values)})
    if kind == "categorical":
        _category_bars(axes, series)
    else:
        _histograms(axes, series)
    axes.set_ylabel("share of rows")
    axes.set_xlabel(label)
    axes.legend(loc="best", frameon=False)
    return _svg(figure)


def _histograms(axes: Any, series: Mapping[str, np.ndarray[Any, Any]]) -> None:
    arrays = {name: _numbers(values) for name, values in series.items()}
    everything = np.concatenate(
        [values for values in arrays.values() if len(values)] or [np.zeros(1)]
    )
    low, high = float(np.min(everything)), float(np.max(everything))
    edges = np.linspace(low, high if high > low else low + 1.0, 31)
    for name, values in arrays.items():
        if not len(values):
            continue
        counts, _ = np.histogram(values, bins=edges)
        shares = counts / max(1, len(values))
        axes.stairs(shares, edges, label=name, color=_color(name), linewidth=1.4)


def _category_bars(axes: Any, series: Mapping[str, np.ndarray[Any, Any]]) -> None:
    texts = {
        name: [str(v) for v in values.tolist() if v is not None] for name, values in series.items()
    }
    totals: dict[str, int] = {}
    for values in texts.values():
        for value in values:
            totals[value] = totals.get(value, 0) + 1
    categories = sorted(totals, key=lambda c: (-totals[c], c))
    shown = categories[:MAX_CATEGORIES]
    if len(categories) > MAX_CATEGORIES:
        shown.append("other")
    width = 0.8 / max(1, len(texts))
    positions = np.arange(len(shown))
    for index, (name, values) in enumerate(texts.items()):
        if not values:
            continue
        counted = {category: values.count(category) for category in shown[:MAX_CATEGORIES]}
        if len(categories) > MAX_CATEGORIES:
            counted["other"] = len(values) - sum(counted.values())
        shares = [counted[category] / len(values) for category in shown]
        axes.bar(positions + index * width, shares, width, label=name, color=_color(name))
    axes.set_xticks(positions + width * (len(texts) - 1) / 2, shown)


def _color(name: str) -> str:
    """Grey for the reference; version N the N-th colour of matplotlib's cycle, in every
    plot, so that a version keeps its colour through the report."""
    if name == "reference":
        return _REFERENCE_COLOR
    return f"C{(int(name.removeprefix('v')) - 1) % 10}"


def _numbers(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    numbers = np.asarray(values, dtype=np.float64)
    return numbers[np.isfinite(numbers)]


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    with mpl.rc_context(_STYLE):
        figure = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasSVG(figure)
        axes = figure.add_subplot()
    return figure, axes


def _svg(figure: Figure) -> str:
    """The figure as an ``<svg>`` element (the XML prolog and doctype left out)."""
    buffer = io.StringIO()
    with mpl.rc_context(_STYLE):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]
