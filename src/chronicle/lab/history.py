"""Results over time: an experiment's good runs per line, what changed between two runs,
and whether a metric got better, worse or did not detectably move.

Pure logic over stored runs; the command line prints it (``lab history``, ``lab
regressions``) and the site draws it. A *line* is one lab host and one accelerator: a
subject measured under KVM on one machine and under TCG on another has two lines, and
runs are only ever compared along one.

The decision between two runs, for one subject and metric, rests on three things:

* the interval of the ratio of medians (newer / older) from the runs' own samples, by
  the seeded bootstrap of :func:`chronicle.lab.stats.ratio_ci`;
* the line's **noise floor**: the largest ratio of medians between two runs made with
  an unchanged key on purpose (``lab run --again``, an A/A pair). The bootstrap only
  sees the spread *within* a run; a shared machine also drifts *between* runs, and that
  drift is what an A/A pair measures. The interval is widened by it on both sides;
* the experiment's threshold (``threshold`` in its header): a change smaller than it is
  not called, however sure.

A change is called when the widened interval lies wholly on one side of 1 *and* the
ratio moves by more than the threshold. Lower is better unless the header lists the
metric in ``higher_is_better``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chronicle.lab.experiment import KEY_PARTS, Experiment
from chronicle.lab.results import Result

IMPROVED = "improved"
REGRESSED = "regressed"
NO_CHANGE = "no detectable change"
UNDECIDED = "cannot decide"
DEFAULT_THRESHOLD = 0.05
RESAMPLES = 10_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Line:
    """One lab host and one accelerator (None for a subject that is not a VM)."""

    host: str
    accelerator: str | None

    @property
    def label(self) -> str:
        return f"{self.host}, {self.accelerator or 'no accelerator'}"


@dataclass(frozen=True)
class Policy:
    """How an experiment's changes are judged, from its header."""

    threshold: float = DEFAULT_THRESHOLD
    higher_is_better: frozenset[str] = frozenset()

    @classmethod
    def of(cls, experiment: Experiment | None) -> Policy:
        """The experiment's policy; the defaults for results whose script is gone."""
        if experiment is None:
            return cls()
        return cls(experiment.threshold, frozenset(experiment.higher_is_better))

    def lower_is_better(self, metric: str) -> bool:
        return metric not in self.higher_is_better


# -- runs and lines -------------------------------------------------------------------


def good_runs(runs: Iterable[Result]) -> list[Result]:
    """The runs that count, oldest first: status ``ok`` and full. A ``--quick`` run is a
    smoke test of a few repetitions; beside full runs it would only add noise."""
    return sorted((r for r in runs if r.status == "ok" and not r.quick), key=lambda r: r.id)


def line_of(result: Result, subject: str) -> Line:
    return Line(result.lab_host, result.accelerator(subject))


def lines(runs: Iterable[Result], subject: str) -> dict[Line, tuple[Result, ...]]:
    """The good runs measuring ``subject``, per line, each oldest first; lines in the
    order their first run was made."""
    found: dict[Line, list[Result]] = {}
    for result in good_runs(runs):
        if subject in result.subjects:
            found.setdefault(line_of(result, subject), []).append(result)
    return {line: tuple(members) for line, members in found.items()}


def previous_on_line(runs: Iterable[Result], current: Result, subject: str
                     ) -> Result | None:
    """The newest good run before ``current`` on ``current``'s line for ``subject``."""
    line = line_of(current, subject)
    before = [r for r in lines(runs, subject).get(line, ()) if r.id < current.id]
    return before[-1] if before else None


def previous_by_host(runs: Sequence[Result]) -> list[Result | None]:
    """Per run of ``runs`` (oldest first), the run before it from the same lab host;
    None for each host's first. Another host's run differs in environment anyway."""
    before: dict[str, Result] = {}
    found: list[Result | None] = []
    for run in runs:
        found.append(before.get(run.lab_host))
        before[run.lab_host] = run
    return found


def key_changes(previous: Result, current: Result) -> tuple[str, ...]:
    """Which parts of the cache key (script, inputs, params, environment) differ between
    the two runs, in that order; a part only one run recorded counts as changed."""
    return tuple(part for part in KEY_PARTS
                 if previous.key_parts.get(part) != current.key_parts.get(part))


def is_repeat(previous: Result, current: Result) -> bool:
    """``current`` was made by ``lab run --again`` to repeat ``previous``, with the same
    key: the pair is an A/A comparison."""
    return current.provenance.get("repeats") == previous.id and current.key == previous.key


# -- the noise floor ------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseFloor:
    """The largest move of the median between A/A pairs of one line, as ``|log ratio|``
    (0 with no pair), and the pairs it was taken from as (earlier id, repeat id)."""

    spread: float
    pairs: tuple[tuple[str, str], ...]

    @property
    def relative(self) -> float:
        """The spread as a relative change: 0.03 is 3%."""
        return math.expm1(self.spread)


