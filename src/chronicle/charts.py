"""Stored samples → deterministic, accessible SVG charts, cached by content hash.

A :class:`Chart` is plain data (the values per subject and metric plus how to draw
them). :func:`draw_svg` turns it into SVG bytes with matplotlib's object API (no
pyplot, so no global figure state), and :class:`ChartCache` keeps each drawing under
``.chronicle/charts/<hash>.svg`` so an unchanged chart is never drawn twice.

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

from chronicle.embed_fences import CHART_KINDS as CHART_KINDS  # the one list of kinds
from chronicle.lab.stats import summarize
from chronicle.swap import atomic_write

if TYPE_CHECKING:
    import numpy as np
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
# Text, axes and grid are drawn in this colour, then swapped for currentColor.
_INK = "#010203"
_RC = {
    "svg.hashsalt": "chronicle",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "text.color": _INK,
    "axes.edgecolor": _INK,
    "axes.labelcolor": _INK,
    "xtick.color": _INK,
    "ytick.color": _INK,
    "grid.color": _INK,
    "grid.alpha": 0.18,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "path.simplify": False,
}
# matplotlib's rcParams are process-global: one drawing at a time.
_DRAW_LOCK = threading.Lock()
_JITTER_SEED = 20261126


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
    """This file's bytes and matplotlib's version: change either and every chart redraws."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        source = Path(__file__).read_bytes()
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
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    with _DRAW_LOCK, matplotlib.rc_context(_RC):
        figure = _figure(chart)
        buffer = io.BytesIO()
        if not isinstance(figure.canvas, FigureCanvasSVG):  # a kept figure has its own
            FigureCanvasSVG(figure)
        figure.savefig(buffer, format="svg", transparent=True,
                       metadata={"Date": None, "Creator": None})
    return buffer.getvalue().decode("utf-8")


def _figure(chart: Chart) -> Figure:
    if chart.kind == "history":
        return _history_figure(chart)
    subjects = max(len(p.series) for p in chart.panels) if chart.panels else 1
    if chart.compact:
        width, per_panel = 3.2, 0.8
    elif chart.kind in ("cdf", "line"):
        width, per_panel = 7.0, 2.8
    else:
        width, per_panel = 7.0, 0.9 + 0.42 * subjects
    from matplotlib.figure import Figure

    if chart.kind == "stacked":  # every panel is a segment of the same bars
        figure = Figure(figsize=(width, per_panel + 0.5), layout="constrained")
        _draw_stacked(figure.subplots(), chart)
        return figure
    size = (width, per_panel * len(chart.panels) + 0.1)
    if chart.kind == "line":  # its legend sits above its axes: constrained layout
        figure = Figure(figsize=size, layout="constrained")  # finds it room
        axes = figure.subplots(len(chart.panels), 1, squeeze=False)[:, 0]
        for ax, panel in zip(axes, chart.panels, strict=True):
            _draw_line(ax, panel, chart)
        return figure
    figure, axes = _shape(chart.kind, len(chart.panels), size)
    for ax, panel in zip(axes, chart.panels, strict=True):
        _emptied(ax)
        _DRAWERS[chart.kind](ax, panel, chart)
        ax.set_xlabel(_axis_label(panel))
        if panel.limits is not None:
            ax.set_xlim(*panel.limits)
    _fit(figure, axes)
    return figure


