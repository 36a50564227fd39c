"""Incremental builds equal clean builds, byte for byte, over a series of edits."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chronicle.build import BuildOptions, build
from chronicle.errors import BuildError, BuildErrors
from chronicle.guard import MARKER
from chronicle.hooks import standard_hooks
from tests.conftest import post_text, write
from tests.support import (
    lab_run,
    level_experiment,
    make_result,
    store_edited,
    store_result,
    write_script,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def run(root: Path, **kwargs):
    kwargs.setdefault("now", NOW)
    return build(standard_hooks(BuildOptions(root=root, **kwargs)))


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def stats(folder: Path) -> dict[str, tuple[int, int]]:
    """Each output file's inode and mtime (Chronicle's marker is not an output)."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MARKER}


def clean_tree(root: Path, tmp: Path) -> dict[str, bytes]:
    """The output of a clean build of a copy of ``root`` with no caches at all."""
    copy = tmp / "clean-copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".chronicle", "output"))
    run(copy)
    return tree(copy / "output")


def assert_equals_clean(root: Path, tmp: Path) -> None:
    incremental = tree(root / "output")
    clean = clean_tree(root, tmp)
    assert sorted(incremental) == sorted(clean)
    for name in clean:
        assert incremental[name] == clean[name], name


@pytest.fixture
def blog(site_root: Path) -> Path:
    run(site_root)
    return site_root


def test_no_change_build_writes_nothing(blog):
    before = stats(blog / "output")
    report = run(blog)
    assert (report.written, report.removed) == (0, 0)
    assert report.unchanged == report.files == len(before)
    assert stats(blog / "output") == before


def test_editing_one_post_rewrites_only_what_shows_it(blog):
    before = tree(blog / "output")
    post = blog / "posts" / "2025-03-01-first.md"
    post.write_text(post.read_text() + "\nOne more sentence about booting.\n")
    report = run(blog)
    after = tree(blog / "output")
    changed = {n for n in after if after[n] != before.get(n)}
    assert "2025/03/first/index.html" in changed
    # the post's text is on its page, in the feeds that carry it and in the search index
    assert changed <= {"2025/03/first/index.html", "atom.xml", "tags/boot/atom.xml",
                       "search.json"}
    assert report.written == len(changed)
    assert report.unchanged == report.files - report.written


def test_editing_one_post_renders_only_the_pages_that_show_it(blog, monkeypatch):
    # a page whose inputs all hash as the full build recorded them is not rendered again
    # (written or not): here the second post's tag page and the about page
    from chronicle.render import PageJob

    rendered: list[str] = []
    render = PageJob.render
    monkeypatch.setattr(PageJob, "render",
                        lambda job, renderer: (rendered.append(job.name), render(job, renderer))[1])
    post = blog / "posts" / "2025-04-02-third.md"
    post.write_text(post.read_text() + "\nOne more sentence.\n")
    run(blog)
    assert "2025/04/third/index.html" in rendered
    assert not {"tags/boot/index.html", "about/index.html", "404.html"} & set(rendered)


def test_series_of_edits_equals_a_clean_build_after_each(blog, tmp_path):
    posts, site = blog / "posts", blog / "site"
    steps = [
        lambda: write(posts / "2025-03-05-second.md",
                      post_text("Second, renamed", "2025-03-05", tags="[boot, Nix]",
                                body="## Part\n\nNew words.\n")),
        lambda: write(posts / "2025-05-01-fourth.md",
                      post_text("Fourth", "2025-05-01", tags="[incus]",
                                body="```python\nx=1\n```\n")),
        lambda: (posts / "2025-03-01-first.md").unlink(),
        lambda: write(site / "templates" / "post.html",
                      '{% extends "base.html" %}{% block main %}<b>{{ entry.title }}</b>'
                      '{{ entry.html|safe }}{% endblock %}\n'),
        lambda: write(site / "site.toml",
                      (site / "site.toml").read_text().replace('title = "Chronicle"',
                                                               'title = "Renamed"')),
        lambda: write(site / "static" / "extra.css", "body { color: red }\n"),
        lambda: write(site / "static" / "extra.css", "body { color: blue }\n"),
        lambda: (site / "templates" / "post.html").unlink(),
        lambda: write(site / "pages" / "about.md", "---\ntitle: About us\n---\n\nNew.\n"),
        lambda: (posts / "2025-05-01-fourth.md").unlink(),
    ]
    for number, step in enumerate(steps):
        step()
        run(blog)
        assert_equals_clean(blog, tmp_path / str(number))


