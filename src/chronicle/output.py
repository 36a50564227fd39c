"""Writing the built site: stage the whole new output folder, then exchange it in one step.

Every build fills a staging folder next to the output folder (:class:`Staging`; same
file system, so nothing is copied) with the complete new site: the files whose bytes
changed (every file, in a full build) are written, the unchanged ones are hard links to
the current output's files (same inode, same mtime: the stat cache still knows them,
and nothing is read or copied), and outputs that are gone are not there. The staging
folder is the *spare*, the folder the last build swapped out, brought up to date (one
directory walk, then work in proportion to what changed), or a new folder if there is
no spare. Nothing touches the output folder until every file has been rendered and
staged, and no file is ever written in place (a spare's files may be the live ones).

Then one ``renameat2(RENAME_EXCHANGE)`` swaps the staging folder and the output folder
(:mod:`chronicle.swap`), the manifest is saved, and the old folder is kept as the next
spare. So whatever kills the build, SIGKILL included, ``output/`` is at every instant
either the whole previous site or the whole new one, the manifest never describes files
``output/`` does not hold (see :meth:`Outputs.commit`), and the next build's output is
byte-identical to a clean build's. If anything fails before the exchange, the previous
output is untouched. Where the file system cannot exchange two folders, two renames
stand in, with a note on stderr (then a kill between them leaves no ``output/``).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from chronicle.cache import Cache, bytes_digest, code_version, digest
from chronicle.errors import BuildError
from chronicle.guard import MARKER
from chronicle.manifest import Inputs, Manifest, Record, save_manifest, tree_digest, value_digest
from chronicle.model import Site
from chronicle.parallel import iter_chunks
from chronicle.paths import SitePaths
from chronicle.render import static_files
from chronicle.swap import exchange, keep_as_spare, new_staging, remove_tree, take_spare


class Staging:
    """The next output folder, beside ``out``, exchanged with it in one step (:meth:`replace`).

    It is the spare (the folder the last build swapped out, see :mod:`chronicle.swap`)
    brought up to date, or a new folder when there is none. Either way nothing in it is
    ever written in place: a spare's files may be hard links to the live output's.
    """

    def __init__(self, out: Path):
        self.out = out.absolute()
        self.spare = take_spare(self.out)
        self.folder = self.spare or new_staging(self.out)
        self.names: list[str] = []  # the files written (not linked) here
        self._made: set[str] = set()  # folders known to exist (per process: forks copy it)

    def write(self, name: str, content: bytes | Path) -> None:
        """Stage one file (bytes, or a file to copy). Safe to call from forked workers;
        the parent then lists what was staged with :meth:`add_names`."""
        _check_inside(name)
        target = os.path.join(self.folder, name)
        try:
            self._write(target, content)
        except (NotADirectoryError, IsADirectoryError):
            _make_way(str(self.folder), target)  # the spare has a file where a folder goes
            self._write(target, content)

    def add_names(self, names: list[str]) -> None:
        self.names += names

    def finish(self, wanted: Iterable[str]) -> None:
        """Make the folder hold exactly ``wanted``: the files written here, and the others
        as hard links to the files in ``out`` (same inode, same mtime: the stat cache still
        knows them, as it ignores ``st_ctime``). Whatever else a spare held goes."""
        wanted = set(wanted)
        folder, out = str(self.folder), str(self.out)
        present, empty = _files(folder)
        gone = present.keys() - wanted
        for name in gone:
            _clear(f"{folder}/{name}")
        for name in sorted(wanted.difference(self.names)):
            source = f"{out}/{name}"
            inode = present.get(name)
            if inode is not None:
                if inode == os.stat(source).st_ino:
                    continue  # the spare already links this very file
                _clear(f"{folder}/{name}")
            target = f"{folder}/{name}"
            try:
                self._link(source, target)
            except (FileExistsError, NotADirectoryError):
                _make_way(folder, target)  # a folder where the file goes, or the reverse
                self._link(source, target)
        # folders left empty: by the files that went, or by a killed build
        for name in sorted({*empty, *(p for n in gone for p in _parents(os.path.dirname(n)))},
                           key=len, reverse=True):
            try:
                os.rmdir(f"{folder}/{name}")
            except OSError:
                pass  # not empty: it holds a wanted file

    def discard(self) -> None:
        if self.spare is not None:
            return  # still the spare: the next build brings it up to date
        try:
            remove_tree(self.folder)
        except OSError:
            pass  # marked: the next build's remove_leftovers tries again

    def replace(self) -> Path | None:
        """Make the staged folder ``out`` in one step; returns where the old one now is
        (for :func:`~chronicle.swap.keep_as_spare`), None if there was none."""
        try:
            return exchange(self.folder, self.out)
        except BaseException:
            self.discard()
            raise

    def _write(self, target: str, content: bytes | Path) -> None:
        self._folder_of(target)
        if isinstance(content, Path):
            if os.path.lexists(target):
                _clear(target)
            shutil.copyfile(content, target)
        else:
            _write_new(target, content)

    def _link(self, source: str, target: str) -> None:
        self._folder_of(target)
        try:
            os.link(source, target)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copy2(source, target)  # no hard links here: a copy, mtime kept

    def _folder_of(self, target: str) -> None:
        folder = os.path.dirname(target)
        if folder not in self._made:
            try:  # usually only the last level is new: one mkdir, no stat per level
                os.mkdir(folder)
            except FileExistsError:
                pass
            except FileNotFoundError:
                os.makedirs(folder, exist_ok=True)
            self._made.add(folder)


def _write_new(path: str, data: bytes) -> None:
    """Write a new file with the fewest system calls (no buffering, no isatty probe): a
    build writes thousands, and a system call is dear on a virtual machine. A file already
    there (in the spare) is unlinked first, never truncated: it may be a live output's."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, 0o666)
    except FileExistsError:
        _clear(path)
        fd = os.open(path, flags, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _clear(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _make_way(top: str, target: str) -> None:
    """Clear the files standing where ``target``'s folders go, and a folder at ``target``."""
    if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
    for folder in reversed(_parents(os.path.relpath(os.path.dirname(target), top))):
        path = os.path.join(top, folder)
        if os.path.lexists(path) and not os.path.isdir(path):
            os.unlink(path)
    os.makedirs(os.path.dirname(target), exist_ok=True)


def _parents(name: str) -> list[str]:
    """``a/b/c`` → ``["a/b/c", "a/b", "a"]`` (a relative folder and those above it)."""
    found = []
    while name and name != ".":
        found.append(name)
        name = os.path.dirname(name)
    return found


def _files(top: str) -> tuple[dict[str, int], list[str]]:
    """Every file under ``top`` but the marker at its top (relative name → inode, from
    the directory entries: no stat per file), and the empty folders."""
    files: dict[str, int] = {}
    empty: list[str] = []
    pending = [""]
    while pending:
        prefix = pending.pop()
        with os.scandir(f"{top}/{prefix}") as entries:
            seen = False
            for entry in entries:
                seen = True
                if entry.is_dir(follow_symlinks=False):
                    pending.append(f"{prefix}{entry.name}/")
                else:
                    files[prefix + entry.name] = entry.inode()
        if not seen and prefix:
            empty.append(prefix.rstrip("/"))
    files.pop(MARKER, None)
    return files, empty


def _check_inside(name: str) -> None:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise BuildError(f"refusing to write {name!r}: outside the output folder")
    if name == MARKER:
        raise BuildError(f"refusing to write {name!r}: Chronicle's own marker file")


class Outputs:
    """The site's output files against the last build's manifest: decides what to render,
    renders it (in parallel when big), stages the new site, then exchanges it in."""

    def __init__(self, site: Site, paths: SitePaths, out: Path, cache: Cache,
                 previous: Manifest | None, extra_pages: Iterable[Any], lab: Any = None,
                 named: dict[str, str] | None = None):
        """``lab``: the build's view of the results (figures.Lab), if it made one;
        ``named``: current hashes of named dependencies (``result:NAME``)."""
        from chronicle.render import Renderer, find_theme

        self.site, self.paths, self.out, self.cache = site, paths, out.absolute(), cache
        self.lab = lab
        self.theme = find_theme(paths, site.config.theme)
        self.renderer = Renderer(site, paths, self.theme, lab)
        # extra generators may keep their own content-hash entries here (e.g. per-post
        # search records keyed by Entry.digest): renderer.cache.get_many / put
        self.renderer.cache = cache  # type: ignore[attr-defined]
        self.extra_pages = tuple(extra_pages)
        self.full = previous is None
        self.previous = previous.outputs if previous else {}
        self.intact = {n for n, r in self.previous.items() if cache.matches(self.out / n, r.hash)}
        self.inputs = Inputs(site, {"code": code_version(), "config": value_digest(site.config),
                                    **(named or {})}, self._template_hash)
        self.records: dict[str, Record] = {}
        self._page_names: set[str] = set()  # the theme's pages, taken before they render
        self.staging = Staging(self.out)
        self.written = self.removed = 0

    def render(self) -> None:
        try:
            # the rest is made here while the pages render in the workers (if any)
            self._pages(meanwhile=self._rest)
        except BaseException:
            self.staging.discard()
            raise

    def _rest(self) -> None:
        """Every output that is not a templated page: extra pages, fixed files, static."""
        extra_urls = self._extras()
        self._fixed(extra_urls)
        for name, source in static_files(self.paths, self.theme).items():
            self._add(name, source, "static", {}, self.cache.file_hash(source))

    def discard(self) -> None:
        self.staging.discard()

    def commit(self, manifest: Manifest, path: Path) -> Manifest:
        """Make the staged site ``out`` and record what each output was made from.

        Kill points: before the exchange, ``out`` and the manifest are the old ones; after
        it and before the manifest is saved, ``out`` is new and the manifest old, so the
        next build re-checks every kept file by hash and renders the rest (the old
        manifest can only say "nothing changed" if every file it lists is as it says
        and the inputs are those it was made from); after that, only keeping the old
        folder as the spare is left, and the next build finds it either way."""
        manifest.outputs = dict(sorted(self.records.items()))
        manifest.uses_now = not self.site.entries or any(
            "site.now" in r.deps for r in self.records.values())
        removed = sorted(set(self.previous) - set(self.records))
        self.staging.finish(manifest.outputs)
        old = self.staging.replace()
        # Saved after the exchange: a manifest ahead of output/ would let the next build's
        # no-change check pass over a file this build removed. One behind it (a kill
        # just before this line) only costs renders: kept files are checked by hash.
        save_manifest(manifest, path)
        keep_as_spare(old, self.out)
        written = self.records if self.full else self.staging.names
        for name in written:
            self.cache.remember(self.out / name, self.records[name].hash)
        self.written, self.removed = len(written), len(removed)
        return manifest

    # -- the parts -----------------------------------------------------------------------
    def _pages(self, meanwhile: Callable[[], None]) -> None:
        """Render the templated pages that changed, and run ``meanwhile`` beside them."""
        from chronicle.render import page_jobs

        renderer, inputs = self.renderer, self.inputs
        jobs = page_jobs(self.site)
        self._page_names = {job.name for job in jobs}
        contexts: list[str] = []  # the digest of each rendered page's context
        if self.full:
            # Every page renders, so its context's digest only goes into its record:
            # this process makes them while the workers render (~0.1 s at N = 10,000).
            todo = jobs

            def prepare() -> None:
                contexts.extend(value_digest(job.context, inputs.memo) for job in todo)
                meanwhile()
        else:
            todo = []
            for job in jobs:
                context = value_digest(job.context, inputs.memo)
                old = self.previous.get(job.name)
                if (old is not None and old.producer == "page" and job.name in self.intact
                        and inputs.unchanged(old.deps, context)):
                    self._keep(job.name, old)
                else:
                    todo.append(job)
                    contexts.append(context)
            prepare = meanwhile

        # every figure those pages show, made first on every core: each chart drawn once,
        # and each number computed (or read from the cache) once, here, for all of them
        figures = [f for job in todo for f in job.figures()]
        if self.lab is not None:
            self.lab.prefetch(figures, self.cache)
        renderer.make_figures(figures)

        def work(indices: Iterable[int]) -> list[tuple[str, str, dict[str, str], bool]]:
            done = []
            for i in indices:
                job = todo[i]
                with renderer.recording() as recorder:
                    data = job.render(renderer)
                deps = {"code": inputs.get("code"), "config": inputs.get("config"),
                        **{d: inputs.get(d) for d in recorder.deps()}}
                found = bytes_digest(data)
                done.append((job.name, found, deps, self._stage(job.name, data, found)))
            return done

        for i, (name, found, deps, staged) in enumerate(
                iter_chunks(work, len(todo), small=True, meanwhile=prepare)):
            deps["context"] = contexts[i]
            self._record(name, Record(found, "page", deps), staged)

    def _extras(self) -> list[str]:
        urls: list[str] = []
        for number, generate in enumerate(self.extra_pages):
            declared = hasattr(generate, "inputs") and hasattr(generate, "reads_site")
            producer = f"extra:{generate.name}" if declared else f"extra:{number}"
            old = {n: r for n, r in self.previous.items() if r.producer == producer}
            if declared:
                folders = tuple(generate.inputs)
                self.inputs._extra[f"inputs:{generate.name}"] = (
                    lambda folders=folders: tree_digest(self.cache, [f for f in folders
                                                                     if f.exists()]))
                deps = next(iter(old.values())).deps if old else None
                if deps and set(old) <= self.intact and self.inputs.unchanged(deps, ""):
                    for name, record in old.items():
                        self._keep(name, record)
                    urls += [n.removesuffix("index.html") for n in old if n.endswith("index.html")]
                    continue
            with self.renderer.recording() as recorder:
                produced = list(generate(self.site, self.renderer))
            deps = {}
            if declared:
                names = ["code", "config", f"inputs:{generate.name}", *recorder.deps()]
                names += ["site"] if generate.reads_site else []
                deps = {d: self.inputs.get(d) for d in names}
            for name, body in produced:
                self._add(name, body, producer, deps)
                if name.endswith("index.html"):
                    urls.append(name.removesuffix("index.html"))
        return urls

    def _fixed(self, extra_urls: list[str]) -> None:
        from chronicle.markdown import pygments_css
        from chronicle.render import robots_txt, sitemap_xml

        self._add("sitemap.xml", sitemap_xml(self.site, extra_urls), "fixed", {})
        self._add("robots.txt", robots_txt(self.site), "fixed", {})
        self._add("static/pygments.css", pygments_css().encode(), "fixed", {})

    # -- bookkeeping -----------------------------------------------------------------------
    def _add(self, name: str, body: bytes | Path, producer: str, deps: dict[str, str],
             known_hash: str | None = None) -> None:
        from chronicle.render import output_file

        if name in self.records or name in self._page_names or output_file(name) != name:
            raise BuildError(f"{producer} wants to write {name!r}, which is taken or not a "
                             "file name")
        found = known_hash or bytes_digest(body)  # type: ignore[arg-type]
        self._record(name, Record(found, producer, deps), self._stage(name, body, found))

    def _stage(self, name: str, body: bytes | Path, found: str) -> bool:
        old = self.previous.get(name)
        if old is not None and old.hash == found and name in self.intact:
            return False
        self.staging.write(name, body)
        return True

    def _keep(self, name: str, record: Record) -> None:
        if name in self.records:
            raise BuildError(f"two pages want the same output file {name!r}")
        self.records[name] = record

    def _record(self, name: str, record: Record, staged: bool) -> None:
        self._keep(name, record)
        if staged:
            self.staging.add_names([name])

    def _template_hash(self, name: str) -> str:
        found = self.renderer.template_file(name)
        return digest(str(found), self.cache.file_hash(found)) if found else "missing"
