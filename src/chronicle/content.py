"""Posts and pages as plain data: discovery, front matter, slugs, dates, drafts.

A post is ``posts/**/*.md`` starting with a YAML front-matter block between two ``---``
lines. ``title`` and ``date`` are required; ``tags``, ``summary``, ``draft``,
``updated``, ``slug``, ``toc``, ``aliases``, ``url`` and ``imported`` are optional; any
other key is an error. Dates may be a YAML date, a datetime or an ISO 8601 string; one
without a time zone is read in the site's time zone. A post's URL is
``/YYYY/MM/<slug>/``; the slug defaults to the file name without a leading
``YYYY-MM-DD-``. ``url`` replaces that URL (an imported post keeping its old one).

``aliases`` lists old URLs of a post or page, each built as a page redirecting to it.
``imported`` is a mapping Chronicle keeps but never reads: the front matter an importer
found no place for, so that nothing of the old site is dropped.

Nothing here renders: a post knows its source, metadata and body, nothing more.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta, tzinfo
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import yaml

from chronicle.cache import Signature, read_bytes, read_stamped
from chronicle.errors import BuildError

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
DATE_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}-")
POST_KEYS = {"title", "date", "tags", "summary", "draft", "updated", "slug", "toc",
             "aliases", "url", "imported"}
PAGE_KEYS = {"title", "summary", "slug", "toc", "aliases", "imported"}
# Top-level folders the site itself writes; a page slug may not take one of them.
RESERVED_SLUGS = {"page", "tags", "archive", "static", "lab", "feeds"}


@dataclass(frozen=True)
class Post:
    source: Path
    title: str
    date: datetime
    slug: str
    # the markdown source, when read (a cached build gathers front matter only); pages
    # hash the rendered body instead (model.fields_digest)
    body: str = field(metadata={"digest": False})
    body_line: int  # 1-based line of the body's first line in the source file
    tags: tuple[str, ...] = ()
    summary: str = ""
    draft: bool = False
    updated: datetime | None = None
    toc: bool | None = None  # None: decided by the number of headings
    aliases: tuple[str, ...] = ()  # old site paths that redirect here
    permalink: str | None = None  # front matter ``url``: replaces the dated URL
    day_only: bool = False  # ``date`` named a day, no time of day

    @cached_property  # asked for thousands of times while building lists
    def url(self) -> str:
        """Site-relative URL, no leading slash: ``2025/03/boot-time/``."""
        return self.permalink or f"{self.date:%Y/%m}/{self.slug}/"

    @property
    def last_modified(self) -> datetime:
        return self.updated or self.date

    @property
    def written_by(self) -> datetime:
        """The latest the post may have been written: a post dated by day alone was
        written some time that day, about the runs made up to its end."""
        return self.date + timedelta(days=1) if self.day_only else self.date


@dataclass(frozen=True)
class Page:
    source: Path
    title: str
    slug: str
    body: str = field(metadata={"digest": False})  # as Post.body
    body_line: int
    summary: str = ""
    toc: bool | None = None
    aliases: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"{self.slug}/"


@lru_cache(maxsize=4096)  # pure, and asked for the same few tag names thousands of times
def slugify(text: str) -> str:
    """Lower-case ASCII words joined by hyphens: ``"Nix & Incus, 2"`` → ``nix-incus-2``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "-".join(re.findall(r"[a-z0-9]+", ascii_text.lower()))


def find_sources(folder: Path, pattern: str) -> list[Path]:
    """Markdown files under ``folder``, in a stable order; hidden files are skipped."""
    if not folder.is_dir():
        return []
    if pattern not in ("*.md", "**/*.md"):
        return sorted(p for p in folder.glob(pattern)
                      if p.is_file() and not any(part.startswith(".") for part in
                                                  p.relative_to(folder).parts))
    # scandir, not glob: this runs on every build over every post (10,000 files), and
    # the directory entries already say which are files
    found = []
    folders = [str(folder)]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    if pattern == "**/*.md":
                        folders.append(entry.path)
                elif entry.name.endswith(".md") and entry.is_file():
                    found.append(entry.path)
    # the order Path objects sort in (part by part), without making 10,000 to sort
    return [Path(p) for p in sorted(found, key=lambda p: p.split(os.sep))]


