"""``chronicle build``: the whole pipeline on one page.

    load config → guard the output folder → take the site's lock → nothing changed? stop
    → gather posts and pages → parse every post → build the site model
    → render what changed → stage the new site → swap it in

Phase 1 (up to the model) reads everything and collects *every* bad post before
giving up, so one run reports them all (:class:`BuildErrors`). Phase 2 renders from
the immutable model and writes nothing until everything has rendered.

Incremental builds (``.chronicle/``, see :mod:`chronicle.manifest` and
:mod:`chronicle.cache`):

* **Nothing changed**: the hash of every input file (posts, pages, ``site/``, the
  theme, ``experiments/``, Chronicle's own code, the options) equals the manifest's
  fingerprint and every output file is as the last build left it: the build stops
  there, writes nothing and repeats the last build's warnings. Not taken when the last
  build rendered embeds (their hooks must run for stale-result reports), when an extra
  page generator does not declare its inputs (:class:`Generator`), or when "now" matters.
* **Parsing**: front matter is cached by file hash; rendered markdown by file hash and
  code version, so only edited posts are parsed. Posts with embed fences are always
  rendered again (their output depends on the results store, and the hook collects the
  build's stale results); everything else is cached.
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

Hooks for the other half of Chronicle, both on :class:`BuildOptions`:

``embed_factory(source: Path) -> hook``
    Called once per post or page with embed fences; ``hook(kind, experiment, body,
    line) -> html`` renders its ``chart``/``table``/``compare`` fences (see
    :mod:`chronicle.markdown`). After the document is rendered the build reads two
    optional attributes of the hook: ``updated`` (a datetime: the newest result the
    document shows; a post whose data is newer than its text gets that date as its
    Atom ``<updated>`` and sitemap ``<lastmod>``) and ``warnings`` (strings, counted
    like the build's own warnings and fatal under ``--strict``). Without a factory an
    embed fence is a build error.

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

EmbedFactory = Callable[[Path], Any]
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
    allow_missing: bool = False  # for the embed factory: a missing result is not an error
    embed_factory: EmbedFactory | None = None
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
            if nothing_changed(previous, fingerprint, now, options, out, cache):
                return unchanged_report(previous, out, options, started)
        docs, read_errors = gather_docs(paths, config, cache)
        if fingerprint is None:
            # Nothing to compare with, so no hurry: hashed now, the sources' hashes are
            # the ones gather_docs took from the bytes it parsed (every core, one read).
            fingerprint = input_fingerprint(paths, config, options, cache)
        posts = select_posts([d for d in docs if isinstance(d.doc, Post)], options, now)
        pages = [d for d in docs if isinstance(d.doc, Page)]
        parsed = parse_docs([*posts, *pages], options.embed_factory, cache, config.tz)
        if read_errors or parsed.errors:
            raise BuildErrors(read_errors + parsed.errors)
        # imported late: a no-change build stops before needing them
        from chronicle.model import build_site
        from chronicle.output import Outputs

        site = build_site(config, parsed.entries, parsed.pages, now)
        outputs = Outputs(site, paths, out, cache, previous, options.extra_pages)
        outputs.render()
        if options.strict and parsed.warnings:
            outputs.discard()
            raise BuildErrors([BuildError(f"warning (fatal with --strict): {w}")
                               for w in parsed.warnings])
        manifest = outputs.commit(Manifest(
            fingerprint=fingerprint, next_change=next_change(posts, docs, now),
            has_embeds=parsed.has_embeds, warnings=parsed.warnings),
            manifest_path(paths.cache, out, paths.output))
        cache.flush()
    finally:
        cache.close()
    files = manifest.outputs
    return BuildReport(out=out, pages=sum(1 for n in files if n.endswith(".html")),
                       files=len(files), seconds=time.perf_counter() - started,
                       warnings=tuple(parsed.warnings), written=outputs.written,
                       unchanged=len(files) - outputs.written, removed=outputs.removed)


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


def nothing_changed(previous: Manifest | None, fingerprint: str, now: datetime,
                    options: BuildOptions, out: Path, cache: Cache) -> bool:
    if previous is None or previous.fingerprint != fingerprint:
        return False
    if previous.has_embeds or previous.uses_now:
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
                       warnings=tuple(previous.warnings), unchanged=len(files))


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
    entries: list = field(default_factory=list)
    pages: list = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[BuildError] = field(default_factory=list)
    has_embeds: bool = False


def parse_docs(docs: list[Doc], embed_factory: EmbedFactory | None, cache: Cache,
               tz: tzinfo) -> Parsed:
    """Render every document's markdown: cached, in parallel, embeds in this process."""
    from chronicle.markdown import Rendered, render_markdown
    from chronicle.model import Body
    from chronicle.search import RECORD_NAMESPACE, post_record

    version = code_version()
    keys = [digest("body", d.hash, str(d.doc.source), version) for d in docs]
    plain = [i for i, d in enumerate(docs) if not d.has_embeds]
    known = cache.get_many("body", [keys[i] for i in plain])
    missing = [i for i in plain if keys[i] not in known]
    parsed = Parsed(has_embeds=len(plain) < len(docs))

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
                record = None
                if isinstance(doc.doc, Post):
                    record = post_record(_entry(doc, Body(keys[missing[j]]), r, None), r.text,
                                         r.terms)
                results.append((r.html, (r.headings, r.words, r.warnings), [], record))
        return results

    for j, (html, meta, errors, record) in enumerate(iter_chunks(work, len(missing))):
        parsed.errors += errors
        if html is not None:
            key = keys[missing[j]]
            cache.put("html", key, html)
            cache.put("body", key, meta)
            if record is not None:
                cache.put(RECORD_NAMESPACE, *record)
            known[key] = meta
            if j % 500 == 499:
                cache.flush()  # content-addressed entries: keeping them is always safe
    cache.flush()

    def load_html(key: str) -> str:
        return cache.get("html", key)

    for doc, key in zip(docs, keys, strict=True):
        hook = None
        if doc.has_embeds:
            hook = embed_factory(doc.doc.source) if embed_factory else None
            full = doc.read(tz)
            try:
                rendered = render_markdown(full.body, full.source, full.body_line, hook)
            except BuildErrors as exc:
                parsed.errors += exc.errors
                continue
            except BuildError as exc:
                parsed.errors.append(exc)
                continue
            body = Body.of(rendered.html)
        elif key in known:
            headings, words, warnings = known[key]
            rendered = Rendered("", headings, words, warnings)
            body = Body(key, None, load_html)
        else:
            continue  # its error is already in parsed.errors
        parsed.warnings += rendered.warnings
        parsed.warnings += [str(w) for w in getattr(hook, "warnings", None) or ()]
        entry = _entry(doc, body, rendered, hook)
        if isinstance(doc.doc, Post):
            if doc.has_embeds:  # the others' records were made with their bodies
                # from the HTML: the tokens hold an embed's fence, not what it shows
                cache.put(RECORD_NAMESPACE, *post_record(entry))
            parsed.entries.append(entry)
        else:
            parsed.pages.append(entry)
    return parsed


