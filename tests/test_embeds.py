"""chart/table/compare fences: parsing, every error path, badges, captions, feeds' date."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chronicle.build import BuildOptions, build
from chronicle.embed_fences import fill, parse_fence
from chronicle.errors import BuildError, BuildErrors
from chronicle.figure_parts import shown_ratio
from chronicle.figures import Lab, Resolution, resolve_figures
from chronicle.hooks import standard_hooks
from chronicle.lab.results import Sample
from chronicle.lab.stats import Ratio
from chronicle.markdown import render_markdown
from tests.support import (
    figure_renderer,
    fresh_experiment,
    fresh_key_parts,
    make_result,
    make_site,
    store_edited,
    store_result,
    write_post,
    write_script,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A site whose boot-to-init script exists and whose stored result is fresh."""
    fresh_experiment(tmp_path)
    return tmp_path


def shown(root: Path, markdown: str, path: Path | None = None, base_path: str = "/",
          allow_missing: bool = False) -> tuple[str, Resolution]:
    """What the build does with one post's figures: parse, resolve, draw into the body."""
    path = path or root / "posts" / "2026-11-01-p.md"
    # The body starts on line 5 of the file, after four lines of front matter.
    rendered = render_markdown(markdown, path, first_line=5)
    found = resolve_figures({path: rendered.embeds}, Lab.of_site(root, base_path),
                            allow_missing)
    if found.errors:
        raise found.errors[0] if len(found.errors) == 1 else BuildErrors(list(found.errors))
    renderer = figure_renderer(root)
    return fill(rendered.html, lambda i: renderer.figure(found.figures[path][i])), found


def post(root: Path, markdown: str, **options) -> str:
    return shown(root, markdown, **options)[0]


def error_of(root: Path, markdown: str, **options) -> BuildError:
    with pytest.raises(BuildError) as caught:
        post(root, markdown, **options)
    return caught.value


# -- parsing ----------------------------------------------------------------------------

def test_chart_fence_reads_metric_kind_subjects_and_title():
    spec = parse_fence("chart", "boot-to-init",
                       "metric: boot_ms\nkind: cdf\nsubjects: [b, a]\ntitle: Boot\n", 3, Path("p"))
    assert (spec.metrics, spec.kind, spec.subjects, spec.title) == (("boot_ms",), "cdf",
                                                                     ("b", "a"), "Boot")
    assert spec.statistic == "median"


def test_compare_fence_defaults_to_a_strip_chart_and_every_metric():
    spec = parse_fence("compare", "x", "left: a\nright: b\n", 1, Path("p"))
    assert (spec.left, spec.right, spec.kind, spec.metrics) == ("a", "b", "strip", ())


def test_key_lines_point_into_the_file():
    spec = parse_fence("chart", "x", "kind: box\nmetric: m\n", 10, Path("p"))
    assert spec.line_of("metric") == 12


# -- every error names the post and the line --------------------------------------------