def read_post(path: Path, tz: tzinfo, data: bytes | None = None) -> Post:
    """The post in ``path`` (whose bytes are ``data`` when already read)."""
    meta, lines, body, body_line = _split(path, data)
    _check_keys(meta, POST_KEYS, path, lines)
    title = _required_str(meta, "title", path, lines)
    if "date" not in meta:
        raise BuildError("missing required front matter key 'date'", path)
    when = parse_date(meta["date"], tz, path, lines.get("date"))
    updated = (parse_date(meta["updated"], tz, path, lines.get("updated"))
               if meta.get("updated") is not None else None)
    slug = _slug(meta, path, lines, default=slugify(DATE_PREFIX.sub("", path.stem)))
    return Post(
        source=path, title=title, date=when, slug=slug, body=body, body_line=body_line,
        tags=_tags(meta, path, lines),
        summary=_optional(meta, "summary", str, "", path, lines),
        draft=_optional(meta, "draft", bool, False, path, lines),
        updated=updated,
        toc=_optional(meta, "toc", bool, None, path, lines),
        aliases=_aliases(meta, path, lines),
        permalink=(site_path(meta["url"], "url", path, lines.get("url"))
                   if meta.get("url") is not None else None),
        day_only=is_day(meta["date"]),
    )


def is_day(value: Any) -> bool:
    """A date without a time of day: a YAML date, or ``YYYY-MM-DD`` as text."""
    if isinstance(value, str):
        return len(value.strip()) == 10
    return isinstance(value, date) and not isinstance(value, datetime)


def read_page(path: Path, data: bytes | None = None) -> Page:
    meta, lines, body, body_line = _split(path, data)
    _check_keys(meta, PAGE_KEYS, path, lines)
    title = _required_str(meta, "title", path, lines)
    slug = _slug(meta, path, lines, default=slugify(path.stem))
    if slug in RESERVED_SLUGS:
        raise BuildError(f"page slug {slug!r} is reserved for the site's own pages", path,
                         lines.get("slug"))
    return Page(source=path, title=title, slug=slug, body=body, body_line=body_line,
                summary=_optional(meta, "summary", str, "", path, lines),
                toc=_optional(meta, "toc", bool, None, path, lines),
                aliases=_aliases(meta, path, lines))


def parse_date(value: Any, tz: tzinfo, path: Path, line: int | None) -> datetime:
    """A YAML date/datetime or an ISO string → an aware datetime (naive ones get ``tz``)."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        when = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise BuildError(f"impossible or malformed date {value!r} (want YYYY-MM-DD "
                             "or an ISO 8601 date and time)", path, line) from None
    else:
        raise BuildError(f"date must be a date or an ISO 8601 string, not {value!r}", path, line)
    return when if when.tzinfo else when.replace(tzinfo=tz)


class _PureFrontMatterLoader(yaml.SafeLoader):
    """Safe YAML that keeps timestamps as text, so an impossible date is *our* error
    with our message and line, not a ValueError from deep inside PyYAML."""


class _FrontMatterLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same on libyaml when PyYAML has it (the pure-Python parser costs ~1 ms a
    post). Its error messages and lines differ, so a file it rejects is parsed again
    by :class:`_PureFrontMatterLoader` for the report."""


for _loader in (_PureFrontMatterLoader, _FrontMatterLoader):
    _loader.add_constructor(
        "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def _split(path: Path, data: bytes | None = None
           ) -> tuple[dict[str, Any], dict[str, int], str, int]:
    """Front matter (values and each key's line), body and the body's first line."""
    lines, end = _lines(path, data)
    block = "\n".join(lines[1:end])
    try:
        node, meta = _load(_FrontMatterLoader, block)
    except yaml.YAMLError:
        node, meta = None, None
    if meta is None and node is None:  # rejected, or empty: let the reference parser say
        node, meta = _load_reporting(block, path)
    if not isinstance(meta, dict):
        raise BuildError("front matter must be a mapping of keys to values", path, 2)
    key_lines = {str(k.value): k.start_mark.line + 2 for k, _ in node.value} if node else {}
    body_line = end + 2
    return meta, key_lines, "\n".join(lines[end + 1:]), body_line


def read_body(path: Path) -> tuple[str, int]:
    """Just the body and its first line, for a file whose front matter is known."""
    lines, end = _lines(path)
    return "\n".join(lines[end + 1:]), end + 2


