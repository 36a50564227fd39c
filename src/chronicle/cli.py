"""The command line: parses, calls, prints. Only this module catches ChronicleError."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

from chronicle import __version__
from chronicle.errors import BuildError, BuildErrors, ChronicleError
from chronicle.paths import add_root_argument

SKELETON = Path(__file__).parent / "skeleton"


def build_parser(only_build: bool = False) -> argparse.ArgumentParser:
    """The whole command line; ``only_build`` leaves out the other commands, whose
    modules (the lab's statistics, the preview server) cost start-up time."""
    parser = argparse.ArgumentParser(prog="chronicle", description=__doc__)
    parser.add_argument("--version", action="version", version=f"chronicle {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = sub.add_parser("build", help="build the site into output/")
    build.add_argument("--drafts", action="store_true", help="include posts marked draft")
    build.add_argument("--future", action="store_true", help="include posts dated after now")
    build.add_argument("--now", type=_iso_datetime, metavar="DATE",
                       help="the build's 'now' (ISO date or date-time), for reproducible builds")
    build.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: output/)")
    add_root_argument(build)
    build.add_argument("--strict", action="store_true", help="treat warnings as errors")
    build.add_argument("--allow-missing", action="store_true",
                       help="render embeds whose results are missing as placeholders")
    build.add_argument("--clean", action="store_true",
                       help="ignore the manifest and caches in .chronicle/: a full, cold build")
    build.set_defaults(func=cmd_build)
    if only_build:
        return parser

    init = sub.add_parser("init", help="create a new blog in DIR (default: this folder)")
    init.add_argument("dir", type=Path, nargs="?", default=Path("."), metavar="DIR")
    init.add_argument("--force", action="store_true",
                      help="add the blog to a folder that is not empty, keeping its files")
    init.set_defaults(func=cmd_init)

    new = sub.add_parser("new", help="start a new post (a draft) in posts/")
    new.add_argument("title")
    new.add_argument("--date", type=date.fromisoformat, help="the post's date (default: today)")
    new.add_argument("--root", type=Path, metavar="DIR")
    new.set_defaults(func=cmd_new)

    from chronicle import check, publish, serve, theme
    from chronicle.importers import command as importer
    from chronicle.lab.cli import register as register_lab

    serve.register(sub)
    check.register(sub)
    publish.register(sub)
    theme.register(sub)
    importer.register(sub)
    register_lab(sub)
    return parser


def run() -> None:
    """The ``chronicle`` command (and ``python -m chronicle``): :func:`main`, then exit.

    Before exiting, every object is frozen out of the garbage collector: the
    interpreter's last collections would otherwise walk a big site's whole model on the
    way out (0.19 s after a 10,000-post build) for memory the system takes back anyway.
    Files and the cache are closed by then; exit handlers still run.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only_build=bool(words) and words[0] == "build")
    args = parser.parse_args(words)
    try:
        return int(args.func(args) or 0)
    except BuildErrors as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        print(f"build failed: {len(exc.errors)} error(s); output left as it was",
              file=sys.stderr)
        return 1
    except ChronicleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def cmd_build(args: argparse.Namespace) -> int:
    from chronicle.build import BuildOptions, build
    from chronicle.hooks import standard_hooks
    from chronicle.paths import site_root

    options = BuildOptions(
        root=site_root(args.root), out=args.out.resolve() if args.out else None,
        drafts=args.drafts, future=args.future, now=args.now, strict=args.strict,
        allow_missing=args.allow_missing, clean=args.clean,
    )
    options = standard_hooks(options)
    report = build(options)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(report.summary())
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """A new blog in ``args.dir``: config, an about page, a first post; no copy of the
    theme, which the site uses by reference so that upgrades reach it."""
    target: Path = Path.cwd() if args.dir == Path(".") else args.dir  # messages name it
    kept = make_blog(target, args.force)
    for name in kept:
        print(f"kept your {name} (not replaced by Chronicle's)")
    here = target.resolve() == Path.cwd().resolve()
    build = "chronicle build" if here else f"chronicle build --root {target}"
    print(f"created a new blog in {target}; build it with: {build}")
    return 0


def make_blog(target: Path, force: bool = False, first_post: bool = True) -> list[str]:
    """Write the skeleton into ``target`` (``first_post``: with its sample post); the
    files it did not write because ``target`` had them."""
    if (target / "site" / "site.toml").exists():
        raise ChronicleError("a Chronicle site already exists here", target)
    if target.exists() and not target.is_dir():
        raise ChronicleError("exists and is not a folder; choose a new or empty folder", target)
    present = sorted(p.name for p in target.iterdir()) if target.exists() else []
    present = [name for name in present if name != ".git"]  # `git init` often comes first
    if present and not force:
        shown = ", ".join(present[:5])
        if len(present) > 5:
            shown += f" and {len(present) - 5} more"
        raise ChronicleError(f"folder is not empty ({shown}); choose a new or empty folder, "
                             "or add --force to put the blog beside what is there", target)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ChronicleError(f"cannot create the folder: {exc.strerror}", target) from None
    today = date.today().isoformat()
    kept = []
    for source in _skeleton_files():
        relative = source.relative_to(SKELETON)
        if relative == Path("gitignore"):
            relative = Path(".gitignore")
        elif relative.parts[0] == "posts":
            if not first_post:
                continue
            relative = relative.with_name(f"{today}-{source.name}")
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text("utf-8").replace("@TODAY@", today)
        try:
            with destination.open("x", encoding="utf-8") as handle:  # never clobber a file
                handle.write(text)
        except FileExistsError:
            kept.append(relative.as_posix())
    (target / "experiments" / "results").mkdir(parents=True, exist_ok=True)
    return kept


def _skeleton_files() -> list[Path]:
    """What ``init`` writes: the skeleton without the theme, which stays in the package."""
    return sorted(p for p in SKELETON.rglob("*") if p.is_file()
                  and p.relative_to(SKELETON).parts[0] != "themes"
                  and "__pycache__" not in p.parts)


def cmd_new(args: argparse.Namespace) -> int:
    from chronicle.config import load_config
    from chronicle.content import slugify
    from chronicle.paths import SitePaths, site_root

    paths = SitePaths(site_root(args.root))
    config = load_config(paths.config)
    slug = slugify(args.title)
    if not slug:
        raise ChronicleError(f"cannot make a slug from the title {args.title!r}")
    day = args.date or datetime.now(config.tz).date()
    path = paths.posts / f"{day.isoformat()}-{slug}.md"
    if path.exists():
        raise BuildError("refusing to overwrite an existing post", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a JSON string is a valid YAML string, and quotes whatever the title holds
    header = (f"---\ntitle: {json.dumps(args.title, ensure_ascii=False)}\n"
              f"date: {day.isoformat()}\ntags: []\nsummary: \"\"\ndraft: true\n---\n\n")
    with path.open("x", encoding="utf-8") as handle:  # "x": never clobber, even in a race
        handle.write(header + "Write here. Remove `draft: true` to publish.\n")
    print(f"wrote {path} (a draft: remove `draft: true` to publish)")
    return 0


def _iso_datetime(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {text!r}") from None
