"""``chronicle build``: the whole pipeline on one page.

    load config → gather posts and pages → parse every post → build the site model
    → render every page → write the output folder (stage, then swap)

Phase 1 (up to the model) reads everything and collects *every* bad post before
giving up, so one run reports them all (:class:`BuildErrors`). Phase 2 renders from
the immutable model and writes nothing until everything has rendered.

Hooks for the other half of Chronicle, both on :class:`BuildOptions`:

``embed_factory(source: Path) -> hook``
    Called once per post or page; ``hook(kind, experiment, body, line) -> html``
    renders its ``chart``/``table``/``compare`` fences (see :mod:`chronicle.markdown`).
    After the document is rendered the build reads two optional attributes of the
    hook: ``updated`` (a datetime: the newest result the document shows; a post whose
    data is newer than its text gets that date as its Atom ``<updated>`` and sitemap
    ``<lastmod>``) and ``warnings`` (strings, counted like the build's own warnings
    and fatal under ``--strict``). Without a factory an embed fence is a build error.

``extra_pages``: callables ``(site: Site, renderer: Renderer) -> iterable of
(output path, bytes)``
    Extra generated files, e.g. the lab's ``lab/index.html``. ``renderer.page(template,
    url, **context)`` renders a theme template for site path ``url`` and returns that
    pair. Pages ending in ``index.html`` join the sitemap. Two files with one output
    path are an error.

"Now" (drafts and scheduled posts, empty feeds) is ``--now``, else
``SOURCE_DATE_EPOCH``, else the clock. Every other date in the output comes from
content, so the same inputs give a byte-identical output folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from chronicle.config import SiteConfig, load_config
from chronicle.content import Page, Post, find_sources, read_page, read_post
from chronicle.errors import BuildError, BuildErrors
from chronicle.markdown import EmbedHook, render_markdown
from chronicle.model import Entry, PageEntry, Site, build_site
from chronicle.output import write_site
from chronicle.paths import SitePaths
from chronicle.render import (
    Renderer,
    find_theme,
    output_file,
    render_site,
    robots_txt,
    sitemap_xml,
    static_files,
)

EmbedFactory = Callable[[Path], EmbedHook]
ExtraPages = Callable[[Site, Renderer], Iterable[tuple[str, bytes]]]


@dataclass(frozen=True)
class BuildOptions:
    root: Path
    out: Path | None = None  # default: <root>/output
    drafts: bool = False
    future: bool = False
    now: datetime | None = None  # naive means the site's time zone
    strict: bool = False  # warnings fail the build
    allow_missing: bool = False  # for the embed factory: a missing result is not an error
    embed_factory: EmbedFactory | None = None
    extra_pages: tuple[ExtraPages, ...] = field(default=())


@dataclass(frozen=True)
class BuildReport:
    out: Path
    pages: int  # HTML pages written
    files: int  # every file written
    seconds: float
    warnings: tuple[str, ...]

    def summary(self) -> str:
        noun = "page" if self.pages == 1 else "pages"
        line = f"built {self.pages} {noun} ({self.files} files) in {self.seconds:.2f} s"
        if self.warnings:
            line += f", {len(self.warnings)} warning{'s' if len(self.warnings) > 1 else ''}"
        return line


def build(options: BuildOptions) -> BuildReport:
    started = time.perf_counter()
    paths = SitePaths(options.root)
    config = load_config(paths.config)
    now = resolve_now(options.now, config.tz)
    posts, pages, read_errors = gather_content(paths, config)
    posts = select_posts(posts, options, now)
    entries, page_entries, warnings, parse_errors = parse_content(posts, pages, options)
    if read_errors or parse_errors:
        raise BuildErrors(read_errors + parse_errors)
    site = build_site(config, entries, page_entries, now)
    files = render_files(site, paths, options)
    if options.strict and warnings:
        raise BuildErrors([BuildError(f"warning (fatal with --strict): {w}") for w in warnings])
    out = options.out or paths.output
    written = write_site(files, out)
    return BuildReport(out=out, pages=sum(1 for name in files if name.endswith(".html")),
                       files=written, seconds=time.perf_counter() - started,
                       warnings=tuple(warnings))


def resolve_now(now: datetime | None, tz: tzinfo) -> datetime:
    if now is None and os.environ.get("SOURCE_DATE_EPOCH"):
        try:
            epoch = int(os.environ["SOURCE_DATE_EPOCH"])
        except ValueError:
            raise BuildError("SOURCE_DATE_EPOCH must be whole seconds since 1970") from None
        return datetime.fromtimestamp(epoch, UTC).astimezone(tz)
    if now is None:
        return datetime.now(tz)
    return now if now.tzinfo else now.replace(tzinfo=tz)


def gather_content(paths: SitePaths, config: SiteConfig
                   ) -> tuple[list[Post], list[Page], list[BuildError]]:
    """Read every post and page, keeping the good ones and every problem found."""
    errors: list[BuildError] = []
    posts: list[Post] = []
    pages: list[Page] = []
    for source in find_sources(paths.posts, "**/*.md"):
        try:
            posts.append(read_post(source, config.tz))
        except BuildError as exc:
            errors.append(exc)
    for source in find_sources(paths.pages, "*.md"):
        try:
            pages.append(read_page(source))
        except BuildError as exc:
            errors.append(exc)
    errors += _duplicates(posts, lambda p: p.slug, "slug")
    errors += _duplicates(pages, lambda p: p.slug, "page slug")
    return posts, pages, errors


def select_posts(posts: list[Post], options: BuildOptions, now: datetime) -> list[Post]:
    """Drafts and posts dated after ``now`` stay out unless asked for."""
    return [p for p in posts
            if (options.drafts or not p.draft) and (options.future or p.date <= now)]


def parse_content(posts: list[Post], pages: list[Page], options: BuildOptions
                  ) -> tuple[list[Entry], list[PageEntry], list[str], list[BuildError]]:
    """Render every document's markdown; returns entries, warnings and errors."""
    errors: list[BuildError] = []
    warnings: list[str] = []
    entries: list[Entry] = []
    page_entries: list[PageEntry] = []
    for doc in [*posts, *pages]:
        hook = options.embed_factory(doc.source) if options.embed_factory else None
        try:
            rendered = render_markdown(doc.body, doc.source, doc.body_line, hook)
        except BuildErrors as exc:
            errors += exc.errors
            continue
        except BuildError as exc:
            errors.append(exc)
            continue
        warnings += rendered.warnings
        warnings += [str(w) for w in getattr(hook, "warnings", None) or ()]
        show_toc = rendered.wants_toc(doc.toc)
        if isinstance(doc, Post):
            entries.append(Entry(post=doc, html=rendered.html, headings=rendered.headings,
                                 show_toc=show_toc, reading_minutes=rendered.reading_minutes,
                                 embeds_updated=getattr(hook, "updated", None)))
        else:
            page_entries.append(PageEntry(page=doc, html=rendered.html,
                                          headings=rendered.headings, show_toc=show_toc))
    return entries, page_entries, warnings, errors


