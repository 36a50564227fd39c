"""Replacing a file or a folder in one step, so a reader sees the old one or the new one.

A file: :func:`atomic_write` writes a temporary file beside it and renames it over the
target (one ``rename``: old or new at every instant, whatever kills the process when).

A folder: fill a staging folder beside it, then exchange the two. :func:`new_staging`
makes ``.NAME.staging-XXXXXXXX`` next to the folder (same file system, so nothing is
ever copied) and marks it as ours (:mod:`chronicle.guard`).
:func:`exchange` swaps the two with Linux's ``renameat2(RENAME_EXCHANGE)``: one system
call, so at every instant the folder's path names either the whole old folder or the
whole new one, whatever kills the process when. The old folder is then under the
staging name. A build keeps it as ``.NAME.spare`` (:func:`keep_as_spare`), its next
staging folder; a publish deletes it with :func:`remove_tree`, marker last, so a killed
deletion leaves a marked (or empty) folder that :func:`remove_leftovers` deletes on the
next run, as it does a killed run's staging folders.

Where ``renameat2`` is missing (not Linux, a C library without it) or the file system
refuses the exchange (some network and FUSE file systems), :func:`exchange` falls back
to two renames, old folder aside then new one in, with a note on stderr: there, a kill
between the two leaves no folder at the path until the next build.

Measured at N = 10,000 posts (11,073 files in 11,034 folders; edit-one builds): a new
staging folder of hard links costs 1.3-3.0 s to make and 11-18 s to delete on this
machine's file system, which is slow to delete; bringing the spare up to date costs
about 0.1 s of CPU a build. A generation folder behind a symlink swapped with one
``rename`` needs the same new tree (or the same spare) per build, and turns ``output/``
into a symlink that web servers, rsync and users would all see.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from chronicle.guard import MARKER, is_marked, mark

_TEMP_FILE = re.compile(r"\..+\.([0-9]+)\.[a-z0-9_]{8}\.tmp")  # atomic_write's, below
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_noted = False  # the fallback's note is printed once a process


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Put ``data`` at ``path`` in one step, readable by all (``0644``: results and charts
    are shared and served).

    ``durable`` (the default): the bytes are fsynced before the rename. Without it a power
    cut can leave an empty file under the name, as the rename may reach the disk first;
    only a file whose reader takes an empty or torn copy for none may go without.

    The temporary file, ``.NAME.PID.XXXXXXXX.tmp``, is deleted on any exception; one a
    killed process left names its writer (:mod:`chronicle.lab.leftovers` reads it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                dir=path.parent)
    try:
        try:
            os.fchmod(fd, 0o644)  # mkstemp makes it private
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)  # missing if interrupted just after the rename
        raise


def temp_writer(name: str) -> int | None:
    """The pid of the process that made the temporary file ``name`` in
    :func:`atomic_write`; None when ``name`` is not one."""
    found = _TEMP_FILE.fullmatch(name)
    return int(found[1]) if found else None


def new_staging(folder: Path) -> Path:
    """An empty, marked folder beside ``folder``, readable by a web server."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.staging-", dir=folder.parent))
    os.chmod(staging, 0o755)  # mkdtemp makes it private
    mark(staging)
    return staging


def exchange(staging: Path, folder: Path) -> Path | None:
    """Put ``staging`` at ``folder`` in one step. Returns where the old folder now is
    (marked: delete it with :func:`remove_tree`), or None if there was none."""
    if not os.path.lexists(folder):
        os.rename(staging, folder)
        return None
    if not is_marked(folder):
        mark(folder)  # an older Chronicle's output: so that a kill below leaves it sweepable
    if not _renameat2_exchange(staging, folder):
        return _two_renames(staging, folder)
    return staging


def spare_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.spare"


def take_spare(folder: Path) -> Path | None:
    """The spare of ``folder`` (what the last exchange swapped out), if there is one of
    ours: the next staging folder, brought up to date instead of made anew."""
    spare = spare_path(folder)
    if spare.is_dir() and not spare.is_symlink() and is_marked(spare):
        return spare
    return None


def keep_as_spare(old: Path | None, folder: Path) -> None:
    """Keep the folder :func:`exchange` swapped out as ``folder``'s spare (deleting one
    costs a system call per file, and a new staging folder one more per file and
    folder: far more than bringing the spare up to date)."""
    spare = spare_path(folder)
    if old is None or old == spare:
        return
    if os.path.lexists(spare):
        remove_tree(old)  # someone else's file or folder has the spare's name
    else:
        os.rename(old, spare)


def remove_tree(folder: Path) -> None:
    """Delete a folder of ours, its marker last (see :func:`remove_leftovers`)."""
    for entry in os.scandir(folder):
        if entry.name == MARKER:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    Path(folder, MARKER).unlink(missing_ok=True)
    os.rmdir(folder)


def remove_leftovers(folder: Path, known: bool = False) -> None:
    """Delete what killed runs left beside ``folder``: staging folders (and the old
    folders parked under their names) that hold our marker or nothing at all.

    ``known``: the folder is ours by the caller's proof (see
    :func:`chronicle.guard.check_replaceable`), so unmarked ``.NAME.staging-*`` and
    ``.NAME.old-*`` folders beside it are an older Chronicle's leftovers: deleted too.
    """
    pattern = re.compile(rf"\.{re.escape(folder.name)}\.(staging|old)-[a-z0-9_]{{8}}")
    try:
        entries = list(os.scandir(folder.parent))
    except FileNotFoundError:
        return
    for entry in entries:
        if not pattern.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        if is_marked(path):
            remove_tree(path)
        elif known:
            shutil.rmtree(path)
        else:
            try:
                path.rmdir()  # killed between mkdtemp and its marker
            except OSError:
                pass  # not empty and not marked: not provably ours


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Exchange two paths atomically; False where the system cannot."""
    global _noted
    call = _renameat2()
    if call is not None:
        done = call(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
        if done == 0:
            return True
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(a), None, str(b))
    if not _noted:
        _noted = True
        print(f"note: this system cannot exchange two folders in one step; {b} is "
              "replaced with two renames, and a kill between them leaves it missing "
              "until the next build", file=sys.stderr)
    return False


@cache
def _renameat2() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not glibc 2.28+ (or not Linux)
        return None


def _two_renames(staging: Path, folder: Path) -> Path:
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
    old.rmdir()  # only its unique name was wanted
    folder.rename(old)
    try:
        staging.rename(folder)
    except BaseException:
        old.rename(folder)
        raise
    return old
