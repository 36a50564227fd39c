import shutil
from datetime import UTC, datetime

import pytest

from chronicle import paths as paths_module
from chronicle.build import BuildOptions, build
from chronicle.errors import BuildError
from chronicle.paths import SitePaths
from chronicle.render import BUNDLED_THEMES, find_theme
from tests.conftest import write

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def built(root, **kwargs):
    build(BuildOptions(root=root, now=NOW, **kwargs))
    return root / "output"


def test_bundled_theme_is_used_when_the_site_has_none(site_root):
    assert find_theme(SitePaths(site_root), "chronicle") == BUNDLED_THEMES / "chronicle"


def test_sites_own_theme_folder_comes_first(site_root):
    write(site_root / "themes/chronicle/templates/base.html", "mine")
    assert find_theme(SitePaths(site_root), "chronicle") == site_root / "themes/chronicle"


def test_a_theme_copy_lacking_a_template_uses_the_packaged_one(site_root):
    copy = site_root / "themes/chronicle"
    shutil.copytree(BUNDLED_THEMES / "chronicle", copy)  # what an older `init` made
    (copy / "templates/tag.html").unlink()
    out = built(site_root)
    assert "Posts tagged" in (out / "tags/boot/index.html").read_text()


def test_a_theme_folder_overriding_post_html_alone_keeps_the_packaged_index(site_root):
    write(site_root / "themes/chronicle/templates/post.html", "mine: {{ entry.title }}\n")
    out = built(site_root)
    assert (out / "2025/03/first/index.html").read_text() == "mine: First\n"
    assert '<a href="/2025/04/third/">Third</a>' in (out / "index.html").read_text()


def test_a_theme_folder_with_only_a_stylesheet_keeps_the_packaged_rest(site_root):
    write(site_root / "themes/chronicle/static/chronicle.css", "body{}\n")
    out = built(site_root)
    assert (out / "static/chronicle.css").read_text() == "body{}\n"
    packaged = BUNDLED_THEMES / "chronicle/static/search.js"
    assert (out / "static/search.js").read_bytes() == packaged.read_bytes()


def test_editing_a_packaged_template_rebuilds_the_pages_using_it(site_root, tmp_path,
                                                                  monkeypatch):
    # a copy stands in for the installed theme: an upgrade of Chronicle edits it
    installed = tmp_path / "installed"
    shutil.copytree(BUNDLED_THEMES, installed)
    monkeypatch.setattr(paths_module, "BUNDLED_THEMES", installed)
    built(site_root)
    write(installed / "chronicle/templates/post.html", "upgraded: {{ entry.title }}\n")
    out = built(site_root)
    assert (out / "2025/03/first/index.html").read_text() == "upgraded: First\n"


def test_unknown_theme_is_an_error(site_root):
    with pytest.raises(BuildError, match="theme 'nope' not found"):
        find_theme(SitePaths(site_root), "nope")


def test_site_template_overrides_the_theme(site_root):
    write(site_root / "site/templates/404.html", "custom {{ config.title }}\n")
    assert (built(site_root) / "404.html").read_text() == "custom Chronicle\n"


def test_site_static_file_overrides_the_theme(site_root):
    write(site_root / "site/static/chronicle.css", "body{}\n")
    write(site_root / "site/static/img/logo.svg", "<svg/>")
    out = built(site_root)
    assert (out / "static/chronicle.css").read_text() == "body{}\n"
    assert (out / "static/img/logo.svg").exists()
    assert (out / "static/favicon.svg").exists()  # the rest of the theme is still there


def test_templates_are_autoescaped(site_root):
    write(site_root / "posts/2025-05-01-x.md", "---\ntitle: \"<script>x</script>\"\n"
          "date: 2025-05-01\n---\nx\n")
    page = (built(site_root) / "2025/05/x/index.html").read_text()
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page


def test_links_respect_a_base_url_with_a_path(site_root):
    config = site_root / "site/site.toml"
    config.write_text(config.read_text().replace("blog.example.org/", "example.org/blog/"))
    index = (built(site_root) / "index.html").read_text()
    assert 'href="/blog/static/chronicle.css"' in index
    assert 'href="/blog/2025/04/third/"' in index


def test_template_syntax_error_is_a_build_error_with_line(site_root):
    write(site_root / "site/templates/404.html", "ok\n{% if %}\n")
    with pytest.raises(BuildError, match="template error") as caught:
        built(site_root)
    assert caught.value.line == 2


def test_dates_are_shown_without_locale(site_root):
    assert "5 March 2025" in (built(site_root) / "2025/03/second/index.html").read_text()


def test_deleting_a_theme_override_brings_back_the_installed_template(site_root):
    override = write(site_root / "themes/chronicle/templates/post.html", "mine\n")
    assert (built(site_root) / "2025/03/first/index.html").read_text() == "mine\n"
    override.unlink()
    page = (built(site_root) / "2025/03/first/index.html").read_text()
    assert page != "mine\n" and "<h1" in page


def test_a_theme_of_the_sites_own_falls_back_on_the_default_theme(site_root):
    config = site_root / "site/site.toml"
    config.write_text(config.read_text().replace('theme = "chronicle"', 'theme = "mine"'))
    write(site_root / "themes/mine/templates/post.html", "mine: {{ entry.title }}\n")
    out = built(site_root)
    assert (out / "2025/03/first/index.html").read_text() == "mine: First\n"
    assert "Third" in (out / "index.html").read_text()
    assert (out / "static/chronicle.css").is_file()
