"""``serval monitor report``: one self-contained HTML file (CSS, plots and its one script
inline; nothing fetched) of a model's continuous evaluation: a summary per version (logged,
labelled, quality, drifted features), quality per version over time, drift per feature, the
prediction distribution of each version against the reference's labels and a few feature
distributions, then the alerts and retraining triggers.

Each plot is an inline ``<svg>`` in a ``<figure class="plot">``; a missing piece (no labels,
no reference) is a sentence in its place. The script measures the plots once the page has
loaded and writes how many have a visible size into ``<body data-plots-drawn>``: a browser
test (and a curious reader) can tell that the plots rendered.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from serval.evaluation.analysis.reference import PREDICTION
from serval.evaluation.recording.monitored import MonitoredModel
from serval.evaluation.reporting.report_data import ReportData, gather
from serval.evaluation.reporting.report_plots import distribution_plot, drift_plot, quality_plot
from serval.storage.evaluation import Alert, EvaluationStore, Trigger

FEATURE_PLOTS = 4  # feature distributions shown: the most drifted first

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; font-size: 1.2rem; }
.meta, .missing { color: #666; } .missing { font-style: italic; }
table { border-collapse: collapse; margin: .6rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: .25rem .7rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #c0392b; font-weight: 600; }
figure.plot { margin: 1rem 0; } figure.plot svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: .9rem; }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var drawn = 0;
  document.querySelectorAll("figure.plot > svg").forEach(function (svg) {
    var box = svg.getBoundingClientRect(), inner = svg.getBBox();
    if (box.width > 0 && box.height > 0 && inner.width > 0 && inner.height > 0) { drawn++; }
  });
  document.body.setAttribute("data-plots-drawn", String(drawn));
});
"""


@dataclass(frozen=True, slots=True)
class ReportSummary:
    versions: int
    plots: int

    def __str__(self) -> str:
        return f"{self.versions} versions, {self.plots} plots"


def write_report(store: EvaluationStore, model: MonitoredModel, out: Path) -> ReportSummary:
    """Write the report of ``model`` to ``out`` (replaced whole once written).
    ``NothingLoggedError`` when nothing of it is logged."""
    data = gather(store, model)
    page, plots = render(data)
    partial = out.with_name(f".{out.name}.partial")
    try:
        partial.write_text(page, encoding="utf-8")
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return ReportSummary(len(data.versions), plots)


def render(data: ReportData) -> tuple[str, int]:
    """The HTML page of ``data`` and how many plots it holds."""
    sections = [_summary(data), _quality(data), _drift(data), *_distributions(data)]
    sections += [_alerts(data.alerts), _triggers(data.triggers)]
    body = "\n".join(sections)
    plots = body.count('<figure class="plot"')
    name = html.escape(data.model.name)
    generated = _time(data.generated)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>serval report: {name}</title>\n'
        f"<style>{_CSS}</style></head>\n"
        f'<body data-plots="{plots}">\n<h1>Model {name}</h1>\n'
        f'<p class="meta">Generated {generated} from {html.escape(data.location)} by serval '
        "monitor report.</p>\n"
        f"{body}\n<script>{_SCRIPT}</script>\n</body></html>\n",
        plots,
    )


def _summary(data: ReportData) -> str:
    spec = data.model.monitoring
    metric = spec.quality.metric if spec.quality is not None else "quality"
    active = [alert for alert in data.alerts if alert.cleared is None]
    rows = []
    for version in data.versions:
        value = version.quality.value if version.quality is not None else None
        drifted = sorted(name for name, score in version.drift.items() if score.drifted)
        alerts = sum(1 for alert in active if alert.version == version.version)
        triggers = sum(1 for trigger in data.triggers if trigger.version == version.version)
        rows.append(
            f"<tr><td>v{version.version}</td>{_num(version.counts.logged)}"
            f"{_num(version.counts.labelled)}{_num(value)}"
            f"<td>{html.escape(', '.join(drifted)) or '-'}</td>{_num(alerts)}{_num(triggers)}</tr>"
        )
    return (
        "<h2>Summary</h2>\n<table><tr><th>version</th><th>logged</th><th>labelled</th>"
        f"<th>{html.escape(metric)}</th><th>drifted</th><th>active alerts</th>"
        "<th>triggers</th></tr>\n" + "\n".join(rows) + "</table>"
    )


