"""``chronicle build``: the whole pipeline on one page.

    load config → guard the output folder → take the site's lock → nothing changed? stop
    → gather posts and pages → parse every post → resolve their figures
    → build the site model → render what changed → stage the new site → swap it in

Phase 1 (up to the model) reads everything and collects *every* bad post before
giving up, so one run reports them all (:class:`BuildErrors`). Phase 2 renders from
the immutable model and writes nothing until everything has rendered.

Incremental builds (``.chronicle/``, see :mod:`chronicle.manifest` and
:mod:`chronicle.cache`):

* **Nothing changed**: the hash of every input file (posts, pages, ``site/``, the
  theme, ``experiments/``, Chronicle's own code, the options) equals the manifest's
  fingerprint and every output file is as the last build left it: the build stops
  there, writes nothing and repeats the last build's warnings and stale results. Not
  taken when an extra page generator does not declare its inputs (:class:`Generator`),
  or when "now" matters.
* **Parsing**: front matter is cached by file hash; rendered markdown by file hash and
  code version, so only edited posts are parsed. A ``chart``/``table``/``compare`` fence
  is a placeholder in the cached body (:mod:`chronicle.embed_fences`), so a post with
  figures is cached like any other.
* **Figures** are resolved between the two passes (:mod:`chronicle.figures`): every
  document's specs against the results store give figures, warnings, the stale results
  and each post's update notes and ``updated`` (:mod:`chronicle.updates`: a number it
  shows moved significantly since its date) as values, their numbers taken from the
  cache when the results are unchanged; each document's figures are kept there too, under
  all they were made from (:mod:`chronicle.figure_cache`). A page showing a figure
  records the experiment it shows (``result:NAME``), so a new result re-renders exactly
  those pages.
* **Rendering**: an output whose recorded dependencies all hash the same is not
  rendered. One that is rendered is written only if its bytes differ from the last
  build's. Big sites render in forked workers (:mod:`chronicle.parallel`).
* **Atomicity**: a build holds the site's lock (:mod:`chronicle.lock`; a second build,
  a ``serve`` rebuild or a ``publish`` waits, saying who holds it), refuses an output
  folder it must not replace (:mod:`chronicle.guard`: the site root, a source folder,
  a folder Chronicle did not write) and deletes what killed builds left. It renders the
  whole new site into a staging folder next to the output (changed files written,
  unchanged ones hard-linked) and, only when every page has rendered and ``--strict``
  found no warning, exchanges it with ``output/`` in one system call
  (:mod:`chronicle.output`). ``output/`` is therefore always the whole previous site or
  the whole new one, even after SIGKILL at any point; a failure leaves it as it was.

The output is byte-identical to a clean build's; ``tests/test_incremental.py`` checks it
over a series of edits.

Hook for the other half of Chronicle, on :class:`BuildOptions`:

``extra_pages``: callables ``(site: Site, renderer: Renderer) -> iterable of
(output path, bytes)``
    Extra generated files, e.g. the lab's ``lab/index.html``. ``renderer.page(template,
    url, **context)`` renders a theme template for site path ``url`` and returns that
    pair. Pages ending in ``index.html`` join the sitemap. Two files with one output
    path are an error. A plain callable runs on every build; wrap it in a
    :class:`Generator` naming the files it reads to let a build skip it.

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
from typing import Any

from chronicle.cache import Cache, code_version, digest
from chronicle.config import SiteConfig, load_config
from chronicle.content import Doc, Page, Post, find_sources, gather_docs
from chronicle.errors import BuildError, BuildErrors
from chronicle.guard import check_replaceable
from chronicle.lock import site_lock
from chronicle.manifest import Manifest, load_manifest, manifest_path, tree_digest
from chronicle.parallel import build_collector, iter_chunks
from chronicle.paths import SitePaths, packaged_theme
from chronicle.swap import remove_leftovers

ExtraPages = Callable[[Any, Any], Iterable[tuple[str, bytes]]]


@dataclass(frozen=True)
class Generator:
    """An extra page generator that says what it reads, so an unchanged build skips it.

    ``inputs``: files or folders whose content (with the templates it renders, the
    config and Chronicle's code) determines its output; ``reads_site``: whether it also
    reads the site model (then any change to the model runs it again).
    """

    name: str
    generate: ExtraPages
    inputs: tuple[Path, ...] = ()
    reads_site: bool = True

    def __call__(self, site: Any, renderer: Any) -> Iterable[tuple[str, bytes]]:
        return self.generate(site, renderer)


@dataclass(frozen=True)
class BuildOptions:
    root: Path
    out: Path | None = None  # default: <root>/output
    drafts: bool = False
    future: bool = False
    now: datetime | None = None  # naive means the site's time zone
    strict: bool = False  # warnings fail the build
    allow_missing: bool = False  # a figure of an experiment never run is a placeholder
    extra_pages: tuple[ExtraPages, ...] = field(default=())
    clean: bool = False  # ignore the manifest and caches: a full, cold build


@dataclass(frozen=True)
class BuildReport:
    out: Path
    pages: int  # HTML pages in the output
    files: int  # every file in the output
    seconds: float
    warnings: tuple[str, ...]
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    stale: tuple[str, ...] = ()  # stale results the figures show, with the posts showing them

    def summary(self) -> str:
        noun = "page" if self.pages == 1 else "pages"
        line = (f"built {self.pages} {noun} ({self.files} files: {self.written} written, "
                f"{self.unchanged} unchanged, {self.removed} removed)")
        if self.warnings:
            line += f", {len(self.warnings)} warning{'s' if len(self.warnings) > 1 else ''}"
        return line + f" in {self.seconds:.2f} s"


def build(options: BuildOptions) -> BuildReport:
    paths = SitePaths(options.root)
    config = load_config(paths.config)
    out = (options.out or paths.output).absolute()
    # an earlier Chronicle's output folder has no marker, but has this manifest
    known = manifest_path(paths.cache, out, paths.output).exists()
    check_replaceable(out, paths.root, "output folder", known=known)
    with site_lock(paths.cache), build_collector():  # fewer, smaller collections
        remove_leftovers(out, known)
        return _build(options, paths, config, out)


def _build(options: BuildOptions, paths: SitePaths, config: SiteConfig, out: Path
           ) -> BuildReport:
    started = time.perf_counter()  # from when the lock is ours
    now = resolve_now(options.now, config.tz)
    cache = Cache(paths.cache, read=not options.clean)
    try:
        previous = previous_manifest(paths, out, options)
        fingerprint = None
        if previous is not None:
            fingerprint = input_fingerprint(paths, config, options, cache)
            if nothing_changed(previous, digest(fingerprint, watched_digest(
                    paths.root, previous.watch, cache)), now, options, out, cache):
                return unchanged_report(previous, out, options, started)
        docs, read_errors = gather_docs(paths, config, cache)
        if fingerprint is None:
            # Nothing to compare with, so no hurry: hashed now, the sources' hashes are
            # the ones gather_docs took from the bytes it parsed (every core, one read).
            fingerprint = input_fingerprint(paths, config, options, cache)
        posts = select_posts([d for d in docs if isinstance(d.doc, Post)], options, now)
        pages = [d for d in docs if isinstance(d.doc, Page)]
        parsed = parse_docs([*posts, *pages], cache)
        figures = resolve_figures(parsed, paths, config, options, cache)
        if read_errors or parsed.errors or figures.errors:
            raise BuildErrors(read_errors + parsed.errors + list(figures.errors))
        entries, page_entries, warnings = make_entries(parsed, figures)
        # imported late: a no-change build stops before needing them
        from chronicle.model import build_site
        from chronicle.output import Outputs

        site = build_site(config, entries, page_entries, now)
        outputs = Outputs(site, paths, out, cache, previous, options.extra_pages,
                          lab=figures.lab, named=figures.inputs)
        outputs.render()
        if options.strict and warnings:
            outputs.discard()
            raise BuildErrors([BuildError(f"warning (fatal with --strict): {w}")
                               for w in warnings])
        manifest = outputs.commit(Manifest(
            fingerprint=digest(fingerprint, watched_digest(paths.root, figures.watch, cache)),
            next_change=next_change(posts, docs, now), warnings=warnings,
            stale=list(figures.stale), watch=list(figures.watch)),
            manifest_path(paths.cache, out, paths.output))
        cache.flush()
    finally:
        cache.close()
    files = manifest.outputs
    return BuildReport(out=out, pages=sum(1 for n in files if n.endswith(".html")),
                       files=len(files), seconds=time.perf_counter() - started,
                       warnings=tuple(warnings), written=outputs.written,
                       unchanged=len(files) - outputs.written, removed=outputs.removed,
                       stale=figures.stale)


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


def previous_manifest(paths: SitePaths, out: Path, options: BuildOptions) -> Manifest | None:
    """The last build's manifest, if this build may trust it and its output folder."""
    if options.clean or not out.is_dir():
        return None
    return load_manifest(manifest_path(paths.cache, out, paths.output))


def input_fingerprint(paths: SitePaths, config: SiteConfig, options: BuildOptions,
                      cache: Cache) -> str:
    """One hash of every input a build reads (file hashes come from the stat cache)."""
    generators = [g for g in options.extra_pages if isinstance(g, Generator)]
    trees = [paths.config, paths.posts, paths.root / "site", paths.pages,
             paths.themes / config.theme, packaged_theme(config.theme), paths.experiments]
    trees += [p for g in generators for p in g.inputs]
    declared = [f"{g.name}:{g.reads_site}:{','.join(map(str, g.inputs))}" for g in generators]
    return digest(code_version(), str(paths.root), f"drafts={options.drafts}",
                  f"future={options.future}", f"allow_missing={options.allow_missing}",
                  tree_digest(cache, [t for t in trees if t.exists()]), *declared)


def watched_digest(root: Path, patterns: Iterable[str], cache: Cache) -> str:
    """The files the experiment scripts declare as inputs (globs under the site root),
    hashed: they decide which results are stale, and may lie outside every folder the
    fingerprint hashes. The last build's manifest names the globs (``watch``)."""
    files = sorted({path for pattern in patterns for path in root.glob(pattern)
                    if path.is_file()})
    return tree_digest(cache, files) if files else ""


def nothing_changed(previous: Manifest | None, fingerprint: str, now: datetime,
                    options: BuildOptions, out: Path, cache: Cache) -> bool:
    if previous is None or previous.fingerprint != fingerprint:
        return False
    if previous.uses_now:
        return False
    if previous.next_change and now >= datetime.fromisoformat(previous.next_change):
        return False  # a scheduled post is due
    if not all(isinstance(g, Generator) for g in options.extra_pages):
        return False
    return all(cache.matches(out / name, record.hash)
               for name, record in previous.outputs.items())


def unchanged_report(previous: Manifest, out: Path, options: BuildOptions,
                     started: float) -> BuildReport:
    if options.strict and previous.warnings:
        raise BuildErrors([BuildError(f"warning (fatal with --strict): {w}")
                           for w in previous.warnings])
    files = previous.outputs
    return BuildReport(out=out, pages=sum(1 for n in files if n.endswith(".html")),
                       files=len(files), seconds=time.perf_counter() - started,
                       warnings=tuple(previous.warnings), unchanged=len(files),
                       stale=tuple(previous.stale))


def select_posts(posts: list, options: BuildOptions, now: datetime) -> list:
    """Drafts and posts dated after ``now`` stay out unless asked for (posts or docs)."""
    def post(item: Any) -> Post:
        return getattr(item, "doc", item)

    return [p for p in posts if (options.drafts or not post(p).draft)
            and (options.future or post(p).date <= now)]


def next_change(selected: list, docs: list, now: datetime) -> str:
    """When the next scheduled post becomes due: until then "now" changes nothing."""
    chosen = {id(d) for d in selected}
    due = [d.doc.date for d in docs if isinstance(d.doc, Post) and id(d) not in chosen
           and d.doc.date > now]
    return min(due).isoformat() if due else ""


@dataclass
class Parsed:
    """Every document rendered to HTML (figures as placeholders), with what was learnt."""

    documents: list[tuple[Doc, Any, Any]] = field(default_factory=list)  # doc, Body, Rendered
    errors: list[BuildError] = field(default_factory=list)


def parse_docs(docs: list[Doc], cache: Cache) -> Parsed:
    """Render every document's markdown: cached by file hash, the rest in parallel."""
    from chronicle.embed_fences import StoredSpecs
    from chronicle.markdown import Rendered, render_markdown
    from chronicle.model import Body
    from chronicle.search import PROSE_NAMESPACE, RECORD_NAMESPACE, post_record, prose_words

    version = code_version()
    keys = [digest("body", d.hash, str(d.doc.source), version) for d in docs]
    known = cache.get_many("body", keys)
    missing = [i for i, key in enumerate(keys) if key not in known]
    parsed = Parsed()

    def work(indices: Iterable[int]) -> list[tuple[Any, ...]]:
        results: list[tuple[Any, ...]] = []
        for j in indices:
            doc = docs[missing[j]]
            try:
                body, body_line = doc.read_body()
                r = render_markdown(body, doc.doc.source, body_line)
            except BuildErrors as exc:
                results.append((None, None, exc.errors, None))
            except BuildError as exc:
                results.append((None, None, [exc], None))
            else:
                # a post's search record, made while its text is in hand: the index
                # then never reads the bodies back (see chronicle.search)
                record = None  # what goes into the cache for the search index
                if isinstance(doc.doc, Post) and not r.embeds:
                    record = (RECORD_NAMESPACE, *post_record(
                        _entry(doc, Body(keys[missing[j]]), r), r.text, r.terms))
                elif isinstance(doc.doc, Post):  # its record is made with its figures
                    record = (PROSE_NAMESPACE, keys[missing[j]], prose_words(r.html))
                results.append((r.html, (r.headings, r.words, r.warnings,
                                         StoredSpecs.packed(r.embeds)), [], record))
        return results

    for j, (html, meta, errors, record) in enumerate(iter_chunks(work, len(missing))):
        parsed.errors += errors
        if html is not None:
            key = keys[missing[j]]
            cache.put("html", key, html)
            cache.put("body", key, meta)
            if record is not None:
                cache.put(*record)
            known[key] = meta
            if j % 500 == 499:
                cache.flush()  # content-addressed entries: keeping them is always safe
    cache.flush()

    def load_html(key: str) -> str:
        return cache.get("html", key)

    for doc, key in zip(docs, keys, strict=True):
        if key in known:  # else its error is already in parsed.errors
            headings, words, warnings, specs = known[key]
            embeds = StoredSpecs(*specs) if specs is not None else ()
            parsed.documents.append((doc, Body(key, None, load_html),
                                     Rendered("", headings, words, warnings, embeds=embeds)))
    return parsed


@dataclass(frozen=True)
class Figures:
    """What the build learnt from resolving the documents' figures: the parts of a
    :class:`chronicle.figures.Resolution` it uses, held here so a blog without figures
    never imports that module (nor numpy)."""

    by_source: dict[Path, Any] = field(default_factory=dict)
    warnings: dict[Path, tuple[str, ...]] = field(default_factory=dict)
    updated: dict[Path, datetime] = field(default_factory=dict)
    notes: dict[Path, tuple] = field(default_factory=dict)  # updates.UpdateNote per post
    stale: tuple[str, ...] = ()
    errors: tuple[BuildError, ...] = ()
    inputs: dict[str, str] = field(default_factory=dict)
    watch: tuple[str, ...] = ()  # the scripts' input globs (see watched_digest)
    lab: Any = None  # the figures.Lab they were resolved with, for the lab pages


def resolve_figures(parsed: Parsed, paths: SitePaths, config: SiteConfig,
                    options: BuildOptions, cache: Cache) -> Figures:
    """The documents' figures against the results store, between the two passes (their
    numbers are computed, or taken from the cache, once the build knows which pages
    render: :meth:`chronicle.output.Outputs.render`)."""
    specs = {doc.doc.source: rendered.embeds for doc, _, rendered in parsed.documents
             if rendered.embeds}
    if not specs:
        return Figures()  # and numpy stays unloaded
    from urllib.parse import urlsplit

    from chronicle.figures import Lab
    from chronicle.figures import resolve_figures as resolve

    lab = Lab.of_site(paths.root, urlsplit(config.base_url).path or "/", cache)
    posted = {doc.doc.source: doc.doc.written_by for doc, _, rendered in parsed.documents
              if rendered.embeds and isinstance(doc.doc, Post)}
    names = {doc.doc.source: body.digest for doc, body, rendered in parsed.documents
             if rendered.embeds}
    found = resolve(specs, lab, options.allow_missing, posted, names)
    stale = tuple(str(s) + (f", shown by {', '.join(map(str, s.posts))}" if s.posts else "")
                  for s in found.stale)
    return Figures(found.figures, found.warnings, found.updated, found.notes, stale,
                   found.errors, found.inputs, lab.input_patterns(), lab)


def make_entries(parsed: Parsed, figures: Figures) -> tuple[list, list, list[str]]:
    """The model's entries (posts) and page entries, and the documents' warnings."""
    entries, pages, warnings = [], [], []
    for doc, body, rendered in parsed.documents:
        source = doc.doc.source
        warnings += rendered.warnings
        warnings += figures.warnings.get(source, ())
        entry = _entry(doc, body, rendered, figures.by_source.get(source, ()),
                       figures.updated.get(source), figures.notes.get(source, ()))
        (entries if isinstance(doc.doc, Post) else pages).append(entry)
    return entries, pages, warnings


def _entry(doc: Doc, body: Any, rendered: Any, figures: tuple = (),
           updated: datetime | None = None, notes: tuple = ()) -> Any:
    """The model's :class:`Entry` (a post) or :class:`PageEntry` for a rendered document."""
    from chronicle.model import Entry, PageEntry

    show_toc = rendered.wants_toc(doc.doc.toc)
    if isinstance(doc.doc, Post):
        return Entry(post=doc.doc, body=body, headings=rendered.headings, show_toc=show_toc,
                     reading_minutes=rendered.reading_minutes, embeds_updated=updated,
                     notes=notes, figures=figures)
    return PageEntry(page=doc.doc, body=body, headings=rendered.headings, show_toc=show_toc,
                     figures=figures)


__all__ = ["BuildOptions", "BuildReport", "Generator", "build", "find_sources",
           "resolve_now", "select_posts"]
