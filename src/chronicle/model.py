"""The site model: every cross-reference resolved before a byte is written.

:func:`build_site` takes rendered posts and pages and returns one immutable
:class:`Site`: posts newest first, previous/next neighbours, tags, the archive by
year, index pagination, Atom feeds and the sitemap. Every list is sorted on a total
key, so the same inputs always give the same model.

URLs in the model are *site paths*: relative to the site root, no leading slash,
ending in ``/`` for HTML pages (``""`` is the home page, ``2025/03/boot-time/`` a post,
``atom.xml`` a file). Templates turn them into links with ``href()`` and ``absolute()``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from functools import cached_property
from operator import attrgetter
from pathlib import Path, PurePath
from typing import Any

from chronicle.cache import digest
from chronicle.config import SiteConfig
from chronicle.content import Page, Post, slugify
from chronicle.markdown import Heading

FEED_SIZE = 20


@dataclass(frozen=True, eq=False)
class Body:
    """Rendered HTML, held or loaded on demand: a 10,000-post site keeps only digests in
    memory and reads a body back from the cache when a page shows it."""

    digest: str  # names the HTML: equal digests, equal HTML
    text: str | None = None
    load: Callable[[str], str] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, html: str) -> Body:
        return cls(digest(html), html)

    @property
    def html(self) -> str:
        if self.text is not None:
            return self.text
        assert self.load is not None, "a Body needs its text or a loader"
        return self.load(self.digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Body) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)


def _assign(obj: object, **values: object) -> None:
    """Set a frozen dataclass's fields from an ``__init__`` that takes ``html=`` too."""
    for name, value in values.items():
        object.__setattr__(obj, name, value)


def _figures(figures: Iterable[Any]) -> Sequence[Any]:
    """A document's figures as a tuple, or as the sequence the figure cache reads back
    when first asked for (:class:`chronicle.figure_cache.StoredFigures`), left unread."""
    if isinstance(figures, Sequence) and not isinstance(figures, list):
        return figures
    return tuple(figures)


class _Rendered:
    """What a rendered post and a rendered page share: the body, loaded when asked for."""

    body: Body

    @property
    def html(self) -> str:
        return self.body.html


@dataclass(frozen=True, init=False)
class Entry(_Rendered):
    """A post ready to render: its data plus its HTML and what was learnt rendering it."""

    post: Post
    body: Body
    headings: tuple[Heading, ...]
    show_toc: bool
    reading_minutes: int
    # when a number the post's figures show last moved significantly after its date
    # (chronicle.updates): a re-run that changes nothing leaves the post's date alone
    embeds_updated: datetime | None
    notes: tuple[Any, ...]  # what moved: chronicle.updates.UpdateNote, oldest first
    # what the body's placeholders stand for (chronicle.figures.Figure): not in the
    # digest, for a page showing them records the results they show (result:NAME), and
    # their specs are in the body's digest, the source's hash
    figures: Sequence[Any] = field(metadata={"digest": False})

    def __init__(self, post: Post, html: str = "", headings: tuple[Heading, ...] = (),
                 show_toc: bool = False, reading_minutes: int = 1,
                 embeds_updated: datetime | None = None, body: Body | None = None,
                 figures: Sequence[Any] = (), notes: tuple[Any, ...] = ()):
        _assign(self, post=post, body=body or Body.of(html), headings=tuple(headings),
                show_toc=show_toc, reading_minutes=reading_minutes,
                embeds_updated=embeds_updated, notes=tuple(notes), figures=_figures(figures))

    @cached_property
    def digest(self) -> str:
        """Everything a template can learn from this entry, hashed (see fields_digest)."""
        return fields_digest("entry", self)

    @property
    def url(self) -> str:
        return self.post.url

    @property
    def title(self) -> str:
        return self.post.title

    @property
    def date(self) -> datetime:
        return self.post.date

    @property
    def tags(self) -> tuple[str, ...]:
        return self.post.tags

    @property
    def summary(self) -> str:
        return self.post.summary

    @property
    def updated(self) -> datetime:
        """When the post last changed: its own ``updated``/``date``, or a significant
        change since in a number it shows (its newest update note)."""
        own = self.post.last_modified
        if self.embeds_updated is not None and self.embeds_updated > own:
            return self.embeds_updated
        return own

    @property
    def sort_key(self) -> tuple[datetime, str]:
        return (self.post.date, self.post.slug)


