"""Honest statistics for small samples: summaries, bootstrap intervals, outliers, change.

Every random step draws from ``numpy.random.default_rng(seed)`` so the same values and
seed always give the same interval: a page rebuilt tomorrow prints the same numbers.
Quantiles use numpy's default (linear interpolation, "type 7"), the usual convention.
Bootstraps and permutations are vectorised and processed in blocks so memory stays
bounded (about ``_BLOCK_CELLS`` floats at a time) however many samples there are.

numpy is imported by the functions that compute, not here: a build takes most numbers
from its cache (every one, on an edit), and loading numpy costs it ~0.1 s for nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chronicle.errors import LabError

if TYPE_CHECKING:
    import numpy as np

# The MAD rule of Iglewicz and Hoaglin: |modified z| above this is an outlier.
OUTLIER_Z = 3.5
# 0.6745 is the 75th percentile of the standard normal: it makes MAD comparable to sd.
_MAD_SCALE = 0.6745
# When MAD is 0 (over half the values identical) fall back to the mean absolute deviation;
# 1.253314 = sqrt(pi/2) makes it comparable to sd the same way.
_MEANAD_SCALE = 1.253314
_BLOCK_CELLS = 2_000_000


@dataclass(frozen=True)
class Summary:
    """One subject×metric's measured values (warm-ups excluded by the caller)."""

    n: int
    min: float
    max: float
    mean: float
    sd: float
    median: float
    p5: float
    p95: float
    q1: float
    q3: float
    iqr: float
    median_low: float
    median_high: float
    outliers: tuple[int, ...]
    first_slow: bool
    first: float = math.nan
    confidence: float = 0.95


@dataclass(frozen=True)
class Ratio:
    """``median(a) / median(b)`` with a bootstrap interval."""

    ratio: float
    low: float
    high: float


@dataclass(frozen=True)
class Change:
    """Run-to-run comparison: ``changed`` only when significant *and* large enough."""

    old_median: float
    new_median: float
    relative: float
    p_value: float
    changed: bool


def _array(values: Sequence[float], what: str = "values") -> np.ndarray:
    import numpy as np
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError(f"no {what} to summarise")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contain NaN or infinity")
    return arr


