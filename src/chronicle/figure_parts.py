"""What a figure shows, as data: numbers, captions, badges, table rows and verdicts.

Phase 2 renders each figure through a theme template, one per fence kind
(``figures/chart.html``, ``table.html``, ``compare.html``, ``placeholder.html``, and
``history.html`` for a chart over runs, whose context :mod:`chronicle.figure_history`
makes; with the macros of ``figures/_figures.html``); a site overrides one like any template. This
module gives those templates their context (:func:`figure_context`) and holds the pure
helpers they and the lab pages share: number formatting, the provenance caption's
items, the badges, a data table's rows, a comparison's verdict.

Every figure carries a provenance caption (n, statistic, run date, host, accelerator,
result id, a link to the experiment's lab page) and visible badges when its result is
stale, emulated (TCG), from a quick run, or shown in place of a newer, invalid result
file. Every chart has its data as a ``table.data`` in a ``<details>`` beside it, for
readers and screen readers. Strings here are plain text: the templates escape them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from chronicle.charts import Chart, Panel, Series
from chronicle.lab.results import Result
from chronicle.lab.stats import Ratio
from chronicle.lab.validation import DURATION_UNITS

if TYPE_CHECKING:
    from chronicle.charts import ChartCache
    from chronicle.figures import Figure

TIME_UNITS = set(DURATION_UNITS)
SIZE_UNITS = {"B", "bytes", "KB", "kB", "KiB", "MB", "MiB", "GB", "GiB"}
# How a comparison names what its metric measures; other metrics read "on <metric>".
METRIC_PHRASES = {
    "boot_ms": "to boot",
    "guest_uptime_ms": "from kernel to init",
    "host_overhead_ms": "in host-side start-up",
    "running_ms": "to reach Running",
    "http_ms": "to answer HTTP",
    "vmm_boot_timer_ms": "by the VMM's boot timer",
    "pss_mib": "in memory (PSS)",
    "rss_mib": "in memory (RSS)",
    "cgroup_mib": "in cgroup memory",
    "cgroup_peak_mib": "in peak cgroup memory",
    "disk_mib": "on disk",
    "image_mib": "in image size",
}


# -- small pieces -----------------------------------------------------------------------

def number(value: float) -> str:
    """Three significant figures without exponent: 412, 41.3, 4.13, 0.413."""
    magnitude = abs(value)
    if magnitude >= 100 or value == 0:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def with_unit(value: float, unit: str) -> str:
    return f"{number(value)}\u00a0{unit}" if unit else number(value)


def interval(low: float, high: float) -> str:
    return f"[{number(low)}, {number(high)}]"


@dataclass(frozen=True)
class ShownRatio:
    """A ratio and its interval as the reader sees them: ``1.2× [1.004, 1.4]``."""

    ratio: str
    low: str
    high: str

    @property
    def clear(self) -> bool:
        """Whether the printed interval lies on one side of 1: only then may a verdict
        say "faster" or "slower" (never beside a bound that reads as 1)."""
        low, high = (float(text.replace(",", "")) for text in (self.low, self.high))
        return low > 1 or high < 1


def shown_ratio(r: Ratio) -> ShownRatio:
    return ShownRatio(_ratio_number(r.ratio), _ratio_number(r.low), _ratio_number(r.high))


def _ratio_number(value: float) -> str:
    # Two significant figures at least: "13× [13, 13]" would hide the interval. Near 1,
    # as many as show which side of 1 the value is on: 1.004, not 1.0.
    if value >= 100:
        return f"{value:,.0f}"
    digits = 1
    while digits < 6 and value != 1 and round(value, digits) == 1:
        digits += 1
    return f"{value:.{digits}f}"


NO_SAMPLES = "no samples of this metric in this run"


def unmeasured_reason(result: Result, subject: str, metric: str | None = None) -> str | None:
    """Why there is no number for ``subject`` (and ``metric``), or None when there is one."""
    info = result.subject_info(subject)
    if info.get("status") == "unsupported":
        return str(info.get("reason") or "unsupported here")
    values = result.values(subject, metric) if metric else [
        s for s in result.measured if s.subject == subject]
    return None if values else NO_SAMPLES


@dataclass(frozen=True)
class Badge:
    kind: str  # badge-stale, badge-emulated, badge-quick, badge-invalid, badge-unsupported
    title: str
    text: str


def badges(result: Result, subjects: Sequence[str], figure: Figure) -> list[Badge]:
    found = []
    if figure.stale:
        found.append(Badge("badge-stale", "; ".join(figure.stale), "stale"))
    emulated = [s for s in subjects if result.accelerator(s) == "tcg"]
    if emulated:
        found.append(Badge("badge-emulated", f"{', '.join(emulated)} ran under TCG software "
                           "emulation, not KVM: boot times are far slower than on a KVM host",
                           "emulated (TCG)"))
    if result.quick:
        found.append(Badge("badge-quick", "a quick run: fewer repetitions than a full run, "
                           "wider intervals", "quick run"))
    if figure.skipped:
        found.append(Badge("badge-invalid",
                           "; ".join(f"{path}: {problem}" for path, problem in figure.skipped),
                           "newer result file invalid: showing an earlier run"))
    unmeasured = [s for s in subjects if result.subject_info(s).get("status") == "unsupported"]
    if unmeasured:
        found.append(Badge("badge-unsupported", ", ".join(unmeasured),
                           f"not measured: {', '.join(unmeasured)}"))
    return found


def host_line(result: Result, named: bool = False) -> str:
    """The machine a run was made on; ``named``: with its lab host even when ``local``
    (a figure that mixes hosts names each)."""
    host = result.provenance.get("host") or {}
    cpu = str(host.get("cpu_model") or "unknown CPU")
    for noise in ("(R)", "(TM)", " CPU", " Processor"):
        cpu = cpu.replace(noise, "")
    cpu = cpu.split(" @ ")[0].strip()
    kernel = str(host.get("kernel") or "")
    kernel = "-".join(kernel.split("-")[:2]) if kernel else "unknown kernel"
    # A run fetched from a lab host names it: the reader should know whose machine it was.
    label = "" if result.lab_host == "local" and not named else f"{result.lab_host}: "
    return f"{label}{cpu}, Linux {kernel}"


def accelerator_line(result: Result, subjects: Sequence[str]) -> str:
    return "; ".join(f"{subject}: {accelerator_text(result, subject)}" for subject in subjects)


def accelerator_text(result: Result, subject: str) -> str:
    """How ``subject`` ran in ``result``: KVM, TCG (emulated), not a VM, or not run."""
    accel = result.accelerator(subject)
    kind = result.subject_info(subject).get("kvm_kind") or (
        result.provenance.get("host") or {}).get("kvm_kind")
    if accel == "tcg":
        return "TCG (emulated" + (f"; host KVM is {kind.upper()}" if kind in ("pvm",) else
                                  "") + ")"
    if accel == "kvm":
        return "KVM" + (f" ({kind})" if kind and kind != "hw" else "")
    if result.subject_info(subject).get("status") == "unsupported":
        return "not run"
    return "none (not a VM)"


@dataclass(frozen=True)
class Caption:
    """The provenance caption's parts: a figure says where its numbers come from."""

    title: str
    note: str
    n: str
    statistic: str
    date: str
    host: str
    accelerator: str
    result_id: str
    lab_url: str
    experiment: str
    newer: Newer | None = None
    other_result_id: str = ""  # the right side's run, when a comparison is of two hosts


