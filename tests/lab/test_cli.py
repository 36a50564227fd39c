"""``chronicle lab …`` end to end, as a user runs it: real processes, real signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from chronicle.lab.procgroup import alive
from chronicle.lab.results import ResultStore
from tests.support import in_the_future, make_result, store_edited

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


def test_show_skips_a_bad_newest_file_and_names_it(site):
    good = make_result(started="2026-11-20T10:00:00.000000Z")
    ResultStore(site.results).write(good)
    bad = store_edited(site.root, make_result(started="2026-11-21T10:00:00.000000Z"),
                       '"value": 2510.0', '"value": NaN')
    shown = site.chronicle("lab", "show", "boot-to-init")
    assert shown.returncode == 0, shown.stderr
    assert good.id in shown.stdout and "Traceback" not in shown.stderr
    said = " ".join(shown.stderr.split())
    assert (f"{bad.relative_to(site.root)}: not a valid result: samples/1/value: nan is not a "
            f"finite number (skipped: the newest good run is {good.id})") in said
    asked = site.chronicle("lab", "show", "boot-to-init", "--result", bad.stem)
    assert asked.returncode == 1 and "Traceback" not in asked.stderr
    assert f"{bad}: not a valid result: samples/1/value" in asked.stderr


def test_show_with_only_bad_files_is_an_error_naming_one(site):
    bad = store_edited(site.root, make_result(), '"host": {', '"host": "laptop", "x": {')
    shown = site.chronicle("lab", "show", "boot-to-init")
    assert shown.returncode == 1 and "Traceback" not in shown.stderr
    assert f"{bad}: no good result stored for 'boot-to-init'" in shown.stderr
    assert "provenance/host: 'laptop' is not of type 'object'" in shown.stderr


def test_list_reports_a_bad_file(site):
    site.script("boot-to-init", GOOD)
    bad = store_edited(site.root, make_result(), '"value": 2510.0', '"value": -2510.0')
    listed = site.chronicle("lab", "list")
    assert listed.returncode == 0, listed.stderr
    text = " ".join(listed.stdout.replace("│", " ").split())
    assert f"bad file {bad.relative_to(site.root)}" in text and "negative duration" in text


def test_run_after_a_future_dated_result_does_not_wait_for_the_clock(site):
    site.script("ahead", GOOD, block="repeat = 1")
    future = store_edited(site.root, make_result("ahead", started=in_the_future(days=1)))
    started = time.monotonic()
    done = site.chronicle("lab", "run", "ahead", "--force")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
    assert f"{future.relative_to(site.root)}: not a valid result: provenance/started" \
        in " ".join(done.stderr.split())
    ids = [p.stem for p in sorted((site.results / "ahead").glob("*.json"))]
    assert len(ids) == 2 and ids[0] == future.stem
    assert ResultStore(site.results).latest("ahead").id == ids[1]
    validated = site.chronicle("lab", "validate")
    assert str(future.relative_to(site.root)) in validated.stderr
    assert ids[1] not in validated.stderr


def test_freshness_is_per_lab_host(site):
    import dataclasses

    site.script("two", GOOD, block="repeat = 2")
    assert site.chronicle("lab", "run", "two").returncode == 0
    (here,) = site.store().runs("two")
    # The same experiment measured on another host: newer, another environment.
    there = dataclasses.replace(
        here, id=here.id[:-8] + "0badcafe", key_parts={**here.key_parts, "environment": "e" * 64},
        provenance={**here.provenance, "lab_host": "kvmbox",
                    "started": here.started[:17] + "59.000000Z"})
    site.store().write(there)
    listed = site.chronicle("lab", "list")
    rows = [line.split("│") for line in listed.stdout.splitlines() if line.count("│") > 3]
    states = {row[2].strip(): row[5].strip() for row in rows if row[2].strip()}
    assert states == {"local": "fresh", "kvmbox": "fresh"}, listed.stdout
    again = site.chronicle("lab", "run", "two")
    assert again.returncode == 0 and f"fresh ({here.id})" in again.stderr


def test_diff_stays_on_one_host_and_one_accelerator_unless_asked(site):
    import dataclasses

    from tests.support import store_result

    for day in ("20", "21"):
        store_result(site.root, make_result(started=f"2026-11-{day}T10:00:00.000000Z"))
    fetched = make_result(started="2026-11-22T10:00:00.000000Z", accelerator="kvm")
    store_result(site.root, dataclasses.replace(
        fetched, provenance={**fetched.provenance, "lab_host": "kvmbox"}))
    newest_only = site.chronicle("lab", "diff", "boot-to-init")
    assert newest_only.returncode == 1
    assert ("needs two good results to compare, has 1 from host 'kvmbox'; other hosts with "
            "results: local") in newest_only.stderr
    local = site.chronicle("lab", "diff", "boot-to-init", "--host", "local")
    assert local.returncode == 0, local.stderr
    assert "20261120T100000Z-abcdef12 → 20261121T100000Z-abcdef12 (host local)" in local.stdout
    across = site.chronicle("lab", "diff", "boot-to-init", "--hosts", "local,kvmbox")
    assert across.returncode == 1
    assert "qemu-microvm ran under tcg in 20261121T100000Z-abcdef12 (local) and under kvm" \
           in across.stderr
    asked = site.chronicle("lab", "diff", "boot-to-init", "--hosts", "local,kvmbox",
                           "--across-accelerators")
    assert asked.returncode == 0 and "(local → kvmbox)" in asked.stdout
