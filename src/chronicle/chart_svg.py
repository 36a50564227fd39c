"""Box, strip, bar and cdf charts written as SVG directly, without matplotlib's figures.

These kinds are a few shapes on plain axes: drawing them through matplotlib's
``Figure`` costs ~30 ms a chart, nearly all of it in making and laying out the axes'
artists (ticks, labels, spines), and a blog of figures has hundreds of charts. Here the
shapes are written as SVG elements, and only matplotlib's small pieces are used: its
tick locator and number formatter (the axes number as matplotlib's would) and its font
metrics (the margins fit the labels). The look follows :mod:`chronicle.charts`'
matplotlib charts: the same sizes, pads, line widths and colours. Every length is in
points, y downwards as in SVG.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import TYPE_CHECKING

import numpy as np

from chronicle.lab.stats import summarize

if TYPE_CHECKING:
    from chronicle.charts import Chart, Panel

SIMPLE_KINDS = ("box", "strip", "bar", "cdf")
# Text, axes and grid are drawn in this colour (here and by matplotlib in
# chronicle.charts), then swapped for currentColor.
INK = "#010203"
_JITTER_SEED = 20261126

# matplotlib's defaults for what these charts show (rcParams), and constrained layout's
# 3 pt around the figure
_EDGE = 3.0
_TICK = 3.5
_TICK_PAD = 3.5
_LABEL_PAD = 4.0
_SIZE = 10.0  # font size of labels; a legend's is 9
_AXIS_WIDTH = 0.8
_GRID = "stroke-opacity: 0.18"
_MARGIN = 0.05  # of the data's range, on either side of it
_BOX_WIDTH = 0.55
_LEGEND_SIZE = 9.0


def draw(chart: Chart, width: float, height: float) -> str:
    """The SVG document of a box, strip, bar or cdf chart of ``width`` × ``height`` inches."""
    svg = _Canvas(width * 72, height * 72)
    panels = chart.panels
    slot = (svg.height - _EDGE) / len(panels)
    plots = [_Plot(chart, panel) for panel in panels]
    left = max(_EDGE + plot.beside() for plot in plots)
    right = _EDGE
    # the x tick labels are centred on their ticks: the first and last may reach past
    # the axes; where they would leave the figure, the axes narrow (twice: the ticks of
    # narrower axes may differ)
    for _ in range(2):
        for plot in plots:
            left, right = plot.keep_inside(left, right, svg.width)
    for index, plot in enumerate(plots):
        top = index * slot + _EDGE + plot.above()
        bottom = (index + 1) * slot - plot.below()
        plot.draw(svg, left, top, svg.width - right, bottom)
    return svg.document()


class _Plot:
    """One panel: its limits, ticks and labels, then its drawing."""

    def __init__(self, chart: Chart, panel: Panel):
        self.chart, self.panel, self.kind = chart, panel, chart.kind
        self.subjects = [s.subject for s in panel.series]
        # a bar shows a statistic (and the median's interval): each summarised once
        self.summaries = [summarize(s.values) if s.values and self.kind == "bar" else None
                          for s in panel.series]
        self.xlim = panel.limits or self._x_limits()
        self.numbered = self.kind == "cdf"  # else the y axis names the subjects
        self.ylim = (0.0, 1.02) if self.numbered else (0.4, len(self.subjects) + 0.6)

    def beside(self) -> float:
        """Room left of the axes: the y tick labels and the y axis label."""
        if self.numbered:
            labels = _numbers(self.ylim, 0.0)[1]  # every label: "0.0" … "1.0"
            return _TICK + _TICK_PAD + max(_width(t) for t in labels) + _LABEL_PAD + _line()
        if self.chart.compact:  # it sits under its subject's name
            return 0.0
        return _TICK_PAD + max((_width(s) for s in self.subjects), default=0.0)

    def below(self) -> float:
        return _TICK + _TICK_PAD + _line() + _LABEL_PAD + _line()

    def above(self) -> float:
        return _line() / 2 if self.numbered else 0.0  # "1.0" is centred on the top edge

    def keep_inside(self, left: float, right: float, width: float) -> tuple[float, float]:
        locs, labels = _numbers(self.xlim, width - left - right, vertical=False)
        if not locs:
            return left, right
        low, high = self.xlim
        for loc, label in ((locs[0], labels[0]), (locs[-1], labels[-1])):
            half = _width(label) / 2
            at = left + (loc - low) / (high - low) * (width - left - right)
            left = max(left, left + _EDGE + half - at)
            right = max(right, right + at + half + _EDGE - width)
        return left, right

    def draw(self, svg: _Canvas, x0: float, y0: float, x1: float, y1: float) -> None:
        low, high = self.xlim

        def x(value: float) -> float:
            return x0 + (value - low) / (high - low) * (x1 - x0)

        def y(value: float) -> float:
            return y1 - (value - self.ylim[0]) / (self.ylim[1] - self.ylim[0]) * (y1 - y0)

        clip = svg.clip(x0, y0, x1, y1)
        xs, x_labels = _numbers(self.xlim, x1 - x0, vertical=False)
        for loc in xs:  # the grid below everything
            svg.line(x(loc), y1, x(loc), y0, INK, _AXIS_WIDTH, _GRID, clip)
        if self.numbered:
            ys, y_labels = _numbers(self.ylim, y1 - y0)
            for loc in ys:
                svg.line(x0, y(loc), x1, y(loc), INK, _AXIS_WIDTH, _GRID, clip)
        getattr(self, f"_{self.kind}")(svg, x, y, clip)  # _box, _strip, _bar or _cdf
        svg.line(x0, y1, x0, y0, INK, _AXIS_WIDTH)  # spines: left and bottom
        svg.line(x0, y1, x1, y1, INK, _AXIS_WIDTH)
        baseline = _line() - _descent()
        for loc, label in zip(xs, x_labels, strict=True):
            svg.line(x(loc), y1, x(loc), y1 + _TICK, INK, _AXIS_WIDTH)
            svg.text(x(loc), y1 + _TICK + _TICK_PAD + baseline, label, "middle")
        labels_bottom = y1 + _TICK + _TICK_PAD + _line()
        offset = _numbers(self.xlim, x1 - x0, vertical=False, offset=True)
        if offset:
            svg.text(x1, labels_bottom + _LABEL_PAD + baseline, offset, "end")
        svg.text((x0 + x1) / 2, labels_bottom + _LABEL_PAD + baseline,
                 axis_label(self.panel), "middle")
        if self.numbered:
            for loc, label in zip(ys, y_labels, strict=True):
                svg.line(x0 - _TICK, y(loc), x0, y(loc), INK, _AXIS_WIDTH)
                svg.text(x0 - _TICK - _TICK_PAD, y(loc) + baseline / 2, label, "end")
            widest = max(_width(t) for t in y_labels)
            at = x0 - _TICK - _TICK_PAD - widest - _LABEL_PAD - _descent()
            svg.text(at, (y0 + y1) / 2, "fraction of runs", "middle", rotate=True)
        elif not self.chart.compact:
            for index, subject in enumerate(self.subjects):
                svg.text(x0 - _TICK_PAD, y(self._position(index)) + baseline / 2, subject,
                         "end")

    def _x_limits(self) -> tuple[float, float]:
        """The data's range with a margin either side, as matplotlib's autoscale gives;
        a bar starts at zero."""
        values = [v for s in self.panel.series for v in s.values]
        if self.kind == "bar":
            values = [0.0]
            for summary in filter(None, self.summaries):
                values.append(getattr(summary, self.chart.statistic))
                if self.chart.statistic == "median":
                    values += [summary.median_low, summary.median_high]
        if not values:
            return (0.0, 1.0)
        low, high = min(values), max(values)
        if low == high:  # one value: matplotlib widens a zero range by 5% either way
            return (low - 0.05 * abs(low), high + 0.05 * abs(high)) if low else (-0.05, 0.05)
        margin = _MARGIN * (high - low)
        return (0.0 if self.kind == "bar" else low - margin, high + margin)

    def _position(self, index: int) -> float:
        """Subjects top to bottom in the order given (long names stay legible)."""
        return float(len(self.subjects) - index)

    def _box(self, svg: _Canvas, x: Callable, y: Callable, clip: str) -> None:
        from matplotlib.cbook import boxplot_stats

        half = _BOX_WIDTH / 2
        for index, series in enumerate(self.panel.series):
            if not series.values:
                continue
            stats = boxplot_stats(np.asarray(series.values, dtype=float))[0]
            at = self._position(index)
            for end, whisker in ((stats["q1"], stats["whislo"]), (stats["q3"], stats["whishi"])):
                svg.line(x(end), y(at), x(whisker), y(at), INK, 1.0, clip=clip)
                svg.line(x(whisker), y(at - half / 2), x(whisker), y(at + half / 2), INK,
                         1.0, clip=clip)
            svg.rect(x(stats["q1"]), y(at + half), x(stats["q3"]), y(at - half),
                     series.color, 0.85, edge=INK, clip=clip)
            svg.line(x(stats["med"]), y(at - half), x(stats["med"]), y(at + half), INK, 1.6,
                     clip=clip)
            for value in stats["fliers"]:
                svg.circle(x(value), y(at), 2.0, "none", 1.0, edge=INK, clip=clip)

    def _strip(self, svg: _Canvas, x: Callable, y: Callable, clip: str) -> None:
        rng = np.random.default_rng(_JITTER_SEED)
        for index, series in enumerate(self.panel.series):
            at = self._position(index)
            jitter = rng.uniform(-0.18, 0.18, size=len(series.values))
            for value, shift in zip(series.values, jitter, strict=True):
                svg.circle(x(value), y(at + shift), 2.0, series.color, 0.8, clip=clip)
            if series.values:
                median = float(np.median(series.values))
                svg.line(x(median), y(at - 0.3), x(median), y(at + 0.3), INK, 1.6, clip=clip)

    def _bar(self, svg: _Canvas, x: Callable, y: Callable, clip: str) -> None:
        half = _BOX_WIDTH / 2
        for index, (series, summary) in enumerate(zip(self.panel.series, self.summaries,
                                                      strict=True)):
            if summary is None:
                continue
            at = self._position(index)
            value = getattr(summary, self.chart.statistic)  # median, mean, min or p95
            svg.rect(x(0.0), y(at + half), x(value), y(at - half), series.color, 0.9,
                     clip=clip)
            if self.chart.statistic == "median":
                low, high = x(summary.median_low), x(summary.median_high)
                svg.line(low, y(at), high, y(at), INK, 1.3, clip=clip)
                for end in (low, high):  # caps 8 pt tall, as errorbar(capsize=4) draws
                    svg.line(end, y(at) - 4.0, end, y(at) + 4.0, INK, 1.0, clip=clip)

    def _cdf(self, svg: _Canvas, x: Callable, y: Callable, clip: str) -> None:
        shown = []
        for series in self.panel.series:
            values = np.sort(np.asarray(series.values, dtype=float))
            if values.size == 0:
                continue
            points = [(x(values[0]), y(0.0))]
            for count, value in enumerate(values, start=1):
                points += [(x(value), points[-1][1]), (x(value), y(count / values.size))]
            svg.polyline(points, series.color, 1.8, clip=clip)
            shown.append(series)
        if shown:
            _legend(svg, shown, x(self.xlim[1]), y(0.0))


def _legend(svg: _Canvas, series: Sequence, right: float, bottom: float) -> None:
    """Lower right inside the axes, no frame: a line and a name per subject, as
    matplotlib's legend(loc="lower right", fontsize=9) places them."""
    size = _LEGEND_SIZE
    line = _line(size)
    pad = 0.5 * size + 0.4 * size  # the legend's pad from the axes plus its border pad
    handle, gap, spacing = 2.0 * size, 0.8 * size, 0.5 * size
    names = max(_width(s.subject, size) for s in series)
    x0 = right - pad - names - gap - handle
    top = bottom - pad - len(series) * line - (len(series) - 1) * spacing
    for index, one in enumerate(series):
        row = top + index * (line + spacing)
        middle = row + line / 2
        svg.line(x0, middle, x0 + handle, middle, one.color, 1.8)
        svg.text(x0 + handle + gap, row + line - _descent(size), one.subject, "start",
                 size=size)


