"""The figure-heavy corpus: the plain corpus, with a third of its posts showing figures.

A blog where most posts carry live data is the case Chronicle is for, and the plain
corpus has no figure at all. Here every post whose index is a multiple of three ends
with 3–7 figures (``chart``, ``table`` and ``compare`` fences) drawn from
:data:`EXPERIMENTS` synthetic experiments, each with a script and a stored result, so the
build finds them fresh. Like the plain corpus, post ``i``'s figures depend only on the
seed and ``i``; an experiment's samples only on the seed, its name and the run's serial.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import corpus

EXPERIMENTS = 12
SAMPLES_PER_SUBJECT = 12
FIGURE_EVERY = 3  # every third post carries figures
FIGURES_PER_POST = (3, 7)
SUBJECT_POOL = ("qemu-microvm", "firecracker", "cloud-hypervisor", "crosvm",
                "incus-container", "incus-vm")
# metric → (unit, typical low, typical high)
METRICS = {"boot_ms": ("ms", 90.0, 2400.0), "pss_mib": ("MiB", 18.0, 320.0),
           "disk_mib": ("MiB", 4.0, 900.0)}
CHART_KINDS = ("box", "bar", "cdf", "strip")
FIRST_RUN = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SyntheticExperiment:
    name: str
    subjects: tuple[str, ...]
    metrics: tuple[str, ...]


def make_experiments(seed: int = corpus.DEFAULT_SEED) -> list[SyntheticExperiment]:
    """:data:`EXPERIMENTS` experiments of 2–4 subjects and 2–3 metrics each."""
    found = []
    for number in range(EXPERIMENTS):
        rng = random.Random(f"chronicle-bench-experiment:{seed}:{number}")
        subjects = tuple(sorted(rng.sample(SUBJECT_POOL, rng.randint(2, 4))))
        metrics = tuple(sorted(rng.sample(sorted(METRICS), rng.randint(2, 3))))
        found.append(SyntheticExperiment(f"bench-exp-{number:02d}", subjects, metrics))
    return found


def figure_fences(index: int, experiments: list[SyntheticExperiment],
                  seed: int = corpus.DEFAULT_SEED) -> str:
    """The figures post ``index`` ends with ("" for a post without figures)."""
    if index % FIGURE_EVERY:
        return ""
    rng = random.Random(f"chronicle-bench-figures:{seed}:{index}")
    fences = []
    for _ in range(rng.randint(*FIGURES_PER_POST)):
        experiment = rng.choice(experiments)
        kind = rng.choice(("chart", "chart", "table", "compare"))
        metric = rng.choice(experiment.metrics)
        if kind == "chart":
            body = f"metric: {metric}\nkind: {rng.choice(CHART_KINDS)}\n"
        elif kind == "table":
            body = f"metrics: [{', '.join(experiment.metrics)}]\n"
        else:
            left, right = rng.sample(experiment.subjects, 2)
            body = f"left: {left}\nright: {right}\nmetrics: [{metric}]\n"
        fences.append(f"```{kind} {experiment.name}\n{body}```\n")
    return "\n## Measured\n\n" + "\n".join(fences)


def with_figures(posts: list[corpus.SyntheticPost], seed: int = corpus.DEFAULT_SEED
                 ) -> list[corpus.SyntheticPost]:
    """``posts`` with every third one ending in figures."""
    experiments = make_experiments(seed)
    return [replace(post, body=post.body + figure_fences(post.index, experiments, seed))
            for post in posts]


def script_text(experiment: SyntheticExperiment) -> str:
    """A runnable script that prints samples of the experiment's shape (never run by the
    bench: its stored results are made by :func:`write_result`)."""
    subject, metric = experiment.subjects[0], experiment.metrics[0]
    unit = METRICS[metric][0]
    return (f"#!/usr/bin/env python3\n# /// chronicle\n# title = \"Synthetic {experiment.name}\"\n"
            "# tags = [\"bench\"]\n# ///\n"
            f"print('{{\"subject\": \"{subject}\", \"metric\": \"{metric}\", \"value\": 1.0, "
            f"\"unit\": \"{unit}\", \"run\": 1}}')\n")


def write_experiments(site: Path, seed: int = corpus.DEFAULT_SEED) -> list[Path]:
    """Every experiment's script and a first stored result (serial 0)."""
    written = []
    for experiment in make_experiments(seed):
        script = site / "experiments" / f"{experiment.name}.py"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(script_text(experiment), encoding="utf-8")
        written.append(write_result(site, experiment, 0, seed))
    return written


def write_result(site: Path, experiment: SyntheticExperiment, serial: int,
                 seed: int = corpus.DEFAULT_SEED) -> Path:
    """Run ``serial`` of ``experiment``, stored as the lab stores a run, with the key parts
    of its script as it is (so the build calls it fresh)."""
    from chronicle.lab import experiment as lab_experiment
    from chronicle.lab.results import Result, ResultStore, Sample, result_id

    parsed = lab_experiment.parse(site / "experiments" / f"{experiment.name}.py", site)
    assert parsed is not None, f"{experiment.name}'s script has no metadata block"
    # the build compares only script, inputs and params; the environment is the bench's
    parts = {**lab_experiment.key_parts(parsed, include_environment=False),
             "environment": "0" * 64}
    key = lab_experiment.key_of(parts)
    rng = random.Random(f"chronicle-bench-result:{seed}:{experiment.name}:{serial}")
    samples = []
    for subject in experiment.subjects:
        for metric in experiment.metrics:
            unit, low, high = METRICS[metric]
            centre = rng.uniform(low, high)
            samples += [Sample(subject=subject, metric=metric, unit=unit, run=run,
                               value=round(centre * rng.lognormvariate(0, 0.08), 3))
                        for run in range(1, SAMPLES_PER_SUBJECT + 1)]
    started = FIRST_RUN + timedelta(hours=serial)
    stamp = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    result = Result(
        experiment=experiment.name, id=result_id(stamp, key), status="ok", key=key,
        key_parts=parts, params={}, samples=tuple(samples),
        provenance={"started": stamp, "finished": stamp, "host": {"cpu": "bench"}},
    )
    return ResultStore(site / "experiments" / "results").write(result)
