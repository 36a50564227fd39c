"""``chronicle lab …``: list, run, show, diff, export and validate experiments.

Thin: each command parses, calls the lab modules, prints. Tables go to stdout through
rich; progress and errors go to stderr. Exit status 0 only when everything asked for
succeeded; 130 when a run was cancelled with Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from chronicle.errors import LabError
from chronicle.lab import experiment as exp
from chronicle.lab import (
    guest_cli,
    history_cli,
    hosts_cli,
    leftovers,
    provenance,
    runner,
    setup,
)
from chronicle.lab.results import BadFile, Result, ResultStore, Sample, samples_csv
from chronicle.lab.validation import validate_store
from chronicle.paths import SitePaths, site_command, site_root


def register(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser("lab", help="run experiments and inspect stored results")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True, metavar="LAB_COMMAND")

    def command(name: str, func, help: str) -> argparse.ArgumentParser:
        return site_command(lab_sub, name, func, help)

    p = command("list", cmd_list, "experiments and whether their results are fresh")
    p.add_argument("--tag", action="append", default=[], metavar="T")

    p = command("run", cmd_run, "run experiments (skipping fresh ones) and store the results")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--tag", action="append", default=[], metavar="T")
    p.add_argument("--force", action="store_true", help="run even when the result is fresh")
    p.add_argument("--again", action="store_true",
                   help="run even when fresh, as a repeat of the newest good run: the pair "
                        "is an A/A comparison, the noise floor of `lab regressions`")
    p.add_argument("--quick", action="store_true", help="few repetitions, no warm-up (smoke)")
    p.add_argument("--repeat", type=int, metavar="N", help="repetitions per subject")
    p.add_argument("--seed", type=int, default=0, help="seed for the interleaving order")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="live progress display (default: when stderr is a terminal)")
    p.add_argument("--incus", metavar="HOST",
                   help="boot the Incus subjects through this lab host's Incus API (HTTPS); "
                        "the run is that host's")

    p = command("show", cmd_show, "statistics and provenance of the latest good result")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--result", metavar="ID", help="a stored result id instead of the latest")

    p = command("diff", cmd_diff, "newest good run against the one before it")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--host", metavar="HOST",
                   help="that lab host's two newest good runs (default: the newest run's host)")
    p.add_argument("--hosts", metavar="OLD,NEW",
                   help="the newest good run of one lab host against another's")
    p.add_argument("--across-accelerators", action="store_true",
                   help="compare even where a subject ran under another accelerator")

    p = command("export", cmd_export, "the latest good result's samples as CSV or JSON")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--out", type=Path, metavar="FILE", help="write here instead of stdout")

    command("validate", cmd_validate, "check every stored result file")

    setup.register(lab_sub)  # lab setup, teardown and doctor
    hosts_cli.register(lab_sub)  # lab hosts, and --on for run, doctor and setup
    guest_cli.register(lab_sub)  # lab guest list, build, try
    history_cli.register(lab_sub)  # lab history, regressions


# -- helpers --------------------------------------------------------------------------


def _paths(args: argparse.Namespace) -> SitePaths:
    return SitePaths(site_root(args.root))


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        # Piped or captured output: rich would fold tables to 80 columns; keep them whole.
        console = Console(stderr=stderr, highlight=False, width=200)
    return console


def _experiment(paths: SitePaths, name: str) -> exp.Experiment | None:
    return next((e for e in exp.discover(paths.root) if e.name == name), None)


def _latest_good(paths: SitePaths, name: str) -> tuple[ResultStore, Result]:
    store = ResultStore(paths.results)
    result = store.latest(name)
    bad = store.bad_files(name)
    if result is None and bad:
        raise LabError(f"no good result stored for {name!r}; not a valid result: "
                       f"{bad[-1].summary}", bad[-1].path, bad[-1].line)
    if result is None:
        known = ", ".join(store.experiments()) or "none"
        raise LabError(f"no good result stored for {name!r} (experiments with results: {known})")
    _warn_bad_files(_console(stderr=True), store.bad_files(name, newer_than=result), paths,
                    f"skipped: the newest good run is {result.id}")
    return store, result


def _rel(path: Path, paths: SitePaths) -> Path:
    return path.relative_to(paths.root) if path.is_relative_to(paths.root) else path


def _warn_bad_files(err, bad: list[BadFile], paths: SitePaths, then: str = "skipped") -> None:
    from rich.markup import escape

    for found in bad:
        err.print(f"[yellow]warning:[/] {escape(str(_rel(found.path, paths)))}: not a valid "
                  f"result: {escape(found.summary)} ({then})")


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class LiveProgress(runner.Progress):
    """A one-line live display on stderr: experiment, subject, samples, elapsed.

    Off when stderr is not a terminal (CI logs, tests) unless asked for.
    """

    def __init__(self, experiment: str, enabled: bool | None = None):
        self.experiment = experiment
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.subject = "-"
        self.count = 0
        self.elapsed = 0.0
        self.last_log = ""
        self._live = None

    def _render(self):
        from rich.text import Text

        line = Text.assemble(
            (f"{self.experiment}", "bold"), f"  subject {self.subject}",
            f"  samples {self.count}", f"  {self.elapsed:6.1f} s",
        )
        if self.last_log:
            line.append(f"  {self.last_log[:60]}", style="dim")
        return line

    def __enter__(self) -> LiveProgress:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._render(), console=Console(stderr=True),
                              refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def _update(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def sample(self, sample: Sample) -> None:
        self.subject, self.count = sample.subject, self.count + 1
        self._update()

    def note(self, chunk: bytes) -> None:
        lines = [ln for ln in chunk.decode("utf-8", errors="replace").splitlines() if ln.strip()]
        if lines:
            self.last_log = lines[-1].strip()

    def tick(self, elapsed: float) -> None:
        self.elapsed = elapsed
        self._update()


# -- commands -------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    paths = _paths(args)
    store = ResultStore(paths.results)
    table = Table(title="experiments")
    for column in ("name", "host", "title", "tags", "status", "last run"):
        table.add_column(column)
    colours = {"fresh": "green", "stale": "yellow", "failed": "red", "never run": "dim"}
    for experiment in exp.select(exp.discover(paths.root), tags=args.tag):
        # One row per lab host with runs: a fresh run on one host says nothing of another.
        for host in store.hosts(experiment.name) or ["local"]:
            state = exp.freshness(experiment, store, host=host)
            status = f"[{colours[state.state]}]{state.state}[/]"
            if state.reasons:
                status += "\n" + "\n".join(f"  {r}" for r in state.reasons)
            if host == "local":
                for bad in store.bad_files(experiment.name):
                    status += (f"\n  [red]bad file[/] {escape(str(_rel(bad.path, paths)))}: "
                               f"{escape(bad.summary)}")
            last = state.last_run
            table.add_row(experiment.name, host, experiment.title, ", ".join(experiment.tags),
                          status, f"{last.started[:19]} ({last.status})" if last else "-")
    _console().print(table)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    paths = _paths(args)
    if args.repeat is not None and args.repeat < 1:
        raise LabError("--repeat must be at least 1")
    if args.again and args.quick:
        raise LabError("--again makes a full run to compare with the last one; a --quick "
                       "run is a smoke test, left out of history")
    chosen = exp.select(exp.discover(paths.root), args.names, args.tag)
    if not chosen:
        if args.tag:
            raise LabError(f"no experiment has tag(s) {', '.join(args.tag)}")
        raise LabError("no experiments found (no file here has a `# /// chronicle` block)",
                       paths.experiments)
    store = ResultStore(paths.results)
    remote = hosts_cli.incus_remote_of(paths.root, args.incus) if args.incus else None
    label = remote.host if remote else args.as_host
    options = runner.RunOptions(quick=args.quick, repeat=args.repeat, seed=args.seed,
                                lab_host=label, incus=remote,
                                git=json.loads(args.git_state) if args.git_state else None)
    err = _console(stderr=True)
    for line in leftovers.sweep(paths.cache):
        err.print(f"chronicle: {line}", markup=False)
    worst = 0
    for experiment in chosen:
        good = store.shown(experiment.name, host=label)
        _warn_bad_files(err, store.bad_files(experiment.name), paths)
        repeats = None
        if good is not None and not good.quick and (args.again or not args.force):
            reasons = exp.staleness(experiment, good)
            if not reasons and args.again:
                repeats = good.id
                err.print(f"{experiment.name}: fresh ({good.id}), running again: an A/A pair")
            elif not reasons:
                err.print(f"{experiment.name}: fresh ({good.id}), skipped (--force to rerun)")
                continue
            else:
                err.print(f"{experiment.name}: stale ({'; '.join(reasons)})"
                          + (": not an A/A pair" if args.again else ""))
        elif args.again:
            err.print(f"{experiment.name}: no good full run to repeat: not an A/A pair")
        err.print(f"{experiment.name}: running …")
        live = LiveProgress(experiment.name, enabled=args.progress)
        result = runner.run(experiment, store, dataclasses.replace(options, repeats=repeats),
                            cache=paths.cache, progress=live)
        counted = len(result.measured)
        rel = result.path.relative_to(paths.root) if result.path else result.id
        if result.status == "ok":
            err.print(f"{experiment.name}: [green]ok[/], {counted} samples → {rel}")
            continue
        err.print(f"{experiment.name}: [red]{result.status}[/]: {result.error} "
                  f"({counted} samples kept in {rel})")
        tail = result.log.strip().splitlines()[-5:]
        for line in tail:
            err.print(f"    {line}", markup=False)
        if result.status == "cancelled":
            return 130
        worst = 1
    return worst


def cmd_show(args: argparse.Namespace) -> int:
    from rich.table import Table

    from chronicle.lab import stats  # numpy: only the commands that summarise load it

    paths = _paths(args)
    store = ResultStore(paths.results)
    if args.result:
        bad = next((b for b in store.bad_files(args.name) if b.id == args.result), None)
        if bad is not None:
            raise bad.error()
        result = next((r for r in store.runs(args.name) if r.id == args.result), None)
        if result is None:
            raise LabError(f"no stored result {args.result!r} for {args.name!r}")
    else:
        store, result = _latest_good(paths, args.name)
    out = _console()
    experiment = _experiment(paths, args.name)
    heading = f"{args.name}: {result.id} ({result.status}{', quick' if result.quick else ''})"
    out.print(f"[bold]{heading}[/]")
    if experiment is not None:
        reasons = exp.staleness(experiment, result)
        out.print("[yellow]stale: " + "; ".join(reasons) + "[/]" if reasons else "fresh")
    table = Table()
    columns = ("subject", "metric", "n", "median [95% CI]", "mean", "sd", "min", "max",
               "p5", "p95", "IQR", "outliers")
    for column in columns:
        table.add_column(column, justify="left" if column in ("subject", "metric") else "right")
    warned: list[str] = []
    for subject in result.subjects:
        for metric in result.metrics:
            values = result.values(subject, metric)
            if not values:
                continue
            unit = result.unit(metric)
            s = stats.summarize(values)
            table.add_row(
                subject, f"{metric} ({unit})", str(s.n),
                f"{_fmt(s.median)} [{_fmt(s.median_low)}, {_fmt(s.median_high)}]",
                _fmt(s.mean), _fmt(s.sd), _fmt(s.min), _fmt(s.max), _fmt(s.p5), _fmt(s.p95),
                _fmt(s.iqr), str(len(s.outliers)),
            )
            warned += [f"{subject} {metric}: {w}" for w in stats.warnings(s, unit)]
    out.print(table)
    for line in warned:
        out.print(f"[yellow]warning:[/] {line}")
    _print_provenance(out, result)
    return 0


def _print_provenance(out, result: Result) -> None:
    p = result.provenance
    host = p.get("host") or {}
    git = p.get("git") or {}
    rows = [
        ("lab host", result.lab_host),
        ("host", f"{host.get('cpu_model', '?')}, {host.get('cores', '?')} cores, "
                 f"{(host.get('memory_bytes') or 0) / 2**30:.1f} GiB"),
        ("system", f"{host.get('os', '?')}, kernel {host.get('kernel', '?')}, "
                   f"KVM {host.get('kvm_kind', '?')}"),
        ("software", f"Python {p.get('python', '?')}, Chronicle {p.get('chronicle', '?')}"),
        ("tools", ", ".join(f"{k} {v}" for k, v in (p.get("tools") or {}).items()) or "-"),
        ("git", provenance.describe_git(git)),
        ("time", f"{result.started} → {result.finished}"),
    ]
    if load := p.get("load"):
        rows.append(("load", provenance.describe_load(load)))
    for subject, info in sorted((p.get("subjects") or {}).items()):
        rows.append((f"subject {subject}", ", ".join(f"{k}={v}" for k, v in info.items())))
    if result.emulated():
        rows.append(("note", "emulated (TCG): not a hardware-virtualised measurement"))
    for label, text in rows:
        out.print(f"[bold]{label:>10}[/]  {text}", markup=True)


def cmd_diff(args: argparse.Namespace) -> int:
    from rich.table import Table

    from chronicle.lab import stats

    paths = _paths(args)
    store = ResultStore(paths.results)
    old, new = _diff_pair(store, args)
    _warn_bad_files(_console(stderr=True), store.bad_files(args.name, newer_than=old), paths)
    out = _console()
    out.print(f"[bold]{args.name}[/]: {old.id} → {new.id}"
              + (f" ({old.lab_host} → {new.lab_host})" if old.lab_host != new.lab_host
                 else f" (host {new.lab_host})"))
    table = Table()
    for column in ("subject", "metric", "old median", "new median", "change", "p", "verdict"):
        table.add_column(column)
    for subject in sorted(set(old.subjects) | set(new.subjects)):
        for metric in sorted(set(old.metrics) | set(new.metrics)):
            a, b = old.values(subject, metric), new.values(subject, metric)
            if not a or not b:
                if a or b:
                    medians = [_fmt(stats.summarize(v).median) if v else "-" for v in (a, b)]
                    table.add_row(subject, metric, *medians, "", "",
                                  "only in " + ("new" if b else "old"))
                continue
            c = stats.compare_runs(a, b)
            verdict = "[red]changed[/]" if c.changed else "no significant change"
            table.add_row(subject, metric, _fmt(c.old_median), _fmt(c.new_median),
                          f"{c.relative:+.1%}", f"{c.p_value:.4f}", verdict)
    out.print(table)
    return 0


def _diff_pair(store: ResultStore, args: argparse.Namespace) -> tuple[Result, Result]:
    """The two runs to compare: one host's two newest good runs unless ``--hosts`` asks
    for two hosts. A subject measured under two accelerators is refused unless asked:
    the difference would be the accelerator's, not the change's."""
    good = [r for r in store.runs(args.name) if r.status == "ok"]
    if args.hosts:
        names = [h.strip() for h in args.hosts.split(",")]
        if len(names) != 2 or names[0] == names[1]:
            raise LabError("--hosts takes two different lab hosts: OLD,NEW")
        pair = []
        for host in names:
            runs = [r for r in good if r.lab_host == host]
            if not runs:
                raise LabError(f"{args.name!r} has no good result from host {host!r} (hosts "
                               f"with results: {', '.join(store.hosts(args.name)) or 'none'})")
            pair.append(runs[-1])
        old, new = pair
    else:
        host = args.host or (good[-1].lab_host if good else "local")
        runs = [r for r in good if r.lab_host == host]
        if len(runs) < 2:
            others = [h for h in store.hosts(args.name) if h != host]
            across = (f"; other hosts with results: {', '.join(others)} (--hosts OLD,NEW "
                      "compares across hosts)") if others else ""
            raise LabError(f"{args.name!r} needs two good results to compare, has "
                           f"{len(runs)} from host {host!r}{across}")
        old, new = runs[-2], runs[-1]
    if not args.across_accelerators:
        for subject in sorted(set(old.subjects) & set(new.subjects)):
            before, after = old.accelerator(subject), new.accelerator(subject)
            if before != after:
                raise LabError(
                    f"{subject} ran under {before or 'no accelerator'} in {old.id} "
                    f"({old.lab_host}) and under {after or 'no accelerator'} in {new.id} "
                    f"({new.lab_host}): the difference would be the accelerator's; "
                    "--across-accelerators to compare anyway")
    return old, new


def cmd_export(args: argparse.Namespace) -> int:
    paths = _paths(args)
    _, result = _latest_good(paths, args.name)
    if args.format == "json":
        text = json.dumps({"experiment": result.experiment, "id": result.id,
                           "samples": [s.to_json() for s in result.samples]},
                          indent=2, sort_keys=True) + "\n"
    else:
        text = samples_csv(result, identified=True)
    if args.out:
        try:
            args.out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise LabError(f"cannot write the export: {exc.strerror}", args.out) from None
    else:
        sys.stdout.write(text)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    paths = _paths(args)
    problems = validate_store(paths.results)
    count = len(list(paths.results.glob("*/*.json"))) if paths.results.is_dir() else 0
    for path, found in problems.items():
        for problem in found:
            print(f"{path.relative_to(paths.root)}: {problem}", file=sys.stderr)
    print(f"{count} result file(s), {len(problems)} with problems")
    return 1 if problems else 0