@functools.lru_cache(maxsize=16)
def _shape(kind: str, panels: int, size: tuple[float, float]) -> tuple[Figure, list]:
    """A figure and its axes for box, strip, bar and cdf charts of one size, kept for
    the process: a chart of the same shape empties the axes and draws its data there.

    Making the figure and its axes (their ticks, labels, spines) took a fifth of each
    chart's drawing; matplotlib still recomputes the ticks and labels for each chart's
    data, and the chart's bytes are those of a fresh figure (test)."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    FigureCanvasSVG(figure)
    axes = list(figure.subplots(panels, 1, squeeze=False)[:, 0])
    for ax in axes:
        ax.grid(axis="x")
        ax.set_axisbelow(True)
    return figure, axes


def _emptied(ax) -> None:
    """``ax`` as a new one is: no data, no legend, limits and colours automatic."""
    for container in list(ax.containers):  # a bar's and an error bar's parts
        container.remove()
    for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.texts]:
        artist.remove()
    if ax.legend_ is not None:
        ax.legend_.remove()
    ax.relim()
    ax.autoscale(True)
    ax.set_prop_cycle(None)


# The fixed layout's sizes, in points: matplotlib's own tick length and pads, and the
# 3 pt that constrained layout leaves around the figure.
_EDGE = 3.0
_TICK_PAD = 3.5
_LABEL_PAD = 4.0


def _fit(figure: Figure, axes: list) -> None:
    """Place panels stacked top to bottom, each leaving exactly the room its tick labels
    and axis labels take, measured from their text.

    Constrained layout finds the same margins by laying the whole figure out and drawing
    it twice; for axes whose only text is their tick and axis labels (legends inside),
    measuring those strings gives the answer at a fraction of the cost.
    """
    import matplotlib
    from matplotlib.ticker import FixedFormatter

    width, height = (float(v) * 72 for v in figure.get_size_inches())
    line = _text_size("lp")[1]
    left = right = _EDGE
    rooms = []  # each panel's room below and above its axes, and its y label's offset
    for ax in axes:
        formatter = ax.yaxis.get_major_formatter()
        if isinstance(formatter, FixedFormatter):  # subjects' names, without tick marks
            labels, tick, top = list(formatter.seq), 0.0, 0.0
        else:
            low, high = sorted(ax.get_ylim())
            labels = formatter.format_ticks([t for t in ax.yaxis.get_majorticklocs()
                                             if low <= t <= high])
            # the top number is centred on the axes' top edge
            tick, top = matplotlib.rcParams["ytick.major.size"], line / 2
        names = max((_text_size(text)[0] for text in labels), default=0.0)
        beside = tick + (names + _TICK_PAD if names else 0.0)
        y_label = beside + _LABEL_PAD
        if ax.get_ylabel():
            beside += line + _LABEL_PAD
        left = max(left, _EDGE + beside)
        x_label = matplotlib.rcParams["xtick.major.size"] + _TICK_PAD + line + _LABEL_PAD
        below = x_label + line if ax.get_xlabel() else x_label - _LABEL_PAD
        rooms.append((below, top, x_label, y_label))
    slot = (height - _EDGE) / len(axes)

    def place() -> None:
        for index, (ax, (below, above, x_label, y_label)) in enumerate(
                zip(axes, rooms, strict=True)):
            y0 = height - (index + 1) * slot + below
            y1 = height - index * slot - _EDGE - above
            ax.set_position([left / width, y0 / height, (width - left - right) / width,
                             (y1 - y0) / height])
            # the axis labels where matplotlib would put them, below and beside the
            # tick labels: placed, they spare it measuring every tick label again
            ax.xaxis.set_label_coords(0.5, -x_label / (y1 - y0))
            ax.yaxis.set_label_coords(-y_label / (width - left - right), 0.5)

    # the x tick labels are centred on their ticks, so the first and last may reach
    # past the axes; where they would leave the figure, the axes narrow (twice: the
    # ticks of the narrower axes may differ)
    for _ in range(2):
        place()
        left, right = _x_overhang(axes, left, right, width)
    place()


def _x_overhang(axes: list, left: float, right: float,
                width: float) -> tuple[float, float]:
    """``left`` and ``right`` widened so that no x tick label leaves the figure."""
    span = width - left - right
    for ax in axes:
        low, high = ax.get_xlim()
        locs = [t for t in ax.xaxis.get_majorticklocs() if low <= t <= high]
        if not locs:
            continue
        labels = ax.xaxis.get_major_formatter().format_ticks(locs)
        for loc, label in ((locs[0], labels[0]), (locs[-1], labels[-1])):
            half = _text_size(label)[0] / 2
            at = left + (loc - low) / (high - low) * span
            left = max(left, left + _EDGE + half - at)
            right = max(right, right + at + half + _EDGE - width)
    return left, right


@functools.lru_cache(maxsize=4096)  # the same names and numbers, chart after chart
def _text_size(text: str) -> tuple[float, float]:
    """Width and height in points of one line of text in the charts' font, as matplotlib
    lays it out."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    font = FontProperties(family=_RC["font.family"], size=_RC["font.size"])
    width, height, _ = text_to_path.get_text_width_height_descent(text, font, ismath=False)
    return width, height


def _axis_label(panel: Panel) -> str:
    return f"{panel.metric} ({panel.unit})" if panel.unit else panel.metric


def _positions(panel: Panel) -> list[int]:
    """Subjects top to bottom in the order given, on the y axis (long names stay legible)."""
    return list(range(len(panel.series), 0, -1))


def _label_subjects(ax, panel: Panel, compact: bool) -> None:
    # After drawing: boxplot() would otherwise replace the labels with numbers.
    # A compact chart sits under its subject's name: the label would only take room.
    labels = [""] * len(panel.series) if compact else [s.subject for s in panel.series]
    ax.set_yticks(_positions(panel), labels)
    ax.set_ylim(0.4, len(panel.series) + 0.6)
    ax.tick_params(axis="y", length=0)