@pytest.mark.parametrize(("markdown", "line", "words"), [
    ("```chart nope\nmetric: boot_ms\n```\n", 5, ["unknown experiment 'nope'", "boot-to-init"]),
    ("```chart\nmetric: boot_ms\n```\n", 5, ["needs an experiment name"]),
    ("\n```chart boot-to-init\nmetric: boot_ms\ncolour: red\n```\n", 8,
     ["unknown key 'colour'", "metric, metrics, subjects, kind"]),
    ("```chart boot-to-init\nmetric: boot_ms\nkind: pie\n```\n", 7,
     ["'kind' must be one of box, strip, bar, cdf", "'pie'"]),
    ("```chart boot-to-init\nmetric: disk_mib\n```\n", 6,
     ["unknown metric 'disk_mib'", "boot_ms, pss_mib"]),
    ("```chart boot-to-init\nmetric: boot_ms\nsubjects: [incus-vm]\n```\n", 7,
     ["unknown subject 'incus-vm'", "incus-container, qemu-microvm"]),
    ("```chart boot-to-init\nmetric: boot_ms\nsubjects: incus-container\n```\n", 7,
     ["'subjects' must be a list"]),
    ("```chart boot-to-init\nmetric: boot_ms\nkind: [box\n```\n", 8, ["bad YAML"]),
    ("```chart boot-to-init\n- boot_ms\n```\n", 6, ["must be a YAML mapping"]),
    ("```chart boot-to-init\nkind: box\n```\n", 5, ["needs 'metric: NAME'"]),
    ("```chart boot-to-init\nmetric: boot_ms\nmetrics: [pss_mib]\n```\n", 7,
     ["'metric' or 'metrics', not both"]),
    ("```chart boot-to-init\nmetric: boot_ms\nstatistic: mode\n```\n", 7,
     ["'statistic' must be one of median, mean, min, p95"]),
    ("```table boot-to-init\nkind: box\n```\n", 6, ["unknown key 'kind' in ```table"]),
    ("```compare boot-to-init\nleft: qemu-microvm\n```\n", 5, ["needs 'right: SUBJECT'"]),
    ("```compare boot-to-init\nleft: qemu-microvm\nright: qemu-microvm\n```\n", 7,
     ["two different subjects"]),
    ("```compare boot-to-init\nleft: qemu-microvm\nright: firecracker\n```\n", 7,
     ["unknown subject 'firecracker'"]),
    ("```chart boot-to-init\nmetric: boot_ms\nresult: 20261119T000000Z-abcdef12\n```\n", 7,
     ["no run '20261119T000000Z-abcdef12' of boot-to-init",
      "nearest: 20261120T100000Z-abcdef12", "lab history boot-to-init"]),
    ("```table boot-to-init\nas_of: 2026-11-19\n```\n", 6,
     ["no good run of boot-to-init on or before 2026-11-19", "first good run is from 2026-11-20"]),
    ("```table boot-to-init\nas_of: 19/11/2026\n```\n", 6,
     ["'as_of' must be a date, YYYY-MM-DD", "'19/11/2026'"]),
    ("```table boot-to-init\nas_of: 2026-11-31\n```\n", 6, ["'as_of' must be a date"]),
    ("```table boot-to-init\nresult: 20261120T100000Z-abcdef12\nas_of: 2026-11-20\n```\n", 7,
     ["'result' or 'as_of', not both"]),
    ("```chart boot-to-init\nmetric: boot_ms\nkind: history\n```\n", 6,
     ["history of boot_ms in boot-to-init needs two good runs", "there is one",
      "chronicle lab run --force boot-to-init"]),
    ("```compare boot-to-init\nleft: qemu-microvm\nright: incus-container\nkind: history\n```\n",
     8, ["kind: history is for ```chart"]),
    ("```chart boot-to-init\nmetric: boot_ms\nkind: line\n```\n", 7,
     ["kind: line needs 'x: METRIC'"]),
    ("```chart boot-to-init\nmetric: boot_ms\nx: pss_mib\n```\n", 7,
     ["'x' is for kind: line only, not kind: box"]),
    ("```chart boot-to-init\nmetric: boot_ms\nkind: line\nx: instances\n```\n", 8,
     ["unknown metric 'instances'", "boot_ms, pss_mib"]),
    ("```chart boot-to-init\nmetric: boot_ms\nkind: line\nx: [pss_mib]\n```\n", 8,
     ["'x' must be a metric name"]),
    ("```compare boot-to-init\nleft: qemu-microvm\nright: incus-container\nkind: stacked\n"
     "```\n", 8, ["kind: stacked is for ```chart"]),
])
def test_a_bad_embed_is_an_error_naming_post_line_and_choices(root, markdown, line, words):
    error = error_of(root, markdown)
    assert error.path == root / "posts" / "2026-11-01-p.md"
    assert error.line == line
    for word in words:
        assert word in error.message


def test_every_bad_embed_of_a_post_is_reported_together(root):
    with pytest.raises(BuildErrors) as caught:
        post(root, "```chart nope\nmetric: a\n```\n\n```table boot-to-init\nmetric: b\n```\n")
    assert [e.line for e in caught.value.errors] == [5, 10]


