import http.server
import shutil
import threading
from pathlib import Path

import pytest

from chronicle.build import BuildOptions
from chronicle.check import Source, check_output, check_site
from chronicle.errors import BuildError

BASE = "https://example.org/blog/"


def make_site(root: Path, posts: dict[str, str] | None = None, base_url: str = BASE) -> Path:
    """A small real site: config and posts; the theme is the installed one."""
    (root / "site").mkdir(parents=True)
    (root / "site" / "site.toml").write_text(f'title = "Lab notes"\nbase_url = "{base_url}"\n')
    (root / "posts").mkdir()
    for name, text in (posts or {"2025-03-01-boot.md": post("Boot time", "Hello.")}).items():
        (root / "posts" / name).write_text(text)
    return root


def post(title: str, body: str, date: str = "2025-03-01", extra: str = "") -> str:
    return f"---\ntitle: {title}\ndate: {date}\n{extra}---\n{body}\n"


def write(out: Path, files: dict[str, str]) -> Path:
    for name, html in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(html)
    return out


def messages(problems) -> list[str]:
    return [p.message for p in problems]


# -- a hand-made output folder ---------------------------------------------------------

def test_good_site_has_no_problems(tmp_path):
    out = write(tmp_path, {
        "index.html": '<a href="/blog/a/">a</a><a href="a/#part">p</a><img src="logo.png">'
                      '<a href="mailto:me@example.org">m</a><a href="#top">t</a>',
        "a/index.html": '<h2 id="part">Part</h2><a href="../">home</a>',
        "logo.png": "png",
    })
    assert check_output(out, BASE) == []


def test_broken_link_is_found(tmp_path):
    out = write(tmp_path, {"index.html": '<p>\n<a href="/blog/missing/">x</a></p>'})
    (problem,) = check_output(out, BASE)
    assert problem.message.startswith("broken link '/blog/missing/'")
    assert (problem.path, problem.line) == (out / "index.html", 2)


def test_missing_anchor_is_found(tmp_path):
    out = write(tmp_path, {"index.html": '<a href="a/#nope">x</a>',
                           "a/index.html": '<h2 id="part">Part</h2>'})
    assert messages(check_output(out, BASE)) == [
        "missing anchor 'a/#nope': no id 'nope' in a/index.html"]


def test_missing_anchor_in_the_same_page_is_found(tmp_path):
    out = write(tmp_path, {"index.html": '<a href="#gone">x</a><a name="old">o</a>'
                                         '<a href="#old">ok</a>'})
    assert messages(check_output(out, BASE)) == [
        "missing anchor '#gone': no id 'gone' in index.html"]


def test_broken_image_is_found(tmp_path):
    out = write(tmp_path, {"index.html": '<img src="static/chart.svg" alt="">'
                                         '<img srcset="a.png 1x, b.png 2x" alt="">',
                           "a.png": "png"})
    assert messages(check_output(out, BASE)) == [
        "broken image 'b.png': no b.png in the output",
        "broken image 'static/chart.svg': no static/chart.svg in the output"]


def test_root_link_outside_the_base_path_is_broken(tmp_path):
    # "/a/" works on a preview at "/" but not on https://example.org/blog/
    out = write(tmp_path, {"index.html": '<a href="/a/">x</a>', "a/index.html": ""})
    assert messages(check_output(out, BASE)) == [
        "broken link '/a/': outside the site's base path /blog/"]


def test_absolute_links_to_the_site_itself_are_checked(tmp_path):
    out = write(tmp_path, {"index.html": f'<link rel="canonical" href="{BASE}gone/">'})
    assert messages(check_output(out, BASE))[0].startswith("broken link '/blog/gone/'")


def test_path_traversal_in_a_link_is_broken_not_followed(tmp_path):
    secret = tmp_path / "secret.html"
    secret.write_text("x")
    out = write(tmp_path / "out", {"index.html": '<a href="../../secret.html">x</a>'})
    assert len(check_output(out, "/")) == 1


def test_problem_in_a_post_names_the_post_and_line(tmp_path):
    source = tmp_path / "post.md"
    source.write_text("---\ntitle: x\n---\nIntro.\n\nSee [that](../that/).\n")
    out = write(tmp_path / "out", {"2025/03/x/index.html": '<a href="../that/">that</a>'})
    (problem,) = check_output(out, BASE, {"2025/03/x/index.html": Source(source, 4)})
    assert (problem.path, problem.line) == (source, 6)


# -- external links --------------------------------------------------------------------