@dataclass(frozen=True)
class Newer:
    """A pinned figure's note: the blog's newest run of it is another, and where it is."""

    date: str
    result_id: str
    url: str  # its row on the experiment's lab page


def newer(figure: Figure) -> Newer | None:
    if not figure.newer:
        return None
    result_id, date = figure.newer
    return Newer(date, result_id, f"{figure.lab_url}#run-{result_id}")


def caption(spec: Any, result: Result, figure: Figure, subjects: Sequence[str],
            note: str = "") -> Caption:
    counts = sorted({len(result.values(s, m)) for s in subjects for m in spec.metrics
                     if result.values(s, m)})
    n = (str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}") if counts else "0"
    statistic = spec.statistic + (" with 95% bootstrap interval"
                                  if spec.statistic == "median" else "")
    if spec.x:  # a line's points are not one summary but one per x
        statistic = f"{spec.statistic} of the runs at each {spec.x}"
    elif spec.fence == "chart" and spec.kind == "stacked":
        statistic = f"{spec.statistic} of each phase"
    return Caption(title=spec.title, note=note, n=n, statistic=statistic,
                   date=(result.started or "")[:10] or "unknown date",
                   host=host_line(result, named=bool(spec.mix)),
                   accelerator=accelerator_line(result, subjects), result_id=result.id,
                   lab_url=figure.lab_url, experiment=result.experiment,
                   newer=newer(figure))


