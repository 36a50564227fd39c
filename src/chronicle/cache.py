"""Build caches under ``.chronicle/``, keyed by content hash: deleting them only costs time.

One SQLite file (``.chronicle/cache.sqlite``) holds every namespace:

``stat``
    ``path → (size, mtime, inode, hash)``: a file whose stat signature is unchanged is not
    read again (as git's index does). A file modified within :data:`RACY_SECONDS` of the
    moment its hash was recorded is always re-read, so an edit in the same clock tick as
    the previous build is never missed.
``doc``
    a post's or page's parsed front matter (its fields without the body) and whether it
    has embed fences, keyed by the file's hash, its path, the time zone and
    :func:`code_version`.
``body``/``html``
    rendered markdown: headings, word count and warnings under ``body``, the HTML under
    ``html``, both keyed by the source's hash and path and the code version (which covers
    the markdown plugins, Pygments and their versions).
``search-json``
    one post's ``search.json`` record (UTF-8 JSON), keyed by the code version and the
    post's :attr:`~chronicle.model.Entry.digest`; made while the post is parsed (see
    :mod:`chronicle.search`), so the index never reads the bodies back.

Values are pickled: this cache is written and read only by Chronicle on this machine.
Writes are buffered and committed by :meth:`Cache.flush`; a process forked from the
build (see :mod:`chronicle.parallel`) opens its own connection and only reads, and never
closes the copy of the parent's connection it inherited. Lookups run inside one read
transaction until the next flush (SQLite would otherwise lock and unlock the file around
each of a build's ~20,000 lookups).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache as memoize
from pathlib import Path
from typing import Any

SCHEMA = 1
# The layout of cache.sqlite (its user_version): a file of another layout is emptied.
# 2: values in a rowid table, appended in write order, found through an index on
# (ns, key). Layout 1 kept them in a WITHOUT ROWID table ordered by their random keys:
# every flush then rewrote nearly every page of the file (a cold build at N = 10,000
# wrote 2.9 GB through SQLite for a 180 MB cache).
STORE_LAYOUT = 2
PAGE_BYTES = 65536
RACY_SECONDS = 2
# The packages whose behaviour shapes the output; their versions are part of the key.
SHAPING_PACKAGES = ("markdown-it-py", "mdit-py-plugins", "Pygments", "Jinja2", "PyYAML")


def digest(*parts: str | bytes) -> str:
    """A short stable hash of ``parts`` (sha1: fast here, and nothing adversarial)."""
    try:
        # all text (the usual case): one encode and one update, not two updates a part;
        # the same bytes as the loop below, so the same hash (~50,000 calls a build)
        text = "\0".join(parts)  # type: ignore[arg-type]
    except TypeError:
        return _digest_mixed(parts)
    return hashlib.sha1((text + "\0" if parts else "").encode("utf-8", "surrogatepass")
                        ).hexdigest()


def _digest_mixed(parts: tuple[str | bytes, ...]) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def bytes_digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """A file's bytes in three system calls (``Path.read_bytes`` makes about seven, and
    a build reads every source twice)."""
    return read_stamped(path)[0]


Signature = tuple[int, int, int]
"""A file's ``(size, mtime_ns, inode)``: unchanged, its content is taken as unchanged."""


def read_stamped(path: str | os.PathLike[str], stamp: bool = False
                 ) -> tuple[bytes, Signature | None]:
    """A file's bytes and, with ``stamp``, its signature as it was opened (one more
    system call), for :meth:`Cache.note_hash`."""
    fd = os.open(path, os.O_RDONLY)
    try:
        signature = None
        if stamp:
            st = os.fstat(fd)
            signature = (st.st_size, st.st_mtime_ns, st.st_ino)
        parts = []
        while chunk := os.read(fd, 1 << 20):
            parts.append(chunk)
        return b"".join(parts), signature
    finally:
        os.close(fd)


@memoize
def code_version() -> str:
    """Hash of Chronicle's own source (with its bundled theme) and the shaping packages'
    versions: a new Chronicle or a new Pygments invalidates every cached render."""
    from importlib.metadata import PackageNotFoundError, version

    package = Path(__file__).parent
    parts = []
    for folder, dirs, files in os.walk(package, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if name.endswith((".py", ".html", ".xml", ".css", ".js", ".svg", ".toml")):
                path = Path(folder) / name
                parts += [path.relative_to(package).as_posix(), bytes_digest(path.read_bytes())]
    for name in SHAPING_PACKAGES:
        try:
            parts.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name}=none")
    return digest(f"schema {SCHEMA}", *parts)