def test_deleted_post_pages_disappear(blog):
    (blog / "posts" / "2025-04-02-third.md").unlink()
    report = run(blog)
    assert not (blog / "output" / "2025" / "04").exists()
    assert report.removed >= 1


def test_template_change_rewrites_the_pages_using_it(blog):
    write(blog / "site" / "templates" / "tags.html",
          '{% extends "base.html" %}{% block main %}All tags{% endblock %}\n')
    report = run(blog)
    assert report.written == 1
    assert "All tags" in (blog / "output" / "tags" / "index.html").read_text()


def test_scheduled_post_appears_once_due(blog, tmp_path):
    write(blog / "posts" / "2027-01-01-later.md", post_text("Later", "2027-01-01"))
    run(blog)
    assert not (blog / "output" / "2027").exists()
    run(blog, now=datetime(2027, 2, 1, tzinfo=UTC))
    assert (blog / "output" / "2027" / "01" / "later" / "index.html").is_file()


def test_failed_build_leaves_output_as_it_was(blog):
    before, before_stats = tree(blog / "output"), stats(blog / "output")
    post = blog / "posts" / "2025-03-01-first.md"
    post.write_text(post.read_text() + "\nchanged\n")
    # the post renders, then a later template fails: nothing may reach output/
    write(blog / "site" / "templates" / "tag.html",
          "{% extends 'base.html' %}{% block main %}{{ nope }}{% endblock %}\n")
    with pytest.raises(BuildError):
        run(blog)
    assert tree(blog / "output") == before and stats(blog / "output") == before_stats
    assert not list(blog.glob(".output.staging-*"))


def test_strict_failure_leaves_output_as_it_was(blog):
    before = tree(blog / "output")
    write(blog / "posts" / "2025-03-01-first.md",
          post_text("First", "2025-03-01", body="```klingon\nqapla\n```\n"))
    with pytest.raises(BuildError):
        run(blog, strict=True)
    assert tree(blog / "output") == before


def test_tampered_output_file_is_rewritten(blog, tmp_path):
    (blog / "output" / "archive" / "index.html").write_text("vandalised")
    (blog / "output" / "tags" / "index.html").unlink()
    report = run(blog)
    assert report.written == 2
    assert_equals_clean(blog, tmp_path)


def test_a_spare_left_mixed_by_a_killed_build_is_brought_up_to_date(blog, tmp_path):
    write(blog / "posts" / "2025-04-03-fourth.md", post_text("Fourth", "2025-04-03"))
    run(blog)  # the folder swapped out is now the spare, the next staging folder
    spare = blog / ".output.spare"
    write(spare / "2025/03/first/index.html", "half written when the build was killed")
    write(spare / "junk/index.html", "a page of no build")
    shutil.rmtree(spare / "tags")
    write(spare / "tags", "a file where a folder goes")
    post = blog / "posts" / "2025-03-01-first.md"
    post.write_text(post.read_text() + "\nOne more sentence.\n")
    run(blog)
    assert_equals_clean(blog, tmp_path)


def test_clean_flag_rewrites_everything(blog):
    report = run(blog, clean=True)
    assert report.written == report.files


def test_changing_a_stored_result_rewrites_only_what_embeds_it(tmp_path):
    root = tmp_path / "blog"
    write(root / "site" / "site.toml", 'title = "T"\nbase_url = "https://b.example/"\n')
    write_script(root)
    store_result(root, make_result())
    write(root / "posts" / "2026-11-01-plain.md", post_text("Plain", "2026-11-01"))
    write(root / "posts" / "2026-11-02-chart.md",
          post_text("Chart", "2026-11-02", body="```table boot-to-init\nmetric: boot_ms\n```\n"))
    run(root)
    before = tree(root / "output")
    store_result(root, make_result(started="2026-11-21T10:00:00.000000Z",
                                   finished="2026-11-21T10:05:00.000000Z", shift=100.0))
    run(root)
    after = tree(root / "output")
    changed = {n for n in after if after.get(n) != before.get(n)}
    assert "2026/11/chart/index.html" in changed
    assert "2026/11/plain/index.html" not in changed
    assert all(not n.startswith("2026/11/plain/") for n in changed)
    assert_equals_clean(root, tmp_path / "clean")