def test_one_bad_fence_in_two_posts_is_reported_in_each(root):
    fence = "```table boot-to-init\nmetrics: [disk_mib]\n```\n"
    paths = [root / "posts" / "2026-11-01-a.md", root / "posts" / "2026-11-02-b.md"]
    found = resolve_figures({p: render_markdown(fence, p, first_line=5).embeds
                             for p in paths}, Lab.of_site(root))
    assert [(e.path, e.line) for e in found.errors] == [(paths[0], 6), (paths[1], 6)]
    assert all("unknown metric 'disk_mib'" in e.message for e in found.errors)


def test_one_good_fence_in_two_posts_is_one_figure_shown_by_both(root):
    fence = "```table boot-to-init\nmetrics: [boot_ms]\n```\n"
    paths = [root / "posts" / "2026-11-01-a.md", root / "posts" / "2026-11-02-b.md"]
    found = resolve_figures({p: render_markdown(fence, p, first_line=5).embeds
                             for p in paths}, Lab.of_site(root))
    first, second = (found.figures[p] for p in paths)
    assert first == second and first[0].result is not None
    assert found.warnings == {paths[0]: (), paths[1]: ()}


def test_a_never_run_experiment_is_an_error_naming_the_command(tmp_path):
    write_script(tmp_path, "boot-to-http")
    error = error_of(tmp_path, "```chart boot-to-http\nmetric: boot_ms\n```\n")
    assert "no successful run yet" in error.message
    assert "chronicle lab run boot-to-http" in error.message
    assert "--allow-missing" in error.message
    assert error.line == 5


def test_a_failed_run_alone_counts_as_never_run(tmp_path):
    write_script(tmp_path)
    store_result(tmp_path, make_result(status="failed"))
    assert "no successful run" in error_of(tmp_path, "```table boot-to-init\n```\n").message


def test_allow_missing_renders_a_placeholder_instead(tmp_path):
    write_script(tmp_path, "boot-to-http")
    html = post(tmp_path, "```chart boot-to-http\nmetric: boot_ms\n```\n", allow_missing=True)
    assert 'class="embed embed-missing"' in html
    assert "no result yet" in html
    assert "chronicle lab run boot-to-http" in html
    assert 'href="/lab/boot-to-http/"' in html


def test_allow_missing_still_rejects_an_unknown_experiment(tmp_path):
    error = error_of(tmp_path, "```chart nope\nmetric: a\n```\n", allow_missing=True)
    assert "unknown experiment" in error.message


# -- what a figure shows ----------------------------------------------------------------

def test_chart_is_an_inline_svg_figure_with_a_data_table_and_provenance(root):
    html = post(root, "```chart boot-to-init\nmetric: boot_ms\nkind: bar\n```\n")
    assert html.count("<figure") == 1
    assert '<svg' in html and 'role="img"' in html
    assert '<details class="embed-data">' in html and 'class="data"' in html
    caption = html[html.index("<figcaption"):]
    for part in ["n = 10 per subject", "median with 95% bootstrap interval", "run 2026-11-20",
                 "Intel Xeon Platinum 8375C, Linux 6.1.0-28",
                 "qemu-microvm: TCG (emulated; host KVM is PVM)",
                 "incus-container: none (not a VM)", "20261120T100000Z-abcdef12",
                 'href="/lab/boot-to-init/"']:
        assert part in caption, part


def test_the_caption_names_the_lab_host_a_run_was_fetched_from(tmp_path):
    write_script(tmp_path)
    result = make_result(accelerator="kvm", key_parts=fresh_key_parts(tmp_path))
    store_result(tmp_path, replace(result, provenance={**result.provenance,
                                                       "lab_host": "kvmbox"}))
    html = post(tmp_path, "```table boot-to-init\n```\n")
    assert "host: kvmbox: Intel Xeon Platinum 8375C, Linux 6.1.0-28" in html


