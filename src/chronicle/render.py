"""Jinja2 rendering: theme lookup, the template environment, every page of the model.

Theme lookup, first match wins: ``site/templates/`` (and ``site/static/``), then the
site's ``themes/N/`` if it has one, then the theme installed with Chronicle
(``chronicle/skeleton/themes/N``, or the default theme under a theme of the site's own).
A site that overrides one template or stylesheet thus keeps every other one current when
Chronicle is upgraded, and a template a new version needs is found even in a site holding
an old full copy of the theme.

Templates get the :class:`~chronicle.model.Site` as ``site``, the config as ``config``,
the page's own site path as ``url``, and the helpers ``href(path)`` (a link that works
under the base URL's path), ``absolute(path)`` (a full URL, for feeds),
``once(macro, entry)`` (the macro's HTML for that entry, made once per build and reused
by every page that lists the entry), ``body(entry)`` (a post's or page's HTML with its
figures drawn in, see :mod:`chronicle.figures`) and the filters ``isodate`` and
``human_date``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape as xml_escape

import jinja2

from chronicle.embed_fences import PLACEHOLDER_MARK, fill
from chronicle.errors import BuildError
from chronicle.model import Site, Tag
from chronicle.paths import BUNDLED_THEMES as BUNDLED_THEMES  # where the preview watches
from chronicle.paths import SitePaths, packaged_theme

# Stand-ins for a figure's id while its HTML is made for any line (Renderer.figure):
# letters only, so any filter that keeps an id as it is keeps them too.
_ID_MARKS = ("chronicleidmarkq", "chronicleidmarkz")
# Fewer figures to make than this and a pool costs more than it saves (a figure whose
# charts are drawn already takes ~2 ms; one to draw, ~50 ms a chart).
MAKE_FIGURES_MIN = 24
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


def find_theme(paths: SitePaths, name: str) -> Path:
    """The theme the site names: its own ``themes/NAME/`` or else the installed one."""
    for folder in (paths.themes / name, packaged_theme(name)):
        if folder.is_dir() and folder.name == name:  # not the default theme standing in
            return folder
    raise BuildError(f"theme {name!r} not found in {paths.themes} or installed with Chronicle",
                     paths.config)


def theme_layers(theme: Path) -> list[Path]:
    """``theme`` and the installed theme beneath it, which supplies what it lacks."""
    installed = packaged_theme(theme.name)
    return [theme] if theme == installed else [theme, installed]


def output_file(url: str) -> str:
    """Site path → file in the output folder: ``a/b/`` → ``a/b/index.html``."""
    return f"{url}index.html" if url == "" or url.endswith("/") else url


class Recorder:
    """What one render read: the templates Jinja loaded and the parts of the site model."""

    def __init__(self) -> None:
        self.templates: set[str] = set()
        self.site: set[str] = set()

    def deps(self) -> list[str]:
        return sorted({f"template:{t}" for t in self.templates} | self.site)


class _TrackingEnvironment(jinja2.Environment):
    """An environment that notes every template a render asks for (extends, import,
    include, and the page's own): those templates are that page's inputs."""

    recorder: Recorder | None = None

    def get_template(self, name: Any, parent: str | None = None,
                     globals: Any = None) -> jinja2.Template:  # noqa: A002 - Jinja's name
        if self.recorder is not None and isinstance(name, str):
            self.recorder.templates.add(self.join_path(name, parent) if parent else name)
        return super().get_template(name, parent, globals)

    def select_template(self, names: Any, parent: str | None = None,
                        globals: Any = None) -> jinja2.Template:  # noqa: A002
        if self.recorder is not None and not isinstance(names, jinja2.Template):
            # every candidate counts: a new file for an earlier name changes the choice
            self.recorder.templates.update(n for n in names if isinstance(n, str))
        return super().select_template(names, parent, globals)


class _SiteView:
    """The ``site`` templates see: the model itself, noting which parts are read."""

    def __init__(self, site: Site, env: _TrackingEnvironment):
        self._site = site
        self._env = env

    def __getattr__(self, name: str) -> Any:
        if self._env.recorder is not None:
            self._env.recorder.site.add(f"site.{name}")
        return getattr(self._site, name)

    def tag(self, name: str) -> _TagView:
        tag = self._site.tag(name)
        if self._env.recorder is not None:
            self._env.recorder.site.add(f"tag:{tag.slug}")
        return _TagView(tag, self._env)


class _TagView:
    """A tag's name and links depend on the tag alone; its entries on the whole list."""

    SELF = frozenset({"name", "slug", "url", "feed_url"})

    def __init__(self, tag: Tag, env: _TrackingEnvironment):
        self._tag = tag
        self._env = env

    def __getattr__(self, name: str) -> Any:
        if name not in self.SELF and self._env.recorder is not None:
            self._env.recorder.site.add("site.tags")
        return getattr(self._tag, name)


class Renderer:
    """Renders templates for one site; also handed to extra page generators (the lab)."""

    def __init__(self, site: Site, paths: SitePaths, theme: Path, lab: Any = None):
        self.site = site
        self.paths = paths
        self.theme = theme
        self._lab = lab
        prefix = urlsplit(site.config.base_url).path or "/"
        folders = [paths.site_templates, *(layer / "templates" for layer in theme_layers(theme))]
        self.search_path = [p for p in folders if p.is_dir()]
        self.env = _TrackingEnvironment(
            loader=jinja2.FileSystemLoader([str(p) for p in self.search_path]),
            autoescape=jinja2.select_autoescape(["html", "xml"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
            auto_reload=False,  # templates do not change mid-build: no stat per render
        )
        self.env.globals.update(
            site=_SiteView(site, self.env), config=site.config,
            href=lambda path: _href(prefix, path),
            absolute=lambda path: site.config.base_url + str(path).lstrip("/"),
        )
        self.env.globals["once"] = self._once
        self.env.globals["body"] = self.body
        self.env.filters.update(isodate=_isodate, human_date=_human_date)
        self._made: dict[tuple[str, str], tuple[Any, Recorder]] = {}
        # a figure's HTML and what making it read, by figure and charts (see figure)
        self._figures: dict[tuple[Any, bool], tuple[str, Recorder]] = {}
        self._placed: set[tuple[Any, bool]] = set()  # figures whose HTML is per line
        # each figure as on any line (_anywhere), by id; the figure is kept beside it
        self._unplaced: dict[int, tuple[Any, Any]] = {}

    def lab(self) -> Any:
        """The build's view of the results store (a :class:`chronicle.figures.Lab`)."""
        if self._lab is None:
            from chronicle.figures import Lab

            self._lab = Lab.of_site(self.paths.root,
                                    urlsplit(self.site.config.base_url).path or "/")
        return self._lab

    @cached_property
    def charts(self) -> Any:
        """Drawn charts, cached by content in ``.chronicle/charts/``."""
        from chronicle.charts import ChartCache

        return ChartCache(self.paths.cache / "charts")

    def body(self, document: Any, charts: bool = True) -> str:
        """A post's or page's HTML with its figures in place of their placeholders
        (``charts=False``: each chart an empty ``<svg>``, nothing drawn, for the text).

        The page rendering it depends on each experiment a figure shows (``result:NAME``);
        its figures' own specs are in the body's digest already."""
        figures = document.figures
        if not figures:
            return document.html
        if self.env.recorder is not None:
            self.env.recorder.site.update(f"result:{s}" for f in figures for s in f.sources)
        return fill(document.html, lambda index: self.figure(figures[index], charts))

    def figure(self, figure: Any, charts: bool = True) -> str:
        """A figure's HTML from the theme's ``figures/<kind>.html``; what it read is
        replayed into each page that shows it (as with ``once``).

        Made once a process per figure *as it would be on any line*: a blog shows the same
        figure in many posts, and only its id (which names its line) differs between
        them, so that is put in afterwards (see :meth:`_make_figure`)."""
        key, marked = self._figure_key(figure, charts)
        made = self._figures.get(key)
        if made is None:
            made = self._make_figure(figure, charts, placed=not marked)
            if made[0] is None:  # the template does more with the id than show it
                self._placed.add(key)
                key, marked = (figure, charts), False
                made = self._make_figure(figure, charts, placed=True)
            self._figures[key] = made
        text, reads = made
        if marked:
            from chronicle.figure_parts import figure_id

            text = text.replace(_ID_MARKS[0], figure_id(figure.spec))
        return self._replayed((text, reads), self.env.recorder)

    def _anywhere(self, figure: Any, charts: bool) -> tuple[Any, bool]:
        """:func:`_unplaced` of ``figure``, made once per figure: a page asks for each
        of its figures, and a new result re-renders a thousand pages (two copies of a
        spec and a figure each time: 0.69 s of an 11 s cProfile of such a build)."""
        known = self._unplaced.get(id(figure))
        if known is None or known[0] is not figure:
            known = self._unplaced[id(figure)] = (figure, _unplaced(figure))
        return known[1], charts

    def _figure_key(self, figure: Any, charts: bool) -> tuple[tuple[Any, bool], bool]:
        """The key of a figure's HTML in :attr:`_figures`, and whether its id is still to
        be put in (the figure on line 0 stands for it on any line)."""
        anywhere = self._anywhere(figure, charts)
        if anywhere in self._placed:
            return (figure, charts), False
        return anywhere, True

    def _make_figure(self, figure: Any, charts: bool, placed: bool = False
                     ) -> tuple[str | None, Recorder]:
        """The figure's HTML and what making it read. Unless ``placed``, with a mark for
        its id, rendered twice with two marks to be sure the template only shows the id:
        if not, the text is None and the figure must be made for each line."""
        from chronicle.figure_parts import figure_context
        from chronicle.figures import NO_CHARTS

        outer = self.env.recorder
        self.env.recorder = inner = Recorder()
        try:
            drawn = _RecordedCharts(self.charts, inner) if charts else NO_CHARTS
            template, context = figure_context(figure, drawn)
            if placed:
                return self._render_text(template, context), inner
            first, second = (self._render_text(template, {**context, "id": mark})
                             for mark in _ID_MARKS)
        finally:
            self.env.recorder = outer
        same = first.replace(_ID_MARKS[0], _ID_MARKS[1]) == second
        return (first if same else None), inner

    def make_figures(self, figures: Iterable[Any]) -> None:
        """Make the HTML of every figure in ``figures`` not made yet, on every core, with
        and without charts: pages rendered next (by processes forked from this one) find
        them made, and each chart of a cold build is drawn once, not once per process."""
        from chronicle.parallel import iter_chunks

        todo: dict[Any, Any] = {}
        for figure in figures:
            key, _ = self._figure_key(figure, True)
            if key not in self._figures:
                todo.setdefault(key, figure)
        wanted = list(todo.values())

        def work(indices: Iterable[int]) -> list[tuple[int, bool, bool, Any, Recorder]]:
            done = []
            for i in indices:
                for charts in (True, False):
                    self.figure(wanted[i], charts)
                    key, marked = self._figure_key(wanted[i], charts)
                    # the figures stay here (they hold their results): only indices travel
                    done.append((i, charts, marked, *self._figures[key]))
            return done

        for i, charts, marked, text, reads in iter_chunks(
                work, len(wanted), minimum=MAKE_FIGURES_MIN, small=True):
            key = self._anywhere(wanted[i], charts)
            if not marked:  # made for its line only (see figure)
                self._placed.add(key)
                key = (wanted[i], charts)
            self._figures[key] = (text, reads)

    def _once(self, macro: Any, entry: Any) -> Any:
        """``macro(entry)``, computed once per entry and process.

        A tag page lists hundreds of posts and each post is listed on several pages;
        an imported macro sees only the globals, so its HTML for an entry is the same on
        every page. What the first call read is replayed into each later page's record.
        """
        key = (macro.name, entry.url)
        made = self._made.get(key)
        outer = self.env.recorder
        if made is None:
            self.env.recorder = inner = Recorder()
            try:
                made = self._made[key] = (macro(entry), inner)
            finally:
                self.env.recorder = outer
        return self._replayed(made, outer)

    @staticmethod
    def _replayed(made: tuple[Any, Recorder], outer: Recorder | None) -> Any:
        """A value made once, with what making it read added to the page being recorded."""
        value, reads = made
        if outer is not None:
            outer.templates |= reads.templates
            outer.site |= reads.site
        return value

    def template_file(self, name: str) -> Path | None:
        """The file the loader uses for template ``name`` (a site override first)."""
        for folder in self.search_path:
            candidate = folder / name
            if candidate.is_file():
                return candidate
        return None

    @contextmanager
    def recording(self) -> Iterator[Recorder]:
        """Note what the renders inside the block read (nested blocks share the outer one)."""
        if self.env.recorder is not None:
            yield self.env.recorder
            return
        recorder = self.env.recorder = Recorder()
        try:
            yield recorder
        finally:
            self.env.recorder = None

    def render(self, template: str, url: str, **context: Any) -> bytes:
        """Render ``template`` for the page at site path ``url``."""
        text = self._render_text(template, {"url": url, **context})
        if PLACEHOLDER_MARK in text:
            # A template made before figures were drawn at render time (an older init's
            # full theme copy, an ejected post.html) writes entry.html: the one document
            # of its page still shows its figures. Where a page shows several bodies,
            # whose figure is whose cannot be told: an error, never a silent gap.
            document = context.get("entry") or context.get("page")
            if getattr(document, "figures", None):
                if self.env.recorder is not None:
                    self.env.recorder.site.update(f"result:{s}" for f in document.figures
                                                  for s in f.sources)
                text = fill(text, lambda index: self.figure(document.figures[index]))
        if PLACEHOLDER_MARK in text:
            raise BuildError(f"template {template!r} (or one it includes) shows a body with "
                             "its figures left out: write body(entry) or body(page) where it "
                             "writes entry.html or page.html", self.template_file(template)
                             or self.theme)
        return text.encode("utf-8")

    def _render_text(self, template: str, context: dict[str, Any]) -> str:
        try:
            return self.env.get_template(template).render(**context)
        except jinja2.TemplateSyntaxError as exc:
            raise BuildError(f"template error: {exc.message}", exc.filename or template,
                             exc.lineno) from None
        except jinja2.TemplateNotFound as exc:
            raise BuildError(f"template {exc.name!r} not found", self.theme) from None
        except jinja2.UndefinedError as exc:
            raise BuildError(f"template error: {exc.message}", template) from None

    def page(self, template: str, url: str, **context: Any) -> tuple[str, bytes]:
        """``(output file, bytes)`` for one page: the shape extra page generators return."""
        return output_file(url), self.render(template, url, **context)


def _unplaced(figure: Any) -> Any:
    """A figure as it would be on any line: what most of its HTML depends on. A
    comparison of two hosts carries its other side's figure on the same line too."""
    def unplaced(shown: Any) -> Any:
        return replace(shown, spec=replace(shown.spec, line=0))

    anywhere = unplaced(figure)
    if figure.other is not None:
        anywhere = replace(anywhere, other=unplaced(figure.other))
    return anywhere


class _RecordedCharts:
    """The chart cache, noting in a figure's record each chart file it shows
    (``chart:KEY``: the file is named by its content, so the name is its hash)."""

    def __init__(self, charts: Any, recorder: Recorder):
        self.charts, self.recorder = charts, recorder

    def svg(self, chart: Any) -> str:
        self.recorder.site.add(f"chart:{chart.key()}")
        return self.charts.svg(chart)


@dataclass(frozen=True)
class PageJob:
    """One output file rendered from a theme template: what to render and with what."""

    name: str  # output file
    template: str
    url: str
    context: dict[str, Any]

    def render(self, renderer: Renderer) -> bytes:
        return renderer.render(self.template, self.url, **self.context)

    def figures(self) -> list[Any]:
        """The figures of the bodies this page may show: its post's or page's, or its
        feed's entries'."""
        documents = [self.context.get("entry"), self.context.get("page")]
        feed = self.context.get("feed")
        documents += feed.entries if feed is not None else []
        return [f for d in documents if d is not None for f in getattr(d, "figures", ())]


def page_jobs(site: Site) -> list[PageJob]:
    """Every templated file of the site, in a fixed order; no two share an output file."""
    jobs: list[PageJob] = []

    def page(template: str, url: str, name: str | None = None, **context: Any) -> None:
        jobs.append(PageJob(name or output_file(url), template, url, context))

    # The pages that list many posts come first: rendered in parallel, the longest jobs
    # must start early (the archive of a 10,000-post site takes ~0.2 s, a post 0.1 ms),
    # or one process finishes them alone while the others wait.
    page("archive.html", "archive/")
    page("tags.html", "tags/")
    for tag in site.tags:
        page("tag.html", tag.url, tag=tag)
    for feed in site.feeds:
        page("atom.xml", feed.url, name=feed.url, feed=feed)
    for index in site.index_pages:
        page("index.html", index.url, index=index)
    for entry in site.entries:
        page("post.html", entry.url, entry=entry, newer=site.newer(entry),
             older=site.older(entry))
    for static_page in site.pages:
        page("page.html", static_page.url, page=static_page)
    page("404.html", "404.html", name="404.html")
    seen: set[str] = set()
    for job in jobs:
        if job.name in seen:
            raise BuildError(f"two pages want the same output file {job.name!r}")
        seen.add(job.name)
    # after every real page: an alias may only take a URL nothing else has
    taken_by: dict[str, Path] = {}
    for redirect in site.redirects:
        name = output_file(redirect.url)
        if name in seen:
            first = taken_by.get(name)
            where = f"the alias in {first}" if first else "a page of the site"
            raise BuildError(f"alias /{redirect.url} is already taken by {where}",
                             redirect.source)
        seen.add(name)
        taken_by[name] = redirect.source
        page("redirect.html", redirect.url, redirect=redirect)
    return jobs


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
    """Static files by output path (under ``static/``): the site's copy beats its theme
    folder's, which beats the installed theme's."""
    found: dict[str, Path] = {}
    folders = [layer / "static" for layer in reversed(theme_layers(theme))]
    for folder in (*folders, paths.site_static):
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