def test_a_cold_build_reads_each_source_once_before_rendering_it(site_root, monkeypatch):
    import os
    import time
    from collections import Counter

    from chronicle import cache, content

    sources = sorted((site_root / "posts").rglob("*.md"))
    old = time.time() - 60  # older than the racy window: the stat cache may trust them
    for path in sources:
        os.utime(path, (old, old))
    reads: Counter[str] = Counter()

    def counting(real):
        def read(path, *args, **kwargs):
            reads[os.fspath(path)] += 1
            return real(path, *args, **kwargs)
        return read

    monkeypatch.setattr(cache, "read_stamped", counting(cache.read_stamped))
    monkeypatch.setattr(content, "read_stamped", counting(content.read_stamped))
    monkeypatch.setenv("CHRONICLE_JOBS", "1")  # reads counted in this process
    run(site_root)
    # front matter and hash from one read, the body read again where it is rendered;
    # the fingerprint, made after them, reads none
    assert {str(p): 2 for p in sources} == {str(p): reads[str(p)] for p in sources}
    reads.clear()
    before = stats(site_root / "output")
    # and the fingerprint stored from those hashes is the one the next build computes
    assert run(site_root).written == 0
    assert stats(site_root / "output") == before
    assert not any(reads[str(p)] for p in sources)


@pytest.fixture
def figure_blog(tmp_path: Path) -> Path:
    """Two experiments, a post showing each and a plain post, built once."""
    root = tmp_path / "figures"
    write(root / "site" / "site.toml", 'title = "T"\nbase_url = "https://b.example/"\n')
    for name in ("boot-to-init", "footprint"):
        write_script(root, name)
        store_result(root, make_result(name))
    write(root / "posts" / "2026-11-01-plain.md", post_text("Plain", "2026-11-01"))
    write(root / "posts" / "2026-11-02-boot.md",
          post_text("Boot", "2026-11-02", body="Prose.\n\n```chart boot-to-init\n"
                    "metric: boot_ms\n```\n"))
    write(root / "posts" / "2026-11-03-memory.md",
          post_text("Memory", "2026-11-03", body="```compare footprint\nleft: qemu-microvm\n"
                    "right: incus-container\nmetrics: [pss_mib]\n```\n"))
    run(root)
    return root


def test_a_blog_with_figures_takes_the_no_change_shortcut(figure_blog, monkeypatch):
    from chronicle import build as build_module

    def parse_docs(*args, **kwargs):
        raise AssertionError("parsed: the no-change shortcut was not taken")

    monkeypatch.setattr(build_module, "parse_docs", parse_docs)
    report = run(figure_blog)
    assert (report.written, report.unchanged) == (0, report.files)


def test_an_edit_parses_only_the_edited_post_not_the_figure_posts(figure_blog, monkeypatch):
    from chronicle import markdown

    parsed: list[Path] = []
    real = markdown.render_markdown
    monkeypatch.setattr(markdown, "render_markdown",
                        lambda text, path, *a: (parsed.append(path), real(text, path, *a))[1])
    monkeypatch.setenv("CHRONICLE_JOBS", "1")  # parsed in this process
    post = figure_blog / "posts" / "2026-11-01-plain.md"
    post.write_text(post.read_text() + "\nMore.\n")
    run(figure_blog)
    assert parsed == [post]


def test_a_new_result_renders_only_the_pages_showing_it(figure_blog, tmp_path, monkeypatch):
    import json

    from chronicle.render import PageJob

    before = tree(figure_blog / "output")
    rendered: list[str] = []
    render = PageJob.render
    monkeypatch.setattr(PageJob, "render",
                        lambda job, renderer: (rendered.append(job.name), render(job, renderer))[1])
    # a newer run, finished when the old one did: no post's date moves
    store_result(figure_blog, make_result("footprint", started="2026-11-20T10:01:00.000000Z",
                                          shift=100.0))
    report = run(figure_blog)
    after = tree(figure_blog / "output")
    changed = {n for n in after if after.get(n) != before.get(n)}
    pages = {n for n in changed if not n.startswith("lab/")}
    assert pages == {"2026/11/memory/index.html", "atom.xml", "search.json"}
    assert [n for n in rendered if n.startswith("2026/")] == ["2026/11/memory/index.html"]
    assert report.written == len(changed)
    manifest = json.loads((figure_blog / ".chronicle" / "manifest.json").read_text())
    deps = manifest["outputs"]["2026/11/memory/index.html"]["deps"]
    assert "result:footprint" in deps and "result:boot-to-init" not in deps
    charts = [d.removeprefix("chart:") for d in deps if d.startswith("chart:")]
    assert len(charts) == 2  # one per side of the comparison
    assert all((figure_blog / ".chronicle" / "charts" / f"{key}.svg").is_file()
               for key in charts)
    assert_equals_clean(figure_blog, tmp_path / "clean")


