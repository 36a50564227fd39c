import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chronicle.build import BuildOptions, build
from chronicle.errors import BuildError, BuildErrors
from chronicle.guard import MARKER, mark
from tests.conftest import post_text, write
from tests.support import another_process_holding_the_lock

NOW = datetime(2025, 6, 1, tzinfo=UTC)
ATOM = "{http://www.w3.org/2005/Atom}"
REPO = Path(__file__).resolve().parents[1]


def run(root: Path, **kwargs):
    kwargs.setdefault("now", NOW)
    return build(BuildOptions(root=root, **kwargs))


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_builds_every_kind_of_page(site_root):
    report = run(site_root)
    out = site_root / "output"
    for name in ["index.html", "page/2/index.html", "2025/03/first/index.html",
                 "about/index.html", "tags/index.html", "tags/boot/index.html",
                 "tags/boot/atom.xml", "archive/index.html", "atom.xml", "sitemap.xml",
                 "robots.txt", "404.html", "static/chronicle.css", "static/pygments.css"]:
        assert (out / name).is_file(), name
    assert report.pages == sum(1 for n in tree(out) if n.endswith(".html"))
    assert report.summary().startswith(f"built {report.pages} pages")


def test_post_page_links_back_to_the_index_at_top_and_bottom(site_root):
    run(site_root)
    page = (site_root / "output/2025/03/second/index.html").read_text()
    assert page.count('<a href="/">← Chronicle</a>') == 2
    assert 'rel="prev" href="/2025/03/first/"' in page
    assert 'rel="next" href="/2025/04/third/"' in page
    assert "min read" in page


def test_every_bad_post_is_reported_in_one_run_and_output_is_untouched(site_root):
    run(site_root)
    before = tree(site_root / "output")
    posts = site_root / "posts"
    write(posts / "yaml.md", "---\ntitle: T\ndate: 2025-01-01\ntags: [a\n---\n")
    write(posts / "notitle.md", "---\ndate: 2025-01-01\n---\n")
    write(posts / "nodate.md", "---\ntitle: T\n---\n")
    write(posts / "impossible.md", "---\ntitle: T\ndate: 2025-02-30\n---\n")
    write(posts / "dup.md", post_text("Dup", slug="first"))
    write(posts / "escape.md", post_text("Esc", slug='"../../x"'))
    write(posts / "latin1.md", b"---\ntitle: T\ndate: 2025-01-01\n---\ncaf\xe9\n")
    write(posts / "embed.md", post_text(body="```chart boot\n```\n"))
    with pytest.raises(BuildErrors) as caught:
        run(site_root)
    files = {e.path.name for e in caught.value.errors}
    assert files == {"yaml.md", "notitle.md", "nodate.md", "impossible.md", "dup.md",
                     "escape.md", "latin1.md", "embed.md"}
    duplicate = next(e for e in caught.value.errors if e.path.name == "dup.md")
    assert "2025-03-01-first.md" in str(duplicate)
    assert tree(site_root / "output") == before


def test_drafts_and_future_posts_are_left_out_without_flags(site_root):
    write(site_root / "posts/draft.md", post_text("Draft", "2025-05-01", draft="true"))
    write(site_root / "posts/later.md", post_text("Later", "2025-07-01"))
    run(site_root)
    out = site_root / "output"
    assert not (out / "2025/05/draft").exists() and not (out / "2025/07/later").exists()
    run(site_root, drafts=True, future=True)
    assert (out / "2025/05/draft/index.html").exists() and (out / "2025/07/later").exists()


def test_a_broken_draft_stays_quiet_until_it_is_built(site_root):
    # bodies are rendered as soon as they are read, drafts included: their errors must
    # still only count when the draft is part of the build
    write(site_root / "posts/draft.md", post_text("Draft", "2025-05-01", draft="true",
                                                   body="```python hl_lines=x\n1\n```\n"))
    run(site_root)
    with pytest.raises(BuildError, match=r"draft\.md:7: bad hl_lines"):
        run(site_root, drafts=True)


def test_now_decides_what_is_future(site_root):
    write(site_root / "posts/later.md", post_text("Later", "2025-07-01"))
    run(site_root, now=datetime(2025, 7, 2))  # naive: read in the site's time zone
    assert (site_root / "output/2025/07/later/index.html").exists()


def test_source_date_epoch_defines_now(site_root, monkeypatch):
    write(site_root / "posts/later.md", post_text("Later", "2025-07-01"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(datetime(2025, 6, 1, tzinfo=UTC).timestamp())))
    build(BuildOptions(root=site_root))
    assert not (site_root / "output/2025/07/later").exists()


def test_same_inputs_give_byte_identical_output(site_root, tmp_path):
    run(site_root, out=tmp_path / "one")
    run(site_root, out=tmp_path / "two")
    assert tree(tmp_path / "one") == tree(tmp_path / "two")


def test_repository_site_builds_deterministically(tmp_path):
    for out in ("one", "two"):  # the showcase post embeds committed results
        run(REPO, out=tmp_path / out, now=datetime(2030, 1, 1, tzinfo=UTC))
    one = tree(tmp_path / "one")
    assert one == tree(tmp_path / "two")
    assert any(name.startswith("20") and name.endswith("/index.html") for name in one)


