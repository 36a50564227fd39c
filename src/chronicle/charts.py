"""Stored samples → deterministic, accessible SVG charts, cached by content hash.

A :class:`Chart` is plain data (the values per subject and metric plus how to draw
them). :func:`draw_svg` turns it into SVG bytes: box, strip, bar and cdf charts written
directly (:mod:`chronicle.chart_svg`, with matplotlib's ticks and font metrics), line,
stacked and history charts with matplotlib's object API (no pyplot, so no global figure
state). :class:`ChartCache` keeps each drawing under ``.chronicle/charts/<hash>.svg`` so
an unchanged chart is never drawn twice.

What makes the SVG fit a page:

- **Deterministic.** A fixed ``svg.hashsalt``, no date or creator metadata, and ids
  rewritten with the chart's own hash: the same chart gives the same bytes in any
  process, and two charts inlined on one page never share an id.
- **Light and dark.** The background is transparent and every text, axis and grid line
  is drawn in a sentinel colour that is then replaced by ``currentColor``, so the page's
  CSS colours the chart. Subject colours are mid-tones readable on both backgrounds.
- **Accessible.** ``role="img"`` with ``<title>`` and ``<desc>`` as the first children,
  referenced by ``aria-labelledby``; text stays text (``svg.fonttype = none``).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import threading
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from html import escape
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chronicle.chart_svg import INK, SIMPLE_KINDS, axis_label
from chronicle.chart_svg import draw as draw_simple
from chronicle.embed_fences import CHART_KINDS as CHART_KINDS  # the one list of kinds
from chronicle.swap import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# Subject colours, the same on every page of the site. Known subjects get a fixed slot
# so the site's two main contenders keep their colours whatever else a chart shows;
# any other subject takes a slot from a hash of its name (stable across builds and
# machines, unlike Python's salted hash()). The tones are Okabe–Ito-like mid-tones that
# keep contrast on white and on near-black backgrounds.
KNOWN_SUBJECTS = (
    "qemu-microvm",
    "microvm-run",
    "incus-container",
    "incus-vm",
    "firecracker",
    "cloud-hypervisor",
)
PALETTE = (
    "#d55e00",  # vermilion
    "#e69f00",  # orange
    "#3b8fd0",  # blue
    "#009e73",  # bluish green
    "#cc79a7",  # reddish purple
    "#56b4e9",  # sky blue
    "#9a8f3a",  # olive
    "#8c7bd0",  # violet
    "#e15759",  # coral red
    "#4aa39a",  # teal
)
_RC = {
    "svg.hashsalt": "chronicle",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "text.color": INK,
    "axes.edgecolor": INK,
    "axes.labelcolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "grid.color": INK,
    "grid.alpha": 0.18,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "path.simplify": False,
}
# matplotlib's rcParams are process-global: one drawing at a time.
_DRAW_LOCK = threading.Lock()


def subject_colour(subject: str) -> str:
    """The fallback colour of one subject, from its name alone."""
    if subject in KNOWN_SUBJECTS:
        return PALETTE[KNOWN_SUBJECTS.index(subject)]
    return PALETTE[zlib.crc32(subject.encode("utf-8")) % len(PALETTE)]


def assign_colours(subjects: Iterable[str]) -> dict[str, str]:
    """Colours for every subject of a site: known subjects keep their fixed slot, the
    others take the free slots in name order, so two subjects of one site never share a
    colour while the palette lasts (hashing names alone can collide)."""
    colours = {s: PALETTE[i] for i, s in enumerate(KNOWN_SUBJECTS)}
    free = PALETTE[len(KNOWN_SUBJECTS):]
    others = sorted(set(subjects) - set(KNOWN_SUBJECTS))
    for index, subject in enumerate(others):
        colours[subject] = free[index] if index < len(free) else subject_colour(subject)
    return colours


@dataclass(frozen=True)
class Series:
    """One subject's measured values of one metric."""

    subject: str
    values: tuple[float, ...]
    colour: str = ""  # the site's colour for the subject; empty: subject_colour()
    xs: tuple[float, ...] = ()  # a line chart's x for each value (the same run's)

    @property
    def color(self) -> str:
        return self.colour or subject_colour(self.subject)


@dataclass(frozen=True)
class Panel:
    """One metric: one axes of the chart."""

    metric: str
    unit: str
    series: tuple[Series, ...]
    limits: tuple[float, float] | None = None  # shared value range (compare columns)


@dataclass(frozen=True)
class Line:
    """One subject on one host and accelerator across runs: a history's line."""

    label: str
    colour: str
    style: int  # which dash and marker: a subject's lines on other hosts differ by it
    points: tuple[tuple[int, float, float, float], ...]  # (run index, median, low, high)


@dataclass(frozen=True)
class Trend:
    """One metric over runs: one axes of a history chart."""

    metric: str
    unit: str
    runs: tuple[str, ...]  # each run's tick label, oldest first
    lines: tuple[Line, ...]
    marks: tuple[tuple[int, str], ...] = ()  # (run index, what changed in the key)