def test_a_prose_edit_of_a_figure_post_draws_no_chart(figure_blog, tmp_path):
    from tests.support import drawn_charts

    charts = drawn_charts(figure_blog)
    assert charts  # the posts' and the lab pages'
    before = tree(figure_blog / "output")
    post = figure_blog / "posts" / "2026-11-02-boot.md"
    post.write_text(post.read_text().replace("Prose.", "Prose, edited."))
    run(figure_blog)
    after = tree(figure_blog / "output")
    assert after["2026/11/boot/index.html"] != before["2026/11/boot/index.html"]
    assert drawn_charts(figure_blog) == charts
    assert_equals_clean(figure_blog, tmp_path / "clean")


def test_a_prose_edit_of_a_figure_post_never_imports_numpy(figure_blog):
    # every number the edited post shows is in the build cache: loading numpy (and the
    # chart code's use of it) would cost the edit ~0.1 s for nothing
    from tests.support import imported_by_a_build

    post = figure_blog / "posts" / "2026-11-03-memory.md"
    post.write_text(post.read_text() + "\nAn afterthought.\n")
    assert not imported_by_a_build(figure_blog, "chronicle.figure_parts", "numpy")


def test_an_edit_reads_back_only_the_figures_of_the_pages_it_renders(figure_blog, tmp_path,
                                                                     monkeypatch):
    # a 10,000-post blog keeps 3,334 posts' figures: reading them all back cost an edit
    # ~0.1 s, for pages that are not rendered
    from chronicle import figure_cache, model

    monkeypatch.setattr(model, "FEED_SIZE", 1)  # the feeds show the newest post only
    # an older post, whose page and neighbour's page show no figure
    post = figure_blog / "posts" / "2026-10-01-older.md"
    write(post, post_text("Older", "2026-10-01"))
    run(figure_blog)
    read: list[int] = []
    real = figure_cache._Reader.load
    monkeypatch.setattr(figure_cache._Reader, "load",
                        lambda reader: (read.append(1), real(reader))[1])
    post.write_text(post.read_text() + "\nMore.\n")
    assert run(figure_blog).written >= 1
    assert read == []
    assert_equals_clean(figure_blog, tmp_path / "clean")


def test_a_site_s_figure_template_restyles_exactly_the_pages_with_such_figures(figure_blog,
                                                                               tmp_path):
    before = tree(figure_blog / "output")
    theme = Path(__file__).parent.parent / "themes" / "chronicle" / "templates" / "figures"
    own = (theme / "compare.html").read_text().replace('class="compare"', 'class="compare mine"')
    write(figure_blog / "site" / "templates" / "figures" / "compare.html", own)
    run(figure_blog)
    after = tree(figure_blog / "output")
    changed = {n for n in after if after.get(n) != before.get(n)}
    # the post with the comparison, and the feed that carries its body
    assert changed == {"2026/11/memory/index.html", "atom.xml"}
    assert b'<div class="compare mine">' in after["2026/11/memory/index.html"]
    assert_equals_clean(figure_blog, tmp_path / "clean")


def test_a_rebuild_neither_checks_result_files_again_nor_recomputes_numbers(figure_blog,
                                                                           monkeypatch):
    from chronicle import figures
    from chronicle.lab import results

    def again(*args, **kwargs):
        raise AssertionError("done again: not taken from the build cache")

    monkeypatch.setattr(results, "file_problems", again)
    monkeypatch.setattr(figures, "summarize", again)
    monkeypatch.setattr(figures, "ratio_ci", again)
    for name in ("2026-11-02-boot.md", "2026-11-03-memory.md"):  # both figures re-made
        post = figure_blog / "posts" / name
        post.write_text(post.read_text() + "\nAn afterthought.\n")
    assert run(figure_blog).written >= 2


