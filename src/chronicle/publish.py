"""``chronicle publish [TARGET]``: put exactly the checked, built site on a target.

Targets are tables in ``site/site.toml``::

    [publish.default]
    kind = "dir"                 # a folder on this machine
    path = "../www"

    [publish.mirror]
    kind = "rsync"               # rsync to a folder or to host:path
    dest = "web1:/srv/blog"
    rsh = "ssh -p 2222"          # optional

    [publish.pages]
    kind = "git"                 # commit the site to a branch and push it
    repo = "git@example.org:me/blog.git"   # or: remote = "origin" (of the site's repo)
    branch = "gh-pages"

The site is always built afresh into ``.chronicle/publish/site`` without drafts or
future posts, then checked (:mod:`chronicle.check`). A failed build always stops the
publish; failed checks or stale results stop it unless ``force``.

Every target is left as it was when publishing fails: ``dir`` and local ``rsync`` fill
a staging folder next to the target and exchange the two in one step
(:mod:`chronicle.swap`), after the one guard for replaced folders
(:mod:`chronicle.guard`) has accepted the target; remote ``rsync``
uses ``--delay-updates`` (files move into place at the end); ``git`` pushes a single
new commit, which the remote accepts whole or not at all. Git commits are
reproducible: fixed author, the date of the build's "now" (``--now`` or
``SOURCE_DATE_EPOCH``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chronicle.config import load_config
from chronicle.errors import BuildError, toml_key_line
from chronicle.guard import MARKER, check_replaceable
from chronicle.lock import site_lock
from chronicle.paths import SitePaths, site_root
from chronicle.swap import exchange, new_staging, remove_leftovers, remove_tree

if TYPE_CHECKING:  # the build loads when a publish runs, not per CLI start
    from chronicle.build import BuildOptions

KINDS = {
    "dir": ({"path"}, set()),
    "rsync": ({"dest"}, {"rsh"}),
    "git": ({"branch"}, {"repo", "remote", "message", "author"}),
}
COMMON_KEYS = {"kind"}
DEFAULT_AUTHOR = "Chronicle <chronicle@localhost>"


@dataclass(frozen=True)
class Target:
    name: str
    kind: str
    settings: dict[str, str]

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.settings.get(key, default)


@dataclass(frozen=True)
class Published:
    target: Target
    where: str
    files: int
    forced: tuple[str, ...] = ()  # the refusals that ``force`` overrode
    detail: str = ""

    def summary(self) -> str:
        line = f"published {self.files} files to {self.target.name} ({self.where})"
        return line + (f": {self.detail}" if self.detail else "")


# -- configuration ---------------------------------------------------------------------

def load_targets(config: Path) -> dict[str, Target]:
    """The ``[publish.NAME]`` tables of ``site/site.toml``, validated."""
    load_config(config)  # the rest of the file must be right too
    text = config.read_text("utf-8")
    table = tomllib.loads(text).get("publish", {})
    if not isinstance(table, dict):
        raise BuildError("'publish' must be a table of targets: [publish.NAME]", config,
                         toml_key_line(text, "publish"))
    return {name: _target(name, value, config, toml_key_line(text, f"publish.{name}"))
            for name, value in sorted(table.items())}


def choose_target(targets: dict[str, Target], name: str | None, config: Path) -> Target:
    if not targets:
        raise BuildError("no publish targets: add a [publish.default] table", config)
    if name is None:
        if "default" in targets:
            return targets["default"]
        if len(targets) == 1:
            return next(iter(targets.values()))
        raise BuildError(f"several publish targets ({', '.join(targets)}); name one", config)
    if name not in targets:
        raise BuildError(f"no publish target {name!r} (known: {', '.join(targets)})", config)
    return targets[name]


def _target(name: str, value: Any, config: Path, line: int | None = None) -> Target:
    """``line``: where the ``[publish.NAME]`` table opens, for the messages."""
    where = f"publish.{name}"
    if not isinstance(value, dict):
        raise BuildError(f"'{where}' must be a table", config, line)
    kind = value.get("kind")
    if kind not in KINDS:
        raise BuildError(f"'{where}.kind' must be one of {', '.join(KINDS)}", config, line)
    required, optional = KINDS[kind]
    for key in sorted(value):
        if key not in required | optional | COMMON_KEYS:
            known = ", ".join(sorted(required | optional | COMMON_KEYS))
            raise BuildError(f"unknown key '{where}.{key}' for kind {kind!r} (known: {known})",
                             config, line)
        if not isinstance(value[key], str) or not value[key].strip():
            raise BuildError(f"'{where}.{key}' must be a non-empty string", config, line)
    for key in sorted(required - set(value)):
        raise BuildError(f"'{where}' needs '{key}'", config, line)
    settings = {k: v for k, v in value.items() if k != "kind"}
    return Target(name=name, kind=kind, settings=settings)


# -- the command -----------------------------------------------------------------------

def publish(options: BuildOptions, target_name: str | None = None, force: bool = False,
            log: Callable[[str], None] = print) -> Published:
    """Build, check, then deliver to one target. Raises :class:`BuildError` on refusal."""
    from chronicle.check import check_site

    paths = SitePaths(options.root)
    target = choose_target(load_targets(paths.config), target_name, paths.config)
    site = paths.cache / "publish" / "site"
    # never drafts or future posts, whatever the caller asked for
    options = replace(options, out=site, drafts=False, future=False)
    with site_lock(paths.cache):  # no build may replace the site while it is copied
        report, problems = check_site(options)
        refusals = [str(p) for p in problems]
        refusals += [f"stale result: {line}" for line in report.stale]
        for line in refusals:
            log(f"{'warning' if force else 'error'}: {line}")
        if refusals and not force:
            raise BuildError(f"not publishing: {len(refusals)} problem(s) found "
                             "(fix them, or publish anyway with --force)", paths.config)
        deliver = {"dir": _deliver_dir, "rsync": _deliver_rsync, "git": _deliver_git}[target.kind]
        where, detail = deliver(target, report.out, paths, options)
        return Published(target, where, _count_files(report.out), tuple(refusals), detail)


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and p.name != MARKER)


# -- dir -------------------------------------------------------------------------------

def _deliver_dir(target: Target, site: Path, paths: SitePaths,
                 options: BuildOptions) -> tuple[str, str]:
    folder = _local(target.get("path") or "", paths)
    publish_dir(site, folder, paths.root)
    return str(folder), ""


def publish_dir(site: Path, folder: Path, root: Path | None = None) -> None:
    """Make ``folder`` a copy of ``site``; on any failure ``folder`` is as it was."""

    def copy(staging: Path) -> None:
        try:
            shutil.copytree(site, staging, symlinks=False, dirs_exist_ok=True)
        except (shutil.Error, OSError) as exc:
            raise BuildError(f"copying the site failed, target left as it was: {exc}",
                             folder) from None

    _replace_folder(folder, root, copy)


def _replace_folder(folder: Path, root: Path | None, fill: Callable[[Path], None]) -> None:
    """``fill`` a staging folder beside ``folder``, then exchange the two in one step.

    The built site carries Chronicle's marker (:mod:`chronicle.guard`), so the target
    does too and the next publish may replace it."""
    check_replaceable(folder, root, "publish target")
    try:
        remove_leftovers(folder)
        staging = new_staging(folder)
    except OSError as exc:
        raise BuildError(f"cannot write next to the publish target ({exc.strerror}); "
                         "target left as it was", folder) from None
    try:
        fill(staging)
        old = exchange(staging, folder)
    except OSError as exc:
        remove_tree(staging)
        raise BuildError(f"cannot replace the publish target ({exc.strerror}); target "
                         "left as it was", folder) from None
    except BaseException:
        remove_tree(staging)
        raise
    if old is not None:
        try:
            remove_tree(old)
        except OSError as exc:
            raise BuildError(f"published, but the previous copy could not be deleted "
                             f"({exc.strerror})", old) from None


def _local(path: str, paths: SitePaths) -> Path:
    folder = Path(path).expanduser()
    return Path(os.path.normpath(folder if folder.is_absolute() else paths.root / folder))


# -- rsync -----------------------------------------------------------------------------

def _deliver_rsync(target: Target, site: Path, paths: SitePaths,
                   options: BuildOptions) -> tuple[str, str]:
    dest = target.get("dest") or ""
    if is_remote(dest):
        publish_rsync_remote(site, dest, target.get("rsh"))
        return dest, ""
    folder = _local(dest, paths)
    publish_rsync_local(site, folder, paths.root)
    return str(folder), ""


def is_remote(dest: str) -> bool:
    """rsync's own rule: ``host:path`` is remote unless a slash comes before the colon."""
    head = dest.split("/", 1)[0]
    return ":" in head


