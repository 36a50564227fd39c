"""The static search index: ``search.json``, made from the site model.

One record per post (newest first), then one per page::

    {"kind": "post", "title": ..., "url": "2025/03/boot-time/", "date": "2025-03-01",
     "tags": [...], "summary": ..., "excerpt": "first words of the text",
     "words": ["boot", "incus", ...]}

``url`` is a site path like every URL in the model; the client script resolves it
against the address it fetched the index from, so the index works under any base path.
``words`` is the sorted set of the document's distinct words (case-folded, no numbers,
no common English words): enough for a prefix search over a blog, a fraction of the
size of the full text. The same model always gives the same bytes.

The site works without it: ``static/search.js`` only adds a search box when scripts run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from html import unescape
from typing import Any

from chronicle.cache import code_version, digest
from chronicle.model import Entry, PageEntry, Site, fields_digest

INDEX_PATH = "search.json"
EXCERPT_WORDS = 30
# Text inside these elements is markup or drawing, not prose a reader would search for.
SKIP_ELEMENTS = {"script", "style", "svg", "math", "template"}
BLOCK_ELEMENTS = {"br", "p", "li", "dt", "dd", "td", "th", "tr", "pre", "div", "blockquote",
                  "figure", "figcaption", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table"}
WORD = re.compile(r"\w+(?:[-.']\w+)*")
_JOINERS = re.compile(r"[-.']")
RAW_TEXT_ELEMENTS = {"script", "style"}
# a comment, CDATA, <!...> or <?...>; else a start (group 1 empty) or end tag and its name
_TAG = re.compile(r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<[!?][^>]*>"
                  r"|<(/?)([a-zA-Z][^\s/>]*)[^>\"']*(?:(?:\"[^\"]*\"|'[^']*')[^>\"']*)*>",
                  re.S)
# UTF-8 bytes of one post's record, keyed by record_key(entry): made by the build while
# it parses the post (see post_record), so the index need not read the bodies back
RECORD_NAMESPACE = "search-json"
RECORDS_PER_CHUNK = 1000  # records made and kept per step when the cache lacks them
# Any block element's start or end tag (same tail as _TAG), and any other tag.
_BLOCK_TAG = re.compile(r"</?(?:" + "|".join(sorted(BLOCK_ELEMENTS, key=len, reverse=True))
                        + r")(?=[\s/>])[^>\"']*(?:(?:\"[^\"]*\"|'[^']*')[^>\"']*)*>", re.I)
_ANY_TAG = re.compile(r"</?[a-zA-Z][^\s/>]*[^>\"']*(?:(?:\"[^\"]*\"|'[^']*')[^>\"']*)*>")
_SLOW = re.compile(r"<[!?]|<(?:" + "|".join(sorted(SKIP_ELEMENTS | RAW_TEXT_ELEMENTS))
                   + r")\b", re.I)
STOP_WORDS = frozenset("""
a about after all also an and any are as at be been but by can could did do does for
from had has have he her his how i if in into is it its just more most my no not of on
one or our out she so such than that the their them then there these they this those to
too up us was we were what when which who why will with would you your
""".split())


def search_index(site: Site, cache: Any = None,
                 body: Callable[[Entry], str] | None = None,
                 figure: Callable[[Any], str] | None = None) -> bytes:
    """The bytes of ``search.json`` for ``site``.

    With a build cache (``renderer.cache``), each post's record is the one the build
    stored while it parsed the post (:func:`post_record`), under a key that covers
    everything the record shows: an edit re-indexes only the posts it changed. Records
    missing from the cache (a model made outside a build, or no cache) are made here from
    the rendered HTML, a thousand at a time so no step holds every body: the same words,
    but the excerpt keeps footnote marks that the text of the parsed tokens leaves out.
    A post with figures is indexed from what its figures show (their tables, captions
    and badges): ``body(entry)`` gives its HTML with them drawn in (the parser knows only
    their placeholders, so these records are always made here). With ``figure`` (one
    figure's HTML), from its prose's words, kept in the cache by its body (see
    :func:`prose_words`), and each figure's: a new result then re-indexes the posts
    showing it without reading their prose again.
    """
    keys = [record_key(entry) for entry in site.entries]
    known: dict[str, bytes] = cache.get_many(RECORD_NAMESPACE, keys) if cache else {}
    missing = [i for i, key in enumerate(keys) if key not in known]
    figure_words = _FigureWords(figure) if figure is not None else None
    for start in range(0, len(missing), RECORDS_PER_CHUNK):
        chunk = [site.entries[i] for i in missing[start:start + RECORDS_PER_CHUNK]]
        proses = _proses(chunk, cache) if figure_words is not None else {}
        for entry in chunk:
            prose = proses.get(entry.body.digest)
            if prose is not None and figure_words is not None:
                key, record = _figure_post_record(entry, prose, figure_words, body)
            else:
                html = body(entry) if body is not None and entry.figures else None
                key, record = post_record(entry, html=html)
            known[key] = record
            if cache is not None:
                cache.put(RECORD_NAMESPACE, key, record)
        if cache is not None:
            cache.flush()  # content-addressed: safe to keep early, and memory stays flat
    records = [known[key] for key in keys]
    del known
    records += [_record_json(_page_record(page)) for page in site.pages]
    # the same bytes json.dumps(sort_keys=True) gives for the whole document
    return b'{"entries":[' + b",".join(records) + b'],"version":1}\n'


def record_key(entry: Entry) -> str:
    """A post record's cache key: the code version (a new record format must not reuse
    old records), the post's fields, its body's digest (its figures' specs included) and
    what its figures show besides: all the record shows. Not the entry's digest, which
    also covers what the index does not show (the date of the results its figures show)."""
    # figures the build cache read back know what they show unread (StoredFigures)
    shows = getattr(entry.figures, "shows", None)
    if shows is None:
        shows = [figure.shows for figure in entry.figures]
    return digest(code_version(), fields_digest("post", entry.post), entry.body.digest,
                  *shows)


def post_record(entry: Entry, text: str | None = None, terms: Iterable[str] | None = None,
                html: str | None = None) -> tuple[str, bytes]:
    """``(record_key(entry), record bytes)`` for a post; ``text`` is its body's readable
    text and ``terms`` its distinct case-folded words when known (``Rendered.text`` and
    ``Rendered.terms``), else they are taken from the rendered HTML."""
    if text is None:
        text = html_text(entry.html if html is None else html)
    body_words = term_words(terms) if terms is not None else index_words([text])
    return _post_json(entry, excerpt(text), body_words)


def _post_json(entry: Entry, lead: str, body_words: Iterable[str]) -> tuple[str, bytes]:
    """A post's record from its excerpt and its body's words."""
    # index_words works word by word, so the words of the parts are the parts' words
    words = index_words([entry.title, entry.summary, " ".join(entry.tags)])
    return record_key(entry), _record_json({
        "kind": "post",
        "title": entry.title,
        "url": entry.url,
        "date": entry.date.date().isoformat(),
        "tags": list(entry.tags),
        "summary": entry.summary,
        "excerpt": lead,
        "words": sorted({*words, *body_words}),
    })


# A post with figures: its prose's words and, when its first figure comes after
# EXCERPT_WORDS words, its excerpt (prose_words), keyed by the body's digest.
PROSE_NAMESPACE = "search-prose"


def prose_words(html: str) -> tuple[list[str], str | None]:
    """The words of a body with figure placeholders (comments: no text), and its excerpt
    if the words before the first placeholder decide it (else None). A figure is a block
    of its own, so the words of the whole are those of its parts."""
    from chronicle.embed_fences import PLACEHOLDER_MARK

    lead = html_text(html[:html.find(PLACEHOLDER_MARK)] if PLACEHOLDER_MARK in html else html)
    decided = len(lead.split(None, EXCERPT_WORDS)) > EXCERPT_WORDS
    return index_words([html_text(html)]), excerpt(lead) if decided else None


def _proses(entries: list[Entry], cache: Any) -> dict[str, tuple[list[str], str | None]]:
    """:func:`prose_words` of the entries with figures, from the cache or made here."""
    wanted = {entry.body.digest: entry for entry in entries if entry.figures}
    found = cache.get_many(PROSE_NAMESPACE, list(wanted)) if cache is not None else {}
    for key, entry in wanted.items():
        if key not in found:
            found[key] = prose_words(entry.html)
            if cache is not None:
                cache.put(PROSE_NAMESPACE, key, found[key])
    return found


# stands for a figure's id (which names its line): a character no page text holds
_ID_MARK = "\ue000"


class _FigureWords:
    """Each figure's words, by its HTML with its id marked: a blog shows the same figures
    again and again, on other lines, and an id in a tag's attribute is no text."""

    def __init__(self, figure: Callable[[Any], str]):
        self.figure = figure
        self.known: dict[str, list[str] | None] = {}

    def __call__(self, figure: Any) -> list[str]:
        # imported here: a blog without figures never loads it (nor numpy with it)
        from chronicle.figure_parts import figure_id

        html = self.figure(figure)
        anywhere = html.replace(figure_id(figure.spec), _ID_MARK)
        if anywhere not in self.known:
            text = html_text(anywhere)
            # an id shown as text is a word of its own line's figure only
            self.known[anywhere] = None if _ID_MARK in text else index_words([text])
        found = self.known[anywhere]
        return found if found is not None else index_words([html_text(html)])


def _figure_post_record(entry: Entry, prose: tuple[list[str], str | None],
                        figure_words: _FigureWords,
                        body: Callable[[Entry], str] | None) -> tuple[str, bytes]:
    """:func:`post_record` of a post with figures, from its prose's words and excerpt and
    its figures' words: the same record, without its whole text."""
    words, lead = prose
    found = set(words)
    for figure in entry.figures:
        found.update(figure_words(figure))
    if lead is None:  # a figure among the first words: the excerpt needs the whole text
        lead = excerpt(html_text(body(entry) if body is not None else entry.html))
    return _post_json(entry, lead, found)


def search_files(site: Site, renderer: Any = None) -> list[tuple[str, bytes]]:
    """An ``extra_pages`` generator for :class:`chronicle.build.BuildOptions`."""
    if renderer is None:
        return [(INDEX_PATH, search_index(site))]
    # the figures' text without drawing their charts: an index never shows an SVG
    return [(INDEX_PATH, search_index(site, getattr(renderer, "cache", None),
                                      lambda entry: renderer.body(entry, charts=False),
                                      lambda figure: renderer.figure(figure, charts=False)))]


def html_text(html: str) -> str:
    """The readable text of an HTML fragment, whitespace collapsed.

    A regular-expression scan rather than :mod:`html.parser`: this runs over every post
    body of a cold build, and the fragments are our own renderer's (well-formed) output.
    Without comments, declarations or skipped elements (the usual post), two
    substitutions give the same text as the scan below at a fraction of its cost.
    """
    if _SLOW.search(html) is None:
        return " ".join(unescape(_ANY_TAG.sub("", _BLOCK_TAG.sub(" ", html))).split())
    parts: list[str] = []
    skipping: list[str] = []
    lower: str | None = None
    pos = 0
    length = len(html)
    while pos < length:
        match = _TAG.search(html, pos)
        if match is None:
            if not skipping:
                parts.append(html[pos:])
            break
        if not skipping:
            parts.append(html[pos:match.start()])
        pos = match.end()
        name = match.group(2)
        if name is None:
            continue  # a comment, CDATA, declaration or processing instruction
        tag = name.lower()
        if match.group(1):  # an end tag
            if skipping and tag == skipping[-1]:
                skipping.pop()
            elif tag in BLOCK_ELEMENTS:
                parts.append(" ")
            continue
        closed = match.group(0).endswith("/>")
        if tag in RAW_TEXT_ELEMENTS and not closed:
            # script and style hold raw text, not markup: jump to their end tag
            lower = lower if lower is not None else html.lower()
            end = lower.find(f"</{tag}", pos)
            pos = length if end < 0 else end
            if tag not in SKIP_ELEMENTS:
                parts.append(html[match.end():pos])
            continue
        if tag in SKIP_ELEMENTS:
            if not closed:
                skipping.append(tag)
        elif tag in BLOCK_ELEMENTS:
            parts.append(" ")  # block edges separate words; inline ones do not
    return " ".join(unescape("".join(parts)).split())


def index_words(texts: Iterable[str]) -> list[str]:
    """Distinct searchable words, sorted: case-folded, without numbers and stop words."""
    terms: set[str] = set()
    for text in texts:
        terms.update(text.casefold().split())
    return term_words(terms)


def term_words(terms: Iterable[str]) -> list[str]:
    """:func:`index_words` of a text given as its distinct case-folded whitespace-split
    words (``Rendered.terms``: the renderer splits the text once, for this and the word
    count)."""
    # Prose repeats most of its words, and most of them are letters only: those are
    # their own single match of WORD. Only the rest (punctuation, digits, joiners) go
    # through the regular expression, joined again: a third less work on a post.
    words: set[str] = set()
    rest: list[str] = []
    for token in terms:
        if token.isalpha():
            if len(token) > 1 and token not in STOP_WORDS:
                words.add(token)
        else:
            rest.append(token)
    found = set(WORD.findall(" ".join(rest))) - STOP_WORDS
    for word in found:
        if len(word) < 2:
            continue
        if word.isalpha():  # most words: no letter-by-letter look, no joiners
            words.add(word)
            continue
        if not any(c.isalpha() for c in word):
            continue
        words.add(word)
        if "-" in word or "." in word or "'" in word:
            # "cloud-hypervisor" is also found by "hypervisor"
            words.update(part for part in _JOINERS.split(word)
                         if len(part) > 1 and part not in STOP_WORDS and not part.isdigit())
    return sorted(words)


def excerpt(text: str, limit: int = EXCERPT_WORDS) -> str:
    words = text.split(None, limit)
    return " ".join(words[:limit]) + (" …" if len(words) > limit else "")


def _record_json(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, sort_keys=True,
                      separators=(",", ":")).encode("utf-8")


def _page_record(page: PageEntry) -> dict[str, Any]:
    text = html_text(page.html)
    return {
        "kind": "page",
        "title": page.title,
        "url": page.url,
        "date": None,
        "tags": [],
        "summary": page.page.summary,
        "excerpt": excerpt(text),
        "words": index_words([page.title, page.page.summary, text]),
    }
