"""The lab pages and whole builds with embeds: downloads, determinism, cache, feeds."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chronicle.build import BuildOptions, build
from chronicle.errors import BuildErrors
from chronicle.hooks import standard_hooks
from chronicle.lab.results import SAMPLE_COLUMNS
from tests.support import (
    drawn_charts,
    fresh_key_parts,
    make_result,
    make_site,
    store_edited,
    store_result,
    write_post,
    write_script,
)

NOW = datetime(2026, 11, 26, tzinfo=UTC)
SHOWCASE = """\
Text.

```chart boot-to-init
metric: boot_ms
kind: strip
```

```compare boot-to-init
left: incus-container
right: qemu-microvm
```
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_site(tmp_path)
    write_script(tmp_path)
    store_result(tmp_path, make_result(status="failed", started="2026-11-19T09:00:00.000000Z"))
    store_result(tmp_path, make_result(key_parts=fresh_key_parts(tmp_path)))
    write_post(tmp_path, "showcase", SHOWCASE)
    return tmp_path


def options(root: Path, **kwargs) -> BuildOptions:
    return standard_hooks(BuildOptions(root=root, now=NOW, **kwargs))


def output(root: Path, name: str) -> str:
    return (root / "output" / name).read_text(encoding="utf-8")


def test_lab_index_lists_every_experiment_with_status_and_latest_result(root):
    write_script(root, "boot-to-http")
    build(options(root))
    page = output(root, "lab/index.html")
    assert 'href="/lab/boot-to-init/"' in page and 'href="/lab/boot-to-http/"' in page
    assert "fresh" in page and "never run" in page
    assert "20261120T100000Z-abcdef12" in page


def test_lab_index_includes_results_whose_script_is_gone(root):
    store_result(root, make_result("old-experiment"))
    build(options(root))
    assert 'href="/lab/old-experiment/"' in output(root, "lab/index.html")
    assert "not in this site" in output(root, "lab/old-experiment/index.html")


def test_experiment_page_shows_runs_statistics_provenance_and_source(root):
    build(options(root))
    page = output(root, "lab/boot-to-init/index.html")
    assert page.count('<span class="status status-failed">failed</span>') == 1
    assert "20261119T090000Z-abcdef12" in page  # the failed run is listed too
    assert 'class="data stats"' in page and "2,555" in page  # median of qemu boot_ms
    assert "Intel(R) Xeon(R) Platinum 8375C" in page
    assert '<div class="highlight">' in page and "chronicle" in page
    assert page.count("<svg") == 2  # one chart per metric
    assert 'href="/lab/boot-to-init/samples.csv"' in page


def test_experiment_page_names_each_run_s_lab_host(root):
    fetched = make_result(started="2026-11-21T10:00:00.000000Z", accelerator="kvm")
    store_result(root, replace(fetched, provenance={**fetched.provenance, "lab_host": "kvmbox"}))
    build(options(root))
    page = output(root, "lab/boot-to-init/index.html")
    rows = [row for row in page.split("<tr") if "<th scope=\"row\"><code>2026" in row]
    assert ["kvmbox" in row for row in rows] == [True, False, False]  # newest first
    # each row is where a pinned figure's "newer run" note can link
    assert rows[0].startswith(' id="run-20261121T100000Z-abcdef12">')
    assert all("<td>local</td>" in row for row in rows[1:])


def test_experiment_page_says_how_busy_the_machine_was(root):
    busy = make_result(started="2026-11-21T10:00:00.000000Z")
    load = {"loadavg_start": [3.5, 2.0, 1.0], "loadavg_end": [4.25, 2.5, 1.0],
            "busy": 0.97, "niced": 0.64}
    store_result(root, replace(busy, provenance={**busy.provenance, "load": load}))
    build(options(root))
    page = output(root, "lab/boot-to-init/index.html")
    assert ("<dt>machine load</dt><dd>load average 3.5 at the start, 4.25 at the end; all "
            "cores 97% busy during the run, its own work included (64% in other, niced "
            "processes)</dd>") in page


def test_samples_json_equals_the_stored_samples(root):
    build(options(root))
    stored = json.loads(next((root / "experiments/results/boot-to-init").glob(
        "20261120*.json")).read_text())
    assert json.loads(output(root, "lab/boot-to-init/samples.json")) == stored["samples"]


def test_samples_csv_has_every_stored_sample_with_its_columns(root):
    build(options(root))
    rows = list(csv.DictReader(io.StringIO(output(root, "lab/boot-to-init/samples.csv"))))
    stored = json.loads(next((root / "experiments/results/boot-to-init").glob(
        "20261120*.json")).read_text())["samples"]
    assert list(rows[0]) == list(SAMPLE_COLUMNS)
    assert len(rows) == len(stored)
    for row, sample in zip(rows, stored, strict=True):
        assert (row["subject"], row["metric"], float(row["value"]), row["unit"],
                int(row["run"])) == (sample["subject"], sample["metric"], sample["value"],
                                     sample["unit"], sample["run"])
        assert row["warmup"] == ("true" if sample.get("warmup") else "false")
        assert row["phase"] == sample.get("phase", "")


