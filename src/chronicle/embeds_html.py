"""The HTML of embedded figures: charts, tables, comparisons, captions and badges.

Every figure carries a provenance caption (n, statistic, run date, host, accelerator,
result id, a link to the experiment's lab page) and visible badges when its result is
stale, emulated (TCG), from a quick run, or shown in place of a newer, invalid result
file. Every chart has its data as a ``table.data`` in a ``<details>`` beside it, for
readers and screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from chronicle.charts import Chart, Panel, Series
from chronicle.lab.results import Result
from chronicle.lab.stats import Ratio, Summary
from chronicle.lab.validation import DURATION_UNITS

if TYPE_CHECKING:
    from chronicle.charts import ChartCache
    from chronicle.embed_fences import EmbedSpec
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
    return f"{number(value)}\u00a0{escape(unit)}" if unit else number(value)


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


def not_measured(reason: str) -> str:
    if reason == NO_SAMPLES:
        # The metric does not apply to this subject (e.g. guest uptime of a container):
        # a dash, not a badge, since nothing failed.
        return f'<span class="not-applicable" title="{NO_SAMPLES}">—</span>'
    return (f'<span class="badge badge-unsupported" title="{escape(reason)}">not measured'
            f'</span> <span class="unmeasured-reason">on this host: {escape(reason)}</span>')


def swatch(subject: str, figure: Figure) -> str:
    return (f'<span class="swatch" style="--swatch: {figure.colour(subject)}" '
            f'aria-hidden="true"></span>')


def badges(result: Result, subjects: Sequence[str], figure: Figure) -> str:
    found = []
    reasons = figure.stale
    if reasons:
        found.append(f'<span class="badge badge-stale" title="{escape("; ".join(reasons))}">'
                     "stale</span>")
    emulated = [s for s in subjects if result.accelerator(s) == "tcg"]
    if emulated:
        title = (f"{', '.join(emulated)} ran under TCG software emulation, not KVM: "
                 "boot times are far slower than on a KVM host")
        found.append(f'<span class="badge badge-emulated" title="{escape(title)}">'
                     "emulated (TCG)</span>")
    if result.quick:
        found.append('<span class="badge badge-quick" title="a quick run: fewer repetitions '
                     'than a full run, wider intervals">quick run</span>')
    if figure.skipped:
        title = "; ".join(f"{path}: {problem}" for path, problem in figure.skipped)
        found.append(f'<span class="badge badge-invalid" title="{escape(title)}">newer result '
                     f"file invalid: showing an earlier run</span>")
    unmeasured = [s for s in subjects if result.subject_info(s).get("status") == "unsupported"]
    if unmeasured:
        found.append(f'<span class="badge badge-unsupported" title="'
                     f'{escape(", ".join(unmeasured))}">not measured: '
                     f"{escape(', '.join(unmeasured))}</span>")
    return f'<p class="embed-badges">{"".join(found)}</p>' if found else ""


def host_line(result: Result) -> str:
    host = result.provenance.get("host") or {}
    cpu = str(host.get("cpu_model") or "unknown CPU")
    for noise in ("(R)", "(TM)", " CPU", " Processor"):
        cpu = cpu.replace(noise, "")
    cpu = cpu.split(" @ ")[0].strip()
    kernel = str(host.get("kernel") or "")
    kernel = "-".join(kernel.split("-")[:2]) if kernel else "unknown kernel"
    return f"{cpu}, Linux {kernel}"


def accelerator_line(result: Result, subjects: Sequence[str]) -> str:
    parts = []
    for subject in subjects:
        accel = result.accelerator(subject)
        kind = result.subject_info(subject).get("kvm_kind") or (
            result.provenance.get("host") or {}).get("kvm_kind")
        if accel == "tcg":
            text = "TCG (emulated" + (f"; host KVM is {kind.upper()}" if kind in ("pvm",) else
                                      "") + ")"
        elif accel == "kvm":
            text = "KVM" + (f" ({kind})" if kind and kind != "hw" else "")
        elif result.subject_info(subject).get("status") == "unsupported":
            text = "not run"
        else:
            text = "none (not a VM)"
        parts.append(f"{escape(subject)}: {text}")
    return "; ".join(parts)


def caption(spec: EmbedSpec, result: Result, figure: Figure, subjects: Sequence[str],
            note: str = "") -> str:
    counts = sorted({len(result.values(s, m)) for s in subjects for m in spec.metrics
                     if result.values(s, m)})
    n = (str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}") if counts else "0"
    statistic = (f"{spec.statistic}" + (" with 95% bootstrap interval"
                                        if spec.statistic == "median" else ""))
    date = (result.started or "")[:10] or "unknown date"
    items = [
        f"n = {n} per subject",
        statistic,
        f"run {escape(date)}",
        f"host: {escape(host_line(result))}",
        f"accelerator: {accelerator_line(result, subjects)}",
        f"result <code>{escape(result.id)}</code>",
        f'<a href="{escape(figure.lab_url)}">'
        f"{escape(result.experiment)}: runs, statistics and raw data</a>",
    ]
    title = f'<span class="embed-title">{escape(spec.title)}</span> ' if spec.title else ""
    extra = f'<span class="embed-note">{note}</span> ' if note else ""
    return (f'<figcaption class="provenance">{title}{extra}<span class="provenance-items">'
            + " · ".join(f"<span>{item}</span>" for item in items)
            + "</span></figcaption>")


def data_table(result: Result, figure: Figure, metrics: Sequence[str],
               subjects: Sequence[str], label: str = "") -> str:
    """Per metric and subject: n, min, quartiles, median with its interval, max, unit."""
    head = ("<thead><tr><th scope=\"col\">metric</th><th scope=\"col\">subject</th>"
            "<th scope=\"col\">n</th><th scope=\"col\">median</th>"
            "<th scope=\"col\">95% interval</th><th scope=\"col\">min</th>"
            "<th scope=\"col\">q1</th><th scope=\"col\">q3</th><th scope=\"col\">max</th>"
            "<th scope=\"col\">unit</th></tr></thead>")
    rows = []
    for metric in metrics:
        unit = result.unit(metric)
        for subject in subjects:
            reason = unmeasured_reason(result, subject, metric)
            cells = f"<td>{escape(metric)}</td><th scope=\"row\">{escape(subject)}</th>"
            if reason:
                rows.append(f"<tr>{cells}<td colspan=\"8\">{not_measured(reason)}</td></tr>")
                continue
            s = figure.summary(result, subject, metric)
            rows.append(
                f"<tr>{cells}<td>{s.n}</td><td>{number(s.median)}</td>"
                f"<td>{interval(s.median_low, s.median_high)}</td><td>{number(s.min)}</td>"
                f"<td>{number(s.q1)}</td><td>{number(s.q3)}</td><td>{number(s.max)}</td>"
                f"<td>{escape(unit)}</td></tr>")
    caption_html = f"<caption>{escape(label)}</caption>" if label else ""
    return (f'<div class="table-scroll"><table class="data">{caption_html}{head}'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _details(table: str) -> str:
    return f'<details class="embed-data"><summary>Data as a table</summary>{table}</details>'


def _figure_id(spec: EmbedSpec) -> str:
    return f"{spec.fence}-{spec.experiment}-{spec.line}"


# -- the three fences -------------------------------------------------------------------

def render(spec: EmbedSpec, result: Result, figure: Figure, charts: ChartCache) -> str:
    if spec.fence == "table":
        return table_figure(spec, result, figure)
    draw = chart_figure if spec.fence == "chart" else compare_figure
    return draw(spec, result, figure, charts)


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
        s: Summary = figure.summary(result, subject, metric)
        parts.append(f"{subject} median {number(s.median)} {unit} "
                     f"(95% interval {number(s.median_low)} to {number(s.median_high)}, "
                     f"n={s.n})")
    return f"{metric}: " + "; ".join(parts) + "."


def chart_figure(spec: EmbedSpec, result: Result, figure: Figure, charts: ChartCache) -> str:
    panels = []
    descriptions = []
    unmeasured = {}
    for metric in spec.metrics:
        shown = _measured(result, spec.subjects, metric)
        for subject in spec.subjects:
            if subject not in shown:
                unmeasured[subject] = unmeasured_reason(result, subject, metric) or ""
        if not shown:
            continue
        panels.append(panel(result, figure, metric, shown))
        descriptions.append(describe(result, figure, metric, shown))
    title = spec.title or f"{result.experiment}: {', '.join(spec.metrics)} ({spec.kind})"
    if panels:
        chart = Chart(kind=spec.kind, title=title, description=" ".join(descriptions),
                      panels=tuple(panels), statistic=spec.statistic)
        body = f'<div class="chart">{charts.svg(chart)}</div>'
    else:
        body = '<p class="embed-placeholder">No subject was measured for this chart.</p>'
    notes = "".join(f'<p class="embed-unmeasured">{swatch(s, figure)}<strong>{escape(s)}'
                    f"</strong>: {not_measured(r)}</p>" for s, r in unmeasured.items())
    return (f'<figure class="embed embed-chart" id="{_figure_id(spec)}">'
            f"{badges(result, spec.subjects, figure)}{body}{notes}"
            f"{_details(data_table(result, figure, spec.metrics, spec.subjects))}"
            f"{caption(spec, result, figure, spec.subjects)}</figure>\n")


def table_figure(spec: EmbedSpec, result: Result, figure: Figure) -> str:
    head = "".join(f'<th scope="col">{swatch(s, figure)}{escape(s)}</th>' for s in spec.subjects)
    rows = []
    for metric in spec.metrics:
        unit = result.unit(metric)
        cells = []
        for subject in spec.subjects:
            reason = unmeasured_reason(result, subject, metric)
            if reason:
                cells.append(f"<td>{not_measured(reason)}</td>")
                continue
            s = figure.summary(result, subject, metric)
            cells.append(f'<td><span class="value">{with_unit(s.median, unit)}</span> '
                         f'<span class="interval">{interval(s.median_low, s.median_high)}'
                         f'</span> <span class="n">n={s.n}</span></td>')
        rows.append(f'<tr><th scope="row">{escape(metric)} '
                    f'<span class="unit">({escape(unit)})</span></th>{"".join(cells)}</tr>')
    label = spec.title or f"{result.experiment}: median [95% interval], n per subject"
    table = (f'<div class="table-scroll"><table class="data results">'
             f"<caption>{escape(label)}</caption><thead><tr><th scope=\"col\">metric</th>"
             f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")
    return (f'<figure class="embed embed-table" id="{_figure_id(spec)}">'
            f"{badges(result, spec.subjects, figure)}{table}"
            f"{caption(spec, result, figure, spec.subjects)}</figure>\n")


def verdict(result: Result, figure: Figure, left: str, right: str, metric: str) -> str:
    """``2.4× [2.1, 2.8] faster to boot``, said of the left subject."""
    unit = result.unit(metric)
    phrase = METRIC_PHRASES.get(metric, f"on {metric}")
    if unit in TIME_UNITS:
        better, worse = "faster", "slower"
    elif unit in SIZE_UNITS:
        better, worse = "smaller", "larger"
    else:
        better, worse = "lower", "higher"
    # Lower is better for every time and size metric: say "N× better" with N ≥ 1.
    r = figure.ratio(result, right, left, metric)
    word = better
    if r.ratio < 1:
        r = figure.ratio(result, left, right, metric)
        word = worse
    shown = shown_ratio(r)
    if shown.clear:
        judgement = f"{word} {escape(phrase)}"
    else:
        judgement = (f'<span class="verdict-unclear">no clear difference</span> '
                     f"{escape(phrase)}")
    return (f'<p class="compare-verdict-line"><span class="compare-metric-name">'
            f"{escape(metric)}</span><br><strong>{escape(left)}</strong> is "
            f'<strong class="ratio">{shown.ratio}×</strong> '
            f'<span class="interval">[{shown.low}, {shown.high}]</span> '
            f"{judgement}</p>")


def _compare_side(spec: EmbedSpec, result: Result, figure: Figure, charts: ChartCache,
                  subject: str, side: str, limits: dict[str, tuple[float, float]]) -> str:
    blocks = []
    for metric in spec.metrics:
        unit = result.unit(metric)
        reason = unmeasured_reason(result, subject, metric)
        if reason:
            blocks.append(f'<div class="compare-metric"><p class="compare-value">'
                          f'<span class="compare-metric-name">{escape(metric)}</span> '
                          f"{not_measured(reason)}</p></div>")
            continue
        s = figure.summary(result, subject, metric)
        chart = Chart(kind=spec.kind, title=f"{subject}: {metric}",
                      description=describe(result, figure, metric, [subject]),
                      panels=(panel(result, figure, metric, [subject], limits.get(metric)),),
                      compact=True)
        blocks.append(
            f'<div class="compare-metric"><p class="compare-value">'
            f'<span class="compare-metric-name">{escape(metric)}</span> '
            f'<strong class="value">{with_unit(s.median, unit)}</strong> '
            f'<span class="interval">{interval(s.median_low, s.median_high)}</span> '
            f'<span class="n">n={s.n}</span></p>'
            f'<div class="chart chart-compact">{charts.svg(chart)}</div></div>')
    return (f'<section class="compare-side compare-{side}" aria-label="{escape(subject)}">'
            f'<p class="compare-subject">{swatch(subject, figure)}{escape(subject)}</p>'
            f"{''.join(blocks)}</section>")


def _shared_limits(result: Result, subjects: Sequence[str],
                   metrics: Sequence[str]) -> dict[str, tuple[float, float]]:
    """One value range per metric for both columns, so their figures compare by eye."""
    limits = {}
    for metric in metrics:
        values = [v for s in subjects for v in result.values(s, metric)]
        if values:
            low, high = min(values), max(values)
            pad = (high - low) * 0.06 or abs(high) * 0.06 or 1.0
            limits[metric] = (max(0.0, low - pad) if low >= 0 else low - pad, high + pad)
    return limits


def compare_figure(spec: EmbedSpec, result: Result, figure: Figure, charts: ChartCache
                   ) -> str:
    pair = [spec.left, spec.right]
    limits = _shared_limits(result, pair, spec.metrics)
    lines = []
    for metric in spec.metrics:
        missing = [s for s in pair if unmeasured_reason(result, s, metric)]
        if missing:
            lines.append(f'<p class="compare-verdict-line"><span class="compare-metric-name">'
                         f"{escape(metric)}</span><br>no ratio: {escape(', '.join(missing))} "
                         "not measured</p>")
        else:
            lines.append(verdict(result, figure, spec.left, spec.right, metric))
    middle = f'<div class="compare-verdict">{"".join(lines)}</div>'
    body = (f'<div class="compare">'
            f"{_compare_side(spec, result, figure, charts, spec.left, 'left', limits)}{middle}"
            f"{_compare_side(spec, result, figure, charts, spec.right, 'right', limits)}</div>")
    note = ("Ratios are of medians, with 95% bootstrap intervals; the left subject is "
            "named first.")
    return (f'<figure class="embed embed-compare" id="{_figure_id(spec)}">'
            f"{badges(result, pair, figure)}{body}"
            f"{_details(data_table(result, figure, spec.metrics, pair))}"
            f"{caption(spec, result, figure, pair, note)}</figure>\n")


def placeholder(spec: EmbedSpec, lab_url: str) -> str:
    """``--allow-missing``: a visible stand-in, never a silent gap or an invented number."""
    return (f'<figure class="embed embed-missing" id="{_figure_id(spec)}">'
            f'<p class="embed-badges"><span class="badge badge-missing">no result yet</span></p>'
            f'<div class="embed-placeholder"><p>This {escape(spec.fence)} will show '
            f"<code>{escape(spec.experiment)}</code> once it has been run: "
            f"<code>chronicle lab run {escape(spec.experiment)}</code>.</p></div>"
            f'<figcaption class="provenance">No stored result for '
            f'<a href="{escape(lab_url)}">{escape(spec.experiment)}</a>.</figcaption>'
            "</figure>\n")
