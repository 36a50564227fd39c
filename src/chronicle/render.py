"""Jinja2 rendering: theme lookup, the template environment, every page of the model.

Theme lookup: a theme named ``N`` is ``<root>/themes/N/``; if the site has no such
folder, the copy bundled in the package (``chronicle/skeleton/themes/N``) is used. The
site overrides any theme template from ``site/templates/`` and any static file from
``site/static/`` (same relative path).

Templates get the :class:`~chronicle.model.Site` as ``site``, the config as ``config``,
the page's own site path as ``url``, and the helpers ``href(path)`` (a link that works
under the base URL's path), ``absolute(path)`` (a full URL, for feeds) and the filters
``isodate`` and ``human_date``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape as xml_escape

import jinja2

from chronicle.errors import BuildError
from chronicle.markdown import pygments_css
from chronicle.model import Site
from chronicle.paths import SitePaths

BUNDLED_THEMES = Path(__file__).parent / "skeleton" / "themes"
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


def find_theme(paths: SitePaths, name: str) -> Path:
    for folder in (paths.themes / name, BUNDLED_THEMES / name):
        if (folder / "templates").is_dir():
            return folder
    raise BuildError(f"theme {name!r} not found in {paths.themes} or bundled with Chronicle",
                     paths.config)


def output_file(url: str) -> str:
    """Site path → file in the output folder: ``a/b/`` → ``a/b/index.html``."""
    return f"{url}index.html" if url == "" or url.endswith("/") else url


class Renderer:
    """Renders templates for one site; also handed to extra page generators (the lab)."""

    def __init__(self, site: Site, paths: SitePaths, theme: Path):
        self.site = site
        self.theme = theme
        prefix = urlsplit(site.config.base_url).path or "/"
        search = [str(p) for p in (paths.site_templates, theme / "templates") if p.is_dir()]
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(search),
            autoescape=jinja2.select_autoescape(["html", "xml"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        )
        self.env.globals.update(
            site=site, config=site.config,
            href=lambda path: _href(prefix, path),
            absolute=lambda path: site.config.base_url + str(path).lstrip("/"),
        )
        self.env.filters.update(isodate=_isodate, human_date=_human_date)

    def render(self, template: str, url: str, **context: Any) -> bytes:
        """Render ``template`` for the page at site path ``url``."""
        try:
            text = self.env.get_template(template).render(url=url, **context)
        except jinja2.TemplateSyntaxError as exc:
            raise BuildError(f"template error: {exc.message}", exc.filename or template,
                             exc.lineno) from None
        except jinja2.TemplateNotFound as exc:
            raise BuildError(f"template {exc.name!r} not found", self.theme) from None
        except jinja2.UndefinedError as exc:
            raise BuildError(f"template error: {exc.message}", template) from None
        return text.encode("utf-8")

    def page(self, template: str, url: str, **context: Any) -> tuple[str, bytes]:
        """``(output file, bytes)`` for one page: the shape extra page generators return."""
        return output_file(url), self.render(template, url, **context)


def render_site(site: Site, renderer: Renderer) -> dict[str, bytes]:
    """Every generated file of the site, by output path."""
    files: dict[str, bytes] = {}

    def add(path: str, body: bytes) -> None:
        if path in files:
            raise BuildError(f"two pages want the same output file {path!r}")
        files[path] = body

    for index in site.index_pages:
        add(*renderer.page("index.html", index.url, index=index))
    for entry in site.entries:
        add(*renderer.page("post.html", entry.url, entry=entry, newer=site.newer(entry),
                           older=site.older(entry)))
    for page in site.pages:
        add(*renderer.page("page.html", page.url, page=page))
    for tag in site.tags:
        add(*renderer.page("tag.html", tag.url, tag=tag))
    add(*renderer.page("tags.html", "tags/"))
    add(*renderer.page("archive.html", "archive/"))
    add("404.html", renderer.render("404.html", "404.html"))
    for feed in site.feeds:
        add(feed.url, renderer.render("atom.xml", feed.url, feed=feed))
    add("static/pygments.css", pygments_css().encode())
    return files


def sitemap_xml(site: Site, extra_urls: Iterable[str] = ()) -> bytes:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">']
    for row in site.sitemap(tuple(extra_urls)):
        lastmod = f"<lastmod>{_isodate(row.lastmod)}</lastmod>" if row.lastmod else ""
        loc = xml_escape(site.config.base_url + row.url)
        lines.append(f"  <url><loc>{loc}</loc>{lastmod}</url>")
    lines.append("</urlset>")
    return ("\n".join(lines) + "\n").encode()


def robots_txt(site: Site) -> bytes:
    return f"User-agent: *\nAllow: /\n\nSitemap: {site.config.base_url}sitemap.xml\n".encode()


def static_files(paths: SitePaths, theme: Path) -> dict[str, Path]:
    """Static files by output path (under ``static/``); the site's copy beats the theme's."""
    found: dict[str, Path] = {}
    for folder in (theme / "static", paths.site_static):
        if not folder.is_dir():
            continue
        for file in sorted(folder.rglob("*")):
            relative = file.relative_to(folder)
            if file.is_file() and not any(part.startswith(".") for part in relative.parts):
                found[f"static/{relative.as_posix()}"] = file
    return dict(sorted(found.items()))


def _href(prefix: str, path: str) -> str:
    path = str(path)
    if "://" in path or path.startswith(("#", "mailto:")):
        return path
    return prefix + path.lstrip("/")


def _isodate(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _human_date(when: datetime) -> str:
    # no strftime("%B"): month names must not depend on the build machine's locale
    return f"{when.day} {MONTHS[when.month - 1]} {when.year}"
