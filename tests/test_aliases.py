"""Old URLs kept working: ``aliases`` in front matter built as redirect pages, and ``url``
replacing a post's dated URL."""

from __future__ import annotations

import pytest

from chronicle.build import BuildOptions, build
from chronicle.check import check_site
from chronicle.cli import main
from chronicle.content import read_post
from chronicle.errors import BuildError, BuildErrors
from tests.conftest import post_text, write


def options(root, **more) -> BuildOptions:
    return BuildOptions(root=root, out=root / "output", now=None, **more)


def test_alias_is_built_as_a_redirect_to_the_post(site_root):
    write(site_root / "posts" / "2025-03-01-first.md",
          post_text("First", aliases="[/2019/03/01/first.html, /old/first]"))
    build(options(site_root))
    out = site_root / "output"
    for name in ("2019/03/01/first.html", "old/first/index.html"):
        html = (out / name).read_text()
        assert '<link rel="canonical" href="https://blog.example.org/2025/03/first/">' in html
        assert '<meta http-equiv="refresh" content="0; url=/2025/03/first/">' in html
        assert '<a href="/2025/03/first/">First</a>' in html
    # a redirect is not a page of the site: search engines follow the canonical link
    assert "old/first" not in (out / "sitemap.xml").read_text()


def test_page_alias_redirects_to_the_page(site_root):
    write(site_root / "site" / "pages" / "about.md",
          "---\ntitle: About\naliases: [/about-me/]\n---\n\nAbout us.\n")
    build(options(site_root))
    html = (site_root / "output" / "about-me" / "index.html").read_text()
    assert 'url=/about/"' in html


def test_alias_taking_a_real_page_is_an_error_naming_the_file(site_root):
    source = write(site_root / "posts" / "2025-03-01-first.md",
                   post_text("First", aliases="[/2025/03/second/]"))
    with pytest.raises(BuildError) as caught:
        build(options(site_root))
    assert str(source) in str(caught.value)
    assert "alias /2025/03/second/ is already taken by a page of the site" in str(caught.value)


def test_one_alias_in_two_files_is_an_error_naming_both(site_root):
    first = write(site_root / "posts" / "2025-03-01-first.md",
                  post_text("First", aliases="[/old/]"))
    write(site_root / "posts" / "2025-03-05-second.md",
          post_text("Second", "2025-03-05", aliases="[/old]"))
    with pytest.raises(BuildError) as caught:
        build(options(site_root))
    message = str(caught.value)
    assert "2025-03-05-second.md" in message and f"the alias in {first}" in message


@pytest.mark.parametrize(("alias", "says"), [
    ("'http://elsewhere.org/x/'", "must be a path on this site"),
    ("'/a/../../etc/'", "must be a path on this site"),
    ("'/'", "would replace the home page"),
    ("'/a?b=1'", "without '..', a query or a fragment"),
    ("[[nested]]", "must hold URL paths"),
])
def test_alias_that_is_not_a_site_path_is_an_error_at_its_line(site_root, alias, says):
    source = write(site_root / "posts" / "2025-03-01-first.md",
                   post_text("First", aliases=alias))
    with pytest.raises(BuildErrors) as caught:
        build(options(site_root))
    assert f"{source}:4" in str(caught.value.errors[0])
    assert says in str(caught.value.errors[0])


def test_removing_an_alias_removes_its_redirect_on_the_next_build(site_root):
    source = write(site_root / "posts" / "2025-03-01-first.md",
                   post_text("First", aliases="[/old/]"))
    build(options(site_root))
    assert (site_root / "output" / "old" / "index.html").is_file()
    write(source, post_text("First"))
    report = build(options(site_root))
    assert not (site_root / "output" / "old").exists()
    assert report.removed == 1


def test_check_lists_each_alias_and_checks_its_link(site_root):
    write(site_root / "posts" / "2025-03-01-first.md",
          post_text("First", aliases="[/2019/first.html]"))
    report, problems = check_site(BuildOptions(root=site_root, out=site_root / "checked"))
    assert problems == []
    assert (report.out / "2019" / "first.html").is_file()


def test_check_command_lists_each_alias(site_root, capsys):
    write(site_root / "posts" / "2025-03-01-first.md",
          post_text("First", aliases="[/2019/first.html]"))
    assert main(["check", "--root", str(site_root)]) == 0
    assert capsys.readouterr().out.splitlines()[:1] == [
        "alias /2019/first.html -> /2025/03/first/ (2025-03-01-first.md)"]


def test_url_that_is_not_a_site_path_is_an_error_at_its_line(site_root):
    source = write(site_root / "posts" / "2025-03-01-first.md",
                   post_text("First", url="/../../etc/passwd"))
    with pytest.raises(BuildErrors) as caught:
        build(options(site_root))
    assert f"{source}:4: url '/../../etc/passwd' must be a path on this site" in \
        str(caught.value.errors[0])


def test_url_replaces_the_dated_url(site_root):
    write(site_root / "posts" / "2025-03-01-first.md",
          post_text("First", url="/2019/03/01/first.html"))
    build(options(site_root))
    out = site_root / "output"
    assert "<h1" in (out / "2019" / "03" / "01" / "first.html").read_text()
    assert not (out / "2025" / "03" / "first").exists()
    assert 'href="/2019/03/01/first.html"' in (out / "archive" / "index.html").read_text()


def test_imported_keeps_unknown_keys_and_other_keys_stay_errors(tmp_path):
    tz = __import__("zoneinfo").ZoneInfo("UTC")
    kept = write(tmp_path / "kept.md",
                 post_text("First", imported="{weight: 3, author: Ann}"))
    assert read_post(kept, tz).title == "First"
    bad = write(tmp_path / "bad.md", post_text("First", weight="3"))
    with pytest.raises(BuildError, match="keep other data under 'imported:'"):
        read_post(bad, tz)
    not_a_mapping = write(tmp_path / "list.md", post_text("First", imported="[1]"))
    with pytest.raises(BuildError, match="'imported' must be a mapping"):
        read_post(not_a_mapping, tz)