def test_feeds_are_valid_atom_dated_by_content(site_root):
    run(site_root)
    feed = ET.parse(site_root / "output/atom.xml").getroot()
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}updated") == "2025-04-02T00:00:00+00:00"
    entries = feed.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == ["Third", "Second", "First"]
    assert entries[0].findtext(f"{ATOM}id") == "https://blog.example.org/2025/04/third/"
    tag_feed = ET.parse(site_root / "output/tags/nix/atom.xml").getroot()
    assert len(tag_feed.findall(f"{ATOM}entry")) == 2


def test_sitemap_is_valid_xml_with_absolute_urls(site_root):
    run(site_root)
    root = ET.parse(site_root / "output/sitemap.xml").getroot()
    ns = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
    locs = [u.findtext(f"{ns}loc") for u in root.findall(f"{ns}url")]
    assert "https://blog.example.org/2025/03/first/" in locs
    assert all(loc.startswith("https://blog.example.org/") for loc in locs)


def test_robots_points_at_the_sitemap(site_root):
    run(site_root)
    robots = (site_root / "output/robots.txt").read_text()
    assert "Sitemap: https://blog.example.org/sitemap.xml" in robots


def test_404_page_links_home(site_root):
    run(site_root)
    assert "← Chronicle" in (site_root / "output/404.html").read_text()


def test_figures_are_drawn_in_and_a_newer_run_alone_does_not_move_the_feed_date(site_root):
    from tests.support import fresh_experiment, write_script

    fresh_experiment(site_root)
    write(site_root / "posts/2025-05-01-data.md",
          post_text("Data", "2025-05-01", body="```chart boot-to-init\nmetric: boot_ms\n```\n"))
    assert run(site_root).warnings == ()
    page = (site_root / "output/2025/05/data/index.html").read_text()
    assert '<figure class="embed embed-chart" id="chart-boot-to-init-6">' in page
    assert "<!--chronicle-figure" not in page
    feed = ET.parse(site_root / "output/atom.xml").getroot()
    # no run was stored at the post's date, so no number it shows has moved since
    assert feed.find(f"{ATOM}entry").findtext(f"{ATOM}updated") == "2025-05-01T00:00:00+00:00"
    script = site_root / "experiments" / "boot-to-init.py"
    write_script(site_root, text=script.read_text() + "# edited\n")
    report = run(site_root)
    assert [w.split(": ", 1)[1] for w in report.warnings] == [
        "shows a stale result of boot-to-init (20261120T100000Z-abcdef12): script changed"]
    assert report.stale == ("boot-to-init (20261120T100000Z-abcdef12): script changed, shown "
                            f"by {site_root / 'posts/2025-05-01-data.md'}",)


def test_strict_turns_warnings_into_failure(site_root):
    write(site_root / "posts/code.md", post_text(body="```klingon\nx\n```\n"))
    assert len(run(site_root).warnings) == 1
    with pytest.raises(BuildErrors, match="klingon"):
        run(site_root, strict=True)


def test_content_nested_too_deep_to_render_is_a_warning_fatal_under_strict(site_root):
    write(site_root / "posts/deep.md", post_text(body="Intro.\n\n" + ">" * 150 + " lost\n"))
    warnings = run(site_root).warnings
    assert len(warnings) == 1 and "deep.md:8: " in warnings[0] and "nested" in warnings[0]
    with pytest.raises(BuildErrors, match="nested"):
        run(site_root, strict=True, clean=True)


def test_extra_pages_are_written_and_join_the_sitemap(site_root):
    def lab_pages(site, renderer):
        yield renderer.page("page.html", "lab/", page=site.pages[0])
        yield "lab/data.json", b"{}"

    run(site_root, extra_pages=(lab_pages,))
    out = site_root / "output"
    assert "About us." in (out / "lab/index.html").read_text()
    assert (out / "lab/data.json").read_bytes() == b"{}"
    assert "https://blog.example.org/lab/" in (out / "sitemap.xml").read_text()


def test_extra_page_cannot_overwrite_a_generated_one(site_root):
    # the theme's pages are claimed before they render, beside the extra pages
    with pytest.raises(BuildError, match="wants to write 'index.html', which is taken"):
        run(site_root, extra_pages=(lambda site, renderer: [("index.html", b"x")],))


def test_long_post_gets_a_table_of_contents(site_root):
    write(site_root / "posts/long.md", post_text(body="## One\n\n## Two\n\n### Three\n"))
    run(site_root)
    page = (site_root / "output/2025/03/long/index.html").read_text()
    assert 'class="toc"' in page and 'href="#three"' in page


# -- the folders a build replaces ------------------------------------------------------