def _draw_box(ax, panel: Panel, chart: Chart) -> None:
    positions = _positions(panel)
    boxes = ax.boxplot([s.values for s in panel.series], positions=positions,
                       orientation="horizontal", widths=0.55, patch_artist=True,
                       showfliers=True, medianprops={"color": _INK, "linewidth": 1.6},
                       whiskerprops={"color": _INK}, capprops={"color": _INK},
                       flierprops={"markeredgecolor": _INK, "markersize": 4})
    for patch, series in zip(boxes["boxes"], panel.series, strict=True):
        patch.set_facecolor(series.color)
        patch.set_alpha(0.85)
        patch.set_edgecolor(_INK)
    _label_subjects(ax, panel, chart.compact)


def _draw_strip(ax, panel: Panel, chart: Chart) -> None:
    import numpy as np  # with matplotlib: only to draw (see _code_version)
    positions = _positions(panel)
    rng = np.random.default_rng(_JITTER_SEED)
    for y, series in zip(positions, panel.series, strict=True):
        jitter = rng.uniform(-0.18, 0.18, size=len(series.values))
        ax.scatter(series.values, y + jitter, s=16, color=series.color,
                   alpha=0.8, linewidths=0)
        if series.values:
            median = float(np.median(series.values))
            ax.plot([median, median], [y - 0.3, y + 0.3], color=_INK, linewidth=1.6)
    _label_subjects(ax, panel, chart.compact)


def _draw_bar(ax, panel: Panel, chart: Chart) -> None:
    positions = _positions(panel)
    for y, series in zip(positions, panel.series, strict=True):
        if not series.values:
            continue
        summary = summarize(series.values)
        value = getattr(summary, chart.statistic)  # median, mean, min or p95
        ax.barh(y, value, height=0.55, color=series.color, alpha=0.9)
        if chart.statistic == "median":
            ax.errorbar(value, y, xerr=[[value - summary.median_low],
                                        [summary.median_high - value]],
                        fmt="none", ecolor=_INK, elinewidth=1.3, capsize=4)
    ax.set_xlim(left=0)
    _label_subjects(ax, panel, chart.compact)


def _draw_cdf(ax, panel: Panel, chart: Chart) -> None:
    import numpy as np
    for series in panel.series:
        values = np.sort(np.asarray(series.values, dtype=float))
        if values.size == 0:
            continue
        fractions = np.arange(1, values.size + 1) / values.size
        ax.step(np.concatenate([[values[0]], values]), np.concatenate([[0.0], fractions]),
                where="post", color=series.color, linewidth=1.8,
                label=series.subject)
    ax.set_ylabel("fraction of runs")
    ax.set_ylim(0, 1.02)
    ax.grid(True, axis="y")  # a kept axes has it on already: no toggle
    ax.legend(loc="lower right", fontsize=9)


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
    import numpy as np
    for line in trend.lines:
        x, median, low, high = (np.array(column, dtype=float) for column in zip(*line.points,
                                                                               strict=True))
        dash, marker = _LINE_STYLES[line.style % len(_LINE_STYLES)]
        ax.errorbar(x, median, yerr=[median - low, high - median], color=line.colour,
                    linestyle=dash, marker=marker, markersize=4.5, linewidth=1.6,
                    elinewidth=1.1, capsize=3, label=line.label)
    for x, changed in trend.marks:
        # where the key changed, the line may move for that reason: say which part
        ax.axvline(x - 0.5, color=_INK, linestyle=(0, (2, 2)), linewidth=0.9)
        ax.text(x - 0.45, 0.97, changed, transform=ax.get_xaxis_transform(), rotation=90,
                va="top", ha="left", fontsize=7.5)
    step = max(1, -(-len(trend.runs) // 10))  # ten labels at most: they stay legible
    ticks = list(range(0, len(trend.runs), step))
    ax.set_xticks(ticks, [trend.runs[i] for i in ticks], fontsize=8)
    ax.set_xlim(-0.6, len(trend.runs) - 0.4)
    ax.set_ylabel(_axis_label(Panel(trend.metric, trend.unit, ())))
    ax.grid(axis="y")
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def _statistic(values: np.ndarray, statistic: str) -> float:
    import numpy as np
    if statistic == "p95":
        return float(np.percentile(values, 95))
    return float({"median": np.median, "mean": np.mean, "min": np.min}[statistic](values))


def _draw_line(ax, panel: Panel, chart: Chart) -> None:
    """Each subject's statistic per distinct x, joined, over every sample as a dot."""
    import numpy as np
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
    ax.set_ylabel(_axis_label(panel))
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
    import numpy as np
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
                    color=colour, edgecolor=_INK, linewidth=0.4,
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


_DRAWERS = {"box": _draw_box, "strip": _draw_strip, "bar": _draw_bar, "cdf": _draw_cdf}


_ID = re.compile(r'\bid="([^"]+)"')


def _finish_svg(svg: str, chart: Chart, key: str) -> str:
    """Drop the XML prolog, colour by CSS, scope ids, add title/desc and ARIA."""
    svg = svg[svg.index("<svg"):]
    svg = svg.replace(_INK, "currentColor")
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
