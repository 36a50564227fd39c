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
from collections.abc import Iterable
from html.parser import HTMLParser
from typing import Any

from chronicle.model import Entry, PageEntry, Site

INDEX_PATH = "search.json"
EXCERPT_WORDS = 30
# Text inside these elements is markup or drawing, not prose a reader would search for.
SKIP_ELEMENTS = {"script", "style", "svg", "math", "template"}
BLOCK_ELEMENTS = {"br", "p", "li", "dt", "dd", "td", "th", "tr", "pre", "div", "blockquote",
                  "figure", "figcaption", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table"}
WORD = re.compile(r"\w+(?:[-.']\w+)*")
STOP_WORDS = frozenset("""
a about after all also an and any are as at be been but by can could did do does for
from had has have he her his how i if in into is it its just more most my no not of on
one or our out she so such than that the their them then there these they this those to
too up us was we were what when which who why will with would you your
""".split())


def search_index(site: Site) -> bytes:
    """The bytes of ``search.json`` for ``site``."""
    records = [_post_record(entry) for entry in site.entries]
    records += [_page_record(page) for page in site.pages]
    document = {"version": 1, "entries": records}
    text = json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return (text + "\n").encode("utf-8")


def search_files(site: Site, renderer: Any = None) -> list[tuple[str, bytes]]:
    """An ``extra_pages`` generator for :class:`chronicle.build.BuildOptions`."""
    return [(INDEX_PATH, search_index(site))]


def html_text(html: str) -> str:
    """The readable text of an HTML fragment, whitespace collapsed."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return " ".join("".join(parser.parts).split())


def index_words(texts: Iterable[str]) -> list[str]:
    """Distinct searchable words, sorted: case-folded, without numbers and stop words."""
    words: set[str] = set()
    for text in texts:
        for match in WORD.finditer(text.casefold()):
            word = match.group()
            if len(word) < 2 or word in STOP_WORDS or not any(c.isalpha() for c in word):
                continue
            words.add(word)
            # "cloud-hypervisor" is also found by "hypervisor"
            words.update(part for part in re.split(r"[-.']", word)
                         if len(part) > 1 and part not in STOP_WORDS and not part.isdigit())
    return sorted(words)


def excerpt(text: str, limit: int = EXCERPT_WORDS) -> str:
    words = text.split()
    return " ".join(words[:limit]) + (" …" if len(words) > limit else "")


def _post_record(entry: Entry) -> dict[str, Any]:
    text = html_text(entry.html)
    return {
        "kind": "post",
        "title": entry.title,
        "url": entry.url,
        "date": entry.date.date().isoformat(),
        "tags": list(entry.tags),
        "summary": entry.summary,
        "excerpt": excerpt(text),
        "words": index_words([entry.title, entry.summary, " ".join(entry.tags), text]),
    }


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


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIP_ELEMENTS:
            self._skipping.append(tag)
        elif tag in BLOCK_ELEMENTS:
            self.parts.append(" ")  # block edges separate words; inline ones do not

    def handle_endtag(self, tag: str) -> None:
        if self._skipping and tag == self._skipping[-1]:
            self._skipping.pop()
        elif tag in BLOCK_ELEMENTS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)