@dataclass(frozen=True, init=False)
class PageEntry(_Rendered):
    page: Page
    body: Body
    headings: tuple[Heading, ...]
    show_toc: bool
    figures: Sequence[Any] = field(metadata={"digest": False})  # as Entry.figures

    def __init__(self, page: Page, html: str = "", headings: tuple[Heading, ...] = (),
                 show_toc: bool = False, body: Body | None = None,
                 figures: Sequence[Any] = ()):
        _assign(self, page=page, body=body or Body.of(html), headings=tuple(headings),
                show_toc=show_toc, figures=_figures(figures))

    @cached_property
    def digest(self) -> str:
        return fields_digest("page", self)

    @property
    def url(self) -> str:
        return self.page.url

    @property
    def title(self) -> str:
        return self.page.title


@dataclass(frozen=True)
class Tag:
    name: str
    slug: str
    entries: tuple[Entry, ...]

    @property
    def url(self) -> str:
        return f"tags/{self.slug}/"

    @property
    def feed_url(self) -> str:
        return f"tags/{self.slug}/atom.xml"


@dataclass(frozen=True)
class IndexPage:
    number: int
    total: int
    entries: tuple[Entry, ...]

    @property
    def url(self) -> str:
        return index_url(self.number)

    @property
    def newer_url(self) -> str | None:
        return index_url(self.number - 1) if self.number > 1 else None

    @property
    def older_url(self) -> str | None:
        return index_url(self.number + 1) if self.number < self.total else None


@dataclass(frozen=True)
class Year:
    year: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Feed:
    url: str  # the feed file itself
    title: str
    page_url: str  # the HTML page the feed mirrors
    entries: tuple[Entry, ...]
    updated: datetime


@dataclass(frozen=True)
class Redirect:
    """An old URL of a post or page (its front matter's ``aliases``): a page there sends
    readers and search engines on to ``target``."""

    url: str  # the old site path
    target: str  # the post's or page's site path
    title: str
    source: Path  # the file naming the alias, for messages


@dataclass(frozen=True)
class SitemapEntry:
    url: str
    lastmod: datetime | None


@dataclass(frozen=True)
class Site:
    config: SiteConfig
    now: datetime
    entries: tuple[Entry, ...]  # newest first
    pages: tuple[PageEntry, ...]
    tags: tuple[Tag, ...]
    years: tuple[Year, ...]  # newest first
    index_pages: tuple[IndexPage, ...]
    feeds: tuple[Feed, ...]
    updated: datetime

    def newer(self, entry: Entry) -> Entry | None:
        i = self._position(entry)
        return self.entries[i - 1] if i > 0 else None

    def older(self, entry: Entry) -> Entry | None:
        i = self._position(entry)
        return self.entries[i + 1] if i + 1 < len(self.entries) else None

    def tag(self, name: str) -> Tag:
        return self._tags_by_slug[slugify(name)]

    @cached_property
    def redirects(self) -> tuple[Redirect, ...]:
        """Every alias of every post and page, by old URL (none is in the sitemap)."""
        found = [Redirect(alias, e.url, e.title, e.post.source)
                 for e in self.entries for alias in e.post.aliases]
        found += [Redirect(alias, p.url, p.title, p.page.source)
                  for p in self.pages for alias in p.page.aliases]
        return tuple(sorted(found, key=lambda r: (r.url, str(r.source))))

    @cached_property
    def _tags_by_slug(self) -> dict[str, Tag]:
        # a dict: templates look a tag up for every tag of every listed post
        return {t.slug: t for t in self.tags}

    def sitemap(self, extra_urls: tuple[str, ...] = ()) -> tuple[SitemapEntry, ...]:
        """Every HTML page, each post with the date its content last changed."""
        rows = [SitemapEntry(page.url, self.updated if page.number == 1 else None)
                for page in self.index_pages]
        rows += [SitemapEntry(e.url, e.updated) for e in self.entries]
        rows += [SitemapEntry(p.url, None) for p in self.pages]
        rows += [SitemapEntry("tags/", None), SitemapEntry("archive/", None)]
        rows += [SitemapEntry(t.url, max(e.updated for e in t.entries)) for t in self.tags]
        rows += [SitemapEntry(url, None) for url in extra_urls]
        return tuple(sorted(rows, key=lambda row: row.url))

    def _position(self, entry: Entry) -> int:
        return self._positions[entry.url]

    @cached_property
    def _positions(self) -> dict[str, int]:
        # a dict, not a scan: newer()/older() run once per post, so a scan is O(N²)
        return {e.url: i for i, e in enumerate(self.entries)}