def _blocks(total: int, width: int) -> list[int]:
    """Row counts for processing ``total`` rows of ``width`` columns in bounded blocks."""
    per = max(1, _BLOCK_CELLS // max(1, width))
    sizes = [per] * (total // per)
    if total % per:
        sizes.append(total % per)
    return sizes


def bootstrap_medians(
    values: Sequence[float], rng: np.random.Generator, resamples: int
) -> np.ndarray:
    """Medians of ``resamples`` resamples (with replacement) of ``values``."""
    import numpy as np
    arr = _array(values)
    out = []
    for rows in _blocks(resamples, arr.size):
        idx = rng.integers(0, arr.size, size=(rows, arr.size))
        out.append(np.median(arr[idx], axis=1))
    return np.concatenate(out)


def _interval(estimates: np.ndarray, confidence: float) -> tuple[float, float]:
    import numpy as np
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(estimates, [tail, 100.0 - tail])
    return float(low), float(high)


def outlier_indices(values: Sequence[float]) -> tuple[int, ...]:
    """Indices whose modified z-score exceeds 3.5 in absolute value (the MAD rule)."""
    import numpy as np
    arr = _array(values)
    med = np.median(arr)
    dev = arr - med
    mad = float(np.median(np.abs(dev)))
    if mad > 0:
        z = _MAD_SCALE * dev / mad
    else:
        mean_ad = float(np.mean(np.abs(dev)))
        if mean_ad == 0:
            return ()
        z = dev / (_MEANAD_SCALE * mean_ad)
    return tuple(int(i) for i in np.flatnonzero(np.abs(z) > OUTLIER_Z))


def summarize(
    values: Sequence[float],
    *,
    seed: int = 0,
    resamples: int = 10_000,
    confidence: float = 0.95,
) -> Summary:
    import numpy as np
    arr = _array(values)
    q = np.percentile(arr, [5, 25, 50, 75, 95])
    median = float(q[2])
    if arr.size == 1:
        # One value has no spread: the interval collapses onto it rather than pretending.
        low = high = median
    else:
        medians = bootstrap_medians(arr, np.random.default_rng(seed), resamples)
        low, high = _interval(medians, confidence)
    outliers = outlier_indices(arr)
    return Summary(
        n=int(arr.size),
        min=float(arr.min()),
        max=float(arr.max()),
        mean=float(arr.mean()),
        sd=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        median=median,
        p5=float(q[0]),
        p95=float(q[4]),
        q1=float(q[1]),
        q3=float(q[3]),
        iqr=float(q[3] - q[1]),
        median_low=low,
        median_high=high,
        outliers=outliers,
        first_slow=bool(0 in outliers and arr[0] > median),
        first=float(arr[0]),
        confidence=confidence,
    )


def warnings(summary: Summary, unit: str) -> list[str]:
    """Plain-language warnings in the spirit of hyperfine's, for ``lab show`` and captions."""
    found: list[str] = []
    if summary.first_slow:
        found.append(
            f"The first run was much slower than the others ({summary.first:.4g} {unit} against "
            f"a median of {summary.median:.4g} {unit}). Caches that only fill during the first "
            "run are a common cause; more warm-up runs would keep it out of the measurement."
        )
    others = [i for i in summary.outliers if not (i == 0 and summary.first_slow)]
    if others:
        found.append(
            f"{len(others)} of {summary.n} values are statistical outliers (|modified z| > "
            f"{OUTLIER_Z}). Other load on the machine may have disturbed the run; consider "
            "repeating it on a quiet machine."
        )
    return found


def ratio_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    seed: int = 0,
    resamples: int = 10_000,
    confidence: float = 0.95,
) -> Ratio:
    """``median(a)/median(b)``; both samples resampled independently for the interval."""
    import numpy as np
    xa, xb = _array(a, "a"), _array(b, "b")
    denominator = float(np.median(xb))
    if denominator == 0:
        raise LabError("ratio of medians is undefined: the second sample's median is 0")
    ratio = float(np.median(xa)) / denominator
    rng = np.random.default_rng(seed)
    ma = bootstrap_medians(xa, rng, resamples)
    mb = bootstrap_medians(xb, rng, resamples)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = ma / mb
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size == 0:
        return Ratio(ratio, ratio, ratio)
    low, high = _interval(ratios, confidence)
    return Ratio(ratio=ratio, low=low, high=high)


def compare_runs(
    old: Sequence[float],
    new: Sequence[float],
    *,
    alpha: float = 0.01,
    threshold: float = 0.10,
    seed: int = 0,
    permutations: int = 10_000,
) -> Change:
    """Two-sided permutation test on the difference of medians.

    The p-value counts the observed labelling as one of the permutations
    (``(hits + 1) / (permutations + 1)``), so it is never exactly 0.
    """
    import numpy as np
    xo, xn = _array(old, "old"), _array(new, "new")
    old_median, new_median = float(np.median(xo)), float(np.median(xn))
    observed = abs(new_median - old_median)
    if old_median != 0:
        relative = (new_median - old_median) / abs(old_median)
    else:
        relative = 0.0 if new_median == 0 else math.copysign(math.inf, new_median)

    pooled = np.concatenate([xo, xn])
    rng = np.random.default_rng(seed)
    hits = 0
    # A tolerance so that float noise in equal medians still counts as "as extreme".
    tolerance = 1e-12 * max(1.0, abs(old_median), abs(new_median))
    for rows in _blocks(permutations, pooled.size):
        shuffled = rng.permuted(np.broadcast_to(pooled, (rows, pooled.size)), axis=1)
        diff = np.median(shuffled[:, xo.size :], axis=1) - np.median(shuffled[:, : xo.size], axis=1)
        hits += int(np.count_nonzero(np.abs(diff) >= observed - tolerance))
    p_value = (hits + 1) / (permutations + 1)
    changed = p_value < alpha and abs(relative) > threshold
    return Change(old_median, new_median, float(relative), float(p_value), bool(changed))