def publish_rsync_local(site: Path, folder: Path, root: Path | None = None) -> None:
    """rsync into a staging copy next to ``folder`` (hard-linking unchanged files), then swap."""
    link = [f"--link-dest={folder.resolve()}"] if folder.is_dir() else []
    _replace_folder(folder, root, lambda staging: _rsync([*link, f"{site}/", f"{staging}/"]))


def publish_rsync_remote(site: Path, dest: str, rsh: str | None = None) -> None:
    """rsync to ``host:path``; files are moved into place only once all have arrived."""
    shell = ["--rsh", rsh] if rsh else []
    # no marker there: nothing replaces that folder as a whole, and a web root should
    # not serve Chronicle's bookkeeping
    _rsync([*shell, "--delay-updates", "--delete-delay", f"--exclude=/{MARKER}", f"{site}/",
            dest.rstrip("/") + "/"])


def _rsync(arguments: list[str]) -> None:
    if shutil.which("rsync") is None:
        raise BuildError("rsync is not installed")
    # -L: a web server needs files, so a symlink is published as what it points to
    command = ["rsync", "-a", "-L", "--delete", *arguments]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"rsync failed (exit {done.returncode}): {done.stderr.strip()}")


# -- git -------------------------------------------------------------------------------

def _deliver_git(target: Target, site: Path, paths: SitePaths,
                 options: BuildOptions) -> tuple[str, str]:
    repo = target.get("repo")
    if repo is None:
        remote = target.get("remote", "origin") or "origin"
        repo = _git(["remote", "get-url", remote], cwd=paths.root).strip()
    elif not is_remote(repo) and "://" not in repo:
        repo = str(_local(repo, paths))
    branch = target.get("branch") or "gh-pages"
    from chronicle.build import resolve_now

    config = load_config(paths.config)
    when = resolve_now(options.now, config.tz)
    message = target.get("message") or f"Publish {config.title}{_source_commit(paths.root)}"
    commit = publish_git(site, repo, branch, message, int(when.timestamp()),
                         target.get("author") or DEFAULT_AUTHOR)
    return f"{repo} {branch}", f"commit {commit[:12]}" if commit else "already up to date"


