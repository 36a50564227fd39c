"""``chronicle lab history`` and ``chronicle lab regressions``: results over time.

Thin, like the rest of the command line: the runs come from the store, what they mean
from :mod:`chronicle.lab.history`. Both read only stored results; neither runs anything.
"""

from __future__ import annotations

import argparse

from chronicle.errors import LabError
from chronicle.lab import experiment as exp
from chronicle.lab import history
from chronicle.lab.results import Result, ResultStore
from chronicle.paths import SitePaths, site_command, site_root

REGRESSIONS_EXIT = """\
exit status:
  0  no regression (improvements and unchanged metrics only)
  1  a regression in at least one subject and metric
  2  a usage or data error (unknown experiment or tag, a newest run that cannot be read)
  3  nothing comparable: no experiment has two good runs on one host and accelerator
"""
_VERDICT_STYLE = {history.REGRESSED: "red", history.IMPROVED: "green",
                  history.NO_CHANGE: "default", history.UNDECIDED: "yellow"}


def register(lab_sub: argparse._SubParsersAction) -> None:
    p = site_command(lab_sub, "history", cmd_history,
                     "every good run of an experiment, oldest first: each subject's median, "
                     "and what changed in the key")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--metric", metavar="M", help="only this metric (default: each in turn)")
    p.add_argument("--host", metavar="H", help="only the runs of this lab host")

    p = site_command(lab_sub, "regressions", cmd_regressions,
                     "newest good run against the previous one on its host and accelerator: "
                     "improved, regressed or no detectable change")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="experiments (default: every one with stored results)")
    p.add_argument("--tag", action="append", default=[], metavar="T")
    p.add_argument("-v", "--verbose", action="store_true", help="explain each decision")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = REGRESSIONS_EXIT


def _usage(message: str) -> LabError:
    return LabError(message, exit_status=2)


def _known(paths: SitePaths, store: ResultStore) -> dict[str, exp.Experiment | None]:
    """Every experiment by name: those with a script, and those with results only."""
    found: dict[str, exp.Experiment | None] = {e.name: e for e in exp.discover(paths.root)}
    for name in store.experiments():
        found.setdefault(name, None)
    return dict(sorted(found.items()))


def _warn_bad(paths: SitePaths, store: ResultStore, name: str) -> None:
    from chronicle.lab.cli import _console, _warn_bad_files

    _warn_bad_files(_console(stderr=True), store.bad_files(name), paths)


# -- lab history ----------------------------------------------------------------------


