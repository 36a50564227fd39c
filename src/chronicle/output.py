"""Writing the built site: stage, then swap (a full build) or move in (an incremental one).

Files are written into a staging folder next to the output folder (same file system, so
renames are cheap and never copy). Nothing touches the output folder until every file
has been rendered and staged.

A full build stages the whole site; the staging folder then replaces the output folder:
the old one is renamed aside, the new one renamed into place, the old one deleted. If
the second rename fails, the old folder is put back.

An incremental build stages only the files whose bytes changed (:class:`Staging`);
:meth:`Staging.apply` then renames each into place (each rename atomic) and deletes the
outputs that are gone. Unchanged files are never touched: same inode, same mtime.

If anything fails before the swap or the apply, the staging folder is removed and the
previous output is untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from chronicle.cache import Cache, bytes_digest, code_version, digest
from chronicle.errors import BuildError
from chronicle.manifest import Inputs, Manifest, Record, save_manifest, tree_digest, value_digest
from chronicle.model import Site
from chronicle.parallel import iter_chunks
from chronicle.paths import SitePaths
from chronicle.render import static_files


def write_site(files: Mapping[str, bytes | Path], out: Path) -> int:
    """Replace ``out`` with exactly ``files`` (output path → bytes, or a file to copy).

    Returns the number of files written.
    """
    out = out.absolute()
    for name in files:
        _check_inside(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        for name in sorted(files):
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            content = files[name]
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                target.write_bytes(content)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a web server must read it
        _swap(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return len(files)


class Staging:
    """A folder next to ``out`` collecting the files a build will put into ``out``."""

    def __init__(self, out: Path):
        self.out = out.absolute()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.staging-",
                                            dir=self.out.parent))
        self.names: list[str] = []
        self._made: set[str] = set()  # folders known to exist (per process: forks copy it)

    def write(self, name: str, content: bytes | Path) -> None:
        """Stage one file (bytes, or a file to copy). Safe to call from forked workers;
        the parent then lists what was staged with :meth:`add_names`."""
        _check_inside(name)
        target = os.path.join(self.folder, name)
        folder = os.path.dirname(target)
        if folder not in self._made:
            try:  # usually only the last level is new: one mkdir, no stat per level
                os.mkdir(folder)
            except FileExistsError:
                pass
            except FileNotFoundError:
                os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            _write_new(target, content)

    def add_names(self, names: list[str]) -> None:
        self.names += names

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def replace_all(self) -> None:
        """Make the staged files the whole output folder (a full build)."""
        os.chmod(self.folder, 0o755)  # mkdtemp makes it private; a web server must read it
        _swap(self.folder, self.out)

    def apply(self, removed: list[str]) -> None:
        """Move each staged file into ``out`` and delete ``removed`` (an incremental build)."""
        for name in sorted(self.names):
            target = self.out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.folder / name, target)
        for name in sorted(removed):
            _check_inside(name)
            (self.out / name).unlink(missing_ok=True)
            _prune_empty(self.out / name, self.out)
        self.discard()


def _write_new(path: str, data: bytes) -> None:
    """Write a file with the fewest system calls (no buffering, no isatty probe): a build
    writes thousands, and a system call is dear on a virtual machine."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _prune_empty(path: Path, top: Path) -> None:
    folder = path.parent
    while folder != top and top in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): stop climbing
            return
        folder = folder.parent


def _swap(staging: Path, out: Path) -> None:
    if not out.exists():
        staging.rename(out)
        return
    if not out.is_dir():
        raise BuildError("output path exists and is not a folder", out)
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()  # we only wanted a unique name
    out.rename(old)
    try:
        staging.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _check_inside(name: str) -> None:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise BuildError(f"refusing to write {name!r}: outside the output folder")


class Outputs:
    """The site's output files against the last build's manifest: decides what to render,
    renders it (in parallel when big), stages what changed, then applies it."""

    def __init__(self, site: Site, paths: SitePaths, out: Path, cache: Cache,
                 previous: Manifest | None, extra_pages: Iterable[Any], lab: Any = None,
                 named: dict[str, str] | None = None):
        """``lab``: the build's view of the results (figures.Lab), if it made one;
        ``named``: current hashes of named dependencies (``result:NAME``)."""
        from chronicle.render import Renderer, find_theme

        self.site, self.paths, self.out, self.cache = site, paths, out.absolute(), cache
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
        """Put the staged files in place and record what each output was made from."""
        manifest.outputs = dict(sorted(self.records.items()))
        manifest.uses_now = not self.site.entries or any(
            "site.now" in r.deps for r in self.records.values())
        removed = sorted(set(self.previous) - set(self.records))
        marker = path.parent / "applying"
        if self.full:
            self.staging.replace_all()
        else:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{self.out}\n")  # a crash while applying → a full build next
            self.staging.apply(removed)
        save_manifest(manifest, path)
        marker.unlink(missing_ok=True)
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
