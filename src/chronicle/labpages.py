"""The lab's pages: ``/lab/`` and ``/lab/<experiment>/`` with its raw samples.

``/lab/`` lists every experiment (discovered scripts and stored results) with its latest
result and status. ``/lab/<experiment>/`` shows the history of each metric over the good
runs, the full statistics and provenance of the latest good run, every run (each row
anchored ``#run-<id>``, where a pinned figure's "newer run" note links), the script's
source, and the raw samples as ``samples.csv`` and ``samples.json`` — the JSON is the
stored ``samples`` list itself, so a reader can check any figure against what the script printed.

Hooked into the build as an extra page generator (:func:`lab_files`); the pages are
rendered with the theme's ``lab_index.html`` and ``lab_experiment.html``. Nothing here
depends on the clock, so the same results give the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer, TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

from chronicle import figure_parts
from chronicle.charts import Chart, ChartCache
from chronicle.embed_fences import EmbedSpec
from chronicle.figures import Figure, Lab, measured_or_declared
from chronicle.lab.provenance import describe_git, describe_load
from chronicle.lab.results import Result, canonical_json, samples_csv
from chronicle.lab.stats import warnings as stats_warnings


@dataclass(frozen=True)
class StatRow:
    metric: str
    subject: str
    unit: str
    cells: tuple[str, ...]  # formatted numbers in STAT_COLUMNS order, or ()
    unmeasured: str = ""  # the reason, when there is no number
    warnings: tuple[str, ...] = ()


STAT_COLUMNS = ("n", "median", "95% interval", "mean", "sd", "min", "p5", "q1", "q3", "p95",
                "max", "outliers")


@dataclass(frozen=True)
class LabEntry:
    """One experiment as the lab pages show it."""

    name: str
    title: str
    url: str
    status: str  # fresh, stale, failed, never run
    reasons: tuple[str, ...]
    tags: tuple[str, ...]
    script: str | None  # path relative to the site root
    source_html: Markup | None
    runs: tuple[Result, ...]  # newest first
    latest: Result | None  # latest good run
    badges: tuple[figure_parts.Badge, ...]  # the latest run's, as a post's figure has them
    caption: figure_parts.Caption | None
    charts: tuple[Markup, ...]
    stats: tuple[StatRow, ...]
    unmeasured: tuple[tuple[str, str], ...]
    provenance: tuple[tuple[str, str], ...]
    history: Figure | None  # every metric over the good runs, when two measured it


def lab_entries(lab: Lab, charts: ChartCache) -> list[LabEntry]:
    return [lab_entry(lab, name, lab.scripts.get(name), charts) for name in lab.experiments()]


def lab_entry(lab: Lab, name: str, script: Any | None, charts: ChartCache) -> LabEntry:
    runs = tuple(reversed(lab.store.runs(name)))
    latest = lab.shown(name)
    bad = lab.store.bad_files(name)
    reasons: tuple[str, ...] = ()
    if latest is None:
        status = "failed" if runs or bad else "never run"
        if runs:
            reasons = (f"{runs[0].status}: {runs[0].error or 'no detail'}",)
    else:
        reasons = lab.staleness(latest)
        status = "stale" if reasons else "fresh"
        if runs[0].id != latest.id:
            reasons += (f"the newest run {runs[0].id} {runs[0].status}; showing the last good one",)
    reasons += tuple(f"{lab.relative(b.path)} is not a valid result, left out: {b.summary}"
                     for b in bad)
    subjects = measured_or_declared(latest) if latest else []
    # the latest run as a figure of all it measured: the badges and caption posts show
    figure = lab.figure(EmbedSpec(fence="chart", experiment=name, line=0,
                                  metrics=tuple(latest.metrics), subjects=tuple(subjects)),
                        latest) if latest else None
    return LabEntry(
        name=name,
        title=getattr(script, "title", None) or name,
        url=f"lab/{name}/",
        status=status,
        reasons=reasons,
        tags=tuple(getattr(script, "tags", ()) or ()),
        script=script.relpath if script is not None else None,
        source_html=_source(script.path) if script is not None else None,
        runs=runs,
        latest=latest,
        badges=tuple(figure_parts.badges(latest, subjects, figure)) if figure else (),
        caption=figure_parts.caption(figure.spec, latest, figure, subjects) if figure else None,
        charts=tuple(_charts(figure, latest, charts)) if figure else (),
        stats=tuple(_stats(figure, latest)) if figure else (),
        unmeasured=tuple(unmeasured_subjects(latest)) if latest else (),
        provenance=tuple(provenance_items(latest)) if latest else (),
        history=history_figure(lab, name) if latest else None,
    )


def history_figure(lab: Lab, name: str) -> Figure | None:
    """The experiment's history on every host, each metric two runs measured."""
    runs = lab.history(name, "")
    metrics = [m for m in lab.history_names(runs)[0]
               if sum(1 for r in runs if m in lab.names(r)[0]) >= 2]
    if not metrics:
        return None
    spec = EmbedSpec(fence="chart", experiment=name, line=0, kind="history",
                     metrics=tuple(metrics), subjects=tuple(lab.history_names(runs)[1]))
    return lab.figure(spec, runs[-1], runs)


