"""Statistics checked against values worked out by hand."""

from __future__ import annotations

import pytest

from chronicle.errors import LabError
from chronicle.lab import stats


def test_summary_of_one_to_five_matches_hand_computed_quantiles():
    s = stats.summarize([3, 1, 5, 2, 4])
    assert (s.n, s.min, s.max, s.mean, s.median) == (5, 1.0, 5.0, 3.0, 3.0)
    # Linear interpolation: position p*(n-1) in the sorted list.
    assert s.q1 == 2.0 and s.q3 == 4.0 and s.iqr == 2.0
    assert s.p5 == pytest.approx(1.2) and s.p95 == pytest.approx(4.8)
    assert s.sd == pytest.approx(2.5**0.5)


def test_median_of_even_count_is_the_mean_of_the_middle_two():
    assert stats.summarize([1, 2, 3, 10]).median == 2.5


def test_single_value_collapses_interval_and_has_zero_sd():
    s = stats.summarize([7.5])
    assert (s.n, s.sd, s.median_low, s.median, s.median_high) == (1, 0.0, 7.5, 7.5, 7.5)
    assert s.outliers == () and not s.first_slow


def test_bootstrap_interval_contains_median_and_is_reproducible():
    values = [10, 11, 12, 9, 10.5, 11.5, 10.2, 9.8, 10.9, 11.1]
    a, b = stats.summarize(values, seed=3), stats.summarize(values, seed=3)
    assert a == b
    assert a.min <= a.median_low <= a.median <= a.median_high <= a.max


def test_mad_rule_flags_only_the_far_value():
    # median 10, |deviations| 0,1,1,2,2,90 -> MAD 1.5; z(100) = 0.6745*90/1.5 = 40.5
    assert stats.outlier_indices([10, 9, 11, 8, 12, 100]) == (5,)


def test_mad_rule_keeps_values_just_inside_the_cut():
    # z(14) = 0.6745*4/1 = 2.7 (kept); z(16) = 0.6745*6/1 = 4.05 (flagged)
    assert stats.outlier_indices([10, 9, 11, 10, 9, 11, 14, 16]) == (7,)


def test_mad_of_zero_falls_back_to_mean_absolute_deviation():
    # MAD 0; mean |dev| = 4/5; z(5) = 4 / (1.253314*0.8) = 3.99
    assert stats.outlier_indices([1, 1, 1, 1, 5]) == (4,)
    assert stats.outlier_indices([2, 2, 2]) == ()


def test_slow_first_run_is_flagged_and_warned_about():
    s = stats.summarize([50, 10, 11, 9, 10, 10.5, 9.5])
    assert s.first_slow and s.outliers == (0,)
    (message,) = stats.warnings(s, "ms")
    assert "first run" in message and "50 ms" in message and "warm-up" in message


def test_fast_first_outlier_is_not_a_slow_first_run():
    s = stats.summarize([1, 10, 11, 9, 10, 10.5, 9.5])
    assert s.outliers == (0,) and not s.first_slow
    assert "outliers" in stats.warnings(s, "ms")[0]


def test_ratio_of_constant_samples_is_exact():
    r = stats.ratio_ci([6.0] * 8, [2.0] * 5)
    assert (r.ratio, r.low, r.high) == (3.0, 3.0, 3.0)


def test_ratio_interval_brackets_the_ratio():
    r = stats.ratio_ci([20, 21, 19, 22, 20.5], [10, 10.5, 9.5, 10.2, 9.9], seed=1)
    assert r.low <= r.ratio <= r.high and r.ratio == pytest.approx(20.5 / 10)


def test_ratio_against_zero_median_is_an_error():
    with pytest.raises(LabError):
        stats.ratio_ci([1, 2], [0, 0, 1])


def test_identical_runs_have_p_value_one_and_no_change():
    c = stats.compare_runs([5, 6, 7, 8], [5, 6, 7, 8], permutations=2000)
    assert c.p_value == 1.0 and c.relative == 0.0 and not c.changed


def test_clearly_separated_runs_are_a_significant_change():
    old = [10, 10.2, 9.9, 10.1, 10.05, 9.95, 10.3, 9.8, 10.0, 10.15]
    new = [v * 1.5 for v in old]
    c = stats.compare_runs(old, new)
    assert c.p_value < 0.01 and c.relative == pytest.approx(0.5) and c.changed


def test_significant_but_small_shift_is_not_reported_as_change():
    old = [100.0 + i * 0.01 for i in range(20)]
    new = [v + 2 for v in old]  # +2%, perfectly separated
    c = stats.compare_runs(old, new, permutations=2000)
    assert c.p_value < 0.01 and not c.changed


def test_comparison_is_reproducible_with_a_seed():
    a, b = [1, 3, 2, 5, 4], [2, 4, 3, 6, 6]
    assert stats.compare_runs(a, b, seed=9) == stats.compare_runs(a, b, seed=9)


def test_empty_values_are_refused():
    with pytest.raises(ValueError):
        stats.summarize([])