def test_an_experiment_input_outside_experiments_makes_its_result_stale(tmp_path):
    from tests.support import SCRIPT, fresh_key_parts

    root = tmp_path / "blog"
    write(root / "site" / "site.toml", 'title = "T"\nbase_url = "https://b.example/"\n')
    write(root / "lib" / "helper.py", "SPEED = 1\n")
    write_script(root, text=SCRIPT.replace('# tags = ["boot"]\n',
                                           '# tags = ["boot"]\n# inputs = ["lib/*.py"]\n'))
    store_result(root, make_result(key_parts=fresh_key_parts(root)))
    write(root / "posts" / "2026-11-02-chart.md",
          post_text("Chart", "2026-11-02", body="```table boot-to-init\n```\n"))
    assert run(root).warnings == ()
    write(root / "lib" / "helper.py", "SPEED = 2\n")  # not under experiments/
    (warning,) = run(root).warnings
    assert "shows a stale result of boot-to-init" in warning
    assert "stale" in (root / "output" / "2026" / "11" / "chart" / "index.html").read_text()


def test_a_pinned_figure_depends_on_its_run_and_the_newer_run_s_date_only(tmp_path):
    root = tmp_path / "blog"
    write(root / "site" / "site.toml", 'title = "T"\nbase_url = "https://b.example/"\n')
    write_script(root)
    first = store_result(root, make_result())
    write(root / "posts" / "2026-11-21-pinned.md",
          post_text("Pinned", "2026-11-21",
                    body=f"```table boot-to-init\nmetric: boot_ms\nresult: {first.id}\n```\n"))
    run(root)
    page = "2026/11/pinned/index.html"
    before = tree(root / "output")[page]
    newer = store_result(root, make_result(started="2026-11-22T10:00:00.000000Z", shift=100.0))
    run(root)
    noted = tree(root / "output")[page]
    assert noted != before and f"#run-{newer.id}" in noted.decode()
    assert_equals_clean(root, tmp_path / "clean")
    # the newer run's numbers are not on the pinned page: a change to them leaves it be
    store_edited(root, newer, '"value": 2610.0', '"value": 2611.0')
    report = run(root)
    assert tree(root / "output")[page] == noted and report.written > 0
    assert_equals_clean(root, tmp_path / "clean")


def test_a_history_follows_every_new_run_and_equals_a_clean_build(tmp_path):
    root = tmp_path / "blog"
    write(root / "site" / "site.toml", 'title = "T"\nbase_url = "https://b.example/"\n')
    write_script(root)
    store_result(root, make_result())
    store_result(root, make_result(started="2026-11-21T10:00:00.000000Z"))
    write(root / "posts" / "2026-11-22-trend.md",
          post_text("Trend", "2026-11-22",
                    body="```chart boot-to-init\nmetric: boot_ms\nkind: history\n```\n"))
    run(root)
    before = tree(root / "output")["2026/11/trend/index.html"]
    store_result(root, make_result(started="2026-11-23T10:00:00.000000Z", shift=300.0))
    run(root)
    after = tree(root / "output")["2026/11/trend/index.html"]
    assert after != before and b"3 runs, 2026-11-20 to 2026-11-23" in after
    assert_equals_clean(root, tmp_path / "clean")


def table_post_site(root: Path) -> Path:
    """A blog with one run of boot-to-init and a post of 2026-11-21 showing its table."""
    write(root / "site" / "site.toml", 'title = "T"\nbase_url = "https://b.example/"\n')
    write_script(root)
    store_result(root, make_result())
    write(root / "posts" / "2026-11-21-table.md",
          post_text("Table", "2026-11-21", body="```table boot-to-init\nmetric: boot_ms\n```\n"))
    return root