def noise_floor(runs: Iterable[Result], line: Line, subject: str, metric: str, *,
                until: str | None = None, leave_out: Iterable[tuple[str, str]] = ()
                ) -> NoiseFloor:
    """The noise floor of ``subject``'s ``metric`` on ``line`` from the A/A pairs made
    up to run id ``until`` (all when None), leaving out the pairs in ``leave_out`` (the
    pair being judged must not be its own yardstick)."""
    members = lines(runs, subject).get(line, ())
    by_id = {r.id: r for r in members}
    skipped = set(leave_out)
    spreads: list[float] = []
    pairs: list[tuple[str, str]] = []
    for current in members:
        if until is not None and current.id > until:
            break
        previous = by_id.get(str(current.provenance.get("repeats")))
        if previous is None or not is_repeat(previous, current) \
                or (previous.id, current.id) in skipped:
            continue
        medians = [_median(r.values(subject, metric)) for r in (previous, current)]
        if any(m is None or m <= 0 for m in medians):
            continue
        spreads.append(abs(math.log(medians[1] / medians[0])))
        pairs.append((previous.id, current.id))
    return NoiseFloor(max(spreads, default=0.0), tuple(pairs))


def _median(values: Sequence[float]) -> float | None:
    import numpy as np

    return float(np.median(values)) if values else None