def cmd_history(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from chronicle.lab.cli import _console

    paths = SitePaths(site_root(args.root))
    store = ResultStore(paths.results)
    known = _known(paths, store)
    if args.name not in known:
        raise _usage(f"unknown experiment {args.name!r} (valid: {', '.join(known) or 'none'})")
    _warn_bad(paths, store, args.name)
    runs = history.good_runs(store.runs(args.name))
    if not runs:
        raise _usage(f"{args.name!r} has no good full run stored: no history to show")
    if args.host is not None:
        hosts = sorted({r.lab_host for r in runs})
        runs = [r for r in runs if r.lab_host == args.host]
        if not runs:
            raise _usage(f"{args.name!r} has no good run from host {args.host!r} (hosts "
                         f"with runs: {', '.join(hosts)})")
    metrics = sorted({m for r in runs for m in r.metrics})
    if args.metric is not None and args.metric not in metrics:
        raise _usage(f"{args.name!r} does not measure {args.metric!r} (metrics: "
                     f"{', '.join(metrics)})")
    out = _console()
    for metric in [args.metric] if args.metric else metrics:
        table = Table(title=f"{args.name}: {metric} ({_unit(runs, metric)}), "
                            "median [95% CI] per subject")
        subjects = sorted({s for r in runs for s in r.subjects if r.values(s, metric)})
        for column in ("run", "date", "commit", "host", "accelerator", "key since previous",
                       *subjects):
            table.add_column(escape(column), justify="right" if column in subjects else "left")
        for previous, run in zip(history.previous_by_host(runs), runs, strict=True):
            if not any(run.values(s, metric) for s in subjects):
                continue
            table.add_row(run.id, run.started[:16].replace("T", " ") or run.id[:15],
                          str((run.provenance.get("git") or {}).get("commit", "-"))[:10],
                          run.lab_host, _accelerators(run), _since(previous, run),
                          *(_median(run.values(s, metric)) for s in subjects))
        out.print(table)
    if len(runs) == 1:
        out.print(f"{args.name}: one good run so far; `lab run --again {args.name}` makes a "
                  "second, to compare with")
    return 0


def _unit(runs: list[Result], metric: str) -> str:
    return next(r.unit(metric) for r in runs if metric in r.metrics)


def _accelerators(run: Result) -> str:
    found = sorted({a for s in run.subjects if (a := run.accelerator(s))})
    return ", ".join(found) or "-"


def _since(previous: Result | None, run: Result) -> str:
    """What changed in the key since ``previous``, the good run before on the same host."""
    if previous is None:
        return "first run on this host"
    if history.is_repeat(previous, run):
        return "none (A/A repeat)"
    return ", ".join(history.key_changes(previous, run)) or "none"


def _median(values: list[float]) -> str:
    from chronicle.lab import stats

    if not values:
        return "-"
    s = stats.summarize(values)
    return f"{s.median:.4g} [{s.median_low:.4g}, {s.median_high:.4g}]"


# -- lab regressions ------------------------------------------------------------------


def cmd_regressions(args: argparse.Namespace) -> int:
    from chronicle.lab.cli import _console

    paths = SitePaths(site_root(args.root))
    store = ResultStore(paths.results)
    known = _known(paths, store)
    unknown = [n for n in args.names if n not in known]
    if unknown:
        raise _usage(f"unknown experiment(s): {', '.join(unknown)} "
                     f"(valid: {', '.join(known) or 'none'})")
    names = list(dict.fromkeys(args.names))
    if args.tag:
        tagged = [n for n, e in known.items() if e is not None and set(e.tags) & set(args.tag)]
        if not tagged:
            raise _usage(f"no experiment has tag(s) {', '.join(args.tag)}")
        names += [n for n in tagged if n not in names]
    if not args.names and not args.tag:
        names = list(known)
    if not names:
        raise _usage("no experiments found (no file here has a `# /// chronicle` block)")
    for name in names:
        _warn_bad(paths, store, name)
        good = history.good_runs(store.runs(name))
        unread = store.bad_files(name, newer_than=good[-1] if good else None)
        if unread:
            # The newest run may be the one that cannot be read: comparing the two before
            # it would answer a question nobody asked.
            first = unread[0]
            raise LabError(f"{name}: a run newer than the newest good one is not a valid "
                           f"result: {first.summary}", first.path, first.line, exit_status=2)
    out = _console()
    comparisons = []
    for name in names:
        found = history.newest_comparison(name, store.runs(name), history.Policy.of(known[name]))
        _print_comparison(out, found, args.verbose)
        comparisons.append(found)
    if any(c.regressions for c in comparisons):
        return 1
    return 0 if any(c.comparable for c in comparisons) else 3


def _print_comparison(out, found: history.Comparison, verbose: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    if not found.comparable:
        reasons = "; ".join(found.notes)
        out.print(f"[bold]{found.experiment}[/]: nothing comparable: {escape(reasons)}")
        return
    table = Table(title=f"{found.experiment}: newest good run {found.current.id}")
    for column in ("subject", "metric", "host, accelerator", "previous", "median",
                   "change \\[interval]", "A/A floor", "verdict"):
        table.add_column(column)
    for d in found.decisions:
        if d.verdict == history.UNDECIDED:
            change = "-"
        else:
            change = f"{d.relative:+.1%} [{d.widened_low - 1:+.1%}, {d.widened_high - 1:+.1%}]"
        floor = f"±{d.noise.relative:.1%} ({len(d.noise.pairs)})" if d.noise.pairs else "none"
        table.add_row(escape(d.subject), escape(d.metric), escape(d.line.label), d.previous,
                      f"{d.previous_median:.4g} → {d.current_median:.4g} {escape(d.unit)}",
                      change, floor, f"[{_VERDICT_STYLE[d.verdict]}]{d.verdict}[/]")
    out.print(table)
    bare = sorted({d.line.label for d in found.decisions if not d.noise.pairs})
    if bare:
        out.print(f"  no A/A pair to measure the noise floor on {'; '.join(bare)}: decided "
                  "on the samples and the threshold alone (`lab run --again "
                  f"{found.experiment}` makes one)")
    for note in found.notes:
        out.print(f"  not compared: {escape(note)}")
    if verbose:
        for d in found.decisions:
            out.print(f"\n{escape(d.explanation)}")
        out.print()
