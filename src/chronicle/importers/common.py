"""What the Hugo and Jekyll importers share: the data an old site is read into, the
plan of what to write, and writing it."""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from chronicle.content import RESERVED_SLUGS, site_path, slugify
from chronicle.errors import BuildError

# resolve(kind, reference) → the site path of the document it names, or None
Resolver = Callable[[str, str], str | None]


@dataclass(frozen=True)
class Note:
    """Something the import could not carry over: left as it was, for a person to see."""

    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else \
            f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Document:
    """One post or page of the old site, its front matter already in Chronicle's terms."""

    source: Path
    kind: str  # "post" or "page"
    slug: str
    title: str
    body: str
    body_line: int
    date: date | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # tags, summary, draft, updated
    imported: dict[str, Any] = field(default_factory=dict)
    old_urls: tuple[str, ...] = ()  # site paths: its permalink first, then its aliases
    bundle: Path | None = None  # a folder whose other files are the document's own
    keys: tuple[tuple[str, str], ...] = ()  # (kind, name) other documents refer to it by
    url: str = ""  # the Chronicle site path, set by plan()
    target: str = ""  # the file it is written to, relative to the site root


@dataclass(frozen=True)
class OldSite:
    engine: str  # "hugo" or "jekyll"
    root: Path
    title: str
    base_url: str
    documents: tuple[Document, ...]
    static: dict[str, Path]  # old site path → file (served as is)
    notes: tuple[Note, ...] = ()


@dataclass
class Plan:
    """What an import writes (site-relative path → bytes) and what it noticed."""

    files: dict[str, bytes] = field(default_factory=dict)
    posts: int = 0
    pages: int = 0
    copied: int = 0
    redirects: int = 0  # old URLs kept as aliases
    converted: Counter[str] = field(default_factory=Counter)
    notes: list[Note] = field(default_factory=list)


Converter = Callable[[Document, Resolver, Plan], str]


def plan(site: OldSite, convert: Converter, keep_urls: bool = False,
         taken: dict[str, str] | None = None,
         theme_static: frozenset[str] = frozenset()) -> Plan:
    """Everything the import of ``site`` writes, decided before a byte is written.

    ``convert`` turns an engine's shortcodes or tags in one body into markdown;
    ``taken`` maps the slugs the site already has (``post:x``, ``page:x``) to their
    files; ``theme_static`` lists the theme's static files, which an imported file must
    not replace."""
    result = Plan(notes=list(site.notes))
    documents = _claim_old_urls(_place(site.documents, keep_urls, taken or {}, result),
                                result)
    statics = _static_targets(site.static, documents, theme_static, result)
    by_key = {key: doc for doc in documents for key in doc.keys}
    for doc in documents:
        def resolve(kind: str, name: str, doc: Document = doc) -> str | None:
            found = by_key.get((kind, name))
            return None if found is None else relative(doc.url, found.url)

        body = convert(doc, resolve, result)
        body = _rewrite_references(doc, body, statics, site.base_url, result)
        result.files[doc.target] = render_document(doc, body, keep_urls).encode("utf-8")
        result.redirects += len(_aliases(doc))
        if doc.kind == "post":
            result.posts += 1
        else:
            result.pages += 1
    for target, path in sorted(set(statics.values())):
        result.files[target] = path.read_bytes()
        result.copied += 1
    return result


def _place(documents: tuple[Document, ...], keep_urls: bool, taken: dict[str, str],
           result: Plan) -> list[Document]:
    """Each document with a slug nothing else has, its file and its Chronicle URL.

    A slug the site has for the very file the import would write is no clash: that is
    the same document imported before, and writing it again is repeating the import."""
    used: set[str] = set()
    placed = []
    for doc in sorted(documents, key=lambda d: (d.kind, str(d.date), d.slug, str(d.source))):
        slug = doc.slug or "untitled"
        if doc.kind == "page" and slug in RESERVED_SLUGS:
            result.notes.append(Note(doc.source, None, f"page slug {slug!r} is one of "
                                     f"Chronicle's own folders: imported as {slug}-page"))
            slug = f"{slug}-page"
        base, number = slug, 2
        while (f"{doc.kind}:{slug}" in used or taken.get(f"{doc.kind}:{slug}")
               not in (None, _target(doc, slug))):
            slug, number = f"{base}-{number}", number + 1
        if slug != base:
            result.notes.append(Note(doc.source, None, f"slug {base!r} is taken: imported "
                                     f"as {slug!r}"))
        used.add(f"{doc.kind}:{slug}")
        url = f"{doc.date:%Y/%m}/{slug}/" if doc.kind == "post" else f"{slug}/"
        if keep_urls and doc.kind == "post" and doc.old_urls:
            url = doc.old_urls[0]
        placed.append(replace(doc, slug=slug, url=url, target=_target(doc, slug)))
    return placed