def render_files(site: Site, paths: SitePaths, options: BuildOptions) -> dict[str, bytes | Path]:
    theme = find_theme(paths, site.config.theme)
    renderer = Renderer(site, paths, theme)
    files: dict[str, bytes | Path] = dict(render_site(site, renderer))
    extra_urls = []
    for generate in options.extra_pages:
        for name, body in generate(site, renderer):
            _add(files, name, body, "an extra page generator")
            if name.endswith("index.html"):
                extra_urls.append(name.removesuffix("index.html"))
    _add(files, "sitemap.xml", sitemap_xml(site, extra_urls), "the sitemap")
    _add(files, "robots.txt", robots_txt(site), "robots.txt")
    for name, source in static_files(paths, theme).items():
        _add(files, name, source, str(source))
    return dict(sorted(files.items()))


def _add(files: dict[str, bytes | Path], name: str, body: bytes | Path, who: str) -> None:
    if name in files or output_file(name) != name:
        raise BuildError(f"{who} wants to write {name!r}, which is taken or not a file name")
    files[name] = body


def _duplicates(docs: list, key: Callable, what: str) -> list[BuildError]:
    seen: dict[str, Path] = {}
    errors = []
    for doc in docs:
        first = seen.setdefault(key(doc), doc.source)
        if first != doc.source:
            errors.append(BuildError(f"duplicate {what} {key(doc)!r}, also used by {first}",
                                     doc.source))
    return errors
