"""What a history figure shows, as data: a chart fence with ``kind: history``.

Each metric over the runs the figure draws (:attr:`chronicle.figures.Figure.runs`, the
experiment's good full runs): per run the median and its 95% bootstrap interval, one
line per subject, host and accelerator (:func:`chronicle.lab.history.lines`), and a mark
at each run whose key changed since the same host's run before
(:func:`chronicle.lab.history.key_changes`), naming what changed. The theme's
``figures/history.html`` renders it with the numbers as a data table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from chronicle.charts import Chart, Line, Trend
from chronicle.figure_parts import Newer, badges, interval, newer, number
from chronicle.lab import history as lab_history
from chronicle.lab.results import Result

if TYPE_CHECKING:
    from chronicle.charts import ChartCache
    from chronicle.figures import Figure


@dataclass(frozen=True)
class HistoryRow:
    """One run of one subject in a history's data table."""

    date: str
    result_id: str
    commit: str
    host: str
    accelerator: str
    subject: str
    metric: str
    unit: str
    n: int
    median: str
    interval: str
    changed: str  # the key's parts that changed since the host's run before


@dataclass(frozen=True)
class HistoryCaption:
    title: str
    runs: int
    first: str
    last: str
    lab_url: str
    experiment: str
    newer: Newer | None


def run_commit(run: Result) -> str:
    return str((run.provenance.get("git") or {}).get("commit") or "")[:7] or "no git"


def key_changes(runs: Sequence[Result]) -> list[tuple[str, ...]]:
    """Per run, the parts of its key that differ from the same host's run before it
    (empty for the first run of each host)."""
    return [lab_history.key_changes(previous, run) if previous is not None else ()
            for previous, run in zip(lab_history.previous_by_host(runs), runs, strict=True)]


def history_lines(figure: Figure, metric: str) -> tuple[Line, ...]:
    """One line per subject, host and accelerator (:func:`chronicle.lab.history.lines`),
    in the subject's colour. A subject with several lines, or a chart of several hosts,
    names each line's host and accelerator, and a subject's lines differ in dash."""
    runs, spec = figure.runs, figure.spec
    index = {run.id: i for i, run in enumerate(runs)}
    hosts = {run.lab_host for run in runs}
    drawn = []
    for subject in spec.subjects:
        found = lab_history.lines(runs, subject)
        for style, (line, members) in enumerate(found.items()):
            points = []
            for run in members:
                if run.values(subject, metric):
                    s = figure.summary(run, subject, metric)
                    points.append((index[run.id], s.median, s.median_low, s.median_high))
            if points:
                label = subject if len(found) == 1 and len(hosts) == 1 else \
                    f"{subject} ({line.label})"
                drawn.append(Line(label, figure.colour(subject), style, tuple(points)))
    return tuple(drawn)


def history_context(spec: Any, figure: Figure, charts: ChartCache) -> dict[str, Any]:
    """The template context of a history figure (charts drawn through ``charts``)."""
    runs = figure.runs
    changes = key_changes(runs)
    marks = tuple((i, "key: " + ", ".join(parts)) for i, parts in enumerate(changes) if parts)
    labels = tuple(f"{r.day}\n{run_commit(r)}" for r in runs)
    trends, rows, descriptions = [], [], []
    for metric in spec.metrics:
        unit = next(r.unit(metric) for r in runs if metric in r.metrics)
        lines = history_lines(figure, metric)
        trends.append(Trend(metric, unit, labels, lines, marks))
        descriptions.append(f"{metric} over {len(runs)} runs: " + "; ".join(
            f"{line.label} median from {number(line.points[0][1])} to "
            f"{number(line.points[-1][1])} {unit}" for line in lines) + ".")
        for index, run in enumerate(runs):
            for subject in spec.subjects:
                if not run.values(subject, metric):
                    continue
                s = figure.summary(run, subject, metric)
                rows.append(HistoryRow(run.day, run.id, run_commit(run), run.lab_host,
                                       run.accelerator(subject) or "not a VM", subject, metric,
                                       unit, s.n, number(s.median),
                                       interval(s.median_low, s.median_high),
                                       ", ".join(changes[index])))
    if marks:
        descriptions.append("The experiment's key changed at " + "; ".join(
            f"{runs[i].id} ({text})" for i, text in marks) + ".")
    title = spec.title or f"{spec.experiment}: {', '.join(spec.metrics)} over runs"
    svg = Markup(charts.svg(Chart(kind="history", title=title,
                                  description=" ".join(descriptions), panels=(),
                                  trends=tuple(trends))))
    return {"badges": badges(runs[-1], spec.subjects, figure), "svg": svg, "rows": rows,
            "caption": HistoryCaption(spec.title, len(runs), runs[0].day,
                                      runs[-1].day, figure.lab_url, spec.experiment,
                                      newer(figure))}