def _lines(path: Path, data: bytes | None = None) -> tuple[list[str], int]:
    """The file's lines and the index of the line closing the front matter."""
    data = read_bytes(path) if data is None else data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BuildError("file is not valid UTF-8", path, line) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        raise BuildError("missing front matter: the file must start with a '---' line", path, 1)
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "..."))
    except StopIteration:
        raise BuildError("front matter is not closed by a '---' line", path, 1) from None
    return lines, end


def _load(loader_class: type, block: str) -> tuple[Any, Any]:
    loader = loader_class(block)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def _load_reporting(block: str, path: Path) -> tuple[Any, Any]:
    try:
        node, meta = _load(_PureFrontMatterLoader, block)
        return node, ({} if node is None else meta)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 2 if mark is not None else 1  # +1 for 0-based, +1 for '---'
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BuildError(f"YAML error in front matter: {problem}", path, line) from None


def _check_keys(meta: dict[str, Any], known: set[str], path: Path, lines: dict[str, int]) -> None:
    for key in sorted(map(str, meta)):
        if key not in known:
            raise BuildError(f"unknown front matter key {key!r} (known: "
                             f"{', '.join(sorted(known))}; keep other data under "
                             "'imported:')", path, lines.get(key))
    if not isinstance(meta.get("imported", {}), dict):
        raise BuildError("front matter key 'imported' must be a mapping", path,
                         lines.get("imported"))


def site_path(value: Any, key: str, path: Path, line: int | None) -> str:
    """A URL path of this site as front matter gives it (``/2019/03/old-post/``,
    ``/notes/x.html``) → a site path: no leading slash, a folder ending in ``/``."""
    if not isinstance(value, str) or not value.strip():
        raise BuildError(f"front matter key {key!r} must hold URL paths like "
                         "'/2019/03/old-post/'", path, line)
    text = value.strip()
    if "://" in text or any(c in text for c in "?#\\ ") or ".." in text.split("/"):
        raise BuildError(f"{key} {value!r} must be a path on this site, without '..', "
                         "a query or a fragment", path, line)
    relative = "/".join(part for part in text.split("/") if part)
    if not relative:
        raise BuildError(f"{key} {value!r} would replace the home page", path, line)
    last = relative.rsplit("/", 1)[-1]
    # "/a/b.html" names a file; "/a/b" and "/a/b/" name the folder's index.html
    return relative if last.endswith((".html", ".htm")) else relative + "/"


def _aliases(meta: dict[str, Any], path: Path, lines: dict[str, int]) -> tuple[str, ...]:
    value = meta.get("aliases") or []
    line = lines.get("aliases")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise BuildError("front matter key 'aliases' must be a list of URL paths", path, line)
    return tuple(sorted({site_path(v, "alias", path, line) for v in value}))


def _required_str(meta: dict[str, Any], key: str, path: Path, lines: dict[str, int]) -> str:
    value = meta.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BuildError(f"missing required front matter key {key!r}", path, lines.get(key))
    if not isinstance(value, str):
        raise BuildError(f"front matter key {key!r} must be a string", path, lines.get(key))
    return value.strip()


def _optional(meta: dict[str, Any], key: str, kind: type, default: Any, path: Path,
              lines: dict[str, int]) -> Any:
    value = meta.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise BuildError(f"front matter key {key!r} must be a {kind.__name__}", path,
                         lines.get(key))
    return value


def _tags(meta: dict[str, Any], path: Path, lines: dict[str, int]) -> tuple[str, ...]:
    value = meta.get("tags") or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
        raise BuildError("front matter key 'tags' must be a list of strings", path,
                         lines.get("tags"))
    for tag in value:
        if not slugify(tag):
            raise BuildError(f"tag {tag!r} has no letters or digits", path, lines.get("tags"))
    return tuple(sorted({t.strip() for t in value}, key=str.lower))


def _slug(meta: dict[str, Any], path: Path, lines: dict[str, int], default: str) -> str:
    if "slug" not in meta:
        if not default:
            raise BuildError("cannot make a slug from the file name; set 'slug'", path)
        return default
    slug = meta["slug"]
    line = lines.get("slug")
    if not isinstance(slug, str):
        raise BuildError("front matter key 'slug' must be a string", path, line)
    if "/" in slug or "\\" in slug or ".." in slug:
        raise BuildError(f"slug {slug!r} would escape the output folder", path, line)
    if not SLUG.match(slug):
        raise BuildError(f"slug {slug!r} must be lower-case letters, digits and single "
                         "hyphens", path, line)
    return slug


