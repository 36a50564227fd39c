"""History and change detection over stored runs: pure logic, no daemon."""

from __future__ import annotations

import pytest

from chronicle.errors import LabError
from chronicle.lab import experiment as exp
from chronicle.lab import history
from chronicle.lab.history import Line, Policy
from tests.support import history_run

LEVEL = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 99.8]


def at(level: float) -> list[float]:
    """The same spread around ``level``."""
    return [v * level / 100 for v in LEVEL]


def day(n: int) -> str:
    return f"2026-11-{n:02d}T10:00:00Z"


KEY = {"script": "1" * 64, "inputs": "2" * 64, "params": "3" * 64, "environment": "4" * 64}
OTHER_INPUTS = {**KEY, "inputs": "5" * 64}


def test_key_changes_names_the_parts_that_differ_in_key_order():
    old = history_run(day(1), {"vm": at(100)})
    new = history_run(day(2), {"vm": at(100)},
                      key_parts={**KEY, "params": "6" * 64, "script": "7" * 64})
    assert history.key_changes(old, new) == ("script", "params")
    assert history.key_changes(old, history_run(day(3), {"vm": at(100)})) == ()


def test_a_part_only_one_run_recorded_counts_as_changed():
    old = history_run(day(1), {"vm": at(100)},
                      key_parts={k: v for k, v in KEY.items() if k != "environment"})
    assert history.key_changes(old, history_run(day(2), {"vm": at(100)})) == ("environment",)


def test_lines_split_runs_by_host_and_accelerator_oldest_first():
    runs = [history_run(day(3), {"vm": at(100)}, host="kvmbox", accelerator="kvm"),
            history_run(day(1), {"vm": at(100)}),
            history_run(day(2), {"vm": at(100)}),
            history_run(day(4), {"vm": at(100)}, quick=True),
            history_run(day(5), {"vm": at(100)}, status="failed")]
    found = history.lines(runs, "vm")
    assert list(found) == [Line("local", "tcg"), Line("kvmbox", "kvm")]
    assert [r.id[:8] for r in found[Line("local", "tcg")]] == ["20261101", "20261102"]


def test_a_container_subject_has_a_line_without_accelerator():
    run = history_run(day(1), {"ct": at(100)}, accelerator=None)
    assert list(history.lines([run], "ct")) == [Line("local", None)]
    assert Line("local", None).label == "local, no accelerator"


def test_a_clear_shift_of_a_lower_is_better_metric_is_a_regression():
    old, new = history_run(day(1), {"vm": at(100)}), history_run(day(2), {"vm": at(130)},
                                                                 key_parts=OTHER_INPUTS)
    found = history.decide_between([old, new], old, new, "vm", "boot_ms")
    assert found.verdict == history.REGRESSED and found.regressed
    assert found.ratio == pytest.approx(1.3) and found.low > 1
    assert found.changes == ("inputs",)
    assert "no A/A pair" in found.explanation
    assert "a regression" in found.explanation and "inputs" in found.explanation


def test_the_same_shift_of_a_higher_is_better_metric_is_an_improvement():
    old, new = history_run(day(1), {"vm": at(100)}), history_run(day(2), {"vm": at(130)})
    found = history.decide_between([old, new], old, new, "vm", "boot_ms",
                                   policy=Policy(higher_is_better=frozenset({"boot_ms"})))
    assert found.verdict == history.IMPROVED and "Higher is better" in found.explanation


def test_the_same_level_is_no_detectable_change():
    old, new = history_run(day(1), {"vm": at(100)}), history_run(day(2), {"vm": at(100)})
    found = history.decide_between([old, new], old, new, "vm", "boot_ms")
    assert found.verdict == history.NO_CHANGE and "no change is detected" in found.explanation


def test_a_sure_change_within_the_threshold_is_not_called():
    old, new = history_run(day(1), {"vm": at(100)}), history_run(day(2), {"vm": at(103)})
    loose = history.decide_between([old, new], old, new, "vm", "boot_ms")
    strict = history.decide_between([old, new], old, new, "vm", "boot_ms",
                                    policy=Policy(threshold=0.01))
    assert loose.low > 1 and loose.verdict == history.NO_CHANGE
    assert "within the experiment's 5% threshold" in loose.explanation
    assert strict.verdict == history.REGRESSED


def aa_series(drift: float) -> list:
    """A run ``drift`` above 100, then a repeat of it (A/A) at 100."""
    first = history_run(day(1), {"vm": at(100 * (1 + drift))})
    again = history_run(day(2), {"vm": at(100)}, repeats=first.id)
    return [first, again]


def test_an_a_a_pair_sets_the_noise_floor_of_its_line():
    runs = aa_series(0.10)
    floor = history.noise_floor(runs, Line("local", "tcg"), "vm", "boot_ms")
    assert floor.relative == pytest.approx(0.10) and floor.pairs == ((runs[0].id, runs[1].id),)
    other = history.noise_floor(runs, Line("kvmbox", "kvm"), "vm", "boot_ms")
    assert other.spread == 0 and other.pairs == ()


def test_a_repeat_with_another_key_is_not_an_a_a_pair():
    first = history_run(day(1), {"vm": at(100)})
    again = history_run(day(2), {"vm": at(110)}, repeats=first.id, key_parts=OTHER_INPUTS)
    assert not history.is_repeat(first, again)
    assert history.noise_floor([first, again], Line("local", "tcg"), "vm", "boot_ms").pairs == ()