def test_host_picks_that_lab_host_s_run_and_the_default_is_the_newest(tmp_path):
    write_script(tmp_path)
    parts = fresh_key_parts(tmp_path)
    store_result(tmp_path, make_result(key_parts=parts))
    later = make_result(started="2026-11-21T10:00:00.000000Z", accelerator="kvm",
                        key_parts=parts)
    store_result(tmp_path, replace(later, provenance={**later.provenance,
                                                      "lab_host": "kvmbox"}))
    newest = post(tmp_path, "```table boot-to-init\n```\n")
    assert "host: kvmbox: " in newest and "20261121T100000Z" in newest
    local = post(tmp_path, "```table boot-to-init\nhost: local\n```\n")
    assert "host: kvmbox" not in local and "20261120T100000Z-abcdef12" in local
    assert "TCG (emulated" in local


def test_a_host_without_a_run_is_an_error_naming_the_hosts_with_runs(root):
    error = error_of(root, "```chart boot-to-init\nmetric: boot_ms\nhost: kvmbox\n```\n")
    assert error.line == 7
    assert "no successful run from host 'kvmbox' (hosts with runs: local)" in error.message
    assert "chronicle lab run --on kvmbox boot-to-init" in error.message


def test_a_side_s_host_without_a_run_is_an_error_at_the_side_s_line(root):
    error = error_of(root, "```compare boot-to-init\nleft: incus-container\n"
                           "right: {subject: qemu-microvm, host: a}\n```\n")
    assert error.line == 7
    assert "no successful run from host 'a' (hosts with runs: local)" in error.message


def test_subjects_keep_the_order_the_post_gives(root):
    html = post(root, "```table boot-to-init\nsubjects: [qemu-microvm, incus-container]\n```\n")
    assert html.index(">qemu-microvm<") < html.index(">incus-container<")


def test_a_stacked_chart_gives_a_bar_to_a_subject_that_lacks_one_phase(tmp_path):
    write_script(tmp_path)
    result = make_result(key_parts=fresh_key_parts(tmp_path))
    # the VM alone has a kernel of its own to boot: a phase the container cannot have
    kernel = tuple(Sample("qemu-microvm", "kernel_ms", 900.0 + run, "ms", run)
                   for run in range(1, 11))
    store_result(tmp_path, replace(result, samples=result.samples + kernel))
    html = post(tmp_path, "```chart boot-to-init\nkind: stacked\n"
                          "metrics: [kernel_ms, boot_ms]\n```\n")
    assert "embed-unmeasured" not in html  # the container is drawn, with one segment
    assert "qemu-microvm: kernel_ms 906 ms, boot_ms 2,555 ms (medians)." in html
    assert "incus-container: boot_ms 511 ms (medians)." in html
    assert 'class="not-applicable"' in html  # its kernel_ms row in the data table: a dash
    assert "median of each phase" in html


def test_a_line_chart_tables_every_pair_it_draws(root):
    html = post(root, "```chart boot-to-init\nkind: line\nx: pss_mib\nmetric: boot_ms\n```\n")
    assert "<th scope=\"col\">pss_mib</th>" in html
    # run 3 of the VM: pss_mib 203, boot_ms 2,530 — paired by run, in x order
    assert ("<tr><th scope=\"row\">qemu-microvm</th><td>boot_ms</td><td>203</td>"
            "<td>2,530</td><td>ms</td></tr>") in html
    assert html.count("<tr><th scope=\"row\">") == 20  # two subjects, ten runs each
    assert "median of the runs at each pss_mib" in html
    assert "boot_ms in ms against pss_mib: incus-container (pss_mib: boot_ms) 2.51: 502," \
        in html


def test_table_shows_median_interval_n_and_unit_for_every_metric(root):
    html = post(root, "```table boot-to-init\nmetrics: [boot_ms, pss_mib]\n```\n")
    assert "2,555\u00a0ms" in html  # median of 2510..2600
    assert "n=10" in html and "(MiB)" in html
    assert html.count('<th scope="row">') == 2


def test_warmup_samples_are_left_out_of_every_number(root):
    html = post(root, "```table boot-to-init\nmetric: boot_ms\n```\n")
    assert "9,000" not in html and "n=10" in html


def test_compare_puts_the_ratio_in_words_between_two_columns(root):
    html = post(root, "```compare boot-to-init\nleft: incus-container\nright: qemu-microvm\n"
                      "metrics: [boot_ms, pss_mib]\n```\n")
    assert html.index("compare-left") < html.index("compare-verdict") < html.index(
        "compare-right")
    assert "faster to boot" in html and "smaller in memory (PSS)" in html
    assert '<strong class="ratio">5.0×</strong>' in html
    assert html.count('class="chart chart-compact"') == 4