@dataclass(frozen=True)
class DataRow:
    """One metric and subject of a data table: its numbers, or why there are none."""

    metric: str
    subject: str
    unit: str
    reason: str = ""
    n: int = 0
    median: str = ""
    interval: str = ""
    min: str = ""
    q1: str = ""
    q3: str = ""
    max: str = ""


def data_rows(result: Result, figure: Figure, metrics: Sequence[str],
              subjects: Sequence[str]) -> list[DataRow]:
    """Per metric and subject: n, min, quartiles, median with its interval, max, unit."""
    rows = []
    for metric in metrics:
        unit = result.unit(metric)
        for subject in subjects:
            reason = unmeasured_reason(result, subject, metric)
            if reason:
                rows.append(DataRow(metric, subject, unit, reason))
                continue
            s = figure.summary(result, subject, metric)
            rows.append(DataRow(metric, subject, unit, "", s.n, number(s.median),
                                interval(s.median_low, s.median_high), number(s.min),
                                number(s.q1), number(s.q3), number(s.max)))
    return rows


def figure_id(spec: Any) -> str:
    return f"{spec.fence}-{spec.experiment}-{spec.line}"


def _measured(result: Result, subjects: Sequence[str], metric: str) -> list[str]:
    return [s for s in subjects if unmeasured_reason(result, s, metric) is None]


def panel(result: Result, figure: Figure, metric: str, subjects: Sequence[str],
          limits: tuple[float, float] | None = None) -> Panel:
    """One metric's values per subject, in the site's colours: what a chart draws."""
    return Panel(metric, result.unit(metric), tuple(
        Series(s, tuple(result.values(s, metric)), figure.colour(s)) for s in subjects), limits)


def describe(result: Result, figure: Figure, metric: str, subjects: Sequence[str]) -> str:
    unit = result.unit(metric)
    parts = []
    for subject in subjects:
        s = figure.summary(result, subject, metric)
        parts.append(f"{subject} median {number(s.median)} {unit} "
                     f"(95% interval {number(s.median_low)} to {number(s.median_high)}, "
                     f"n={s.n})")
    return f"{metric}: " + "; ".join(parts) + "."


# -- each kind's template context ---------------------------------------------------------

def figure_context(figure: Figure, charts: ChartCache) -> tuple[str, dict[str, Any]]:
    """The template for ``figure`` and its context (charts drawn through ``charts``)."""
    spec, result = figure.spec, figure.result
    if result is None:
        return "figures/placeholder.html", {"id": figure_id(spec), "fence": spec.fence,
                                            "experiment": spec.experiment,
                                            "lab_url": figure.lab_url}
    if spec.fence == "compare" and spec.split:
        from chronicle.figure_hosts import hosts_compare_context  # it imports this module

        context = hosts_compare_context(spec, figure, charts)
        context.update(id=figure_id(spec), no_samples=NO_SAMPLES)
        return "figures/compare.html", context
    if spec.kind == "history" and spec.fence == "chart":
        from chronicle.figure_history import history_context  # it imports this module

        context = history_context(spec, figure, charts)
        context.update(id=figure_id(spec))
        return "figures/history.html", context
    make = {"chart": _chart, "table": _table, "compare": _compare}[spec.fence]
    context = make(spec, result, figure, charts)
    context.update(id=figure_id(spec), no_samples=NO_SAMPLES)
    return f"figures/{spec.fence}.html", context


def _chart(spec: Any, result: Result, figure: Figure, charts: ChartCache) -> dict[str, Any]:
    if spec.kind == "stacked":
        panels, descriptions, unmeasured = _stacked_panels(spec, result, figure)
    else:
        panels, descriptions, unmeasured = _panels(spec, result, figure)
    title = spec.title or f"{result.experiment}: {', '.join(spec.metrics)} ({spec.kind})"
    x_unit = result.unit(spec.x) if spec.x else ""
    svg = Markup(charts.svg(Chart(kind=spec.kind, title=title,
                                  description=" ".join(descriptions), panels=tuple(panels),
                                  statistic=spec.statistic, x=spec.x, x_unit=x_unit))
                 ) if panels else None
    return {"badges": badges(result, spec.subjects, figure), "svg": svg,
            "unmeasured": [(s, figure.colour(s), r) for s, r in unmeasured.items()],
            "rows": data_rows(result, figure, spec.metrics, spec.subjects),
            "points": points(result, spec.x, spec.metrics, spec.subjects) if spec.x else [],
            "caption": caption(spec, result, figure, spec.subjects)}


