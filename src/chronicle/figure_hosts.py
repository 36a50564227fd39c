"""What a comparison of two hosts' runs shows, as data: a ``compare`` fence whose sides
name their own lab hosts (``left: {subject: S, host: H}``,
:attr:`chronicle.embed_fences.EmbedSpec.split`).

Each side is drawn from its own run (:meth:`chronicle.figures.Figure.run_of`) and
labelled with its host; the ratio is of the two runs' medians, its interval bootstrapped
from both. The build shows such a figure only when its fence allows the mix
(``mix: hosts``, :func:`chronicle.figures.check_mix`), so the caption names each side's
host, machine and accelerator, and both runs. The theme's ``figures/compare.html``
renders it like any comparison.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chronicle.figure_parts import (
    Badge,
    Verdict,
    accelerator_text,
    badges,
    caption,
    compare_side,
    data_rows,
    host_line,
    shared_limits,
    unmeasured_reason,
    verdict,
)
from chronicle.lab.results import Result

if TYPE_CHECKING:
    from chronicle.charts import ChartCache
    from chronicle.figures import Figure


def side_label(subject: str, run: Result) -> str:
    return f"{subject} on {run.lab_host}"


def hosts_compare_context(spec: Any, figure: Figure, charts: ChartCache) -> dict[str, Any]:
    left, right = figure.run_of("left"), figure.run_of("right")
    assert left is not None and right is not None and figure.other is not None
    sides = (("left", spec.left, left), ("right", spec.right, right))
    limits = shared_limits([(run, subject) for _, subject, run in sides], spec.metrics)
    verdicts = []
    for metric in spec.metrics:
        missing = [side_label(s, run) for _, s, run in sides if unmeasured_reason(run, s, metric)]
        verdicts.append(Verdict(metric, missing=", ".join(missing)) if missing else
                        verdict(left, figure, spec.left, spec.right, metric, right_run=right,
                                label=side_label(spec.left, left)))
    columns = [(side, side_label(subject, run), figure.colour(subject),
                compare_side(spec, run, figure, charts, subject, limits))
               for side, subject, run in sides]
    rows = [replace(row, subject=side_label(subject, run)) for metric in spec.metrics
            for _, subject, run in sides
            for row in data_rows(run, figure, [metric], [subject])]
    note = ("Ratios are of medians, with 95% bootstrap intervals; the left side is named "
            "first. The two sides ran on different hosts: the ratio is of the machines "
            "as much as of the subjects.")
    counts = sorted({len(run.values(s, m)) for _, s, run in sides for m in spec.metrics
                     if run.values(s, m)})
    dates = dict.fromkeys((run.started or "")[:10] or "unknown date" for _, _, run in sides)
    shown = replace(
        caption(spec, left, figure, [spec.left], note),
        n=(str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}")
        if counts else "0",
        date=" and ".join(dates),
        host="; ".join(f"{subject} on {host_line(run, named=True)}" for _, subject, run in sides),
        accelerator="; ".join(f"{side_label(subject, run)}: {accelerator_text(run, subject)}"
                              for _, subject, run in sides),
        other_result_id=right.id)
    return {"badges": merged_badges(badges(left, [spec.left], figure),
                                    badges(right, [spec.right], figure.other)),
            "sides": columns, "verdicts": verdicts, "rows": rows, "caption": shown}


def merged_badges(*found: list[Badge]) -> list[Badge]:
    """One badge per kind, saying what each side's said (each run has its own)."""
    kinds: dict[str, list[Badge]] = {}
    for badge in (b for side in found for b in side):
        kinds.setdefault(badge.kind, []).append(badge)
    return [Badge(kind, "; ".join(dict.fromkeys(b.title for b in same)),
                  "; ".join(dict.fromkeys(b.text for b in same)))
            for kind, same in kinds.items()]