def test_compare_says_slower_when_the_left_subject_loses(root):
    html = post(root, "```compare boot-to-init\nleft: qemu-microvm\nright: incus-container\n"
                      "metric: boot_ms\n```\n")
    assert "slower to boot" in html and "5.0×" in html


def test_compare_admits_when_the_interval_spans_one(tmp_path):
    write_script(tmp_path)
    result = make_result(key_parts=fresh_key_parts(tmp_path))
    same = tuple(s if s.subject != "incus-container" or s.metric != "boot_ms" else
                 type(s)(s.subject, s.metric, 2500.0 + 10 * ((s.run * 7) % 10), s.unit, s.run)
                 for s in result.samples)
    store_result(tmp_path, type(result)(**{**result.__dict__, "samples": same}))
    html = post(tmp_path, "```compare boot-to-init\nleft: incus-container\n"
                          "right: qemu-microvm\nmetric: boot_ms\n```\n")
    assert "no clear difference" in html


def test_a_ratio_bound_just_above_one_is_printed_as_above_one():
    shown = shown_ratio(Ratio(1.2, 1.004, 1.4))
    assert (shown.ratio, shown.low, shown.high) == ("1.2", "1.004", "1.4")
    assert shown.clear
    assert shown_ratio(Ratio(1.2, 1.04, 1.4)).low == "1.04"  # not "1.2× [1.0, 1.4] faster"


def test_a_ratio_bound_just_below_one_is_printed_as_below_one():
    shown = shown_ratio(Ratio(1.1, 0.996, 1.3))
    assert shown.low == "0.996" and not shown.clear


def test_a_bound_that_prints_as_one_is_no_clear_difference():
    assert not shown_ratio(Ratio(1.1, 1 + 1e-9, 1.3)).clear


def test_ratios_away_from_one_keep_their_short_form():
    shown = shown_ratio(Ratio(13.2, 13.1, 134.6))
    assert (shown.ratio, shown.low, shown.high) == ("13.2", "13.1", "135")


# -- badges -----------------------------------------------------------------------------

def test_a_fresh_full_kvm_result_has_no_badges(tmp_path):
    write_script(tmp_path)
    store_result(tmp_path, make_result(accelerator="kvm", key_parts=fresh_key_parts(tmp_path)))
    html = post(tmp_path, "```table boot-to-init\n```\n")
    assert "badge" not in html
    assert "qemu-microvm: KVM" in html


def test_emulated_badge_when_a_subject_ran_under_tcg(root):
    html = post(root, "```chart boot-to-init\nmetric: boot_ms\n```\n")
    assert 'class="badge badge-emulated"' in html and "emulated (TCG)" in html
    assert "stale" not in html and "quick run" not in html


def test_no_emulated_badge_when_the_chart_shows_only_the_container(root):
    html = post(root, "```chart boot-to-init\nmetric: boot_ms\nsubjects: [incus-container]\n"
                      "```\n")
    assert "badge-emulated" not in html


def test_quick_badge_for_a_quick_run(tmp_path):
    write_script(tmp_path)
    store_result(tmp_path, make_result(quick=True, key_parts=fresh_key_parts(tmp_path)))
    assert 'class="badge badge-quick"' in post(tmp_path, "```table boot-to-init\n```\n")


def test_stale_badge_names_the_reason_when_the_script_changed(root):
    write_script(root, text=(root / "experiments" / "boot-to-init.py").read_text() + "# edit\n")
    html = post(root, "```table boot-to-init\n```\n")
    assert '<span class="badge badge-stale" title="script changed">stale</span>' in html


def test_unsupported_subject_shows_not_measured_with_its_reason(tmp_path):
    write_script(tmp_path)
    store_result(tmp_path, make_result(key_parts=fresh_key_parts(tmp_path),
                                       unsupported={"incus-vm": "no vhost_vsock here"}))
    html = post(tmp_path, "```chart boot-to-init\nmetric: boot_ms\n"
                          "subjects: [qemu-microvm, incus-container, incus-vm]\n```\n")
    assert "badge-unsupported" in html
    assert "not measured" in html and "on this host: no vhost_vsock here" in html
    assert "incus-vm: not run" in html


