"""The site's theme against the one installed with Chronicle.

A site uses the installed theme by reference and overrides single files: a template in
``site/templates/`` (or the site's ``themes/NAME/templates/``), a static file in
``site/static/`` (or ``themes/NAME/static/``). Such a file is frozen: upgrades of
Chronicle change the installed theme, never the site's copy.

- ``chronicle theme eject [TEMPLATE…]`` copies installed templates into
  ``site/templates/`` to be edited, and says which are now frozen;
- :func:`upgrade_notes` names the site's files that differ from the installed ones and
  the installed templates a site's full copy of the theme lacks (made by an older
  ``init``), so the author knows what an upgrade did not reach. ``chronicle check``
  prints them.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chronicle.errors import ChronicleError
from chronicle.paths import BUNDLED_THEMES, SitePaths

PARTS = ("templates", "static")


def eject(paths: SitePaths, theme: str, names: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """Copy the installed theme's templates ``names`` (all when empty) into
    ``site/templates/``: ``(copied, kept)``, where ``kept`` were already there and are
    left as they are. Nothing is copied when a name is not an installed template."""
    installed = _installed(paths, theme) / "templates"
    available = _files(installed)
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ChronicleError(f"no template {unknown[0]!r} in the installed theme {theme!r} "
                             f"(it has {', '.join(available)})")
    copied, kept = [], []
    for name in names or available:
        destination = paths.site_templates / name
        if destination.exists():
            kept.append(destination)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(installed / name, destination)
        copied.append(destination)
    return copied, kept


def upgrade_notes(paths: SitePaths, theme: str) -> list[str]:
    """What an upgrade of the installed theme does not reach in this site, one line each:
    the site's files that differ from the installed file of the same name, then, for a
    ``themes/NAME/`` folder, the installed templates and static files it lacks (those are
    used from the installed theme). Empty for a theme Chronicle does not ship."""
    installed = BUNDLED_THEMES / theme
    if not installed.is_dir():
        return []
    own = paths.themes / theme
    notes = []
    for part in PARTS:
        reference = installed / part
        for folder in (own / part, paths.root / "site" / part):
            for name in _files(folder):
                if (reference / name).is_file() and not _same(folder / name, reference / name):
                    notes.append(f"{_shown(paths, folder / name)} differs from the installed "
                                 f"theme's {name}: upgrades of Chronicle do not change it")
    for part in PARTS if own.is_dir() else ():
        folder = own / part
        lacking = [name for name in _files(installed / part) if not (folder / name).exists()]
        if lacking:
            notes.append(f"{_shown(paths, folder)} lacks {', '.join(lacking)}: "
                         "the build uses the installed theme's")
    return notes


def _installed(paths: SitePaths, theme: str) -> Path:
    folder = BUNDLED_THEMES / theme
    if not folder.is_dir():
        raise ChronicleError(f"theme {theme!r} is not installed with Chronicle: its templates "
                             f"are in {paths.themes / theme}, nothing to eject", paths.config)
    return folder


def _files(folder: Path) -> list[str]:
    """Every file under ``folder``, as sorted relative POSIX paths (none when absent)."""
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def _same(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def _shown(paths: SitePaths, path: Path) -> str:
    return path.relative_to(paths.root).as_posix()


def register(sub: Any) -> None:
    """Add ``chronicle theme eject`` to the CLI's subcommands."""
    parser = sub.add_parser("theme", help="take templates of the installed theme into the site")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    eject_parser = actions.add_parser(
        "eject", help="copy installed templates into site/templates/ to edit them")
    eject_parser.add_argument("templates", nargs="*", metavar="TEMPLATE",
                              help="a template's name, e.g. post.html (default: every one)")
    eject_parser.add_argument("--root", type=Path, metavar="DIR", help="site root")
    eject_parser.set_defaults(func=_eject_command)


def _eject_command(args: Any) -> int:
    from chronicle.config import load_config
    from chronicle.paths import site_root

    paths = SitePaths(site_root(args.root))
    copied, kept = eject(paths, load_config(paths.config).theme, args.templates)
    for path in kept:
        print(f"kept {_shown(paths, path)}: already in the site (delete it to eject it afresh)")
    for path in copied:
        print(f"copied {_shown(paths, path)}")
    if copied:
        frozen = ", ".join(path.name for path in copied)
        print(f"frozen now: {frozen}. Upgrades of Chronicle no longer change "
              f"{'it' if len(copied) == 1 else 'them'}; delete one from site/templates/ "
              "to follow the installed theme again.")
    return 0