@pytest.fixture
def local_web():
    """A web server on 127.0.0.1 answering 404 to everything and counting requests."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_external_links_are_not_fetched_by_default(tmp_path, local_web):
    url, hits = local_web
    out = write(tmp_path, {"index.html": f'<a href="{url}/page">x</a>'})
    assert check_output(out, BASE) == []
    assert hits == []


def test_external_links_are_checked_when_asked(tmp_path, local_web):
    url, hits = local_web
    out = write(tmp_path, {"index.html": f'<a href="{url}/page">x</a>'})
    assert messages(check_output(out, BASE, external=True)) == [
        f"broken external link '{url}/page': HTTP 404"]
    assert hits == ["/page"]


# -- with the real build ---------------------------------------------------------------

def options(root: Path) -> BuildOptions:
    return BuildOptions(root=root, out=root / ".chronicle" / "check")


def test_built_site_without_mistakes_passes(tmp_path):
    root = make_site(tmp_path)
    report, problems = check_site(options(root))
    assert problems == []
    assert (report.out / "2025" / "03" / "boot" / "index.html").is_file()


def test_each_broken_reference_in_a_post_is_reported_at_its_line(tmp_path):
    body = ("Intro.\n\nA [link](../nowhere/).\n\nAn [anchor](#no-such-heading).\n\n"
            "![chart](/blog/static/missing.svg)\n")
    root = make_site(tmp_path, {"2025-03-01-boot.md": post("Boot time", body)})
    _, problems = check_site(options(root))
    source = root / "posts" / "2025-03-01-boot.md"
    assert [(p.path, p.line, p.message.split()[:2]) for p in problems] == [
        (source, 7, ["broken", "link"]),
        (source, 9, ["missing", "anchor"]),
        (source, 11, ["broken", "image"]),
    ]


def test_link_to_another_post_resolves(tmp_path):
    root = make_site(tmp_path, {
        "2025-03-01-boot.md": post("Boot time", "See [memory](../memory/#results)."),
        "2025-03-02-memory.md": post("Memory", "## Results\n\nSmall.", date="2025-03-02"),
    })
    assert check_site(options(root))[1] == []


def test_a_broken_post_fails_the_check_with_its_build_error(tmp_path):
    root = make_site(tmp_path, {"2025-03-01-boot.md": "---\ntitle: [unclosed\n---\nx\n"})
    with pytest.raises(BuildError) as caught:
        check_site(options(root))
    assert "2025-03-01-boot.md:2" in str(caught.value)


def test_command_exits_1_and_prints_each_problem(tmp_path, capsys):
    from chronicle.cli import main

    root = make_site(tmp_path, {"2025-03-01-boot.md": post("Boot time", "[x](../gone/)")})
    assert main(["check", "--root", str(root)]) == 1
    out, err = capsys.readouterr()
    assert "2025-03-01-boot.md:5: broken link '../gone/'" in out
    assert "check failed: 1 problem(s)" in err
    assert not (root / "output").exists()  # checking builds into .chronicle/check


def test_command_exits_0_on_a_good_site(tmp_path, capsys):
    from chronicle.cli import main

    assert main(["check", "--root", str(make_site(tmp_path))]) == 0
    assert "every link, anchor and image resolves" in capsys.readouterr().out


def test_embedded_reference_to_an_unknown_experiment_is_reported_at_its_line(tmp_path):
    from chronicle.hooks import standard_hooks

    body = "Numbers:\n\n```table no-such-experiment\nmetrics: [boot_ms]\n```\n"
    root = make_site(tmp_path, {"2025-03-01-boot.md": post("Boot time", body)})
    with pytest.raises(BuildError) as caught:
        check_site(standard_hooks(options(root)))
    assert "2025-03-01-boot.md:7" in str(caught.value)
    assert "no-such-experiment" in str(caught.value)


def test_command_lists_theme_files_an_upgrade_does_not_reach(tmp_path, capsys):
    from chronicle.cli import main
    from chronicle.render import BUNDLED_THEMES

    root = make_site(tmp_path)
    copy = root / "themes/chronicle"
    shutil.copytree(BUNDLED_THEMES / "chronicle", copy)  # what an older `init` made
    (copy / "templates/tag.html").unlink()
    (copy / "templates/tags.html").unlink()
    with (copy / "templates/post.html").open("a") as post_html:
        post_html.write("<!-- mine -->\n")
    (root / "site/static").mkdir()
    (root / "site/static/favicon.svg").write_text("<svg/>")
    assert main(["check", "--root", str(root)]) == 0  # a note, not a problem
    err = capsys.readouterr().err
    assert "themes/chronicle/templates/post.html differs from the installed theme's" in err
    assert "site/static/favicon.svg differs from the installed theme's" in err
    assert "themes/chronicle/templates lacks tag.html, tags.html: the build uses" in err
    assert "base.html" not in err  # an unchanged copy reaches nothing new: no note


def test_command_has_no_theme_notes_for_a_site_using_the_theme_by_reference(tmp_path, capsys):
    from chronicle.cli import main

    assert main(["check", "--root", str(make_site(tmp_path))]) == 0
    assert "installed theme" not in capsys.readouterr().err