# -- build-level state ------------------------------------------------------------------

def test_stale_results_list_what_posts_show_and_warn_per_post(root):
    write_script(root, text=(root / "experiments" / "boot-to-init.py").read_text() + "# edit\n")
    path = root / "posts" / "a.md"
    _, found = shown(root, "```table boot-to-init\n```\n", path)
    [stale] = found.stale
    assert (stale.experiment, stale.reasons, stale.posts) == (
        "boot-to-init", ("script changed",), (path,))
    assert found.warnings[path] == (f"{path}: shows a stale result of boot-to-init "
                                    "(20261120T100000Z-abcdef12): script changed",)


def test_a_fresh_result_gives_no_warning(root):
    path = root / "posts" / "a.md"
    _, found = shown(root, "```table boot-to-init\n```\n", path)
    assert found.warnings[path] == () and found.stale == ()


def test_a_post_is_updated_by_a_significant_change_since_its_date_and_only_by_one(root):
    path = root / "posts" / "a.md"
    fence = render_markdown("```table boot-to-init\nmetric: boot_ms\n```\n", path).embeds
    posted = {path: datetime(2026, 11, 20, 12, tzinfo=UTC)}

    def resolved() -> Resolution:
        return resolve_figures({path: fence}, Lab.of_site(root), posted=posted)

    assert (resolved().updated, resolved().notes) == ({}, {})  # the run the post saw
    same = dict(key_parts=fresh_key_parts(root))
    store_result(root, make_result(started="2026-11-21T10:00:00.000000Z", **same))
    assert (resolved().updated, resolved().notes) == ({}, {})  # a re-run at the same level
    moved = store_result(root, make_result(started="2026-11-22T10:00:00.000000Z",
                                           finished="2026-11-22T10:05:00.000000Z",
                                           shift=1000.0, **same))
    store_result(root, make_result(started="2026-11-23T10:00:00.000000Z",
                                   finished="2026-11-23T10:05:00.000000Z", shift=1000.0,
                                   **same))
    found = resolved()
    # dated by the run that moved, not by the later one at its new level
    assert found.updated == {path: datetime(2026, 11, 22, 10, 5, tzinfo=UTC)}
    [note] = found.notes[path]
    assert (note.subject, note.metric, note.verdict, note.before, note.after, note.date,
            note.result_id) == ("qemu-microvm", "boot_ms", "regressed", "2,555\u00a0ms",
                                "3,555\u00a0ms", "2026-11-22", moved.id)
    assert note.url == f"/lab/boot-to-init/#run-{moved.id}"
    assert found.inputs.keys() == {"result:boot-to-init"}


def test_as_of_shows_the_newest_good_full_run_of_that_day_or_before(root):
    later = dict(key_parts=fresh_key_parts(root), shift=1000.0)
    store_result(root, make_result(started="2026-11-22T23:59:00.000000Z", **later))
    store_result(root, make_result(started="2026-11-23T00:30:00.000000Z", **later))
    store_result(root, make_result(started="2026-11-22T12:00:00.000000Z", quick=True))
    fence = "```table boot-to-init\nmetric: boot_ms\nas_of: {}\n```\n"
    assert "20261120T100000Z" in post(root, fence.format("2026-11-21"))
    # the quick run of the 22nd is newer, but a full run of that day is shown
    assert "20261122T235900Z" in post(root, fence.format("2026-11-22"))


def test_a_pinned_run_from_another_host_is_named_as_such(root):
    store_result(root, replace(make_result(started="2026-11-21T10:00:00.000000Z"),
                               provenance={**make_result().provenance, "lab_host": "kvmbox"}))
    error = error_of(root, "```table boot-to-init\nhost: local\n"
                           "result: 20261121T100000Z-abcdef12\n```\n")
    assert (error.line, error.message) == (
        7, "run 20261121T100000Z-abcdef12 of boot-to-init is from host 'kvmbox'")