def fields_digest(kind: str, value: object) -> str:
    """A hash of every field of a dataclass, nested ones included: a field added to
    :class:`Post` (say) reaches every page that shows it without anyone listing it here.
    A field whose metadata says ``digest=False`` is left out (a post's markdown source:
    its rendered body is hashed instead)."""
    return digest(kind, _encoded(value))


def _encoded(value: object) -> str:
    kind = type(value)
    encode = _ENCODERS.get(kind)
    if encode is None:
        encode = _ENCODERS[kind] = _encoder(kind)
    return encode(value)


def _encoder(kind: type) -> Callable[[Any], str]:
    """How to write a value of ``kind`` as text, chosen once per type (:data:`_ENCODERS`):
    each entry's digest is made twice a build, on every post."""
    if kind is str:
        return _same
    if kind is type(None):
        return lambda value: "\x1b"
    if issubclass(kind, bool | int | float | PurePath):
        return str
    if issubclass(kind, datetime):
        return kind.isoformat
    if issubclass(kind, Body):
        return attrgetter("digest")
    if issubclass(kind, tuple | list | frozenset):
        return lambda value: "\x1e".join(map(_encoded, value)) + "\x1d"
    if is_dataclass(kind):
        names = [f.name for f in fields(kind) if f.metadata.get("digest", True)]
        get = attrgetter(*names)
        if len(names) == 1:
            return lambda value: _encoded(get(value))
        return lambda value: "\x1f".join(map(_encoded, get(value)))
    raise TypeError(f"fields_digest cannot hash a {kind.__name__}: say how in _encoder")


_ENCODERS: dict[type, Callable[[Any], str]] = {}


def _same(value: str) -> str:
    return value


def index_url(number: int) -> str:
    return "" if number == 1 else f"page/{number}/"


def build_site(config: SiteConfig, entries: list[Entry], pages: list[PageEntry],
               now: datetime) -> Site:
    newest_first = tuple(sorted(entries, key=lambda e: e.sort_key, reverse=True))
    updated = max((e.updated for e in newest_first), default=now)
    tags = _tags(newest_first)
    feeds = [Feed("atom.xml", config.title, "", newest_first[:FEED_SIZE], updated)]
    feeds += [Feed(t.feed_url, f"{config.title}: {t.name}", t.url, t.entries[:FEED_SIZE],
                   max(e.updated for e in t.entries)) for t in tags]
    return Site(
        config=config, now=now, entries=newest_first,
        pages=tuple(sorted(pages, key=lambda p: p.url)),
        tags=tags, years=_years(newest_first),
        index_pages=_paginate(newest_first, config.posts_per_page),
        feeds=tuple(feeds), updated=updated,
    )


def _tags(entries: tuple[Entry, ...]) -> tuple[Tag, ...]:
    by_slug: dict[str, list[Entry]] = defaultdict(list)
    names: dict[str, set[str]] = defaultdict(set)
    for entry in entries:
        for name in entry.tags:
            by_slug[slugify(name)].append(entry)
            names[slugify(name)].add(name)
    # "Nix" and "nix" are one tag; the name shown is chosen the same way every build
    return tuple(Tag(name=min(names[slug]), slug=slug, entries=tuple(by_slug[slug]))
                 for slug in sorted(by_slug))


def _years(entries: tuple[Entry, ...]) -> tuple[Year, ...]:
    by_year: dict[int, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_year[entry.date.year].append(entry)
    return tuple(Year(year, tuple(by_year[year])) for year in sorted(by_year, reverse=True))


def _paginate(entries: tuple[Entry, ...], per_page: int) -> tuple[IndexPage, ...]:
    chunks = [entries[i:i + per_page] for i in range(0, len(entries), per_page)] or [()]
    return tuple(IndexPage(n, len(chunks), chunk) for n, chunk in enumerate(chunks, start=1))