def test_a_rerun_that_moves_nothing_leaves_the_post_s_date_and_the_sitemap_alone(tmp_path):
    root = table_post_site(tmp_path / "blog")
    run(root)
    sitemap = tree(root / "output")["sitemap.xml"]
    store_result(root, make_result(started="2026-11-22T10:00:00.000000Z",
                                   finished="2026-11-22T10:05:00.000000Z"))
    run(root)
    assert tree(root / "output")["sitemap.xml"] == sitemap
    assert_equals_clean(root, tmp_path / "clean")
    store_result(root, make_result(started="2026-11-23T10:00:00.000000Z",
                                   finished="2026-11-23T10:05:00.000000Z", shift=1000.0))
    run(root)
    after = tree(root / "output")
    assert b"2026-11-23" in after["sitemap.xml"] and b"update-note" in after[
        "2026/11/table/index.html"]
    assert_equals_clean(root, tmp_path / "clean")


def test_a_new_run_on_one_host_re_renders_only_the_pages_showing_that_host(tmp_path):
    root = tmp_path / "blog"
    write(root / "site" / "site.toml", 'title = "T"\nbase_url = "https://b.example/"\n')
    level_experiment(root, 100)
    lab_run(root, host="alpha", accelerator="kvm")
    lab_run(root, host="kvmbox", accelerator="kvm")
    pages = {"alpha": "```table level\nhost: alpha\n```\n",
             "kvmbox": "```table level\nhost: kvmbox\n```\n",
             "both": "```compare level\nleft: {subject: fast, host: alpha}\n"
                     "right: {subject: fast, host: kvmbox}\nmix: hosts\n```\n"}
    for name, body in pages.items():
        write(root / "posts" / f"2026-11-21-{name}.md", post_text(name, "2026-11-21", body=body))
    run(root)
    before = tree(root / "output")
    lab_run(root, host="kvmbox", accelerator="kvm")
    run(root)
    after = tree(root / "output")
    changed = {n.split("/")[2] for n in after if n.startswith("2026/11/")
               and after[n] != before.get(n)}
    assert changed == {"kvmbox", "both"}
    assert_equals_clean(root, tmp_path / "clean")


def test_an_update_note_follows_a_change_to_the_run_it_compares_with(tmp_path):
    # the post shows the newest run; its note compares that with the run newest at its
    # date, which a build reading the figures back from the cache must see change too
    root = table_post_site(tmp_path / "blog")
    store_result(root, make_result(started="2026-11-23T10:00:00.000000Z",
                                   finished="2026-11-23T10:05:00.000000Z", shift=1000.0))
    run(root)
    page = "2026/11/table/index.html"
    # the older run's median, before
    assert "from 2,555\u00a0ms".encode() in tree(root / "output")[page]
    store_result(root, make_result(shift=-200.0))  # the same run, other numbers
    run(root)
    assert "from 2,355\u00a0ms".encode() in tree(root / "output")[page]
    assert_equals_clean(root, tmp_path / "clean")


def test_a_placeholder_kept_with_allow_missing_is_an_error_without_it(tmp_path):
    root = tmp_path / "blog"
    write(root / "site" / "site.toml", 'title = "T"\nbase_url = "https://b.example/"\n')
    write_script(root)  # never run
    write(root / "posts" / "2026-11-21-table.md",
          post_text("Table", "2026-11-21", body="```table boot-to-init\nmetric: boot_ms\n```\n"))
    assert run(root, allow_missing=True).written > 0
    with pytest.raises(BuildErrors, match="no successful run yet"):
        run(root)


def test_a_new_subject_elsewhere_recolours_a_figure_shown_before(tmp_path):
    from dataclasses import replace

    from tests.support import history_run

    # subjects a palette does not know take its free colours in name order: one that
    # sorts first, in another experiment, moves every other one's colour
    root = tmp_path / "blog"
    write(root / "site" / "site.toml", 'title = "T"\nbase_url = "https://b.example/"\n')
    store_result(root, history_run("2026-11-20T10:00:00Z", {"zeta": [1.0, 2.0, 3.0]}))
    write(root / "posts" / "2026-11-21-chart.md",
          post_text("Chart", "2026-11-21", body="```chart series\nmetric: boot_ms\n```\n"))
    run(root)
    before = tree(root / "output")["2026/11/chart/index.html"]
    store_result(root, replace(history_run("2026-11-20T10:00:00Z", {"alpha": [1.0, 2.0]}),
                               experiment="other"))
    run(root)
    assert tree(root / "output")["2026/11/chart/index.html"] != before
    assert_equals_clean(root, tmp_path / "clean")