def _source(path: Path) -> Markup:
    code = path.read_text(encoding="utf-8", errors="replace")
    try:  # by name only: guessing from the content loads every lexer (0.14 s a build)
        lexer = PythonLexer() if path.suffix == ".py" else get_lexer_for_filename(path.name)
    except ClassNotFound:
        lexer = PythonLexer() if code.startswith("#!") and "python" in code[:80] else TextLexer()
    html = highlight(code, lexer, HtmlFormatter(cssclass="highlight", wrapcode=True,
                                                linenos="table"))
    return Markup(f'<div class="code">{html}</div>')


def _charts(figure: Figure, result: Result, charts: ChartCache) -> Iterable[Markup]:
    for metric in result.metrics:
        shown = [s for s in result.subjects if result.values(s, metric)]
        if not shown:
            continue
        chart = Chart(kind="box", title=f"{result.experiment}: {metric}",
                      description=figure_parts.describe(result, figure, metric, shown),
                      panels=(figure_parts.panel(result, figure, metric, shown),))
        yield Markup(f'<div class="chart">{charts.svg(chart)}</div>')


def _stats(figure: Figure, result: Result) -> Iterable[StatRow]:
    number = figure_parts.number
    for metric in result.metrics:
        unit = result.unit(metric)
        for subject in result.subjects:
            reason = figure_parts.unmeasured_reason(result, subject, metric)
            if reason == figure_parts.NO_SAMPLES:
                continue  # the metric does not apply to this subject
            if reason:
                yield StatRow(metric, subject, unit, (), reason)
                continue
            s = figure.summary(result, subject, metric)
            cells = (str(s.n), number(s.median), figure_parts.interval(s.median_low, s.median_high),
                     number(s.mean), number(s.sd), number(s.min), number(s.p5), number(s.q1),
                     number(s.q3), number(s.p95), number(s.max), str(len(s.outliers)))
            yield StatRow(metric, subject, unit, cells, "", tuple(stats_warnings(s, unit)))


def unmeasured_subjects(result: Result) -> list[tuple[str, str]]:
    """Subjects the script declared but this host could not run, with the reason."""
    return [(s, figure_parts.unmeasured_reason(result, s) or "")
            for s in measured_or_declared(result) if s not in result.subjects]


def provenance_items(result: Result) -> Iterable[tuple[str, str]]:
    """What a reader needs to judge where the numbers come from (no host name)."""
    p = result.provenance
    host = p.get("host") or {}
    yield "result", result.id
    yield "started", str(p.get("started", ""))
    yield "finished", str(p.get("finished", ""))
    yield "quick run", "yes" if result.quick else "no"
    yield "CPU", f"{host.get('cpu_model', '?')} ({host.get('cores', '?')} cores)"
    if host.get("memory_bytes"):
        yield "memory", f"{int(host['memory_bytes']) / 2**30:.1f} GiB"
    yield "kernel", f"{host.get('kernel', '?')} ({host.get('machine', '?')})"
    yield "OS", str(host.get("os", "?"))
    yield "KVM", str(host.get("kvm_kind", "?"))
    if p.get("load"):
        yield "machine load", describe_load(p["load"])
    for subject, info in sorted((p.get("subjects") or {}).items()):
        yield f"subject {subject}", ", ".join(f"{k}: {v}" for k, v in sorted(info.items())
                                              if not isinstance(v, dict | list)) or "-"
    for tool, version in sorted((p.get("tools") or {}).items()):
        yield tool, str(version)
    git = p.get("git") or {}
    if git:
        yield "git", describe_git(git)
    if result.params:
        yield "params", ", ".join(f"{k}={v}" for k, v in sorted(result.params.items()))
    yield "cache key", result.key[:16]


def samples_json(result: Result) -> bytes:
    """The stored ``samples`` list, canonical: equal to the result file's own."""
    return canonical_json([s.to_json() for s in result.samples])


def lab_files(lab: Lab, charts: ChartCache, renderer: Any) -> Iterable[tuple[str, bytes]]:
    """Every lab page and download, as ``(output path, bytes)``."""
    entries = lab_entries(lab, charts)
    yield renderer.page("lab_index.html", "lab/", experiments=entries,
                        stat_columns=STAT_COLUMNS)
    for entry in entries:
        history = Markup(renderer.figure(entry.history)) if entry.history else None
        yield renderer.page("lab_experiment.html", entry.url, experiment=entry,
                            stat_columns=STAT_COLUMNS, history=history)
        if entry.latest is not None:
            yield f"{entry.url}samples.csv", samples_csv(entry.latest).encode("utf-8")
            yield f"{entry.url}samples.json", samples_json(entry.latest)