def test_the_same_results_build_byte_identical_output(root, tmp_path_factory):
    build(options(root))
    first = {p.relative_to(root / "output"): p.read_bytes()
             for p in (root / "output").rglob("*") if p.is_file()}
    build(options(root))
    second = {p.relative_to(root / "output"): p.read_bytes()
              for p in (root / "output").rglob("*") if p.is_file()}
    assert first == second


def test_second_build_draws_no_chart(root):
    build(options(root))
    first = drawn_charts(root)
    assert first
    build(options(root, clean=True))
    assert drawn_charts(root) == first


def test_showcase_post_carries_the_chart_and_comparison(root):
    build(options(root))
    page = output(root, "2026/11/showcase/index.html")
    assert page.count('class="embed embed-chart"') == 1
    assert page.count('class="embed embed-compare"') == 1
    assert "faster to boot" in page


def test_feed_updated_moves_when_a_shown_number_moves_and_not_on_a_mere_rerun(root):
    write_post(root, "later", "```chart boot-to-init\nmetric: boot_ms\n```\n",
               date="2026-11-21")
    build(options(root))
    dates = re.findall(r"<updated>[^<]*</updated>", output(root, "atom.xml"))
    assert dates[0] == "<updated>2026-11-21T00:00:00+00:00</updated>"
    store_result(root, make_result(started="2026-11-25T08:00:00.000000Z",
                                   finished="2026-11-25T08:30:00.000000Z",
                                   key_parts=fresh_key_parts(root)))
    build(options(root))
    # the same numbers again: the figures show the new run, the dates stay
    assert re.findall(r"<updated>[^<]*</updated>", output(root, "atom.xml")) == dates
    assert "update-note" not in output(root, "2026/11/later/index.html")
    moved = store_result(root, make_result(started="2026-11-25T09:00:00.000000Z",
                                           finished="2026-11-25T09:30:00.000000Z",
                                           key_parts=fresh_key_parts(root), shift=1000.0))
    build(options(root))
    assert "<updated>2026-11-25T09:30:00" in output(root, "atom.xml")
    later = output(root, "2026/11/later/index.html")
    assert ("<strong>Updated <time datetime=\"2026-11-25\">2026-11-25</time>:</strong> "
            f'<a href="/lab/boot-to-init/#run-{moved.id}">run <code>{moved.id}</code></a> of '
            "<code>boot-to-init</code> moved qemu-microvm’s boot_ms from 2,555\u00a0ms to "
            "3,555\u00a0ms (regressed).") in later


def test_strict_build_fails_on_a_stale_embedded_result(root):
    write_script(root, text=(root / "experiments/boot-to-init.py").read_text() + "# edited\n")
    report = build(options(root))
    assert any("stale result of boot-to-init" in w for w in report.warnings)
    with pytest.raises(BuildErrors) as caught:
        build(options(root, strict=True))
    assert "script changed" in str(caught.value)


def test_build_with_a_never_run_experiment_needs_allow_missing(root):
    write_script(root, "boot-to-http")
    write_post(root, "later", "```table boot-to-http\n```\n")
    with pytest.raises(BuildErrors):
        build(options(root))
    build(options(root, allow_missing=True))
    assert "no result yet" in output(root, "2026/11/later/index.html")


def test_experiment_page_names_unsupported_subjects_once_with_the_reason(tmp_path):
    make_site(tmp_path)
    write_script(tmp_path)
    store_result(tmp_path, make_result(key_parts=fresh_key_parts(tmp_path),
                                       unsupported={"incus-vm": "no vhost_vsock here"}))
    build(options(tmp_path))
    page = output(tmp_path, "lab/boot-to-init/index.html")
    assert page.count("<strong>incus-vm</strong>: no vhost_vsock here") == 1
    assert '<th scope="row">incus-vm</th>' not in page


def test_experiment_page_names_a_bad_file_and_shows_the_run_before_it(root):
    bad = store_edited(root, make_result(started="2026-11-21T10:00:00.000000Z"),
                       '"value": 2510.0', '"value": NaN')
    build(options(root))
    page = output(root, "lab/boot-to-init/index.html")
    assert (f"{bad.relative_to(root)} is not a valid result, left out: samples/1/value: nan "
            "is not a finite number") in page
    assert "newer result file invalid: showing an earlier run" in page
    assert bad.stem not in page.replace(str(bad.relative_to(root)), "")
