"""The benchmark's corpus generator, and a smoke run of the harness (no timing asserted)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from bench import corpus

from chronicle.content import read_post

ROOT = Path(__file__).resolve().parent.parent


def test_same_seed_gives_identical_posts():
    assert corpus.make_corpus(6, seed=3) == corpus.make_corpus(6, seed=3)


def test_a_post_does_not_depend_on_corpus_size():
    assert corpus.make_corpus(8)[:3] == corpus.make_corpus(3)


def test_another_seed_gives_other_text():
    assert corpus.make_post(0, seed=1).body != corpus.make_post(0, seed=2).body


def test_posts_have_about_800_words_of_prose():
    counts = [corpus.prose_word_count(post.body) for post in corpus.make_corpus(12)]
    assert all(720 <= count <= 880 for count in counts), counts


def test_tags_are_one_to_four_from_a_pool_of_thirty():
    assert len(set(corpus.TAG_POOL)) == 30
    for post in corpus.make_corpus(20):
        assert 1 <= len(post.tags) <= 4
        assert len(set(post.tags)) == len(post.tags)
        assert set(post.tags) <= set(corpus.TAG_POOL)


def test_code_block_language_rotates_and_has_twenty_lines():
    posts = corpus.make_corpus(8)
    assert [post.language for post in posts] == ["python", "nix", "bash", "yaml"] * 2
    for post in posts:
        fence = re.search(rf"^```{post.language}\n(.*?)\n```$", post.body, re.S | re.M)
        assert fence is not None
        assert len(fence.group(1).split("\n")) == corpus.CODE_LINES


def test_body_has_table_list_links_footnote_and_headings():
    for post in corpus.make_corpus(4):
        body = post.body
        assert re.search(r"^\| .* \|\n\|---\|---:\|---:\|$", body, re.M)
        assert len(re.findall(r"^- ", body, re.M)) == 5
        assert len(re.findall(r"\]\(https://example\.org/", body)) == 3
        assert "[^1]" in body and re.search(r"^\[\^1\]: ", body, re.M)
        assert 2 <= len(re.findall(r"^#{2,3} ", body, re.M)) <= 3


def test_chronicle_reads_the_chronicle_source(tmp_path):
    post = corpus.make_post(5)
    [path] = corpus.write_posts(tmp_path / "posts", [post], "chronicle")
    parsed = read_post(path, ZoneInfo("UTC"))
    assert (parsed.title, parsed.summary) == (post.title, post.summary)
    assert sorted(parsed.tags) == sorted(post.tags)
    assert parsed.date == post.date
    assert parsed.slug == post.slug
    assert parsed.body.strip() == post.body.strip()


def test_hugo_source_has_yaml_front_matter_with_the_slug():
    post = corpus.make_post(2)
    _, front, body = corpus.hugo_source(post).split("---\n", 2)
    meta = yaml.safe_load(front)
    assert (meta["title"], meta["slug"], meta["tags"]) == (post.title, post.slug, list(post.tags))
    assert body.strip() == post.body.strip()


def test_pelican_source_has_header_lines_then_the_body():
    post = corpus.make_post(3)
    head, body = corpus.pelican_source(post).split("\n\n", 1)
    headers = dict(line.split(": ", 1) for line in head.splitlines())
    assert headers["Title"] == post.title
    assert headers["Tags"].split(", ") == list(post.tags)
    assert headers["Slug"] == post.slug
    assert headers["Date"] == f"{post.date:%Y-%m-%d %H:%M}"
    assert body == post.body


def test_editing_a_post_changes_it_each_time(tmp_path):
    [path] = corpus.write_posts(tmp_path, [corpus.make_post(0)], "chronicle")
    before = path.read_text()
    corpus.edit_post(path, "1")
    once = path.read_text()
    corpus.edit_post(path, "2")
    assert before != once != path.read_text()
    assert read_post(path, ZoneInfo("UTC")).body.rstrip().endswith("steady sentence.")


def test_quick_floor_run_writes_valid_results(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "floor",
         "--scratch", str(tmp_path / "work"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "out" / "latest.json").read_text())
    [row] = data["rows"]
    assert (row["tool"], row["case"], row["n"]) == ("floor", "full", 200)
    assert row["median_s"] > 0 and row["peak_mib"] > 0
    assert "| floor | full | 200 |" in (tmp_path / "out" / "latest.md").read_text()
    # the floor's output was wiped before each timed build by moving it aside, and
    # everything moved aside was deleted once the timing was over
    assert (tmp_path / "work" / "n200" / "floor" / "output").is_dir()
    assert not (tmp_path / "work" / "trash").exists()


def test_wiping_moves_folders_aside_until_the_trash_is_emptied(tmp_path):
    from bench import sites

    site = tmp_path / "site"
    (site / "output").mkdir(parents=True)
    (site / "output" / "index.html").write_text("old")
    sites.use_trash(tmp_path / "trash")
    try:
        sites._wipe(site / "output", site / "missing")
        assert not (site / "output").exists()
        [moved] = (tmp_path / "trash").iterdir()
        assert (moved / "index.html").read_text() == "old"
        sites.empty_trash()
        assert not (tmp_path / "trash").exists()
    finally:
        sites.use_trash(None)


def test_the_peers_venv_is_remade_when_it_runs_another_python(tmp_path):
    import venv

    from bench.run import _same_python

    ours = tmp_path / "ours"
    venv.create(ours, with_pip=False)
    assert _same_python(ours)
    other = tmp_path / "other"
    other.mkdir()
    (other / "pyvenv.cfg").write_text("home = /opt/another/python/bin\nversion = 3.11.0\n")
    assert not _same_python(other)
    assert not _same_python(tmp_path / "missing")


def test_every_third_post_ends_with_three_to_seven_figures_the_same_each_time():
    from bench import figures

    posts = figures.with_figures(corpus.make_corpus(30))
    assert posts == figures.with_figures(corpus.make_corpus(30))
    plain = corpus.make_corpus(30)
    for post, before in zip(posts, plain, strict=True):
        fences = re.findall(r"^```(chart|table|compare) (bench-exp-\d\d)$", post.body, re.M)
        if post.index % 3:
            assert post == before
        else:
            assert post.body.startswith(before.body) and 3 <= len(fences) <= 7
    used = {name for post in posts for name in re.findall(r"^```\w+ (bench-exp-\d\d)$",
                                                           post.body, re.M)}
    assert len(used) > 6  # drawn from the dozen experiments, not one or two


def test_figure_corpus_builds_fresh_and_a_replaced_result_is_another_run(tmp_path):
    from bench import figures, sites

    site = tmp_path / "site"
    (site / "site").mkdir(parents=True)
    (site / "site" / "site.toml").write_text(
        (sites.PEERS / "chronicle" / "site.toml").read_text())
    corpus.write_posts(site / "posts", figures.with_figures(corpus.make_corpus(4)), "chronicle")
    stored = figures.write_experiments(site)
    assert len(stored) == figures.EXPERIMENTS
    command = [sys.executable, "-m", "chronicle"]
    valid = subprocess.run([*command, "lab", "validate", "--root", str(site)],
                           capture_output=True, text=True, timeout=120)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    built = subprocess.run([*command, "build", "--strict", "--root", str(site)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr  # --strict: no stale result, no warning
    again = figures.write_result(site, figures.make_experiments()[0], 1)
    assert again != stored[0] and again.parent == stored[0].parent
    assert json.loads(again.read_text())["samples"] != json.loads(stored[0].read_text())[
        "samples"]


def test_the_figure_blog_of_another_seed_shows_that_seed_s_experiments(tmp_path):
    from bench import figures, sites

    from chronicle.lab.results import ResultStore

    tool = sites.chronicle_tool(tmp_path, corpus.make_corpus(6, 11), figures=True, seed=11)
    shapes = {e.name: e.subjects for e in figures.make_experiments(11)}
    assert shapes != {e.name: e.subjects for e in figures.make_experiments(7)}
    store = ResultStore(tool.site / "experiments" / "results")
    assert {name: tuple(store.shown(name).subjects) for name in shapes} == shapes