def _panels(spec: Any, result: Result, figure: Figure
            ) -> tuple[list[Panel], list[str], dict[str, str]]:
    """A panel per metric, of the subjects measured on it; why the others are not."""
    panels, descriptions, unmeasured = [], [], {}
    for metric in spec.metrics:
        shown = _measured(result, spec.subjects, metric)
        for subject in spec.subjects:
            if subject not in shown:
                unmeasured[subject] = unmeasured_reason(result, subject, metric) or ""
        if not shown:
            continue
        if spec.x:
            pairs = {s: _paired(result, s, spec.x, metric) for s in shown}
            panels.append(Panel(metric, result.unit(metric), tuple(
                Series(s, pairs[s][1], figure.colour(s), xs=pairs[s][0]) for s in shown)))
            descriptions.append(describe_line(result, spec.x, metric, shown))
        else:
            panels.append(panel(result, figure, metric, shown))
            descriptions.append(describe(result, figure, metric, shown))
    return panels, descriptions, unmeasured


def _stacked_panels(spec: Any, result: Result, figure: Figure
                    ) -> tuple[list[Panel], list[str], dict[str, str]]:
    """A segment per metric: a subject lacking one phase (a container has no kernel of its
    own) still has a bar; only a subject with none of them is not measured."""
    shown = [s for s in spec.subjects
             if any(unmeasured_reason(result, s, m) is None for m in spec.metrics)]
    unmeasured = {s: unmeasured_reason(result, s) or NO_SAMPLES
                  for s in spec.subjects if s not in shown}
    panels = [Panel(m, result.unit(m), tuple(
        Series(s, tuple(result.values(s, m)), figure.colour(s)) for s in shown))
        for m in spec.metrics]
    descriptions = []
    for subject in shown:
        parts = [f"{m} {number(getattr(figure.summary(result, subject, m), spec.statistic))} "
                 f"{result.unit(m)}" for m in spec.metrics if result.values(subject, m)]
        descriptions.append(f"{subject}: " + ", ".join(parts) + f" ({spec.statistic}s).")
    return panels, descriptions, unmeasured


