"""``chronicle lab …`` end to end, as a user runs it: real processes, real signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from chronicle.lab.procgroup import alive

from .conftest import cli_env

GOOD = """
from chronicle import lab
plan = lab.plan()
lab.measure({"fast": lambda: {"t_ms": (1.0, "ms")}, "slow": lambda: {"t_ms": (2.0, "ms")}},
            plan=plan)
"""


def test_run_then_show_then_skip_when_fresh(site):
    site.script("two", GOOD, block='tags = ["baseline"]\nrepeat = 5')
    first = site.chronicle("lab", "run", "--tag", "baseline")
    assert first.returncode == 0, first.stderr
    assert "ok, 10 samples" in first.stderr
    shown = site.chronicle("lab", "show", "two")
    assert shown.returncode == 0
    assert "fast" in shown.stdout and "t_ms (ms)" in shown.stdout
    assert "host" in shown.stdout and "git" in shown.stdout
    again = site.chronicle("lab", "run", "two")
    assert again.returncode == 0 and "fresh" in again.stderr and "skipped" in again.stderr
    forced = site.chronicle("lab", "run", "two", "--force", "--repeat", "2")
    assert forced.returncode == 0 and "ok, 4 samples" in forced.stderr


def test_unknown_name_lists_the_valid_ones(site):
    site.script("alpha", GOOD)
    done = site.chronicle("lab", "run", "beta")
    assert done.returncode == 1 and "unknown experiment(s): beta (valid: alpha)" in done.stderr


def test_exit_status_is_one_when_any_experiment_fails(site):
    site.script("good", GOOD, block='tags = ["t"]')
    site.script("bad", "echo nope >&2\nexit 2\n", block='tags = ["t"]', suffix=".sh")
    done = site.chronicle("lab", "run", "--tag", "t")
    assert done.returncode == 1
    assert "bad: failed: exit status 2" in done.stderr and "good: ok" in done.stderr
    assert "nope" in done.stderr


def test_list_shows_each_state(site):
    site.script("fresh", GOOD)
    site.script("never", GOOD)
    site.script("broken", "exit 1\n", suffix=".sh")
    site.chronicle("lab", "run", "fresh", "broken")
    listed = site.chronicle("lab", "list")
    assert listed.returncode == 0
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines()
            if line.count("│") > 3 and line.split("│")[1].strip()}
    assert "fresh" in rows["fresh"] and "never run" in rows["never"]
    assert "failed" in rows["broken"]


def test_diff_compares_the_two_newest_good_runs(site):
    site.script("d", GOOD, block="repeat = 5")
    assert site.chronicle("lab", "run", "d").returncode == 0
    assert site.chronicle("lab", "run", "d", "--force").returncode == 0
    done = site.chronicle("lab", "diff", "d")
    assert done.returncode == 0 and "no significant change" in done.stdout


def test_diff_needs_two_good_runs(site):
    site.script("d", GOOD)
    site.chronicle("lab", "run", "d")
    done = site.chronicle("lab", "diff", "d")
    assert done.returncode == 1 and "needs two good results" in done.stderr


def test_export_csv_and_json(site, tmp_path):
    site.script("x", GOOD, block="repeat = 2\nwarmup = 0")
    site.chronicle("lab", "run", "x")
    csv_out = site.chronicle("lab", "export", "x", "--format", "csv")
    lines = csv_out.stdout.splitlines()
    assert lines[0].startswith("experiment,result,subject,metric,value") and len(lines) == 5
    target = tmp_path / "x.json"
    assert site.chronicle("lab", "export", "x", "--format", "json", "--out",
                          str(target)).returncode == 0
    assert len(json.loads(target.read_text())["samples"]) == 4


def test_export_to_a_missing_folder_is_an_error_naming_the_file(site, tmp_path):
    site.script("x", GOOD, block="repeat = 2\nwarmup = 0")
    site.chronicle("lab", "run", "x")
    target = tmp_path / "missing" / "x.csv"
    done = site.chronicle("lab", "export", "x", "--out", str(target))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"error: {target}: cannot write the export" in done.stderr


def test_ctrl_c_kills_the_group_and_stores_a_cancelled_run(site, tmp_path):
    pidfile = tmp_path / "child.pid"
    site.script("long", f"""
        import subprocess, time
        from chronicle import lab
        child = subprocess.Popen(["sleep", "1000"])
        open({str(pidfile)!r}, "w").write(str(child.pid))
        lab.emit("a", "m", 1.0, "ms", 0)
        time.sleep(1000)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-m", "chronicle", "lab", "run", "long", "--root", str(site.root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pidfile.read_text())
    time.sleep(0.5)  # let the runner read the sample line
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert not alive(child)
    (result,) = site.store().runs("long")
    assert result.status == "cancelled" and len(result.samples) == 1
    assert site.store().latest("long") is None


def test_second_concurrent_run_is_refused_with_the_holders_pid(site):
    site.script("busy", "import time\ntime.sleep(1000)\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chronicle", "lab", "run", "busy", "--root", str(site.root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    lock = site.root / ".chronicle" / "lab" / "busy.lock"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (lock.exists() and lock.read_text()):
            time.sleep(0.05)
        second = site.chronicle("lab", "run", "busy")
        assert second.returncode == 1
        assert f"experiment busy is being run by pid {proc.pid}" in second.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_quick_run_uses_few_repetitions_and_is_marked(site):
    site.script("q", GOOD, block="repeat = 40\nwarmup = 5")
    done = site.chronicle("lab", "run", "q", "--quick")
    assert done.returncode == 0 and "ok, 6 samples" in done.stderr
    assert site.store().latest("q").quick


def test_a_quick_run_after_a_full_one_leaves_it_fresh_and_shown(site):
    site.script("q", GOOD, block="repeat = 3\nwarmup = 0")
    assert site.chronicle("lab", "run", "q").returncode == 0
    assert site.chronicle("lab", "run", "q", "--quick", "--force").returncode == 0
    listed = site.chronicle("lab", "list")
    assert "fresh" in listed.stdout and "stale" not in listed.stdout
    assert not site.store().shown("q").quick
    again = site.chronicle("lab", "run", "q")
    assert "fresh" in again.stderr and "skipped" in again.stderr