def _quality(data: ReportData) -> str:
    head = "<h2>Quality per version over time</h2>\n"
    spec = data.model.monitoring.quality
    if spec is None:
        return head + _missing("model.yaml sets no quality metric (monitoring.quality).")
    if data.outputs is None:
        return head + _missing(f"Quality is unavailable: {data.outputs_reason}.")
    points = {v.version: v.over_time for v in data.versions if v.over_time}
    if not any(p.value is not None for series in points.values() for p in series):
        return head + _missing("No ground truth has been joined to a logged prediction yet.")
    threshold = spec.min if spec.min is not None else spec.max
    caption = f"{spec.metric} per bucket of {_duration(data.bucket_s)} of prediction time"
    return head + _figure("quality", quality_plot(points, spec.metric, threshold), caption)


def _drift(data: ReportData) -> str:
    head = "<h2>Drift per feature</h2>\n"
    spec = data.model.monitoring.drift
    if spec is None:
        return head + _missing("model.yaml sets no drift section (monitoring.drift).")
    if data.reference is None:
        return head + _missing(f"Drift is unavailable: {data.reference_reason}.")
    scores = {
        v.version: {name: s.score for name, s in v.drift.items() if s.score is not None}
        for v in data.versions
    }
    scores = {version: by_name for version, by_name in scores.items() if by_name}
    if not scores:
        return head + _missing("No logged rows to compare with the reference yet.")
    caption = (
        f"{spec.method} of the latest {spec.window} logged rows of each version against the "
        f"reference; a score at or past {spec.limit:g} has drifted"
    )
    return head + _figure("drift", drift_plot(scores, spec.limit, spec.method), caption)


def _distributions(data: ReportData) -> list[str]:
    head = "<h2>Predictions against the reference</h2>\n"
    if data.reference is None:
        return [head + _missing(f"No reference to compare with: {data.reference_reason}.")]
    sections = [head + _distribution(data, PREDICTION, "prediction")]
    features = list(data.reference.features)
    drifted = {
        name: max((v.drift[name].score or 0.0 for v in data.versions if name in v.drift), default=0)
        for name in features
    }
    features.sort(key=lambda name: -drifted[name])
    parts = [_distribution(data, name, name) for name in features[:FEATURE_PLOTS]]
    sections.append("<h2>Feature distributions</h2>\n" + "\n".join(parts))
    return sections


def _distribution(data: ReportData, subject: str, label: str) -> str:
    reference = data.reference_column(subject)
    current = {v.version: v.current[subject] for v in data.versions if subject in v.current}
    current = {version: values for version, values in current.items() if len(values)}
    if not current:
        return _missing(f"No logged values of {label} yet.")
    if reference is None and subject == PREDICTION:
        note = "the reference has no label column: the versions' predictions alone"
    else:
        note = "each version's latest logged rows against the reference"
    svg = distribution_plot(
        None if reference is None else reference.values, current, data.subject_kind(subject), label
    )
    return _figure(f"distribution-{subject}", svg, f"{label}: {note}")


def _alerts(alerts: list[Alert]) -> str:
    head = "<h2>Alerts</h2>\n"
    if not alerts:
        return head + _missing("No alert has been raised.")
    rows = [
        f"<tr><td>v{a.version}</td><td>{a.kind}</td><td>{html.escape(a.subject)}</td>"
        f"{_num(a.value)}{_num(a.threshold)}<td>{_time(a.raised)}</td>"
        f"<td>{'-' if a.cleared is None else _time(a.cleared)}</td><td>{a.delivery}</td></tr>"
        for a in alerts
    ]
    return (
        head + "<table><tr><th>version</th><th>kind</th><th>metric</th><th>value</th>"
        "<th>threshold</th><th>raised</th><th>cleared</th><th>delivery</th></tr>\n"
        + "\n".join(rows)
        + "</table>"
    )


def _triggers(triggers: list[Trigger]) -> str:
    head = "<h2>Retraining triggers</h2>\n"
    if not triggers:
        return head + _missing("No retraining has been triggered.")
    rows = [
        f"<tr><td>v{t.version}</td><td>{_time(t.at)}</td><td>{html.escape(t.action)}</td>"
        f"<td>{html.escape(t.outcome)}</td></tr>"
        for t in triggers
    ]
    return (
        head
        + "<table><tr><th>version</th><th>at</th><th>action</th><th>outcome</th></tr>\n"
        + "\n".join(rows)
        + "</table>"
    )


def _figure(name: str, svg: str, caption: str) -> str:
    return (
        f'<figure class="plot" data-plot="{html.escape(name)}">{svg}'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _missing(sentence: str) -> str:
    return f'<p class="missing">{html.escape(sentence)}</p>'


def _num(value: float | int | None) -> str:
    if value is None:
        return '<td class="num">-</td>'
    text = str(value) if isinstance(value, int) else f"{value:.4g}"
    return f'<td class="num">{text}</td>'


def _time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"