@dataclass(frozen=True)
class Chart:
    kind: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    statistic: str = "median"
    compact: bool = False  # small figure inside a comparison column
    trends: tuple[Trend, ...] = ()  # what a history draws instead of panels
    x: str = ""  # a line chart's x axis: the metric it reads and its unit
    x_unit: str = ""

    def key(self) -> str:
        """Content hash: the data, the spec, and the code and library that draw it."""
        spec = json.dumps(asdict(self), sort_keys=True, default=list).encode("utf-8")
        digest = hashlib.sha256(spec)
        digest.update(_code_version().encode("ascii"))
        return digest.hexdigest()[:20]


@dataclass
class ChartCache:
    """``<root>/.chronicle/charts/<hash>.svg``; ``draws`` counts real drawings."""

    folder: Path
    draws: int = 0
    hits: int = 0
    _memory: dict[str, str] = field(default_factory=dict)

    def svg(self, chart: Chart) -> str:
        key = chart.key()
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        path = self.folder / f"{key}.svg"
        try:
            text = path.read_text(encoding="utf-8")
            self.hits += 1
        except (OSError, UnicodeDecodeError):
            text = draw_svg(chart, key).decode("utf-8")
            self.draws += 1
            atomic_write(path, text.encode("utf-8"))
        self._memory[key] = text
        return text


_CODE_VERSION: str | None = None


def _code_version() -> str:
    """The bytes of this file and of chart_svg.py, and matplotlib's version: change any
    and every chart redraws."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        here = Path(__file__)
        source = here.read_bytes() + here.with_name("chart_svg.py").read_bytes()
        # the installed version from its metadata: importing matplotlib costs ~0.35 s, and
        # a build whose charts are all cached never needs it
        _CODE_VERSION = hashlib.sha256(source).hexdigest()[:16] + "-mpl" + version("matplotlib")
    return _CODE_VERSION


def draw_svg(chart: Chart, key: str | None = None) -> bytes:
    if chart.kind not in CHART_KINDS:
        raise ValueError(f"unknown chart kind {chart.kind!r}")
    key = key or chart.key()
    # the title and description only enter the SVG in _finish_svg: charts differing in
    # nothing else (a blog's posts name the same data in their own words; a tenth of
    # the bench blog's charts) are drawn once per process
    return _finish_svg(_drawing(replace(chart, title="", description="")), chart,
                       key).encode("utf-8")


@functools.lru_cache(maxsize=256)  # a drawing is 10–60 kB
def _drawing(chart: Chart) -> str:
    import matplotlib  # here, not at the top: see _code_version

    with _DRAW_LOCK, matplotlib.rc_context(_RC):
        if chart.kind in SIMPLE_KINDS:
            return draw_simple(chart, *_size(chart))
        from matplotlib.backends.backend_svg import FigureCanvasSVG

        figure = _figure(chart)
        buffer = io.BytesIO()
        FigureCanvasSVG(figure)
        figure.savefig(buffer, format="svg", transparent=True,
                       metadata={"Date": None, "Creator": None})
    return buffer.getvalue().decode("utf-8")


def _size(chart: Chart) -> tuple[float, float]:
    """Width and height in inches: a panel's height grows with its subjects."""
    subjects = max(len(p.series) for p in chart.panels) if chart.panels else 1
    if chart.compact:
        width, per_panel = 3.2, 0.8
    elif chart.kind in ("cdf", "line"):
        width, per_panel = 7.0, 2.8
    else:
        width, per_panel = 7.0, 0.9 + 0.42 * subjects
    if chart.kind == "stacked":  # every panel is a segment of the same bars
        return width, per_panel + 0.5
    return width, per_panel * len(chart.panels) + 0.1


def _figure(chart: Chart) -> Figure:
    """A line, stacked or history chart: legends outside the axes, which constrained
    layout finds room for."""
    if chart.kind == "history":
        return _history_figure(chart)
    from matplotlib.figure import Figure

    figure = Figure(figsize=_size(chart), layout="constrained")
    if chart.kind == "stacked":
        _draw_stacked(figure.subplots(), chart)
        return figure
    axes = figure.subplots(len(chart.panels), 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, chart.panels, strict=True):
        _draw_line(ax, panel, chart)
    return figure


# a history tells subjects apart by colour, and a subject's hosts and accelerators by
# dash and marker
_LINE_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))


def _history_figure(chart: Chart) -> Figure:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 3.0 * len(chart.trends) + 0.3), layout="constrained")
    axes = figure.subplots(len(chart.trends), 1, squeeze=False)[:, 0]
    for ax, trend in zip(axes, chart.trends, strict=True):
        _draw_history(ax, trend)
    return figure