def test_a_pin_to_the_newest_run_says_nothing_of_a_newer_one(root):
    assert "newer run" not in post(root, "```table boot-to-init\nas_of: 2026-12-01\n```\n")


def test_a_history_draws_a_line_per_host_unless_the_fence_names_one(root):
    kvm = make_result(started="2026-11-21T10:00:00.000000Z", accelerator="kvm",
                      key_parts=fresh_key_parts(root))
    store_result(root, replace(kvm, provenance={**kvm.provenance, "lab_host": "kvmbox"}))
    store_result(root, make_result(started="2026-11-22T10:00:00.000000Z",
                                   key_parts=fresh_key_parts(root)))
    fence = "```chart boot-to-init\nmetric: boot_ms\nkind: history\n{}```\n"
    both = post(root, fence.format(""))
    assert "qemu-microvm (local, tcg)" in both and "qemu-microvm (kvmbox, kvm)" in both
    local = post(root, fence.format("host: local\n"))
    assert "kvmbox" not in local and "2 runs, 2026-11-20 to 2026-11-22" in local


def test_a_pinned_history_ends_at_its_run_and_names_the_newer_one(root):
    for day in ("21", "22"):
        store_result(root, make_result(started=f"2026-11-{day}T10:00:00.000000Z",
                                       key_parts=fresh_key_parts(root)))
    html = post(root, "```chart boot-to-init\nmetric: boot_ms\nkind: history\n"
                      "as_of: 2026-11-21\n```\n")
    assert "2 runs, 2026-11-20 to 2026-11-21" in html
    assert "a newer run exists, from 2026-11-22" in html


def test_links_follow_the_base_path(root):
    html = post(root, "```table boot-to-init\n```\n", base_path="/blog/")
    assert 'href="/blog/lab/boot-to-init/"' in html


# -- a bad result file: the figure falls back to the run before it ---------------------

NEWER = "2026-11-21T10:00:00.000000Z"


@pytest.mark.parametrize(("old", "new", "problem"), [
    ('"value": 2510.0', '"value": NaN', "samples/1/value: nan is not a finite number"),
    ('"value": 2510.0', '"value": -2510.0', "samples/1/value: -2510.0 ms is a negative duration"),
    ('"host": {', '"host": "laptop", "x": {', "provenance/host: 'laptop' is not of type"),
])
def test_a_bad_newest_result_falls_back_to_the_run_before_with_a_note(root, old, new, problem):
    good = make_result(key_parts=fresh_key_parts(root))
    bad = store_edited(root, make_result(started=NEWER, key_parts=fresh_key_parts(root)),
                       old, new)
    path = root / "posts" / "2026-11-01-p.md"
    html, found = shown(root, "```chart boot-to-init\nmetric: boot_ms\n```\n", path)
    assert f"result <code>{good.id}</code>" in html
    assert "newer result file invalid: showing an earlier run" in html
    relative = bad.relative_to(root)
    (warning,) = found.warnings[path]
    assert warning.startswith(f"{path}: {relative} is not a valid result ({problem}")
    assert warning.endswith(f"showing the run before it, {good.id}")


def test_a_bad_file_with_no_good_run_left_is_the_missing_result_error(tmp_path):
    write_script(tmp_path)
    bad = store_edited(tmp_path, make_result(), '"value": 2510.0', '"value": Infinity')
    error = error_of(tmp_path, "```table boot-to-init\n```\n")
    assert error.message.startswith(
        f"experiment 'boot-to-init' has no successful run yet ({bad.relative_to(tmp_path)} "
        "is not a valid result: samples/1/value: inf is not a finite number)")
    assert (error.path, error.line) == (tmp_path / "posts" / "2026-11-01-p.md", 5)