_forks = 0  # how many forks deep this process is: a connection is never shared across one
_inherited: list[sqlite3.Connection] = []  # connections of a parent process, kept unclosed


def _count_fork() -> None:
    global _forks
    _forks += 1


_open: weakref.WeakSet[Cache] = weakref.WeakSet()


def _end_reads_before_fork() -> None:
    # SQLite's per-file lock bookkeeping lives in process memory, so a child inherits a
    # read transaction's locks on paper but not in the kernel: the parent could then
    # reset the WAL under the child's reads. No transaction may be open across a fork.
    for cache in list(_open):
        if cache._owner == _forks:
            cache._end_read()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_end_reads_before_fork, after_in_child=_count_fork)


class Cache:
    """The build caches of one site (``folder`` is its ``.chronicle/``)."""

    def __init__(self, folder: Path, enabled: bool = True, read: bool = True):
        """``read=False`` (``--clean``): ignore what is stored, but store afresh."""
        self.folder = folder
        self.enabled = enabled
        self.read = enabled and read
        self._db: sqlite3.Connection | None = None
        self._owner = 0
        self._pending: dict[tuple[str, str], bytes] = {}
        self._written: set[tuple[str, str]] = set()  # readable even when read=False
        self._stat: dict[str, tuple[int, int, int, str]] | None = None
        self._stat_dirty: dict[str, tuple[int, int, int, str]] = {}
        self._seen: dict[str, str] = {}  # this build's answers of file_hash (inputs only)
        self._reading = False  # inside a read transaction (see _reader)
        _open.add(self)
        self._started_ns = time.time_ns()

    # -- key/value ----------------------------------------------------------------------
    def get(self, namespace: str, key: str) -> Any | None:
        if not self.enabled:
            return None
        pending = self._pending.get((namespace, key))
        if pending is not None:
            return pickle.loads(pending)
        if not self.read and (namespace, key) not in self._written:
            return None
        row = self._reader().execute("SELECT value FROM kv WHERE ns = ? AND key = ?",
                                   (namespace, key)).fetchone()
        return pickle.loads(row[0]) if row else None

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, Any]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        if not self.enabled or not wanted:
            return found
        stored = wanted if self.read else [k for k in wanted if (namespace, k) in self._written]
        conn = self._reader()
        for start in range(0, len(stored), 500):
            chunk = stored[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in conn.execute(
                    f"SELECT key, value FROM kv WHERE ns = ? AND key IN ({marks})",
                    (namespace, *chunk)):
                found[key] = pickle.loads(value)
        for key in wanted:
            if (namespace, key) in self._pending:
                found[key] = pickle.loads(self._pending[(namespace, key)])
        return found

    def put(self, namespace: str, key: str, value: Any) -> None:
        if self.enabled:
            self._pending[(namespace, key)] = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
            if not self.read:
                self._written.add((namespace, key))

    # -- file hashes ---------------------------------------------------------------------
    def file_hash(self, path: Path | str) -> str:
        """Content hash of ``path``, read only when its stat signature changed.

        Sources are asked for twice a build (for the fingerprint and by gather_docs,
        in either order): the answer is kept for this build, so both see one version of
        the file and a 10,000 post site is not stat'ed twice."""
        found = self.known_hash(path)
        if found is None:
            data, signature = read_stamped(path, stamp=True)
            assert signature is not None
            found = self.note_hash(path, signature, bytes_digest(data))
        return found

    def known_hash(self, path: Path | str) -> str | None:
        """:meth:`file_hash` if it can be told without reading the file (this build saw
        it, or its stat signature is the stored one), else None."""
        key = str(path)
        seen = self._seen.get(key)
        if seen is not None:
            return seen
        st = os.stat(key)
        known = self._stats().get(key)
        if known is not None and known[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
            self._seen[key] = known[3]
            return known[3]
        return None

    def note_hash(self, path: Path | str, signature: Signature, found: str) -> str:
        """Take ``found`` as the hash of ``path``, read by this build (here or in a
        worker) with ``signature`` (see :func:`read_stamped`): later questions about the
        file get this answer. Returns ``found``."""
        key = str(path)
        if signature[1] < self._started_ns - RACY_SECONDS * 1_000_000_000:
            self._stat_dirty[key] = (*signature, found)
        self._seen[key] = found
        return found

    def remember(self, path: Path, known_hash: str) -> None:
        """Note the hash of a file this build just wrote (an output)."""
        st = path.stat()
        self._stat_dirty[str(path)] = (st.st_size, st.st_mtime_ns, st.st_ino, known_hash)
        self._seen[str(path)] = known_hash

    def matches(self, path: Path, expected: str) -> bool:
        """Does ``path`` exist with content hashing to ``expected``?"""
        try:
            return self.file_hash(path) == expected
        except OSError:
            return False

    def _stats(self) -> dict[str, tuple[int, int, int, str]]:
        if self._stat is None:
            self._stat = {}
            if self.read:
                rows = self._reader().execute("SELECT path, size, mtime, ino, hash FROM stat")
                self._stat = {p: (s, m, i, h) for p, s, m, i, h in rows}
        return self._stat

    # -- persistence -----------------------------------------------------------------------
    def flush(self) -> None:
        """Commit buffered writes (the build calls this once it has succeeded)."""
        if not self.enabled or not (self._pending or self._stat_dirty):
            return
        conn = self._conn()
        self._end_read()
        conn.execute("BEGIN")
        conn.executemany("INSERT OR REPLACE INTO kv (ns, key, value) VALUES (?, ?, ?)",
                         [(ns, key, value) for (ns, key), value in self._pending.items()])
        conn.executemany("INSERT OR REPLACE INTO stat VALUES (?, ?, ?, ?, ?)",
                         [(p, *sig) for p, sig in self._stat_dirty.items()])
        conn.execute("COMMIT")
        self._stats().update(self._stat_dirty)
        self._pending.clear()
        self._stat_dirty.clear()

    def close(self) -> None:
        if self._db is not None and self._owner == _forks:
            self._end_read()
            self._db.close()
        elif self._db is not None:
            _inherited.append(self._db)  # a parent's: see _conn
        self._db = None

    def _reader(self) -> sqlite3.Connection:
        """The connection inside one read transaction, held until the next write: SQLite
        otherwise locks, checks and unlocks the file around every single lookup (a
        handful of system calls each, for 20,000 lookups a build)."""
        conn = self._conn()
        if not self._reading:
            conn.execute("BEGIN")
            self._reading = True
        return conn

    def _end_read(self) -> None:
        if self._reading and self._db is not None:
            self._db.execute("COMMIT")
        self._reading = False

    def _conn(self) -> sqlite3.Connection:
        if self._db is None or self._owner != _forks:  # a forked worker opens its own
            if self._db is not None:
                # The parent's connection must never be closed here: SQLite would take
                # this process for the last user of the file and checkpoint and delete
                # the WAL under the parent, whose later commits workers then miss.
                _inherited.append(self._db)
            self.folder.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.folder / "cache.sqlite", timeout=30,
                                       isolation_level=None)
            self._owner = _forks
            self._reading = False  # a forked worker's copy of the flag is not its own
            # big pages: a rendered body is one page read, not a chain of overflow pages
            # (a system call each, and those are dear on a virtual machine). Only takes
            # effect on a new file, so it comes before WAL.
            self._db.execute(f"PRAGMA page_size={PAGE_BYTES}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # KiB: at most 8 MiB of pages. A build reads each value about once, so a
            # bigger page cache only grows every process (at 32 MiB, 2 x 24 MiB more)
            self._db.execute("PRAGMA cache_size=-8192")
            self._db.execute("BEGIN IMMEDIATE")  # one process checks and makes the layout
            if self._db.execute("PRAGMA user_version").fetchone()[0] != STORE_LAYOUT:
                self._db.execute("DROP TABLE IF EXISTS kv")
                self._db.execute("DROP TABLE IF EXISTS stat")
                self._db.execute("CREATE TABLE kv (id INTEGER PRIMARY KEY, ns TEXT NOT NULL, "
                                 "key TEXT NOT NULL, value BLOB NOT NULL)")
                self._db.execute("CREATE UNIQUE INDEX kv_key ON kv (ns, key)")
                self._db.execute("CREATE TABLE stat (path TEXT PRIMARY KEY, size INTEGER, "
                                 "mtime INTEGER, ino INTEGER, hash TEXT)")
                self._db.execute(f"PRAGMA user_version={STORE_LAYOUT}")
            self._db.execute("COMMIT")
        return self._db


class Unread(Sequence):
    """A tuple as the cache keeps it, pickled, unpickled when first asked for: a build
    reads every document's parts from the cache, and shows those of the few it renders
    (an edit of a 10,000-post blog: one post's figures and specs of 3,334 posts').
    Its length is known unread."""

    def __init__(self, data: bytes, length: int,
                 load: Callable[[bytes], tuple[Any, ...]] = pickle.loads):
        self._data: bytes | None = data
        self._length = length
        self._load = load
        self._items: tuple[Any, ...] = ()

    def _all(self) -> tuple[Any, ...]:
        if self._data is not None:
            self._items, self._data = tuple(self._load(self._data)), None
        return self._items

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: Any) -> Any:
        return self._all()[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(self._all())