def axis_label(panel: Panel) -> str:
    return f"{panel.metric} ({panel.unit})" if panel.unit else panel.metric




def _numbers(limits: tuple[float, float], length: float, vertical: bool = True,
             offset: bool = False):
    """The ticks matplotlib's AutoLocator puts on an axis of ``length`` points, and
    their labels by its ScalarFormatter (``offset``: the formatter's offset text)."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    low, high = limits
    # the tick space matplotlib gives an axis: three (x) or two (y) font sizes a tick
    space = math.floor(length / (_SIZE * (2 if vertical else 3))) if length else 9
    locator = MaxNLocator(nbins=max(1, min(space, 9)), steps=[1, 2, 2.5, 5, 10])
    # ticks a hair outside the view still show, as matplotlib's axis allows
    slack = (high - low) * 1e-10
    locs = [float(t) for t in locator.tick_values(low, high) if low - slack <= t <= high + slack]
    formatter = ScalarFormatter()
    formatter.create_dummy_axis()
    formatter.axis.set_view_interval(low, high)
    labels = formatter.format_ticks(locs)
    if offset:
        return formatter.get_offset()
    return locs, labels


def _width(text: str, size: float = _SIZE) -> float:
    return _metrics(text, size)[0]


def _line(size: float = _SIZE) -> float:
    """A line's height as matplotlib lays out one line of text."""
    return _metrics("lp", size)[1]