def test_a_forced_rerun_is_not_an_a_a_pair_unless_marked():
    first, second = history_run(day(1), {"vm": at(100)}), history_run(day(2), {"vm": at(110)})
    assert history.noise_floor([first, second], Line("local", "tcg"), "vm", "boot_ms").pairs == ()


def test_the_noise_floor_widens_the_interval_so_a_shift_within_it_is_noise():
    shifted = history_run(day(3), {"vm": at(108)}, key_parts=OTHER_INPUTS)
    quiet, noisy = aa_series(0.0), aa_series(0.10)
    on_quiet = history.decide_between([*quiet, shifted], quiet[1], shifted, "vm", "boot_ms")
    on_noisy = history.decide_between([*noisy, shifted], noisy[1], shifted, "vm", "boot_ms")
    assert on_quiet.verdict == history.REGRESSED
    assert on_noisy.verdict == history.NO_CHANGE
    assert on_noisy.widened_low < 1 < on_noisy.low
    assert "1 A/A pair" in on_noisy.explanation and "10.0%" in on_noisy.explanation


def test_the_pair_being_judged_is_not_its_own_noise_floor():
    first, again = aa_series(0.20)
    found = history.decide_between([first, again], first, again, "vm", "boot_ms")
    assert found.noise.pairs == () and found.verdict == history.IMPROVED
    assert "no other A/A pair" in found.explanation and "(an A/A pair)" in found.explanation


def test_a_later_a_a_pair_does_not_change_an_earlier_decision():
    old = history_run(day(1), {"vm": at(100)})
    new = history_run(day(2), {"vm": at(108)})
    later = history_run(day(3), {"vm": at(130)}, repeats=new.id)
    before = history.decide_between([old, new], old, new, "vm", "boot_ms")
    after = history.decide_between([old, new, later], old, new, "vm", "boot_ms")
    assert before == after and before.verdict == history.REGRESSED


def test_decisions_are_reproducible():
    old, new = history_run(day(1), {"vm": at(100)}), history_run(day(2), {"vm": at(104)})
    runs = [old, new]
    assert history.decide_between(runs, old, new, "vm", "boot_ms") == \
        history.decide_between(runs, old, new, "vm", "boot_ms")


def test_a_zero_median_cannot_be_decided():
    old, new = history_run(day(1), {"vm": [0.0] * 5}), history_run(day(2), {"vm": at(100)})
    found = history.decide_between([old, new], old, new, "vm", "boot_ms")
    assert found.verdict == history.UNDECIDED and "above zero" in found.explanation


def test_newest_comparison_uses_the_previous_run_on_the_same_line():
    runs = [history_run(day(1), {"vm": at(100)}),
            history_run(day(2), {"vm": at(50)}, host="kvmbox", accelerator="kvm"),
            history_run(day(3), {"vm": at(130)})]
    found = history.newest_comparison("series", runs)
    (decision,) = found.decisions
    assert (decision.previous, decision.current) == (runs[0].id, runs[2].id)
    assert found.regressions == (decision,)


def test_runs_on_two_hosts_are_not_comparable():
    runs = [history_run(day(1), {"vm": at(100)}, host="a"),
            history_run(day(2), {"vm": at(130)}, host="b")]
    found = history.newest_comparison("series", runs)
    assert not found.comparable
    assert found.notes == (f"vm: {runs[1].id} is the first good run on b, tcg "
                           "(runs on other lines: a, tcg)",)


def test_a_subject_that_changed_accelerator_is_not_compared_across():
    runs = [history_run(day(1), {"vm": at(100)}, accelerator="tcg"),
            history_run(day(2), {"vm": at(20)}, accelerator="kvm")]
    found = history.newest_comparison("series", runs)
    assert not found.comparable
    assert found.notes == (f"vm: {runs[1].id} is the first good run on local, kvm "
                           "(runs on other lines: local, tcg)",)
    assert history.previous_on_line(runs, runs[1], "vm") is None


def test_a_single_run_is_not_comparable():
    found = history.newest_comparison("series", [history_run(day(1), {"vm": at(100)})])
    assert not found.comparable and found.decisions == ()
    assert not history.newest_comparison("series", []).comparable


def write_block(tmp_path, lines: str):
    path = tmp_path / "experiments" / "x.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# /// chronicle\n# title = \"x\"\n{lines}# ///\n")
    return path


def test_the_header_sets_threshold_and_higher_is_better(tmp_path):
    path = write_block(tmp_path, "# threshold = 0.02\n# higher_is_better = [\"rps\"]\n")
    found = exp.parse(path, tmp_path)
    policy = Policy.of(found)
    assert policy.threshold == 0.02 and not policy.lower_is_better("rps")
    assert policy.lower_is_better("boot_ms")
    assert Policy.of(None) == Policy(threshold=history.DEFAULT_THRESHOLD)


@pytest.mark.parametrize("value", ["-0.1", "1.5", "true", "\"5%\""])
def test_a_bad_threshold_names_the_file_and_line(tmp_path, value):
    path = write_block(tmp_path, f"# repeat = 3\n# threshold = {value}\n")
    with pytest.raises(LabError) as caught:
        exp.parse(path, tmp_path)
    assert caught.value.path == path and caught.value.line == 4
    assert "threshold must be a relative change" in str(caught.value)


def test_higher_is_better_must_list_metric_names(tmp_path):
    path = write_block(tmp_path, "# higher_is_better = \"rps\"\n")
    with pytest.raises(LabError, match="higher_is_better must be a list of strings"):
        exp.parse(path, tmp_path)
