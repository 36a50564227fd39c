"""Where things live, relative to the site root (the folder holding ``site/site.toml``)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chronicle.errors import ChronicleError

CONFIG = Path("site") / "site.toml"
# The themes installed with Chronicle: every site's templates and static files end here.
BUNDLED_THEMES = Path(__file__).parent / "skeleton" / "themes"
DEFAULT_THEME = "chronicle"


def find_root(start: Path | None = None) -> Path:
    """Walk up from ``start`` to the folder holding ``site/site.toml``, as git finds ``.git``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG).is_file():
            return folder
    raise ChronicleError(
        f"no {CONFIG} here or in any parent folder (run `chronicle init`)", here
    )


def packaged_theme(name: str) -> Path:
    """The installed theme that theme ``name`` falls back on: the one of that name, or
    the default theme for a theme of the site's own, so a template a new version of
    Chronicle needs is always found."""
    own = BUNDLED_THEMES / name
    return own if own.is_dir() else BUNDLED_THEMES / DEFAULT_THEME


def site_root(given: Path | None) -> Path:
    """A command's ``--root DIR`` when given, else the root found above the working folder."""
    return given.resolve() if given else find_root()


def add_root_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``--root DIR`` option every command that works on a site takes (read it with
    :func:`site_root`)."""
    parser.add_argument("--root", type=Path, metavar="DIR",
                        help="site root (default: the folder above holding site/site.toml)")
    return parser


def site_command(sub: argparse._SubParsersAction, name: str, func: Callable[..., int],
                 help: str) -> argparse.ArgumentParser:
    """A subcommand ``name`` of ``sub`` that works on a site: ``--root`` and ``func``."""
    parser = add_root_argument(sub.add_parser(name, help=help))
    parser.set_defaults(func=func)
    return parser


@dataclass(frozen=True)
class SitePaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def posts(self) -> Path:
        return self.root / "posts"

    @property
    def pages(self) -> Path:
        return self.root / "site" / "pages"

    @property
    def site_static(self) -> Path:
        return self.root / "site" / "static"

    @property
    def site_templates(self) -> Path:
        return self.root / "site" / "templates"

    @property
    def themes(self) -> Path:
        return self.root / "themes"

    @property
    def experiments(self) -> Path:
        return self.root / "experiments"

    @property
    def results(self) -> Path:
        return self.root / "experiments" / "results"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def cache(self) -> Path:
        """Build caches; deleting this folder only ever costs time."""
        return self.root / ".chronicle"


def lab_dir(root: Path | None = None) -> Path:
    """Guest kernels, initramfs and images: big, rebuilt on demand, never committed.

    ``CHRONICLE_LAB_DIR`` wins (tests and CI share one copy); otherwise ``<root>/.lab``.
    """
    env = os.environ.get("CHRONICLE_LAB_DIR")
    if env:
        return Path(env)
    if root is None:
        try:
            root = find_root()
        except ChronicleError:
            root = Path.cwd()
    return root / ".lab"
