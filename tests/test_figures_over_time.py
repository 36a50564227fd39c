"""Figures over time, from a real experiment run several times: pinned figures, history
charts and a post's update notes.

The ``level`` experiment is a shell script speaking the lab's protocol; its numbers come
from ``experiments/level.txt``, a declared input, so a test sets them (and changing them
changes the experiment's key) the way a changed guest image or kernel would.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chronicle.build import BuildOptions, build
from chronicle.errors import BuildErrors
from chronicle.hooks import standard_hooks
from tests.support import (
    lab_run,
    level_experiment,
    make_site,
    niced_work,
    set_level,
    write_post,
)

TODAY = datetime.now(UTC).strftime("%Y-%m-%d")


def built(root: Path) -> Path:
    # a fixed clock a day ahead, so the posts written today are published
    build(standard_hooks(BuildOptions(root=root, now=datetime.now(UTC) + timedelta(days=1))))
    return root / "output"


def page(out: Path, slug: str) -> str:
    return (out / TODAY[:4] / TODAY[5:7] / slug / "index.html").read_text(encoding="utf-8")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    level_experiment(make_site(tmp_path), 100)
    return tmp_path


def test_a_pinned_fence_keeps_its_run_after_a_newer_one_and_links_it(root):
    first = lab_run(root)
    write_post(root, "pinned", f"```table level\nresult: {first.id}\n```\n", date=TODAY)
    write_post(root, "newest", "```table level\n```\n", date=TODAY)
    out = built(root)
    assert first.id in page(out, "pinned") and "a newer run exists" not in page(out, "pinned")
    set_level(root, 200)
    newer = lab_run(root)
    out = built(root)
    pinned = page(out, "pinned")
    figure = pinned.split('<span class="embed-newer">')[0]
    assert first.id in figure and newer.id not in figure
    # the medians at level 100 (fast 104 ms, slow 204 ms), not those at 200 (204, 404)
    assert "104\u00a0ms" in figure and "404\u00a0ms" not in figure
    assert (f"a newer run exists, from {newer.started[:10]} "
            f'(<a href="/lab/level/#run-{newer.id}">run <code>{newer.id}</code></a>)') in pinned
    assert f'<tr id="run-{newer.id}">' in (out / "lab" / "level" / "index.html").read_text()
    assert newer.id in page(out, "newest") and "a newer run exists" not in page(out, "newest")


def test_a_history_renders_byte_identical_and_marks_the_run_whose_key_changed(root, tmp_path):
    lab_run(root)
    lab_run(root)
    set_level(root, 150)  # an input of the experiment: its key changes
    changed = lab_run(root)
    write_post(root, "trend", "```chart level\nmetric: boot_ms\nkind: history\n```\n",
               date=TODAY)
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    shown = page(built(root), "trend")
    assert shown == page(built(copy), "trend")  # each drew its own charts: same bytes
    figure = shown[shown.index('<figure class="embed embed-chart embed-history"'):]
    assert "key: inputs" in figure.split("</svg>")[0]  # the mark, drawn in the chart
    rows = [r for r in figure.split("<tr>") if "<code>2026" in r]
    assert [r.endswith("<td>inputs</td></tr>") for r in rows if ">fast<" in r] == \
        [False, False, True]
    assert changed.id in rows[4] and "<td>154</td>" in rows[4]  # fast at level 150
    assert "3 runs" in figure


def test_the_lab_page_shows_the_history_once_there_are_two_runs(root):
    lab_run(root)
    assert 'id="history"' not in (built(root) / "lab" / "level" / "index.html").read_text()
    lab_run(root)
    lab_page = (built(root) / "lab" / "level" / "index.html").read_text()
    assert 'id="history"' in lab_page and "embed-history" in lab_page
    assert "level: boot_ms over runs" in lab_page  # the chart's title, for screen readers


def test_an_update_note_follows_a_shifted_run_and_not_a_same_level_one(root):
    lab_run(root)
    # written a second after the first run: the run its author saw
    written = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    write_post(root, "noted", "```chart level\nmetric: boot_ms\nsubjects: [fast]\n```\n",
               date=TODAY)
    path = root / "posts" / f"{TODAY}-noted.md"
    path.write_text(path.read_text().replace(f"date: {TODAY}",
                                             f"date: {written:%Y-%m-%dT%H:%M:%SZ}"))
    time.sleep(max(0.0, (written - datetime.now(UTC)).total_seconds()) + 0.1)
    lab_run(root)  # the same level again
    out = built(root)
    assert "update-note" not in page(out, "noted")
    assert f"<updated>{written:%Y-%m-%dT%H:%M:%S}+00:00</updated>" in (out / "atom.xml").read_text()
    set_level(root, 150)
    with niced_work():  # the note says the machine was busy during the run
        shifted = lab_run(root)
    out = built(root)
    day = shifted.started[:10]
    niced = shifted.provenance["load"]["niced"]
    assert (f"<strong>Updated <time datetime=\"{day}\">{day}</time>:</strong> "
            f'<a href="/lab/level/#run-{shifted.id}">run <code>{shifted.id}</code></a> of '
            "<code>level</code> moved fast’s boot_ms from 104\u00a0ms to 154\u00a0ms "
            f"(regressed). Low-priority work took {niced:.0%} of the machine’s CPU time "
            "during that run") in page(out, "noted")
    feed = (out / "atom.xml").read_text()
    assert f"<updated>{shifted.finished[:19]}" in feed


def test_a_history_of_quick_runs_alone_is_an_error_naming_the_fence(root):
    # quick runs are shown while no full one exists, but a history leaves them out
    lab_run(root, "level", "--quick")
    lab_run(root, "level", "--quick")
    write_post(root, "trend", "```chart level\nmetric: boot_ms\nkind: history\n```\n",
               date=TODAY)
    with pytest.raises(BuildErrors) as caught:
        built(root)
    [error] = caught.value.errors
    assert "needs two good runs that measured it, and there is none" in error.message
    assert (error.path.name, error.line) == (f"{TODAY}-trend.md", 7)  # its metric: line