def _draw_history(ax, trend: Trend) -> None:
    for line in trend.lines:
        x, median, low, high = (np.array(column, dtype=float) for column in zip(*line.points,
                                                                               strict=True))
        dash, marker = _LINE_STYLES[line.style % len(_LINE_STYLES)]
        ax.errorbar(x, median, yerr=[median - low, high - median], color=line.colour,
                    linestyle=dash, marker=marker, markersize=4.5, linewidth=1.6,
                    elinewidth=1.1, capsize=3, label=line.label)
    for x, changed in trend.marks:
        # where the key changed, the line may move for that reason: say which part
        ax.axvline(x - 0.5, color=INK, linestyle=(0, (2, 2)), linewidth=0.9)
        ax.text(x - 0.45, 0.97, changed, transform=ax.get_xaxis_transform(), rotation=90,
                va="top", ha="left", fontsize=7.5)
    step = max(1, -(-len(trend.runs) // 10))  # ten labels at most: they stay legible
    ticks = list(range(0, len(trend.runs), step))
    ax.set_xticks(ticks, [trend.runs[i] for i in ticks], fontsize=8)
    ax.set_xlim(-0.6, len(trend.runs) - 0.4)
    ax.set_ylabel(axis_label(Panel(trend.metric, trend.unit, ())))
    ax.grid(axis="y")
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def _statistic(values: np.ndarray, statistic: str) -> float:
    if statistic == "p95":
        return float(np.percentile(values, 95))
    return float({"median": np.median, "mean": np.mean, "min": np.min}[statistic](values))


def _draw_line(ax, panel: Panel, chart: Chart) -> None:
    """Each subject's statistic per distinct x, joined, over every sample as a dot."""
    for series in panel.series:
        xs = np.asarray(series.xs, dtype=float)
        ys = np.asarray(series.values, dtype=float)
        if ys.size == 0:
            continue
        ax.scatter(xs, ys, s=14, color=series.color, alpha=0.55, linewidths=0)
        levels = np.unique(xs)
        ax.plot(levels, [_statistic(ys[xs == x], chart.statistic) for x in levels],
                marker="o", markersize=4, color=series.color, linewidth=1.8,
                label=series.subject)
    ax.set_xlabel(f"{chart.x} ({chart.x_unit})" if chart.x_unit else chart.x)
    ax.set_ylabel(axis_label(panel))
    ax.set_ylim(bottom=0)
    ax.grid(axis="y")
    # above the axes: lines may run anywhere inside them
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=min(2, len(panel.series)),
              fontsize=9)


# Phases are told apart by colour within one bar; these slots are the palette's end, the
# ones known subjects do not take, so a phase is not read as a subject.
_SEGMENT_COLOURS = PALETTE[len(KNOWN_SUBJECTS):] + PALETTE[:len(KNOWN_SUBJECTS)]


def _draw_stacked(ax, chart: Chart) -> None:
    """One bar per subject, one segment per panel (a phase): the statistic of each."""
    subjects = list(dict.fromkeys(s.subject for p in chart.panels for s in p.series))
    positions = dict(zip(subjects, range(len(subjects), 0, -1), strict=True))
    ends = dict.fromkeys(subjects, 0.0)
    for index, panel in enumerate(chart.panels):
        colour = _SEGMENT_COLOURS[index % len(_SEGMENT_COLOURS)]
        label: str | None = panel.metric  # once per phase, on its first drawn segment
        for series in panel.series:
            if not series.values:
                continue
            value = _statistic(np.asarray(series.values, dtype=float), chart.statistic)
            ax.barh(positions[series.subject], value, left=ends[series.subject], height=0.55,
                    color=colour, edgecolor=INK, linewidth=0.4,
                    label=label)
            label = None
            ends[series.subject] += value
    ax.set_yticks(list(positions.values()), subjects)
    ax.set_ylim(0.4, len(subjects) + 0.6)
    ax.tick_params(axis="y", length=0)
    ax.set_xlim(left=0)
    units = sorted({p.unit for p in chart.panels})
    ax.set_xlabel(f"{chart.statistic} of each phase" + (f" ({units[0]})" if len(units) == 1
                                                         else ""))
    ax.grid(axis="x")
    ax.set_axisbelow(True)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=min(2, len(chart.panels)),
              fontsize=9)


_ID = re.compile(r'\bid="([^"]+)"')


def _finish_svg(svg: str, chart: Chart, key: str) -> str:
    """Drop the XML prolog, colour by CSS, scope ids, add title/desc and ARIA."""
    svg = svg[svg.index("<svg"):]
    svg = svg.replace(INK, "currentColor")
    prefix = f"c{key[:10]}-"
    for old in sorted(set(_ID.findall(svg)), key=len, reverse=True):
        new = prefix + old
        svg = (svg.replace(f'id="{old}"', f'id="{new}"')
                  .replace(f"#{old})", f"#{new})")
                  .replace(f'href="#{old}"', f'href="#{new}"'))
    # Size comes from CSS (width: 100%); the viewBox keeps the aspect ratio.
    svg = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", svg, count=1)
    title_id, desc_id = f"{prefix}title", f"{prefix}desc"
    opening_end = svg.index(">") + 1
    opening = svg[:opening_end - 1] + (
        f' role="img" aria-labelledby="{title_id} {desc_id}" class="chart-svg">')
    head = (f'<title id="{title_id}">{escape(chart.title)}</title>'
            f'<desc id="{desc_id}">{escape(chart.description)}</desc>')
    return opening + head + svg[opening_end:]
