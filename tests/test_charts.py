"""Charts: byte-identical SVG, accessible markup, CSS-coloured ink, site-wide colours, cache."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from chronicle.charts import (
    CHART_KINDS,
    KNOWN_SUBJECTS,
    PALETTE,
    Chart,
    ChartCache,
    Line,
    Panel,
    Series,
    Trend,
    assign_colours,
    draw_svg,
    subject_colour,
)


def chart(kind: str = "box", shift: float = 0.0, title: str = "Boot to init") -> Chart:
    if kind == "history":  # medians over three runs, the key changed at the third
        runs = ("2026-11-20\nab12cd3", "2026-11-21\nab12cd3", "2026-11-22\nef45ab6")
        lines = (Line("qemu-microvm", PALETTE[0], 0, ((0, 2550.0, 2530.0, 2570.0),
                                                      (1, 2560.0 + shift, 2540.0, 2580.0),
                                                      (2, 2900.0, 2870.0, 2930.0))),)
        return Chart(kind=kind, title=title, description="qemu-microvm over three runs.",
                     panels=(), trends=(Trend("boot_ms", "ms", runs, lines,
                                              ((2, "key: inputs"),)),))
    # xs: the instances of a density sweep, 1, 1, 2, 2, 4, …: read by kind line only
    xs = tuple(float(2 ** (i // 2)) for i in range(10))
    return Chart(kind=kind, title=title, description="qemu-microvm median 2,555 ms.", panels=(
        Panel("boot_ms", "ms", (
            Series("qemu-microvm", tuple(2500.0 + 10 * i + shift for i in range(10)), xs=xs),
            Series("incus-container", tuple(500.0 + 2 * i for i in range(10)), xs=xs),
        )),
    ), x="instances" if kind == "line" else "", x_unit="count" if kind == "line" else "")


def phases() -> Chart:
    """A boot in phases: the container has no kernel of its own, so no first phase."""
    return Chart(kind="stacked", title="Boot to app", description="phases", panels=(
        Panel("kernel_to_init_ms", "ms", (Series("qemu-microvm", (5300.0, 5400.0)),
                                          Series("incus-container", ()))),
        Panel("init_to_app_ms", "ms", (Series("qemu-microvm", (11000.0, 11200.0)),
                                       Series("incus-container", (260.0, 270.0)))),
        Panel("outside_ms", "ms", (Series("qemu-microvm", (750.0, 760.0)),
                                   Series("incus-container", (650.0, 700.0)))),
    ))


@pytest.mark.parametrize("kind", CHART_KINDS)
def test_the_same_chart_gives_the_same_bytes(kind):
    assert draw_svg(chart(kind)) == draw_svg(chart(kind))


def test_the_same_chart_gives_the_same_bytes_in_a_fresh_process():
    code = ("import sys; from tests.test_charts import chart; from chronicle.charts import "
            "draw_svg; sys.stdout.buffer.write(draw_svg(chart('strip')))")
    root = Path(__file__).resolve().parents[1]
    other = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                           check=True).stdout
    assert other == draw_svg(chart("strip"))


def test_the_same_stacked_chart_gives_the_same_bytes():
    assert draw_svg(phases()) == draw_svg(phases())


def test_a_stacked_chart_has_one_bar_per_subject_and_names_every_phase():
    svg = draw_svg(phases()).decode()
    for name in ("qemu-microvm", "incus-container", "kernel_to_init_ms", "init_to_app_ms",
                 "outside_ms", "median of each phase (ms)"):
        assert name in svg, name
    # a phase the subject lacks is no segment, not a segment of length zero
    whole = phases().panels[0].series[:1] + (Series("incus-container", (100.0,)),)
    more = Chart(kind="stacked", title="t", description="d",
                 panels=(Panel("kernel_to_init_ms", "ms", whole), *phases().panels[1:]))
    patches = re.compile(r'<g id="[^"]*patch_\d+"')
    assert len(patches.findall(draw_svg(more).decode())) == len(patches.findall(svg)) + 1


def test_a_line_chart_puts_the_x_metric_along_its_x_axis():
    svg = draw_svg(chart("line")).decode()
    assert "instances (count)" in svg and "boot_ms (ms)" in svg
    assert draw_svg(chart("line")) != draw_svg(chart("line", shift=5.0))


def test_svg_has_no_date_creator_or_xml_prolog():
    svg = draw_svg(chart()).decode()
    assert svg.startswith("<svg")
    assert "<dc:date>" not in svg and "Matplotlib" not in svg


def test_title_and_desc_are_the_first_children_and_label_the_image():
    svg = draw_svg(chart()).decode()
    opening = svg[:svg.index(">") + 1]
    assert 'role="img"' in opening
    ids = re.search(r'aria-labelledby="([^"]+) ([^"]+)"', opening).groups()
    after = svg[len(opening):]
    assert after.startswith(f'<title id="{ids[0]}">Boot to init</title>'
                            f'<desc id="{ids[1]}">qemu-microvm median 2,555 ms.</desc>')


def test_title_is_escaped():
    assert "<title id=\"" in draw_svg(chart(title="a < b & c")).decode()
    assert "a &lt; b &amp; c" in draw_svg(chart(title="a < b & c")).decode()


def test_text_and_axes_take_the_page_colour_on_a_transparent_background():
    svg = draw_svg(chart()).decode()
    assert "currentColor" in svg
    assert "#010203" not in svg
    assert "#ffffff" not in svg.lower() and "fill: white" not in svg


def test_axes_are_labelled_with_the_unit():
    assert "boot_ms (ms)" in draw_svg(chart()).decode()


def test_text_stays_text_for_screen_readers_and_search():
    svg = draw_svg(chart()).decode()
    assert ">qemu-microvm</text>" in svg and ">incus-container</text>" in svg


def test_each_subject_is_drawn_in_its_site_wide_colour():
    svg = draw_svg(chart("bar")).decode()
    assert subject_colour("qemu-microvm") in svg and subject_colour("incus-container") in svg


def test_known_subjects_have_fixed_distinct_colours():
    colours = [subject_colour(s) for s in KNOWN_SUBJECTS]
    assert colours == list(PALETTE[:len(KNOWN_SUBJECTS)])
    assert len(set(colours)) == len(colours)


def test_an_unknown_subject_gets_the_same_colour_every_time():
    assert subject_colour("kvmtool") == subject_colour("kvmtool")
    assert subject_colour("kvmtool") in PALETTE


def test_two_different_charts_share_no_element_id():
    ids_a = set(re.findall(r'id="([^"]+)"', draw_svg(chart()).decode()))
    ids_b = set(re.findall(r'id="([^"]+)"', draw_svg(chart(shift=1)).decode()))
    assert ids_a and ids_b and not ids_a & ids_b


def test_every_id_reference_points_inside_the_same_svg():
    svg = draw_svg(chart("cdf")).decode()
    ids = set(re.findall(r'id="([^"]+)"', svg))
    refs = set(re.findall(r'url\(#([^)]+)\)', svg)) | set(re.findall(r'href="#([^"]+)"', svg))
    assert refs and refs <= ids


def test_strip_jitter_is_seeded():
    assert draw_svg(chart("strip")) == draw_svg(chart("strip"))


def test_charts_told_apart_only_by_their_words_differ_only_there():
    # the second is drawn from the first's drawing: its own title and description stay
    first = draw_svg(chart(title="Boot to init"), key="k" * 20).decode()
    second = draw_svg(replace(chart(title="Boot to app"), description="Other words."),
                      key="k" * 20).decode()
    assert second == first.replace("Boot to init", "Boot to app").replace(
        "qemu-microvm median 2,555 ms.", "Other words.")
    assert "Boot to init" not in second


@pytest.mark.parametrize("kind", ["box", "strip", "bar", "cdf"])
def test_a_chart_drawn_after_others_of_its_shape_is_as_drawn_first(kind):
    # the axes of a shape are kept: what one chart set there must not reach the next
    earlier = chart(kind, shift=4000.0)
    limits = replace(earlier.panels[0], limits=(0.0, 9000.0))
    for other in (earlier, replace(earlier, panels=(limits,)),
                  replace(earlier, statistic="p95")):
        draw_svg(other)
    code = ("import sys; from tests.test_charts import chart; from chronicle.charts import "
            f"draw_svg; sys.stdout.buffer.write(draw_svg(chart({kind!r}, shift=31.5)))")
    root = Path(__file__).resolve().parents[1]
    first = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                           check=True).stdout
    assert draw_svg(chart(kind, shift=31.5)) == first


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        draw_svg(chart("pie"))


def test_cache_draws_once_and_a_new_cache_on_the_same_folder_draws_nothing(tmp_path):
    first = ChartCache(tmp_path / "charts")
    svg = first.svg(chart())
    first.svg(chart())
    assert first.draws == 1
    second = ChartCache(tmp_path / "charts")
    assert second.svg(chart()) == svg
    assert second.draws == 0 and second.hits == 1


def test_cache_redraws_when_the_data_changes(tmp_path):
    cache = ChartCache(tmp_path / "charts")
    cache.svg(chart())
    cache.svg(chart(shift=5))
    cache.svg(chart("cdf"))
    assert cache.draws == 3
    assert len(list((tmp_path / "charts").glob("*.svg"))) == 3


def test_a_deleted_cache_only_costs_a_redraw(tmp_path):
    ChartCache(tmp_path / "charts").svg(chart())
    for path in (tmp_path / "charts").glob("*.svg"):
        path.unlink()
    again = ChartCache(tmp_path / "charts")
    again.svg(chart())
    assert again.draws == 1


def test_site_colours_keep_known_slots_and_never_share_while_the_palette_lasts():
    colours = assign_colours(["subprocess", "posix_spawn", "qemu-microvm", "zz"])
    assert colours["qemu-microvm"] == subject_colour("qemu-microvm")
    others = [colours[s] for s in ("posix_spawn", "subprocess", "zz")]
    assert len(set(others) | set(colours[s] for s in KNOWN_SUBJECTS)) == len(KNOWN_SUBJECTS) + 3


def test_a_series_colour_overrides_the_fallback():
    one = Chart(kind="bar", title="t", description="d", panels=(
        Panel("m", "ms", (Series("x", (1.0, 2.0), "#123456"),)),))
    assert "#123456" in draw_svg(one).decode()


def test_a_build_with_no_chart_to_draw_never_imports_matplotlib(site_root):
    # importing matplotlib is a third of a second; a build that draws nothing (no chart,
    # or every chart cached) must not pay it, lab pages and search index included
    from tests.support import imported_by_a_build

    assert not imported_by_a_build(site_root, 'chronicle.labpages', 'matplotlib')