def _paired(result: Result, subject: str, x: str, metric: str
            ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(xs, values)``: each value of ``metric`` with the value of ``x`` from its run."""
    at = {s.run: s.value for s in result.measured if s.subject == subject and s.metric == x}
    pairs = [(at[s.run], s.value) for s in result.measured
             if s.subject == subject and s.metric == metric and s.run in at]
    return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)


@dataclass(frozen=True)
class Point:
    """One run of a line chart: its x and the metric's value there."""

    subject: str
    metric: str
    x_name: str
    x: str
    value: str
    unit: str


def points(result: Result, x: str, metrics: Sequence[str],
           subjects: Sequence[str]) -> list[Point]:
    """A line chart's data table: every pair it draws, by subject, metric and x."""
    rows = []
    for subject in subjects:
        for metric in metrics:
            xs, values = _paired(result, subject, x, metric)
            rows += [Point(subject, metric, x, number(a), number(b), result.unit(metric))
                     for a, b in sorted(zip(xs, values, strict=True))]
    return rows


def describe_line(result: Result, x: str, metric: str, subjects: Sequence[str]) -> str:
    parts = []
    for subject in subjects:
        xs, values = _paired(result, subject, x, metric)
        pairs = ", ".join(f"{number(a)}: {number(b)}" for a, b in sorted(zip(xs, values,
                                                                             strict=True)))
        parts.append(f"{subject} ({x}: {metric}) {pairs}")  # every point, for screen readers
    return f"{metric} in {result.unit(metric)} against {x}: " + "; ".join(parts) + "."


@dataclass(frozen=True)
class Cell:
    """A summary in a results table: median with its unit, interval and n (or a reason)."""

    reason: str = ""
    value: str = ""
    interval: str = ""
    n: int = 0


def _table(spec: Any, result: Result, figure: Figure, charts: ChartCache) -> dict[str, Any]:
    rows = []
    for metric in spec.metrics:
        unit = result.unit(metric)
        cells = []
        for subject in spec.subjects:
            reason = unmeasured_reason(result, subject, metric)
            if reason:
                cells.append(Cell(reason))
                continue
            s = figure.summary(result, subject, metric)
            cells.append(Cell("", with_unit(s.median, unit),
                              interval(s.median_low, s.median_high), s.n))
        rows.append((metric, unit, cells))
    return {"badges": badges(result, spec.subjects, figure),
            "subjects": [(s, figure.colour(s)) for s in spec.subjects], "rows": rows,
            "label": spec.title or f"{result.experiment}: median [95% interval], n per subject",
            "caption": caption(spec, result, figure, spec.subjects)}


@dataclass(frozen=True)
class Verdict:
    """``2.4× [2.1, 2.8] faster to boot``, said of the left subject (or why there is no
    ratio: ``missing`` names the subjects not measured)."""

    metric: str
    left: str = ""
    ratio: str = ""
    low: str = ""
    high: str = ""
    clear: bool = False
    word: str = ""
    phrase: str = ""
    missing: str = ""


def verdict(result: Result, figure: Figure, left: str, right: str, metric: str,
            right_run: Result | None = None, label: str = "") -> Verdict:
    """The verdict on ``left`` against ``right``, both in ``result`` unless ``right_run``
    holds the right side (another host's run); ``label`` names the left side."""
    unit = result.unit(metric)
    phrase = METRIC_PHRASES.get(metric, f"on {metric}")
    if unit in TIME_UNITS:
        better, worse = "faster", "slower"
    elif unit in SIZE_UNITS:
        better, worse = "smaller", "larger"
    else:
        better, worse = "lower", "higher"
    # Lower is better for every time and size metric: say "N× better" with N ≥ 1.
    r = figure.ratio(result, right, left, metric) if right_run is None else \
        figure.ratio_across(right_run, right, result, left, metric)
    word = better
    if r.ratio < 1:
        r = figure.ratio(result, left, right, metric) if right_run is None else \
            figure.ratio_across(result, left, right_run, right, metric)
        word = worse
    shown = shown_ratio(r)
    return Verdict(metric, label or left, shown.ratio, shown.low, shown.high, shown.clear, word,
                   phrase)


@dataclass(frozen=True)
class SideMetric:
    """One metric in one column of a comparison: the median and its small chart."""

    metric: str
    reason: str = ""
    value: str = ""
    interval: str = ""
    n: int = 0
    svg: Markup | None = None


def compare_side(spec: Any, result: Result, figure: Figure, charts: ChartCache,
                  subject: str, limits: dict[str, tuple[float, float]]) -> list[SideMetric]:
    blocks = []
    for metric in spec.metrics:
        unit = result.unit(metric)
        reason = unmeasured_reason(result, subject, metric)
        if reason:
            blocks.append(SideMetric(metric, reason))
            continue
        s = figure.summary(result, subject, metric)
        chart = Chart(kind=spec.kind, title=f"{subject}: {metric}",
                      description=describe(result, figure, metric, [subject]),
                      panels=(panel(result, figure, metric, [subject], limits.get(metric)),),
                      compact=True)
        blocks.append(SideMetric(metric, "", with_unit(s.median, unit),
                                 interval(s.median_low, s.median_high), s.n,
                                 Markup(charts.svg(chart))))
    return blocks


def shared_limits(shown: Sequence[tuple[Result, str]],
                  metrics: Sequence[str]) -> dict[str, tuple[float, float]]:
    """One value range per metric for both columns (each a run and a subject), so their
    figures compare by eye."""
    limits = {}
    for metric in metrics:
        values = [v for result, s in shown for v in result.values(s, metric)]
        if values:
            low, high = min(values), max(values)
            pad = (high - low) * 0.06 or abs(high) * 0.06 or 1.0
            limits[metric] = (max(0.0, low - pad) if low >= 0 else low - pad, high + pad)
    return limits


def _compare(spec: Any, result: Result, figure: Figure, charts: ChartCache) -> dict[str, Any]:
    pair = [spec.left, spec.right]
    limits = shared_limits([(result, s) for s in pair], spec.metrics)
    verdicts = []
    for metric in spec.metrics:
        missing = [s for s in pair if unmeasured_reason(result, s, metric)]
        verdicts.append(Verdict(metric, missing=", ".join(missing)) if missing
                        else verdict(result, figure, spec.left, spec.right, metric))
    sides = [(side, subject, figure.colour(subject),
              compare_side(spec, result, figure, charts, subject, limits))
             for side, subject in (("left", spec.left), ("right", spec.right))]
    note = ("Ratios are of medians, with 95% bootstrap intervals; the left subject is "
            "named first.")
    return {"badges": badges(result, pair, figure), "sides": sides, "verdicts": verdicts,
            "rows": data_rows(result, figure, spec.metrics, pair),
            "caption": caption(spec, result, figure, pair, note)}

