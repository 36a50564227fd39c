"""The one guard for every folder Chronicle replaces or deletes as a whole.

A build replaces its output folder (``output/`` or ``--out``), a publish replaces a
``dir`` or local ``rsync`` target, and the leftovers of a killed build are deleted. Each
of these first asks :func:`check_replaceable`, which refuses, with a :class:`BuildError`
naming the folder and before anything is touched:

* the site root, any folder holding it, and any folder holding the current folder;
* the site's own folders (``posts/``, ``site/``, ``themes/``, ``experiments/``,
  ``.git``, ``.lab``, ``.chronicle``) and any folder holding another site or a git
  repository (``site/site.toml`` or ``.git`` inside) — these even when marked;
* a folder inside one of the site's source folders, unless it is marked;
* a path that is not a folder, and a non-empty folder that is not clearly ours.

*Clearly ours* means it holds :data:`MARKER`, a file every build and publish writes at
the top of the folder it makes, or the caller knows it made it (an output folder of an
older Chronicle, which wrote no marker, has this site's manifest in ``.chronicle/``).
A folder that does not exist yet, or is empty, has nothing to lose.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from chronicle.errors import BuildError

MARKER = ".chronicle-output"
MARKER_TEXT = (b"Chronicle wrote this folder; the next build or publish replaces all of it.\n"
               b"Delete this file to keep Chronicle from ever replacing the folder.\n")
SOURCES = ("posts", "site", "themes", "experiments", ".git", ".lab")
OWN = ".chronicle"  # the caches: never replaced, but what lies inside is Chronicle's


def mark(folder: Path) -> None:
    """Claim ``folder`` (one Chronicle just made) as a Chronicle output."""
    fd = os.open(folder / MARKER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, MARKER_TEXT)
    finally:
        os.close(fd)


def is_marked(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def check_replaceable(folder: Path, root: Path | None, what: str,
                      known: bool = False) -> None:
    """Refuse (:class:`BuildError`) unless ``folder`` may be replaced as a whole.

    ``root``: the site's root (None: no site is involved); ``what`` names the folder's
    role in the message ("output folder", "publish target"); ``known``: the caller has
    other proof that Chronicle made the folder.
    """
    real = folder.resolve()  # symlinks followed: what would really be lost

    def refuse(why: str) -> BuildError:
        return BuildError(f"refusing to replace the {what}: it {why}; nothing was touched",
                          folder)

    if root is not None:
        _check_site_folders(real, root.resolve(), refuse)
    if Path.cwd().resolve().is_relative_to(real):
        raise refuse("holds the current folder")
    if not real.exists():
        return
    if not real.is_dir():
        raise refuse("exists and is not a folder")
    for inside in ("site/site.toml", ".git"):
        if (real / inside).exists():
            raise refuse(f"holds {inside}: sources, not a built site")
    if known or is_marked(real) or not any(real.iterdir()):
        return
    raise refuse(f"is a non-empty folder Chronicle did not write (no {MARKER} file); "
                 "empty it or choose another folder")


def _check_site_folders(real: Path, site: Path, refuse: Callable[[str], BuildError]) -> None:
    if real == site:
        raise refuse("is the site's root folder")
    if site.is_relative_to(real):
        raise refuse(f"holds the site ({site})")
    for name in (*SOURCES, OWN):
        for source in {site / name, (site / name).resolve()}:  # a source may be a symlink
            if real == source:
                raise refuse(f"is the site's {name} folder")
            if name != OWN and real.is_relative_to(source) and not is_marked(real):
                raise refuse(f"lies inside the site's {name} folder and Chronicle did "
                             f"not write it (no {MARKER} file)")
