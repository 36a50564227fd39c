"""``lab history``, ``lab regressions`` and ``lab run --again`` on real runs of a script
whose values are set by an input file: the shell protocol, end to end."""

from __future__ import annotations

import json

import pytest

from tests.support import level_experiment, set_level


@pytest.fixture
def levelled(site, monkeypatch):
    """The support module's ``level`` experiment: both subjects' values set by an input
    file, so changing it changes the key (inputs) as a real change to a guest would; both
    report the TCG accelerator, as VMs here do."""
    monkeypatch.setenv("LEVEL_ACCELERATOR", "tcg")
    level_experiment(site.root, 100)
    site.level = lambda value: set_level(site.root, value)
    return site


def run(site, *args: str) -> None:
    done = site.chronicle("lab", "run", "level", *args)
    assert done.returncode == 0, done.stderr


def rows(stdout: str) -> dict[tuple[str, str], str]:
    """A rich table's rows by their first two cells."""
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) > 2:
            found[(cells[0], cells[1])] = line
    return found


def test_a_shift_after_runs_at_one_level_is_a_regression_naming_subject_and_metric(levelled):
    run(levelled)
    run(levelled, "--again")
    run(levelled, "--again")
    levelled.level(130)
    run(levelled)
    done = levelled.chronicle("lab", "regressions", "-v")
    assert done.returncode == 1, done.stdout + done.stderr
    found = rows(done.stdout)
    assert "regressed" in found[("fast", "boot_ms")] and "+29.0%" in found[("fast", "boot_ms")]
    assert "regressed" in found[("slow", "boot_ms")] and "+29.5%" in found[("slow", "boot_ms")]
    assert "(2)" in found[("fast", "boot_ms")]  # the A/A floor and its pair count
    words = " ".join(done.stdout.split())  # the explanation as words, however rich wraps it
    assert "2 A/A pairs" in words and "key changed: inputs" in words


def test_a_run_at_the_same_level_is_no_regression(levelled):
    run(levelled)
    again = levelled.chronicle("lab", "run", "level", "--again")
    assert again.returncode == 0 and "running again: an A/A pair" in again.stderr
    first, second = levelled.store().runs("level")
    assert second.provenance["repeats"] == first.id and second.key == first.key
    done = levelled.chronicle("lab", "regressions", "level")
    assert done.returncode == 0, done.stdout + done.stderr
    found = rows(done.stdout)
    assert "no detectable change" in found[("fast", "boot_ms")]
    assert "no detectable change" in found[("slow", "boot_ms")]
    assert "no A/A pair to measure the noise floor on local, tcg" \
        in " ".join(done.stdout.split())


def test_runs_from_two_host_labels_are_not_compared(levelled):
    run(levelled, "--as-host", "alpha")
    run(levelled, "--as-host", "beta")
    done = levelled.chronicle("lab", "regressions", "--tag", "boot")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "nothing comparable" in done.stdout and "first good run on beta" in done.stdout


def test_again_on_a_stale_result_is_not_an_a_a_pair(levelled):
    run(levelled)
    levelled.level(101)
    again = levelled.chronicle("lab", "run", "level", "--again")
    assert again.returncode == 0 and "not an A/A pair" in again.stderr
    assert "repeats" not in levelled.store().runs("level")[-1].provenance


def test_history_shows_each_run_and_what_changed_in_its_key(levelled):
    run(levelled)
    run(levelled, "--again")
    levelled.level(130)
    run(levelled)
    done = levelled.chronicle("lab", "history", "level", "--metric", "boot_ms")
    assert done.returncode == 0, done.stderr
    ids = [r.id for r in levelled.store().runs("level")]
    lines = {line.split("│")[1].strip(): line for line in done.stdout.splitlines()
             if line.count("│") > 3}
    assert "first run on this host" in lines[ids[0]]
    assert "none (A/A repeat)" in lines[ids[1]] and "tcg" in lines[ids[1]]
    assert "inputs" in lines[ids[2]] and "133.5 [" in lines[ids[2]]


@pytest.mark.parametrize(("args", "message"), [
    (("lab", "history", "nope"), "unknown experiment 'nope' (valid: level)"),
    (("lab", "history", "level", "--metric", "rss"), "does not measure 'rss'"),
    (("lab", "history", "level", "--host", "kvmbox"), "no good run from host 'kvmbox'"),
    (("lab", "regressions", "nope"), "unknown experiment(s): nope"),
    (("lab", "regressions", "--tag", "nope"), "no experiment has tag(s) nope"),
])
def test_unknown_names_exit_two_with_a_message(levelled, args, message):
    run(levelled)
    done = levelled.chronicle(*args)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_single_run_has_nothing_to_compare(levelled):
    run(levelled)
    done = levelled.chronicle("lab", "regressions")
    assert done.returncode == 3 and "one good run so far" in done.stdout


def test_again_and_quick_are_refused_together(levelled):
    done = levelled.chronicle("lab", "run", "level", "--again", "--quick")
    assert done.returncode == 1 and "--again makes a full run" in done.stderr
    assert levelled.store().runs("level") == []


def test_regressions_help_documents_the_exit_codes(levelled):
    done = levelled.chronicle("lab", "regressions", "--help")
    assert done.returncode == 0
    for line in ("0  no regression", "1  a regression", "2  a usage or data error",
                 "3  nothing comparable"):
        assert line in done.stdout


def test_a_result_made_again_passes_validation(levelled):
    run(levelled)
    run(levelled, "--again")
    done = levelled.chronicle("lab", "validate")
    assert done.returncode == 0, done.stderr
    stored = json.loads(levelled.store().runs("level")[-1].path.read_text())
    assert stored["provenance"]["repeats"] == levelled.store().runs("level")[0].id


def test_an_unreadable_newer_run_is_a_data_error_naming_the_file(levelled):
    run(levelled)
    run(levelled, "--again")
    newest = levelled.store().runs("level")[-1]
    broken = newest.path.with_name("20991231T000000Z-0badf11e.json")
    broken.write_text(newest.path.read_text()[:200])
    done = levelled.chronicle("lab", "regressions", "level")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"error: {broken}" in done.stderr and "truncated" in done.stderr
