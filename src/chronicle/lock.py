"""One build at a time per site: a lock on ``.chronicle/lock``.

``build`` (and so every rebuild of ``serve``) and ``publish`` hold it while they write
``output/`` or read what they built. A second one waits, saying on stderr which process
holds the lock; the lock file names the holder (pid and command line).

The lock is a POSIX record lock (``lockf``): the kernel drops it when its process dies,
however it dies, and forked workers do not inherit it, so a worker outliving a killed
build cannot keep the site locked. Such locks belong to the process, and closing any
descriptor of the file would drop them, so the file is opened once per process and the
lock is re-entrant: a publish holds it and the build inside it takes it again.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_held: dict[str, tuple[int, int]] = {}  # lock file → (descriptor, depth), this process


@contextmanager
def site_lock(cache_folder: Path) -> Iterator[None]:
    """Hold the site's build lock (``cache_folder`` is its ``.chronicle/``)."""
    path = str((cache_folder / "lock").absolute())
    if path in _held:
        fd, depth = _held[path]
        _held[path] = (fd, depth + 1)
        try:
            yield
        finally:
            _held[path] = (fd, depth)
        return
    cache_folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip()
            print(f"waiting for another Chronicle process working on this site to finish "
                  f"({holder or 'unknown'}; lock {path})", file=sys.stderr, flush=True)
            fcntl.lockf(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv)}\n".encode(), 0)
        _held[path] = (fd, 1)
        try:
            yield
        finally:
            del _held[path]
    finally:
        os.close(fd)  # drops the lock