def test_a_bad_newest_result_fails_a_strict_build(tmp_path):
    make_site(tmp_path)
    fresh_experiment(tmp_path)
    store_edited(tmp_path, make_result(started=NEWER), '"cores": 2', '"cores": "two"')
    write_post(tmp_path, "p", "```chart boot-to-init\nmetric: boot_ms\n```\n")
    options = BuildOptions(root=tmp_path, now=datetime(2026, 12, 1, tzinfo=UTC))
    report = build(standard_hooks(options))
    assert any("is not a valid result (provenance/host/cores" in w for w in report.warnings)
    with pytest.raises(BuildErrors, match="fatal with --strict"):
        build(standard_hooks(replace(options, strict=True, out=tmp_path / "strict")))
    assert not (tmp_path / "strict").exists()


def test_a_placeholder_for_a_bad_file_is_still_a_warning(tmp_path):
    write_script(tmp_path)
    bad = store_edited(tmp_path, make_result(), '"value": 2510.0', '"value": Infinity')
    path = tmp_path / "posts" / "2026-11-01-p.md"
    html, found = shown(tmp_path, "```table boot-to-init\n```\n", path, allow_missing=True)
    assert "no result yet" in html
    assert found.warnings[path] == (f"{path}: {bad.relative_to(tmp_path)} is not a valid result "
                                    "(samples/1/value: inf is not a finite number); boot-to-init "
                                    "has no valid run: a placeholder shown",)


def _one_table_twice(root: Path) -> tuple[str, str]:
    """The same table shown by two posts, on lines 5 and 7 of their files, drawn by one
    renderer: what one build process does for a blog that repeats a figure."""
    fence = "```table boot-to-init\nmetrics: [boot_ms]\n```\n"
    paths = [root / "posts" / "2026-11-01-a.md", root / "posts" / "2026-11-02-b.md"]
    bodies = [render_markdown(fence, paths[0], first_line=5),
              render_markdown("Two lines\nof prose.\n\n" + fence, paths[1], first_line=5)]
    found = resolve_figures({p: r.embeds for p, r in zip(paths, bodies, strict=True)},
                            Lab.of_site(root))
    renderer = figure_renderer(root)
    return tuple(fill(r.html, lambda i, p=p: renderer.figure(found.figures[p][i]))
                 for p, r in zip(paths, bodies, strict=True))


def test_a_figure_two_posts_show_keeps_each_post_s_own_id(root):
    first, second = _one_table_twice(root)
    assert 'id="table-boot-to-init-5"' in first and "-8" not in first
    assert 'id="table-boot-to-init-8"' in second and "-5" not in second
    figure = second[second.index("<figure"):]
    assert first.replace("-5", "-8") == figure


def test_a_site_template_that_reworks_the_id_still_gets_each_post_s_own(root):
    theme = Path(__file__).parent.parent / "themes" / "chronicle" / "templates" / "figures"
    own = (theme / "table.html").read_text().replace('id="{{ id }}"',
                                                     'id="{{ id }}" data-ref="{{ id|upper }}"')
    assert own != (theme / "table.html").read_text()
    (root / "site" / "templates" / "figures").mkdir(parents=True)
    (root / "site" / "templates" / "figures" / "table.html").write_text(own)
    first, second = _one_table_twice(root)
    assert 'data-ref="TABLE-BOOT-TO-INIT-5"' in first
    assert 'data-ref="TABLE-BOOT-TO-INIT-8"' in second


def test_a_post_dated_by_day_was_written_about_that_days_runs(tmp_path):
    # The stored run started at 10:00 on the post's day: a post dated by day alone may
    # have been written after it, so that run, not "none yet", is what its author saw.
    make_site(tmp_path)
    fresh_experiment(tmp_path)
    write_post(tmp_path, "seen", "```table boot-to-init\nmetric: boot_ms\n```\n",
               date="2026-11-20")
    store_result(tmp_path, make_result(started="2026-11-22T10:00:00.000000Z",
                                       finished="2026-11-22T10:05:00.000000Z", shift=1000.0,
                                       key_parts=fresh_key_parts(tmp_path)))
    build(standard_hooks(BuildOptions(root=tmp_path)))
    html = (tmp_path / "output" / "2026" / "11" / "seen" / "index.html").read_text()
    assert "update-note" in html and "2,555\u00a0ms to 3,555\u00a0ms" in html
    assert "<updated>2026-11-22T10:05:00+00:00</updated>" in (
        tmp_path / "output" / "atom.xml").read_text()