def chronicle(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chronicle", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def sources(root: Path) -> dict[str, bytes]:
    return {n: b for n, b in tree(root).items() if not n.startswith((".chronicle/", "output/"))}


@pytest.mark.parametrize("out, why", [
    (".", "is the site's root folder"),
    ("posts", "is the site's posts folder"),
    ("..", "holds the site"),
    ("site/templates", "lies inside the site's site folder"),
])
def test_out_that_would_replace_sources_is_refused_and_nothing_is_touched(site_root, out,
                                                                           why):
    run(site_root)
    before = sources(site_root)
    done = chronicle("build", "--now", "2025-06-01", "--out", out, cwd=site_root)
    assert done.returncode == 1
    assert why in done.stderr and "nothing was touched" in done.stderr
    assert "Traceback" not in done.stderr
    assert sources(site_root) == before


def test_out_refuses_a_folder_chronicle_did_not_write(site_root, tmp_path):
    documents = tmp_path / "documents"
    write(documents / "thesis.tex", "precious")
    with pytest.raises(BuildError, match="non-empty folder Chronicle did not write"):
        run(site_root, out=documents)
    assert tree(documents) == {"thesis.tex": b"precious"}
    (documents / "thesis.tex").unlink()
    run(site_root, out=documents)  # an empty folder has nothing to lose
    assert (documents / MARKER).is_file()


def test_output_of_an_older_chronicle_without_marker_is_still_replaced(site_root):
    run(site_root)
    (site_root / "output" / MARKER).unlink()  # as an older version left it
    write(site_root / "posts" / "2025-04-03-fourth.md", post_text("Fourth", "2025-04-03"))
    report = run(site_root)
    assert report.written > 0
    assert (site_root / "output" / "2025/04/fourth/index.html").is_file()
    assert (site_root / "output" / MARKER).is_file()


def test_leftovers_of_killed_builds_are_removed_by_the_next_build(site_root):
    run(site_root)
    killed = site_root / ".output.staging-k1lled00"
    write(killed / "2025" / "index.html", "half")
    mark(killed)
    mine = site_root / ".output.staging-notmine"
    write(mine / "index.html", "keep")
    write(site_root / "posts" / "2025-04-03-fourth.md", post_text("Fourth", "2025-04-03"))
    run(site_root)
    assert not killed.exists() and mine.exists()


def test_incremental_build_replaces_output_in_one_step(site_root):
    run(site_root)
    out = site_root / "output"
    folder_before = out.stat().st_ino
    kept_before = (out / "2025/03/first/index.html").stat()
    write(site_root / "posts" / "2025-04-03-fourth.md", post_text("Fourth", "2025-04-03"))
    report = run(site_root)
    assert report.written > 0
    # a new folder exchanged in whole, not files renamed one by one into the old one...
    assert out.stat().st_ino != folder_before
    # ...holding unchanged pages as hard links: same inode, same mtime
    kept = (out / "2025/03/first/index.html").stat()
    assert (kept.st_ino, kept.st_mtime_ns) == (kept_before.st_ino, kept_before.st_mtime_ns)
    # the folder swapped out is kept, to be the next build's staging folder
    assert sorted(p.name for p in site_root.iterdir() if p.name.startswith(".")) == [
        ".chronicle", ".output.spare"]


# -- the build lock --------------------------------------------------------------------

def test_a_second_build_waits_for_the_first_and_says_who_holds_the_lock(site_root):
    with another_process_holding_the_lock(site_root) as holder:
        second = subprocess.Popen([sys.executable, "-m", "chronicle", "build", "--root",
                                   str(site_root), "--now", "2025-06-01"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        waiting = second.stderr.readline()
        assert "waiting for another Chronicle process" in waiting
        assert f"pid {holder.pid}" in waiting
        time.sleep(0.5)
        assert second.poll() is None and not (site_root / "output").exists()
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert out.startswith("built ")
    assert (site_root / "output" / "index.html").is_file()


def test_an_old_template_writing_entry_html_still_shows_the_post_s_figures(site_root):
    from tests.support import fresh_experiment

    fresh_experiment(site_root)
    write(site_root / "posts/2025-05-01-data.md",
          post_text("Data", "2025-05-01", body="```table boot-to-init\n```\n"))
    # an ejected post.html (or an older init's theme copy) from before figures were drawn
    # when a page renders: it writes entry.html, not body(entry)
    write(site_root / "site/templates/post.html",
          '{% extends "base.html" %}{% block main %}{{ entry.html|safe }}{% endblock %}\n')
    run(site_root)
    page = (site_root / "output/2025/05/data/index.html").read_text()
    assert "<figure" in page and "chronicle-figure:" not in page


def test_a_page_of_several_bodies_without_their_figures_is_an_error(site_root):
    from tests.support import fresh_experiment

    fresh_experiment(site_root)
    write(site_root / "posts/2025-05-01-data.md",
          post_text("Data", "2025-05-01", body="```table boot-to-init\n```\n"))
    # a home page that writes every post's body: whose figure is whose cannot be told
    write(site_root / "site/templates/index.html",
          '{% extends "base.html" %}{% block main %}{% for e in index.entries %}'
          '{{ e.html|safe }}{% endfor %}{% endblock %}\n')
    with pytest.raises(BuildError, match=r"write body\(entry\)") as caught:
        run(site_root)
    assert caught.value.path == site_root / "site/templates/index.html"