def _claim_old_urls(documents: list[Document], result: Plan) -> list[Document]:
    """Each document's old URLs less those a redirect may not take: a URL Chronicle
    builds a page at (another document's, ``tags/``, ``archive/`` …) or one that an
    earlier document already claimed."""
    claimed = {doc.url for doc in documents}
    kept = []
    for doc in documents:
        own = []
        for url in doc.old_urls:
            if url == doc.url:
                own.append(url)
            elif url in claimed or url.split("/")[0] in RESERVED_SLUGS:
                result.notes.append(Note(doc.source, None, f"old URL /{url} is a page of the "
                                         "new blog: no redirect from it"))
            else:
                claimed.add(url)
                own.append(url)
        kept.append(replace(doc, old_urls=tuple(own)))
    return kept


def _target(doc: Document, slug: str) -> str:
    return f"posts/{doc.date:%Y-%m-%d}-{slug}.md" if doc.kind == "post" else \
        f"site/pages/{slug}.md"


def render_document(doc: Document, body: str, keep_urls: bool) -> str:
    """The Chronicle file for ``doc``: YAML front matter, then the converted body."""
    meta: dict[str, Any] = {"title": doc.title}
    if doc.kind == "post":
        meta["date"] = doc.date
    meta.update(doc.meta)
    if doc.kind == "post" and keep_urls and doc.url != f"{doc.date:%Y/%m}/{doc.slug}/":
        meta["url"] = "/" + doc.url
    aliases = _aliases(doc)
    if aliases:
        meta["aliases"] = ["/" + u for u in aliases]
    if doc.imported:
        meta["imported"] = plain(doc.imported)
    header = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=88)
    return f"---\n{header}---\n\n{body.strip()}\n"


def _aliases(doc: Document) -> list[str]:
    return sorted({u for u in doc.old_urls if u != doc.url})