def _entry(doc: Doc, body: Any, rendered: Any, hook: Any) -> Any:
    """The model's :class:`Entry` (a post) or :class:`PageEntry` for a rendered document.

    Made the same way in the workers (for the search record, keyed by the entry's
    digest) and here, so both see one digest."""
    from chronicle.model import Entry, PageEntry

    show_toc = rendered.wants_toc(doc.doc.toc)
    if isinstance(doc.doc, Post):
        return Entry(post=doc.doc, body=body, headings=rendered.headings, show_toc=show_toc,
                     reading_minutes=rendered.reading_minutes,
                     embeds_updated=getattr(hook, "updated", None))
    return PageEntry(page=doc.doc, body=body, headings=rendered.headings, show_toc=show_toc)


def gather_content(paths: SitePaths, config: SiteConfig
                   ) -> tuple[list[Post], list[Page], list[BuildError]]:
    """Read every post and page without caches (for tools that want the raw models)."""
    docs, errors = gather_docs(paths, config, Cache(paths.cache, enabled=False))
    posts = [d.doc for d in docs if isinstance(d.doc, Post)]
    pages = [d.doc for d in docs if isinstance(d.doc, Page)]
    return posts, pages, errors


__all__ = ["BuildOptions", "BuildReport", "Generator", "build", "find_sources",
           "gather_content", "resolve_now", "select_posts"]