def publish_git(site: Path, repo: str, branch: str, message: str, timestamp: int,
                author: str = DEFAULT_AUTHOR) -> str | None:
    """Commit ``site`` as the whole tree of ``branch`` on top of its tip and push it.

    Returns the new commit, or None when the branch already holds exactly this tree.
    Built with plumbing in a throw-away repository: the site's own repository and
    working tree are never touched.
    """
    name, _, email = author.partition("<")
    identity = {"GIT_AUTHOR_NAME": name.strip(), "GIT_AUTHOR_EMAIL": email.rstrip(">").strip(),
                "GIT_AUTHOR_DATE": f"{timestamp} +0000"}
    identity |= {k.replace("AUTHOR", "COMMITTER"): v for k, v in identity.items()}
    ref = f"refs/heads/{branch}"
    with tempfile.TemporaryDirectory(prefix="chronicle-publish-") as scratch:
        # a clean environment: GIT_* left over from a hook or a shell must not leak in
        clean = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        _git(["init", "--quiet", "--bare", f"{scratch}/git"], env=clean)
        env = {**clean, "GIT_DIR": f"{scratch}/git", "GIT_INDEX_FILE": f"{scratch}/index",
               "GIT_WORK_TREE": str(site), **identity}
        parent = None
        if _git(["ls-remote", "--heads", repo, ref], env=env).strip():
            _git(["fetch", "--quiet", "--no-tags", repo, f"+{ref}:refs/chronicle/tip"], env=env)
            parent = _git(["rev-parse", "refs/chronicle/tip"], env=env).strip()
        # not the marker: a branch is never replaced as a folder, and it would be served
        _git(["add", "--all", "--force", "--", ".", f":(exclude){MARKER}"], env=env,
             cwd=site)
        tree = _git(["write-tree"], env=env).strip()
        if parent and _git(["rev-parse", f"{parent}^{{tree}}"], env=env).strip() == tree:
            return None
        parents = ["-p", parent] if parent else []
        commit = _git(["commit-tree", "--no-gpg-sign", tree, *parents, "-m", message],
                      env=env).strip()
        # no --force: if someone else moved the branch since the fetch, the push fails
        # and the remote keeps what it had
        _git(["push", "--quiet", repo, f"{commit}:{ref}"], env=env)
    return commit


def _source_commit(root: Path) -> str:
    try:
        return " from " + _git(["rev-parse", "--short=12", "HEAD"], cwd=root).strip()
    except BuildError:
        return ""


def _git(arguments: list[str], env: dict[str, str] | None = None,
         cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *arguments], capture_output=True, text=True, env=env,
                          cwd=cwd)
    if done.returncode != 0:
        raise BuildError(f"git {arguments[0]} failed: {done.stderr.strip()}")
    return done.stdout


def register(sub: Any) -> None:
    """Add ``chronicle publish`` to the CLI's subcommands."""
    parser = sub.add_parser("publish", help="build, check and publish the site to a target")
    parser.add_argument("target", nargs="?", help="a [publish.NAME] of site.toml "
                        "(default: 'default', or the only one)")
    parser.add_argument("--force", action="store_true",
                        help="publish despite failed checks or stale results")
    parser.add_argument("--now", type=datetime.fromisoformat, metavar="DATE",
                        help="the build's 'now', also the git commit's date")
    parser.add_argument("--root", type=Path, metavar="DIR", help="site root")
    parser.set_defaults(func=_command)


def _command(args: Any) -> int:
    from chronicle.build import BuildOptions
    from chronicle.hooks import standard_hooks

    options = standard_hooks(BuildOptions(root=site_root(args.root),
                                           now=args.now))
    done = publish(options, args.target, force=args.force,
                   log=lambda line: print(line, file=sys.stderr))
    print(done.summary())
    return 0