def plain(value: Any) -> Any:
    """``value`` with only what YAML writes back as it was read (TOML times as text)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool | date):
        return value
    return str(value)


def _static_targets(static: dict[str, Path], documents: list[Document],
                    theme_static: frozenset[str], result: Plan) -> dict[str, tuple[str, Path]]:
    """Each file to copy, by what the old site called it → (its new file, the old file).

    The old site's static files keep their paths under ``site/static/``; a bundle's own
    files go to ``site/static/posts/SLUG/`` (or ``pages/``) and are known by their
    bundle and relative path."""
    found = {}
    for old, path in sorted(static.items()):
        if f"static/{old}" in theme_static:
            result.notes.append(Note(path, None, "not copied: it would replace the "
                                     f"theme's static/{old}"))
            continue
        found[old] = (f"site/static/{old}", path)
    for doc in documents:
        if doc.bundle is None:
            continue
        for path in sorted(p for p in doc.bundle.rglob("*") if p.is_file()):
            own = path.relative_to(doc.bundle).as_posix()
            if path == doc.source or own.startswith(".") or path.suffix == ".md":
                continue
            copy = (f"site/static/{doc.kind}s/{doc.slug}/{own}", path)
            found[_bundle_key(doc, own)] = copy
            if doc.old_urls and doc.old_urls[0].endswith("/"):  # the file's old URL
                found[doc.old_urls[0] + own] = copy
    return found


def _bundle_key(doc: Document, own: str) -> str:
    return f"\x00{doc.source}\x00{own}"


MARKDOWN_LINK = re.compile(r"(!?\[[^\]\n]*\]\()(<[^>\n]*>|[^)\s]+)")
HTML_LINK = re.compile(r"""(\b(?:src|href)=)(["'])([^"'\n]*)\2""")


def _rewrite_references(doc: Document, body: str, statics: dict[str, tuple[str, Path]],
                        base_url: str, result: Plan) -> str:
    """Links and images naming a copied file (a bundle's own, or the old site's static
    files) made relative links to where it now is; every other link is left alone."""
    base = _url_path(base_url)
    base_path = f"/{base}/" if base else "/"

    def new_link(url: str) -> str | None:
        path, hash_, fragment = url.partition("#")
        if not path or "://" in path or path.startswith(("mailto:", "data:")):
            return None
        if path.startswith("/"):
            if not path.startswith(base_path):
                return None
            key = path[len(base_path):].lstrip("/")
        elif doc.bundle is not None:
            key = _bundle_key(doc, posixpath.normpath(path))
        else:
            return None
        found = statics.get(key)
        if found is None:
            return None
        result.converted["file reference"] += 1
        return relative(doc.url, found[0].removeprefix("site/")) + hash_ + fragment

    def markdown(match: re.Match[str]) -> str:
        url = match.group(2)
        bare = url[1:-1] if url.startswith("<") else url
        found = new_link(bare)
        return match.group(0) if found is None else match.group(1) + found

    def html(match: re.Match[str]) -> str:
        found = new_link(match.group(3))
        return match.group(0) if found is None else \
            f"{match.group(1)}{match.group(2)}{found}{match.group(2)}"

    return HTML_LINK.sub(html, MARKDOWN_LINK.sub(markdown, body))


def relative(from_url: str, to_path: str) -> str:
    """A link from the page at site path ``from_url`` to site path ``to_path`` that works
    under any base path (``2019/03/a/`` → ``static/x.png`` is ``../../../static/x.png``)."""
    folder = from_url if from_url.endswith("/") else posixpath.dirname(from_url)
    link = posixpath.relpath("/" + to_path, "/" + folder)
    return link + "/" if to_path.endswith("/") and not link.endswith("/") else link


def _url_path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path.strip("/")


def old_site_path(url: str, base_url: str) -> str | None:
    """An old URL as a site path of the new site; None if it cannot be one.

    Both engines write permalinks, aliases and redirects relative to the site's base
    URL (``/2019/hello/``); a full URL has its host and the base path taken off."""
    path = url.strip()
    if "://" in path:
        from urllib.parse import urlsplit

        base = _url_path(base_url)
        path = urlsplit(path).path.strip("/")
        if base and (path == base or path.startswith(f"{base}/")):
            path = path[len(base):]
    try:
        return site_path(path, "alias", Path("."), None)
    except BuildError:
        return None


def tag_list(value: Any) -> list[str]:
    """Tags or categories as either engine allows them: a list, or words in a string."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [str(value)]


def chronicle_tags(names: list[str], source: Path, result_notes: list[Note]) -> list[str]:
    kept = []
    for name in dict.fromkeys(names):
        if slugify(name):
            kept.append(name)
        else:
            result_notes.append(Note(source, None, f"tag {name!r} dropped: it has no letters "
                                     "or digits"))
    return kept


def line_at(text: str, offset: int, first_line: int) -> int:
    """The file line of character ``offset`` in a body starting at ``first_line``."""
    return first_line + text.count("\n", 0, offset)


# -- writing ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    written: tuple[str, ...]
    unchanged: tuple[str, ...]
    conflicts: tuple[str, ...]  # existing files with other content: nothing was written


def carry_out(result: Plan, root: Path, force: bool, dry_run: bool,
              replaceable: frozenset[str] = frozenset()) -> Outcome:
    """Write the plan into the site at ``root``, all of it or nothing.

    A file the site has with other content is a conflict: without ``force`` nothing is
    written (and the conflicts are returned), so an import never half-happens and
    running it again after a fix, or twice, is safe. ``replaceable`` files (made by this
    run, like a new blog's sample page) are no conflict."""
    written, unchanged, conflicts = [], [], []
    for name, data in sorted(result.files.items()):
        path = root / name
        if path.is_file() and path.read_bytes() == data:
            unchanged.append(name)
        elif path.exists() and not (force or name in replaceable):
            conflicts.append(name)
        else:
            written.append(name)
    if conflicts or dry_run:
        return Outcome(tuple(written), tuple(unchanged), tuple(conflicts))
    for name in written:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(result.files[name])
    return Outcome(tuple(written), tuple(unchanged), ())
