"""``chronicle import hugo|jekyll``: small old blogs written here, imported, built and
checked — every old URL leads to its post, marked lines stay marked."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from chronicle.build import BuildOptions
from chronicle.check import check_site
from chronicle.cli import main
from tests.conftest import write
from tests.support import hugo, redirect_target

FIRST_TOML = '''\
+++
title = "First post"
date = 2019-03-05T10:00:00+01:00
tags = ["Go"]
categories = ["Code"]
aliases = ["/old/first/"]
weight = 3
+++

See [the trip]({{< ref "trip" >}}) and ![logo](/images/logo.png).

{{< highlight go "hl_lines=2 4-5, linenos=table" >}}
package main
import "fmt"
func main() {
    fmt.Println("hi")
    return
}
{{< /highlight >}}

{{< youtube abc123 >}}

```python {hl_lines=[2]}
a = 1
b = 2
```
'''

TRIP_YAML = '''\
---
title: A trip
date: 2019-04-01
description: Pictures from the road
slug: the-trip
draft: false
---
{{< figure src="photo.jpg" caption="The view" >}}

Back to [the first post]({{< relref "/posts/first.md" >}}).
'''


def hugo_site(root: Path) -> Path:
    write(root / "hugo.toml", '''\
        baseURL = "https://old.example.org/"
        title = "Old Hugo blog"
        [permalinks]
        posts = "/:year/:month/:slug/"
        [frontmatter]
        date = [":filename", ":default"]
        ''')
    write(root / "content" / "posts" / "first.md", FIRST_TOML)
    write(root / "content" / "posts" / "trip" / "index.md", TRIP_YAML)
    write(root / "content" / "posts" / "trip" / "photo.jpg", b"\xff\xd8jpeg")
    write(root / "content" / "notes" / "2020-01-02-dated.md",
          "---\ntitle: Dated by its name\n---\nOnly the file name has the date.\n")
    write(root / "content" / "about.md", "---\ntitle: About\n---\nAbout me.\n")
    write(root / "static" / "images" / "logo.png", b"\x89PNG")
    return root


HUGO_BASE = "https://old.example.org/"
# old URL (as Hugo builds it: test_hugo_builds_the_urls_the_import_is_checked_against)
# → the new one
HUGO_URLS = {
    "2019/03/first-post/": "2019/03/first/",  # :slug falls back on the title
    "old/first/": "2019/03/first/",
    "2019/04/the-trip/": "2019/04/the-trip/",
    "notes/dated/": "2020/01/dated/",  # no pattern for notes: the path, date taken off
    "about/": "about/",
}


# What Hugo needs to build hugo_site into the pages the comparison reads: one layout, only
# posts and pages (with their aliases), and no way to fetch anything from the network.
HUGO_LAYOUT = "<html><body><h1>{{ .Title }}</h1>{{ .Content }}</body></html>\n"
HUGO_SETTINGS = """\
    theme = "only-pages"
    disableKinds = ["home", "section", "taxonomy", "term", "rss", "sitemap", "robotsTXT",
                    "404"]
    [module]
    proxy = "off"
    [security.http]
    urls = ["none"]
    """


def built_by_hugo(src: Path, work: Path) -> tuple[Path, dict[str, str]]:
    """Build the Hugo site ``src`` with Hugo itself, leaving ``src`` as it was; its output
    folder, and each URL built there → the page it serves (itself, or an alias's)."""
    write(work / "themes" / "only-pages" / "layouts" / "single.html", HUGO_LAYOUT)
    write(work / "settings.toml", HUGO_SETTINGS)
    out = work / "out"
    # --logLevel error rather than --quiet, which hides Hugo's own error message too
    done = subprocess.run(
        [str(hugo()), "--source", str(src), "--config", f"hugo.toml,{work / 'settings.toml'}",
         "--themesDir", str(work / "themes"), "--noBuildLock", "--logLevel", "error",
         "--destination", str(out)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "HUGO_CACHEDIR": str(work / "cache")})
    assert done.returncode == 0, done.stderr
    urls = [page.relative_to(out).as_posix().removesuffix("index.html")
            for page in out.rglob("*.html")]
    return out, {url: redirect_target(out, url, HUGO_BASE) for url in sorted(urls)}


def page_text(out: Path, site_path: str) -> tuple[str, set[str]]:
    """The heading of the page built at ``site_path`` and its paragraphs, markup taken out."""
    name = site_path + "index.html" if site_path.endswith("/") else site_path
    html = (out / name).read_text("utf-8")

    def text(fragment: str) -> str:
        return " ".join(re.sub(r"<[^>]+>", "", fragment).split())

    heading = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    paragraphs = re.findall(r"<p(?:\s[^>]*)?>(.*?)</p>", html, re.S)
    return text(heading.group(1)) if heading else "", {text(p) for p in paragraphs} - {""}


def jekyll_site(root: Path) -> Path:
    write(root / "_config.yml", "title: Old Jekyll blog\nurl: https://jk.example.org\n"
                                "baseurl: /blog\n")
    write(root / "_layouts" / "default.html", "<html>{{ content }}</html>\n")
    write(root / "_posts" / "2018-07-09-hello-world.md", '''\
        ---
        layout: post
        title: "Hello, world"
        tags: [intro, jekyll]
        redirect_from:
          - /hello/
        ---
        ![chart]({{ site.baseurl }}/assets/img/chart.png) on {{ site.title }}.

        {% highlight ruby linenos mark_lines="2" %}
        def hi
          puts "hi"
        end
        {% endhighlight %}

        Next: [notes]({{ site.baseurl }}{% post_url 2018-08-01-notes %}),
        [about]({% link about.md %}).

        {% include footer.html %}
        {% raw %}{{ kept as text }}{% endraw %}
        ''')
    write(root / "notes" / "_posts" / "2018-08-01-notes.md",
          "---\ntitle: Notes\ndate: 2018-08-01 09:30:00 +0200\ncategories: Misc\n---\nNotes.\n")
    write(root / "_posts" / "2018-09-10-named-date.md",
          "---\ntitle: Named date\npermalink: /custom/path/\n---\nDate from the name.\n")
    write(root / "about.md", "---\ntitle: About\npermalink: /about/\n---\nAbout.\n")
    write(root / "contact.md", "---\ntitle: Contact\n---\nWrite to me.\n")
    write(root / "index.md", "---\nlayout: home\n---\n")
    write(root / "assets" / "img" / "chart.png", b"\x89PNG")
    return root


JEKYLL_URLS = {
    "2018/07/09/hello-world.html": "2018/07/hello-world/",
    "hello/": "2018/07/hello-world/",
    "notes/misc/2018/08/01/notes.html": "2018/08/notes/",  # folder and own category
    "custom/path/": "2018/09/named-date/",
    "about/": "about/",
    "contact.html": "contact/",
}


def import_into(engine: str, src: Path, into: Path, *more: str) -> int:
    return main(["import", engine, str(src), "--into", str(into), *more])


def checked(root: Path) -> Path:
    """Build the blog at ``root`` and check every link; the output folder."""
    report, problems = check_site(BuildOptions(root=root, out=root / "out"))
    assert [str(p) for p in problems] == []
    return report.out


@pytest.mark.parametrize(("engine", "make", "urls", "base"), [
    ("hugo", hugo_site, HUGO_URLS, HUGO_BASE),
    ("jekyll", jekyll_site, JEKYLL_URLS, "https://jk.example.org/blog/"),
])
def test_every_old_url_leads_to_its_post_and_the_site_checks(tmp_path, engine, make, urls,
                                                             base):
    assert import_into(engine, make(tmp_path / "old"), tmp_path / "new") == 0
    out = checked(tmp_path / "new")
    assert {old: redirect_target(out, old, base) for old in urls} == urls


def test_hugo_builds_the_urls_the_import_is_checked_against(tmp_path):
    _, built = built_by_hugo(hugo_site(tmp_path / "old"), tmp_path / "hugo")
    assert sorted(built) == sorted(HUGO_URLS)


def test_every_url_hugo_builds_shows_the_same_page_once_imported(tmp_path):
    old = hugo_site(tmp_path / "old")
    hugo_out, built = built_by_hugo(old, tmp_path / "hugo")
    assert import_into("hugo", old, tmp_path / "new") == 0
    out = checked(tmp_path / "new")
    wrong = {}
    for url, page in built.items():
        title, paragraphs = page_text(hugo_out, page)
        ours = redirect_target(out, url, HUGO_BASE)
        shown = page_text(out, ours) if ours is not None else ("nothing built there", set())
        if shown[0] != title or not paragraphs <= shown[1]:
            wrong[url] = (ours, shown, "Hugo's:", title, paragraphs)
    assert wrong == {}


def test_hugo_front_matter_in_toml_and_yaml_becomes_chronicle_front_matter(tmp_path):
    import_into("hugo", hugo_site(tmp_path / "old"), tmp_path / "new")
    first = (tmp_path / "new" / "posts" / "2019-03-05-first.md").read_text()
    assert first.startswith("---\ntitle: First post\ndate: 2019-03-05 10:00:00+01:00\n"
                            "tags:\n- Go\n- Code\naliases:\n- /2019/03/first-post/\n"
                            "- /old/first/\nimported:\n  weight: 3\n---\n")
    trip = (tmp_path / "new" / "posts" / "2019-04-01-the-trip.md").read_text()
    assert "summary: Pictures from the road\n" in trip and "draft" not in trip


def test_jekyll_date_in_the_file_name_and_categories_become_tags(tmp_path):
    import_into("jekyll", jekyll_site(tmp_path / "old"), tmp_path / "new")
    named = (tmp_path / "new" / "posts" / "2018-09-10-named-date.md").read_text()
    assert "\ndate: 2018-09-10\n" in named
    notes = (tmp_path / "new" / "posts" / "2018-08-01-notes.md").read_text()
    assert "date: 2018-08-01 09:30:00+02:00\ntags:\n- notes\n- Misc\n" in notes


@pytest.mark.parametrize(("engine", "make", "post", "marked"), [
    ("hugo", hugo_site, "2019/03/first/", ['import "fmt"', "fmt.Println", "return", "b = 2"]),
    ("jekyll", jekyll_site, "2018/07/hello-world/", ["puts"]),
])
def test_marked_lines_stay_marked(tmp_path, engine, make, post, marked):
    import_into(engine, make(tmp_path / "old"), tmp_path / "new")
    html = (checked(tmp_path / "new") / post / "index.html").read_text()
    lines = [re.sub(r"<[^>]+>", "", line).replace("&quot;", '"')
             for line in re.findall(r'<span class="hll">(.*?)\n', html)]
    assert len(lines) == len(marked)
    for text, expected in zip(lines, marked, strict=True):
        assert expected in text
    assert 'class="linenos"' in html or '<span class="normal">1</span>' in html


def test_bundle_image_and_static_files_are_copied_and_linked(tmp_path):
    import_into("hugo", hugo_site(tmp_path / "old"), tmp_path / "new")
    new = tmp_path / "new"
    assert (new / "site/static/posts/the-trip/photo.jpg").read_bytes() == b"\xff\xd8jpeg"
    assert (new / "site/static/images/logo.png").read_bytes() == b"\x89PNG"
    trip = (new / "posts/2019-04-01-the-trip.md").read_text()
    assert "![The view](../../../static/posts/the-trip/photo.jpg)\n\n*The view*" in trip
    assert "[the first post](../../03/first/)" in trip
    out = checked(new)  # every image and link above resolves
    assert (out / "static/posts/the-trip/photo.jpg").is_file()


def test_what_cannot_be_converted_stays_in_the_text_and_is_listed_at_its_line(
        tmp_path, capsys):
    old = hugo_site(tmp_path / "old")
    import_into("hugo", old, tmp_path / "new")
    printed = capsys.readouterr().out
    assert f"{old / 'content/posts/first.md'}:21: shortcode 'youtube' not converted" in printed
    assert "{{< youtube abc123 >}}" in (tmp_path / "new/posts/2019-03-05-first.md").read_text()

    jold = jekyll_site(tmp_path / "jold")
    import_into("jekyll", jold, tmp_path / "jnew")
    printed = capsys.readouterr().out
    assert f"{jold / '_posts/2018-07-09-hello-world.md'}:19: Liquid tag 'include'" in printed
    body = (tmp_path / "jnew/posts/2018-07-09-hello-world.md").read_text()
    assert "{% include footer.html %}\n{{ kept as text }}" in body


def test_keep_urls_gives_each_post_its_old_url(tmp_path):
    import_into("jekyll", jekyll_site(tmp_path / "old"), tmp_path / "new", "--keep-urls")
    out = checked(tmp_path / "new")
    html = (out / "2018/07/09/hello-world.html").read_text()
    assert "<h1" in html and 'http-equiv="refresh"' not in html
    assert not (out / "2018/07/hello-world").exists()
    # the other old URLs still redirect, to the kept one
    assert redirect_target(out, "hello/", "https://jk.example.org/blog/") == \
        "2018/07/09/hello-world.html"


def test_bad_front_matter_is_an_error_naming_file_and_line_and_nothing_is_written(
        tmp_path, capsys):
    old = hugo_site(tmp_path / "old")
    write(old / "content/posts/broken.md", '+++\ntitle = "Broken"\ndate = = 2019\n+++\nx\n')
    assert import_into("hugo", old, tmp_path / "new") == 1
    error = capsys.readouterr().err
    assert f"{old / 'content/posts/broken.md'}:3: TOML error in front matter" in error
    assert "Traceback" not in error
    assert not (tmp_path / "new").exists()


def test_yaml_error_names_its_line(tmp_path, capsys):
    old = jekyll_site(tmp_path / "old")
    write(old / "_posts/2019-01-01-bad.md", "---\ntitle: ok\ntags: [unclosed\n---\nx\n")
    assert import_into("jekyll", old, tmp_path / "new") == 1
    assert f"{old / '_posts/2019-01-01-bad.md'}:3: YAML error" in capsys.readouterr().err


def test_a_date_neither_engine_reads_is_an_error_at_its_line(tmp_path, capsys):
    old = jekyll_site(tmp_path / "old")
    write(old / "_posts/2019-01-01-when.md", "---\ntitle: ok\ndate: last tuesday\n---\nx\n")
    assert import_into("jekyll", old, tmp_path / "new") == 1
    assert f"{old / '_posts/2019-01-01-when.md'}:3: cannot read the date 'last tuesday'" in \
        capsys.readouterr().err


def test_an_import_never_replaces_an_edited_post_without_force(tmp_path, monkeypatch, capsys):
    old = jekyll_site(tmp_path / "old")
    import_into("jekyll", old, tmp_path / "new")
    monkeypatch.chdir(tmp_path / "new")
    post = tmp_path / "new/posts/2018-08-01-notes.md"
    assert main(["import", "jekyll", str(old)]) == 0  # again: nothing changes
    assert "wrote 0 file(s), 6 already as imported" in capsys.readouterr().out
    post.write_text(post.read_text() + "My edit.\n")
    write(old / "_posts/2019-02-02-newer.md", "---\ntitle: Newer\n---\nNew.\n")
    assert main(["import", "jekyll", str(old)]) == 1
    assert f"exists with other content: {post}" in capsys.readouterr().err
    assert "My edit." in post.read_text()
    assert not (tmp_path / "new/posts/2019-02-02-newer.md").exists()  # all or nothing
    assert main(["import", "jekyll", str(old), "--force"]) == 0
    assert "My edit." not in post.read_text()
    assert (tmp_path / "new/posts/2019-02-02-newer.md").is_file()


def test_dry_run_says_what_it_would_write_and_writes_nothing(tmp_path, monkeypatch, capsys):
    main(["init", str(tmp_path / "blog")])
    monkeypatch.chdir(tmp_path / "blog")
    before = {p: p.read_bytes() for p in (tmp_path / "blog").rglob("*") if p.is_file()}
    capsys.readouterr()
    # the new blog's sample about page is in the way of the old blog's
    assert main(["import", "hugo", str(hugo_site(tmp_path / "old")), "--dry-run"]) == 1
    printed = capsys.readouterr()
    assert "would write posts/2019-03-05-first.md\n" in printed.out
    assert "would write site/static/posts/the-trip/photo.jpg\n" in printed.out
    assert f"exists with other content: {tmp_path / 'blog/site/pages/about.md'}" in printed.err
    assert "the import would stop" in printed.err
    assert {p: p.read_bytes() for p in (tmp_path / "blog").rglob("*") if p.is_file()} == before


def test_a_slug_the_blog_has_gets_a_new_one_and_a_note(tmp_path, monkeypatch, capsys):
    main(["init", str(tmp_path / "blog")])
    write(tmp_path / "blog/posts/2024-01-01-notes.md", "---\ntitle: Mine\ndate: 2024-01-01\n"
                                                      "---\nMine.\n")
    monkeypatch.chdir(tmp_path / "blog")
    assert main(["import", "jekyll", str(jekyll_site(tmp_path / "old")), "--force"]) == 0
    assert "slug 'notes' is taken: imported as 'notes-2'" in capsys.readouterr().out
    assert (tmp_path / "blog/posts/2018-08-01-notes-2.md").is_file()
    checked(tmp_path / "blog")


def test_an_old_url_that_is_now_a_page_of_the_blog_gets_no_redirect(tmp_path, capsys):
    old = hugo_site(tmp_path / "old")
    write(old / "content/archive.md", "---\ntitle: My archive\n---\nEverything.\n")
    assert import_into("hugo", old, tmp_path / "new") == 0
    assert f"{old / 'content/archive.md'}: old URL /archive/ is a page of the new blog" in \
        capsys.readouterr().out
    out = checked(tmp_path / "new")  # no alias fights Chronicle's own archive page
    assert "My archive" in (out / "archive-page/index.html").read_text()