# -- the decision ---------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """Improved, regressed, no detectable change (or cannot decide) for one subject and
    metric between two runs of one line, with the numbers it rests on and a paragraph
    saying why in words (``explanation``)."""

    subject: str
    metric: str
    unit: str
    line: Line
    previous: str
    current: str
    verdict: str
    previous_median: float
    current_median: float
    ratio: float
    low: float
    high: float
    widened_low: float
    widened_high: float
    noise: NoiseFloor
    threshold: float
    lower_is_better: bool
    changes: tuple[str, ...]
    explanation: str

    @property
    def regressed(self) -> bool:
        return self.verdict == REGRESSED

    @property
    def improved(self) -> bool:
        return self.verdict == IMPROVED

    @property
    def relative(self) -> float:
        """The change of the median: +0.25 is 25% higher."""
        return self.ratio - 1.0


def decide(previous: Result, current: Result, subject: str, metric: str, *,
           noise: NoiseFloor, policy: Policy = Policy(), seed: int = 0) -> Decision:
    """The decision for ``subject``'s ``metric`` from ``previous`` to ``current`` (two
    runs of one line), given the line's noise floor. Reproducible: the bootstrap is
    seeded."""
    from chronicle.lab import stats

    old, new = previous.values(subject, metric), current.values(subject, metric)
    if not old or not new:
        missing = previous.id if not old else current.id
        raise ValueError(f"{missing} has no {metric} samples of {subject}")
    base = _Base(subject, metric, current.unit(metric), line_of(current, subject),
                 previous.id, current.id, noise, policy, key_changes(previous, current),
                 is_repeat(previous, current))
    old_median, new_median = float(_median(old)), float(_median(new))
    if old_median <= 0 or new_median <= 0:
        return base.undecided(old_median, new_median)
    ratio = stats.ratio_ci(new, old, seed=seed, resamples=RESAMPLES, confidence=CONFIDENCE)
    widened = (ratio.low * math.exp(-noise.spread), ratio.high * math.exp(noise.spread))
    beyond = abs(math.log(ratio.ratio)) > math.log1p(policy.threshold)
    if widened[0] > 1 and beyond:
        verdict = REGRESSED if base.lower_is_better else IMPROVED
    elif widened[1] < 1 and beyond:
        verdict = IMPROVED if base.lower_is_better else REGRESSED
    else:
        verdict = NO_CHANGE
    return base.decision(verdict, old_median, new_median, ratio, widened, beyond)


def decide_between(runs: Iterable[Result], previous: Result, current: Result, subject: str,
                   metric: str, *, policy: Policy = Policy(), seed: int = 0) -> Decision:
    """:func:`decide` with the noise floor of the runs' A/A pairs made up to ``current``
    (so a decision about two runs stays the same as newer runs arrive), not counting the
    pair being judged."""
    runs = list(runs)
    noise = noise_floor(runs, line_of(current, subject), subject, metric, until=current.id,
                        leave_out=[(previous.id, current.id)])
    return decide(previous, current, subject, metric, noise=noise, policy=policy, seed=seed)


@dataclass(frozen=True)
class Comparison:
    """An experiment's newest good run against the previous one on each subject's line:
    a decision per subject and metric, and a note for each subject or metric that could
    not be compared."""

    experiment: str
    current: Result | None
    decisions: tuple[Decision, ...]
    notes: tuple[str, ...]

    @property
    def comparable(self) -> bool:
        return bool(self.decisions)

    @property
    def regressions(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.regressed)


def newest_comparison(experiment: str, runs: Iterable[Result], policy: Policy = Policy(),
                      seed: int = 0) -> Comparison:
    """What ``lab regressions`` reports for one experiment."""
    good = good_runs(runs)
    if not good:
        return Comparison(experiment, None, (), ("no good run stored",))
    current = good[-1]
    if len(good) == 1:
        return Comparison(experiment, current, (), (f"one good run so far ({current.id})",))
    decisions: list[Decision] = []
    notes: list[str] = []
    for subject in current.subjects:
        line = line_of(current, subject)
        previous = previous_on_line(good, current, subject)
        if previous is None:
            others = sorted({f"{r.lab_host}, {r.accelerator(subject) or 'no accelerator'}"
                             for r in good if r is not current and subject in r.subjects})
            elsewhere = f" (runs on other lines: {'; '.join(others)})" if others else ""
            notes.append(f"{subject}: {current.id} is the first good run on {line.label}"
                         f"{elsewhere}")
            continue
        for metric in current.metrics:
            if not current.values(subject, metric):
                continue
            if not previous.values(subject, metric):
                notes.append(f"{subject} {metric}: not measured in {previous.id}")
                continue
            decisions.append(decide_between(good, previous, current, subject, metric,
                                            policy=policy, seed=seed))
    return Comparison(experiment, current, tuple(decisions), tuple(notes))


# -- the explanation ------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:.4g}"


@dataclass(frozen=True)
class _Base:
    """What every decision about one pair shares; it writes the decision's words."""

    subject: str
    metric: str
    unit: str
    line: Line
    previous: str
    current: str
    noise: NoiseFloor
    policy: Policy
    changes: tuple[str, ...]
    repeat: bool

    @property
    def lower_is_better(self) -> bool:
        return self.policy.lower_is_better(self.metric)

    def _decision(self, verdict: str, old: float, new: float, ratio: float,
                  interval: tuple[float, float], widened: tuple[float, float],
                  explanation: str) -> Decision:
        return Decision(
            subject=self.subject, metric=self.metric, unit=self.unit, line=self.line,
            previous=self.previous, current=self.current, verdict=verdict,
            previous_median=old, current_median=new, ratio=ratio, low=interval[0],
            high=interval[1], widened_low=widened[0], widened_high=widened[1],
            noise=self.noise, threshold=self.policy.threshold,
            lower_is_better=self.lower_is_better, changes=self.changes,
            explanation=explanation)

    def _opening(self, old: float, new: float) -> str:
        return (f"{self.subject} {self.metric} on {self.line.label}: the median went from "
                f"{_num(old)} {self.unit} in {self.previous} to {_num(new)} {self.unit} in "
                f"{self.current}")

    def _keys(self) -> str:
        if self.repeat:
            return "The newer run repeats the older with the same key (an A/A pair)."
        if not self.changes:
            return "The two runs were made with the same key."
        return f"Between the two runs the key changed: {', '.join(self.changes)}."

    def undecided(self, old: float, new: float) -> Decision:
        words = (f"{self._opening(old, new)}. A ratio of medians needs both to be above "
                 f"zero, so no change is decided. {self._keys()}")
        nan = math.nan
        return self._decision(UNDECIDED, old, new, nan, (nan, nan), (nan, nan), words)

    def decision(self, verdict: str, old: float, new: float, ratio, widened, beyond: bool
                 ) -> Decision:
        better = "lower" if self.lower_is_better else "higher"
        words = [
            f"{self._opening(old, new)}, a ratio of {ratio.ratio:.4f} "
            f"({ratio.ratio - 1:+.1%}). Its {CONFIDENCE:.0%} bootstrap interval is "
            f"[{ratio.low:.4f}, {ratio.high:.4f}] ({RESAMPLES:,} seeded resamples of each "
            "run's samples).",
        ]
        if self.noise.pairs:
            count = len(self.noise.pairs)
            words.append(
                f"On this host and accelerator, {count} A/A pair{'s' if count > 1 else ''} "
                f"(repeated runs with an unchanged key) moved the median by up to "
                f"{self.noise.relative:.1%}; the interval widened by that is "
                f"[{widened[0]:.4f}, {widened[1]:.4f}].")
        else:
            other = " other" if self.repeat else ""
            words.append(
                f"There is no{other} A/A pair on this host and accelerator yet (`lab run "
                "--again` makes one), so the decision rests on the samples and the threshold "
                "alone: drift between runs on this machine is not accounted for.")
        side = ("lies wholly above 1" if widened[0] > 1 else
                "lies wholly below 1" if widened[1] < 1 else "includes 1")
        size = "beyond" if beyond else "within"
        words.append(f"That interval {side}, and the change is {size} the experiment's "
                     f"{self.policy.threshold * 100:g}% threshold.")
        if verdict == NO_CHANGE:
            words.append("So no change is detected.")
        else:
            words.append(f"{better.capitalize()} is better for {self.metric}, so this is "
                         f"{'a regression' if verdict == REGRESSED else 'an improvement'}.")
        words.append(self._keys())
        return self._decision(verdict, old, new, ratio.ratio, (ratio.low, ratio.high),
                              widened, " ".join(words))
