"""``chronicle import hugo|jekyll SRC``: the edges of an import — reading the site it goes
into, printing the summary, writing (or, with ``--dry-run``, only saying what)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chronicle.errors import BuildError
from chronicle.paths import SitePaths

if TYPE_CHECKING:  # the importers load when an import runs, not at every start of the CLI
    from chronicle.importers.common import Outcome, Plan


def register(sub: Any) -> None:
    parser = sub.add_parser("import", help="bring in a Hugo or Jekyll blog, keeping its URLs")
    parser.add_argument("engine", choices=("hugo", "jekyll"), help="what built the old blog")
    parser.add_argument("src", type=Path, metavar="SRC", help="the old blog's folder")
    parser.add_argument("--into", type=Path, metavar="DIR",
                        help="make a new blog in DIR (as `chronicle init`) and import into it "
                             "(default: the blog in or above this folder)")
    parser.add_argument("--keep-urls", action="store_true",
                        help="give each post its old URL instead of a redirect from it")
    parser.add_argument("--force", action="store_true",
                        help="replace files the blog already has with other content")
    parser.add_argument("--dry-run", action="store_true",
                        help="say what would be written, and write nothing")
    parser.set_defaults(func=_command)


def _command(args: Any) -> int:
    from chronicle.importers import hugo, jekyll
    from chronicle.importers.common import carry_out, plan

    src: Path = args.src
    if not src.is_dir():
        raise BuildError("no such folder", src)
    if args.engine == "hugo":
        old, convert = hugo.read_site(src), hugo.convert
    else:
        old, convert = jekyll.read_site(src), jekyll.converter(jekyll.read_config(src))
    if args.into is not None:
        root, taken, theme = args.into, {}, _theme_static(None)
    else:
        from chronicle.paths import find_root

        root = find_root()
        taken, theme = _taken(SitePaths(root)), _theme_static(SitePaths(root))
    result = plan(old, convert, args.keep_urls, taken, theme)
    replaceable: frozenset[str] = frozenset()
    if args.into is not None and not args.dry_run:
        from chronicle.cli import make_blog

        make_blog(root, first_post=False)
        _adopt_settings(SitePaths(root).config, old.title, old.base_url)
        replaceable = frozenset({"site/pages/about.md"})  # the sample page just made
    outcome = carry_out(result, root, args.force, args.dry_run, replaceable)
    _print_summary(result, outcome, args, old.engine, src, root)
    return 1 if outcome.conflicts else 0


def _taken(paths: SitePaths) -> dict[str, str]:
    """The slugs the blog has, as ``post:x``/``page:x``, and their files."""
    from chronicle.config import load_config
    from chronicle.content import DATE_PREFIX, find_sources, read_page, read_post, slugify

    tz = load_config(paths.config).tz
    found = {}
    for kind, folder, pattern in (("post", paths.posts, "**/*.md"), ("page", paths.pages, "*.md")):
        for source in find_sources(folder, pattern):
            try:
                slug = read_post(source, tz).slug if kind == "post" else read_page(source).slug
            except BuildError:  # a broken file still holds its name's slug
                slug = slugify(DATE_PREFIX.sub("", source.stem))
            found[f"{kind}:{slug}"] = source.relative_to(paths.root).as_posix()
    return found


def _theme_static(paths: SitePaths | None) -> frozenset[str]:
    """Output files under ``static/`` that the theme or the build make: an imported file
    must not take their place."""
    from chronicle.config import load_config
    from chronicle.paths import DEFAULT_THEME, packaged_theme
    from chronicle.render import find_theme, theme_layers

    theme = packaged_theme(DEFAULT_THEME) if paths is None else \
        find_theme(paths, load_config(paths.config).theme)
    found = {"static/pygments.css"}
    for layer in theme_layers(theme):
        folder = layer / "static"
        found |= {f"static/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*")
                  if p.is_file()}
    return frozenset(found)


def _adopt_settings(config: Path, title: str, base_url: str) -> None:
    """The new blog takes the old one's title and address (TOML strings are JSON's)."""
    text = config.read_text("utf-8")
    if title:
        text = re.sub(r"(?m)^title = .*$", lambda _: f"title = {json.dumps(title)}", text,
                      count=1)
    if re.match(r"^https?://[^/]+", base_url):
        text = re.sub(r"(?m)^base_url = .*$", lambda _: f"base_url = {json.dumps(base_url)}",
                      text, count=1)
    config.write_text(text, "utf-8")


def _print_summary(result: Plan, outcome: Outcome, args: Any, engine: str, src: Path,
                   root: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True, highlight=False)
    if args.dry_run:
        for name in outcome.written:
            console.print(f"would write {name}", markup=False)
    table = Table(title=f"{engine} blog {src} → {root}", title_justify="left")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("posts", str(result.posts))
    table.add_row("pages", str(result.pages))
    table.add_row("files copied", str(result.copied))
    table.add_row("old URLs redirecting" if not args.keep_urls else "old URLs kept as aliases",
                  str(result.redirects))
    for what, count in sorted(result.converted.items()):
        table.add_row(f"converted: {what}", str(count))
    table.add_row("needs a look", str(len(result.notes)))
    console.print(table)
    for note in result.notes:
        console.print(f"needs a look: {note}", markup=False)
    if outcome.conflicts:
        for name in outcome.conflicts:
            print(f"exists with other content: {root / name}", file=sys.stderr)
        stopped = "the import would stop" if args.dry_run else "import stopped"
        print(f"{stopped}: {len(outcome.conflicts)} file(s) would be replaced; nothing "
              "is written (--force replaces them)", file=sys.stderr)
        return
    verb = "would write" if args.dry_run else "wrote"
    console.print(f"{verb} {len(outcome.written)} file(s), {len(outcome.unchanged)} already "
                  "as imported", markup=False)
