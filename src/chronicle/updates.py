"""Update notes: a number a published post shows changed significantly after its date.

A post's figure that shows the newest run (not pinned, not a history) may show another
run than the one its author saw. For each subject and metric the figure shows, the
*baseline* is the run that was the newest good full run on the same line (one lab host
and accelerator, :func:`chronicle.lab.history.lines`) at the post's date; when the
figure's run is a later one, :func:`chronicle.lab.history.decide_between` calls the
change. Improved or regressed gives the post a dated note; no detectable change gives
none.

The note is dated by the run *since which* the change holds: the first run after which
every decision against the baseline, up to the figure's run, says the same. So a later
run at the same level neither adds a note nor moves the post's ``updated`` (nor its feed
entry's), and only a change a reader should know about re-dates the post.

Decisions are dear (a seeded bootstrap each): each is kept in the build cache by the
content of every run it rests on.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chronicle.cache import code_version, digest
from chronicle.lab import history as lab_history
from chronicle.lab.results import Result

if TYPE_CHECKING:
    from chronicle.figures import Figure, Lab

_NEVER = datetime.min.replace(tzinfo=UTC)  # a run with no start time: before any post


@dataclass(frozen=True)
class UpdateNote:
    """``updated 2026-12-07: qemu-microvm boot_ms moved from 1,430 ms to 2,330 ms
    (regressed), run 20261207T140237Z-18dfeedc``, with a link to that run."""

    date: str  # the UTC day of the run since which the change holds
    experiment: str
    subject: str
    metric: str
    verdict: str  # lab_history.IMPROVED or REGRESSED
    before: str  # the baseline's median, with its unit
    after: str  # the shown run's median, with its unit
    result_id: str  # the run since which the change holds
    url: str  # its row on the experiment's lab page
    # "64%": niced work's share of the machine during that run, when it recorded one
    # worth saying (a busy machine slows what it measures); empty otherwise
    niced: str = ""


def update_notes(figures: Sequence[Figure], posted: datetime, lab: Lab
                 ) -> tuple[tuple[UpdateNote, ...], datetime | None]:
    """A post's notes, one per experiment, subject and metric that changed since
    ``posted``, and when the newest of those changes was made (None without one)."""
    from chronicle.figure_parts import with_unit
    from chronicle.figures import parse_time

    notes: dict[tuple[str, str, str, str], tuple[UpdateNote, datetime]] = {}
    for figure in figures:
        spec = figure.spec
        if figure.result is None or spec.pin or spec.kind == "history" and spec.fence == "chart":
            continue
        # each subject from its own run: a comparison's sides may be two hosts' runs
        for subject, current in figure.subject_runs():
            found_line = _timeline(lab, current, subject)
            if found_line is None:
                continue
            line, finished, at = found_line
            # the run newest on the line at the post's date, the one its author saw: the
            # newest that had finished by then (the id wins over a clock that ran fast)
            seen = bisect_right(finished, posted, hi=at + 1) - 1
            if seen in (-1, at):
                continue
            for metric in spec.metrics:
                found = _since(lab, line[seen], line[seen + 1:at + 1], subject, metric)
                if found is None:
                    continue
                verdict, old, new, since = found
                unit = current.unit(metric)
                # when the change reached the store: the run that made it finished
                when = parse_time(since.finished or since.started) or posted
                note = UpdateNote(
                    date=f"{when.astimezone(UTC):%Y-%m-%d}", experiment=spec.experiment,
                    subject=subject,
                    metric=metric, verdict=verdict, before=with_unit(old, unit),
                    after=with_unit(new, unit), result_id=since.id,
                    url=f"{lab.lab_url(spec.experiment)}#run-{since.id}",
                    niced=_share(since.niced_share))
                notes[(spec.experiment, current.lab_host, subject, metric)] = (note, when)
    found = sorted(notes.values(), key=lambda pair: (pair[1], pair[0].experiment,
                                                     pair[0].subject, pair[0].metric))
    return tuple(note for note, _ in found), max((at for _, at in found), default=None)


def _share(niced: float | None) -> str:
    return f"{niced:.0%}" if niced and niced >= 0.05 else ""


def _timeline(lab: Lab, current: Result, subject: str
              ) -> tuple[tuple[Result, ...], list[datetime], int] | None:
    """``current``'s line for ``subject`` (its good runs, oldest first), when each
    finished and where ``current`` is on it; None when it is not a good full run of one.
    Found once per run and subject: a blog shows each run in many figures."""
    from chronicle.figures import parse_time

    key = (current.experiment, current.id, subject)
    if key not in lab.timelines:
        if current.experiment not in lab.timelines:
            lab.timelines[current.experiment] = \
                lab_history.good_runs(lab.store.runs(current.experiment))
        runs = lab.timelines[current.experiment]
        line = lab_history.lines(runs, subject).get(lab_history.line_of(current, subject), ())
        at = next((i for i, r in enumerate(line) if r.id == current.id), None)
        lab.timelines[key] = None if at is None else (
            line, [parse_time(r.finished or r.started) or _NEVER for r in line], at)
    return lab.timelines[key]


def _since(lab: Lab, baseline: Result, after: Sequence[Result], subject: str, metric: str
           ) -> tuple[str, float, float, Result] | None:
    """The change from ``baseline`` to the last of ``after`` (verdict, medians) and the
    run since which it holds; None when it is no detectable change or either run did
    not measure it. Found once per pair of runs, subject and metric."""
    current = after[-1]
    key = ("since", current.experiment, baseline.id, current.id, subject, metric)
    if key not in lab.decisions:
        lab.decisions[key] = None
        if baseline.values(subject, metric) and current.values(subject, metric):
            runs = lab.timelines[current.experiment]
            policy = lab_history.Policy.of(lab.scripts.get(current.experiment))
            verdict, old, new = _decision(lab, runs, baseline, current, subject, metric,
                                          policy)
            if verdict in (lab_history.IMPROVED, lab_history.REGRESSED):
                since = current
                for run in reversed(after[:-1]):
                    if not run.values(subject, metric) or _decision(
                            lab, runs, baseline, run, subject, metric, policy)[0] != verdict:
                        break
                    since = run
                lab.decisions[key] = (verdict, old, new, since)
    return lab.decisions[key]


def _decision(lab: Lab, runs: Sequence[Result], baseline: Result, current: Result,
              subject: str, metric: str, policy: lab_history.Policy
              ) -> tuple[str, float, float]:
    known: dict[Any, Any] = lab.decisions  # in this build, by the runs' ids
    pair = (current.experiment, baseline.id, current.id, subject, metric)
    if pair in known:
        return known[pair]
    # the decision rests on the pair and on the A/A pairs made up to the current run:
    # across builds, it is kept by the content of all of them
    upto = bisect_right(_ids(lab, runs), current.id)
    key = digest(code_version(), "decision", _runs_digest(lab, runs, upto),
                 baseline.id, current.id, subject, metric, str(policy.threshold),
                 *sorted(policy.higher_is_better))
    cached = lab.cache.get("decision", key) if lab.cache is not None else None
    if cached is None:
        made = lab_history.decide_between(runs[:upto], baseline, current, subject, metric,
                                          policy=policy)
        cached = (made.verdict, made.previous_median, made.current_median)
        if lab.cache is not None:
            lab.cache.put("decision", key, cached)
    known[pair] = tuple(cached)
    return known[pair]



def _ids(lab: Lab, runs: Sequence[Result]) -> list[str]:
    """The ids of an experiment's good runs (:func:`_timeline`'s, oldest first)."""
    key = ("ids", runs[0].experiment)
    if key not in lab.timelines:
        lab.timelines[key] = [r.id for r in runs]
    return lab.timelines[key]


def _runs_digest(lab: Lab, runs: Sequence[Result], count: int) -> str:
    """The content of the first ``count`` of an experiment's good runs, hashed: each
    from the one before, so a line of n runs costs n hashes a build however many
    decisions rest on them (a hash of every run before each decision: n² of them)."""
    key = ("digests", runs[0].experiment)
    chain = lab.timelines.setdefault(key, [digest("runs")])
    while len(chain) <= count:
        chain.append(digest(chain[-1], lab.result_digest(runs[len(chain) - 1])))
    return chain[count]