# -- reading with the build cache -----------------------------------------------------------

@dataclass(frozen=True)
class Doc:
    """A post or page as the build tracks it: the model without its body and the source's
    hash."""

    doc: Post | Page
    hash: str

    def read_body(self) -> tuple[str, int]:
        """The markdown body and its first line, without parsing the front matter again."""
        return read_body(self.doc.source)


def gather_docs(paths: Any, config: Any, cache: Any) -> tuple[list[Doc], list[BuildError]]:
    """Every post and page with its front matter, from the cache when the file is unchanged.

    The body is dropped from the model (``body=""``) whether or not it came from the
    cache, so templates see the same thing either way; rendered HTML is on the entry.
    """
    from dataclasses import replace

    from chronicle.cache import bytes_digest, code_version, digest
    from chronicle.parallel import iter_chunks

    errors: list[BuildError] = []
    found = [(s, True) for s in find_sources(paths.posts, "**/*.md")]
    found += [(s, False) for s in find_sources(paths.pages, "*.md")]
    # A hash the cache knows without reading the file (its stat signature is unchanged)
    # finds the front matter in the cache. The rest are read once, on every core, and
    # hashed from the bytes the YAML is parsed from (a cold build's only read of them
    # before the body is rendered).
    hashes = [cache.known_hash(source) for source, _ in found]
    version = code_version()
    keys = [None if h is None else digest(h, str(source), config.timezone, version)
            for h, (source, _) in zip(hashes, found, strict=True)]
    known = cache.get_many("doc", [key for key in keys if key is not None])
    missing = [i for i, key in enumerate(keys) if key not in known]

    def read(indices: Iterable[int]) -> list[tuple[Any, str, Signature | None]]:
        # not keeping the body: 10,000 of them held until the end of the build would be
        # ~60 MB in this process and in every worker forked from it; reading one again
        # where it is rendered costs a tenth of a millisecond
        done: list[tuple[Any, str, Signature | None]] = []
        for j in indices:
            (source, is_post), file_hash = found[missing[j]], hashes[missing[j]]
            data, signature = read_stamped(source, stamp=file_hash is None)
            file_hash = file_hash or bytes_digest(data)
            try:
                full = read_post(source, config.tz, data) if is_post else read_page(source, data)
            except BuildError as exc:
                done.append((exc, file_hash, signature))
            else:  # what the cache keeps: Path objects are dear to pickle back
                value = _cached_fields(replace(full, body=""))
                done.append((value, file_hash, signature))
        return done

    # YAML is most of a cold build's serial start: big sites read it on every core
    fresh = dict(zip(missing, iter_chunks(read, len(missing)), strict=True))
    docs: list[Doc] = []
    for i, (source, is_post) in enumerate(found):
        if i in fresh:
            value, file_hash, signature = fresh[i]
            if signature is not None:
                cache.note_hash(source, signature, file_hash)
            if isinstance(value, BuildError):
                errors.append(value)
                continue
            cache.put("doc", digest(file_hash, str(source), config.timezone, version), value)
        else:
            value, file_hash = known[keys[i]], hashes[i]
        # the key names the source: the cache keeps the other fields only, sparing
        # 10,000 Path objects parsed back out of pickles on every build
        docs.append(Doc((Post if is_post else Page)(source, *value), file_hash))
    errors += _duplicates([d.doc for d in docs if isinstance(d.doc, Post)], "slug")
    errors += _duplicates([d.doc for d in docs if isinstance(d.doc, Page)], "page slug")
    return docs, errors


def _cached_fields(doc: Post | Page) -> tuple[Any, ...]:
    """Every field after ``source``, in order (``source`` is the first field of both)."""
    return tuple(getattr(doc, f.name) for f in fields(doc)[1:])


def _duplicates(docs: list[Post] | list[Page], what: str) -> list[BuildError]:
    seen: dict[str, Path] = {}
    errors = []
    for doc in docs:
        first = seen.setdefault(doc.slug, doc.source)
        if first != doc.source:
            errors.append(BuildError(f"duplicate {what} {doc.slug!r}, also used by {first}",
                                     doc.source))
    return errors