def _descent(size: float = _SIZE) -> float:
    return _metrics("lp", size)[2]


_METRICS: dict[tuple[str, float], tuple[float, float, float]] = {}


def _metrics(text: str, size: float) -> tuple[float, float, float]:
    """Width, height and descent in points of ``text`` in DejaVu Sans at ``size``."""
    known = _METRICS.get((text, size))
    if known is None:
        from matplotlib.font_manager import FontProperties
        from matplotlib.textpath import text_to_path

        font = FontProperties(family="DejaVu Sans", size=size)
        known = _METRICS[text, size] = text_to_path.get_text_width_height_descent(
            text, font, ismath=False)
    return known


def _n(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


class _Canvas:
    """The SVG elements of one chart, in drawing order."""

    def __init__(self, width: float, height: float):
        self.width, self.height = width, height
        self.parts: list[str] = []
        self.clips: list[str] = []

    def clip(self, x0: float, y0: float, x1: float, y1: float) -> str:
        name = f"clip{len(self.clips) + 1}"
        self.clips.append(f'<clipPath id="{name}"><rect x="{_n(x0)}" y="{_n(y0)}" '
                          f'width="{_n(x1 - x0)}" height="{_n(y1 - y0)}"/></clipPath>')
        return name

    def line(self, x0: float, y0: float, x1: float, y1: float, colour: str, width: float,
             extra: str = "", clip: str = "") -> None:
        self.polyline([(x0, y0), (x1, y1)], colour, width, extra, clip)

    def polyline(self, points: Sequence[tuple[float, float]], colour: str, width: float,
                 extra: str = "", clip: str = "") -> None:
        path = " ".join(f"{'L' if i else 'M'} {_n(px)} {_n(py)}"
                        for i, (px, py) in enumerate(points))
        style = f"fill: none; stroke: {colour}; stroke-width: {_n(width)}"
        self.parts.append(f'<path d="{path}"{_clipped(clip)} '
                          f'style="{style}{"; " + extra if extra else ""}"/>')

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour: str, opacity: float,
             edge: str = "", clip: str = "") -> None:
        stroke = f"; stroke: {edge}; stroke-width: 1" if edge else ""
        self.parts.append(
            f'<rect x="{_n(min(x0, x1))}" y="{_n(min(y0, y1))}" width="{_n(abs(x1 - x0))}" '
            f'height="{_n(abs(y1 - y0))}"{_clipped(clip)} '
            f'style="fill: {colour}; fill-opacity: {_n(opacity)}{stroke}"/>')

    def circle(self, cx: float, cy: float, radius: float, colour: str, opacity: float,
               edge: str = "", clip: str = "") -> None:
        fill = "fill: none" if colour == "none" else \
            f"fill: {colour}; fill-opacity: {_n(opacity)}"
        stroke = f"; stroke: {edge}; stroke-width: 1" if edge else ""
        self.parts.append(f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="{_n(radius)}"'
                          f'{_clipped(clip)} style="{fill}{stroke}"/>')

    def text(self, x: float, y: float, text: str, anchor: str, size: float = _SIZE,
             rotate: bool = False) -> None:
        turn = f' transform="rotate(-90 {_n(x)} {_n(y)})"' if rotate else ""
        self.parts.append(
            f'<text x="{_n(x)}" y="{_n(y)}"{turn} style="font-size: {_n(size)}px; '
            f"font-family: 'DejaVu Sans'; text-anchor: {anchor}; fill: {INK}\">"
            f"{escape(text, quote=False)}</text>")

    def document(self) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(self.width)}pt" '
                f'height="{_n(self.height)}pt" viewBox="0 0 {_n(self.width)} '
                f'{_n(self.height)}" version="1.1">\n'
                f'<defs><style type="text/css">*{{stroke-linejoin: round; '
                f'stroke-linecap: butt}}</style>{"".join(self.clips)}</defs>\n'
                + "\n".join(self.parts) + "\n</svg>\n")


def _clipped(clip: str) -> str:
    return f' clip-path="url(#{clip})"' if clip else ""
