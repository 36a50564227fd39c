"""The runner against real scripts: good runs, crashes, timeouts, bad lines, children."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from chronicle.errors import LabError
from chronicle.lab import runner
from chronicle.lab.lock import ExperimentLock
from chronicle.lab.procgroup import RunInterrupted, SignalLatch, alive, trap_signals
from tests.support import require

FAST = runner.RunOptions(grace=1.0)

GOOD_PY = """
from chronicle import lab
plan = lab.plan()
lab.report_subject("a", accelerator="tcg", kvm_kind="pvm")
for run in range(plan.repeat):
    lab.emit("a", "t_ms", 10 + run, "ms", run)
"""


def _run(site, name, options=FAST):
    return runner.run(site.experiment(name), site.store(), options)


def test_good_python_run_is_stored_with_samples_and_provenance(site):
    site.script("good", GOOD_PY, block="repeat = 4")
    result = _run(site, "good")
    assert result.status == "ok" and result.error is None
    assert site.store().latest("good").values("a", "t_ms") == [10, 11, 12, 13]
    assert result.accelerator("a") == "tcg" and result.subject_info("a")["kvm_kind"] == "pvm"
    assert result.provenance["host"]["cpu_model"] and result.provenance["finished"]
    assert set(result.key_parts) == {"script", "inputs", "params", "environment"}


def test_shell_script_speaks_the_protocol_too(site):
    site.script("sh", """
        echo "starting" >&2
        echo '{"subject": "s", "metric": "m", "value": 1.5, "unit": "s", "run": 0}'
        printf '{"subject": "s", "metric": "m", "value": 2, "unit": "s", "run": %s}\\n' \\
            "$CHRONICLE_REPEAT"
    """, block="repeat = 7", suffix=".sh")
    result = _run(site, "sh")
    assert result.status == "ok"
    assert [s.run for s in result.samples] == [0, 7]
    assert "starting" in result.log


def test_plan_reaches_the_script_through_the_environment(site):
    site.script("plan", """
        import os
        from chronicle import lab
        p = lab.plan()
        assert p.params == {"n": 3} and p.quick and p.scratch.is_dir()
        assert "SECRET_FOR_TEST" not in os.environ
        lab.emit("x", "w", p.warmup, "", 0)
        lab.emit("x", "r", p.repeat, "", 0)
    """, block="params = { n = 3 }\nrepeat = 50")
    os.environ["SECRET_FOR_TEST"] = "hush"
    try:
        result = _run(site, "plan", runner.RunOptions(quick=True))
    finally:
        del os.environ["SECRET_FOR_TEST"]
    assert result.status == "ok", result.log
    assert result.values("x", "r") == [3] and result.values("x", "w") == [0]
    assert result.quick and "hush" not in repr(result.to_json())


def test_listed_environment_variable_is_passed_and_recorded(site):
    site.script("env", """
        import os
        from chronicle import lab
        lab.emit("x", "m", len(os.environ["BENCH_KNOB"]), "", 0)
    """, block='env = ["BENCH_KNOB"]')
    os.environ["BENCH_KNOB"] = "abcd"
    try:
        result = _run(site, "env")
    finally:
        del os.environ["BENCH_KNOB"]
    assert result.values("x", "m") == [4] and result.provenance["env"] == {"BENCH_KNOB": "abcd"}


def test_crash_is_stored_as_failed_with_partial_samples_and_log(site):
    site.script("crash", """
        from chronicle import lab
        lab.emit("a", "m", 1, "ms", 0)
        raise RuntimeError("boom")
    """)
    result = _run(site, "crash")
    assert result.status == "failed" and result.error == "exit status 1"
    assert len(result.samples) == 1 and "RuntimeError: boom" in result.log
    assert result.path.is_file()


def test_timeout_kills_the_script_and_says_so(site):
    site.script("slow", """
        from chronicle import lab
        import time
        lab.emit("a", "m", 1, "ms", 0)
        time.sleep(60)
    """, block="timeout = 1")
    started = time.monotonic()
    result = _run(site, "slow")
    assert time.monotonic() - started < 10
    assert result.status == "failed" and result.error == "timed out after 1 s"
    assert len(result.samples) == 1


def test_script_ignoring_sigterm_is_killed_after_grace(site):
    site.script("stubborn", """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('{"subject": "a", "metric": "m", "value": 1, "unit": "", "run": 0}', flush=True)
        time.sleep(60)
    """, block="timeout = 1")
    started = time.monotonic()
    result = _run(site, "stubborn")
    assert result.status == "failed" and time.monotonic() - started < 10


def test_bad_sample_line_fails_the_run_with_its_line_number(site):
    site.script("bad", """
        echo '{"subject": "a", "metric": "m", "value": 1, "unit": "ms", "run": 0}'
        echo 'hello there'
    """, suffix=".sh")
    result = _run(site, "bad")
    assert result.status == "failed"
    assert result.error.startswith("line 2: not JSON") and "hello there" in result.error


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"subject": "a", "metric": "m", "value": "1", "unit": "", "run": 0}', "value"),
        ('{"subject": "a", "metric": "m", "value": 1, "unit": "", "run": -1}', "run"),
        ('{"subject": "a", "metric": "m", "value": 1, "unit": ""}', r"missing key\(s\) run"),
        ('{"subject": "a", "metric": "m", "value": 1, "unit": "", "run": 0, "x": 1}', "unknown"),
        ('[1, 2]', "not a JSON object"),
    ],
)
def test_sample_lines_are_validated_strictly(line, problem):
    with pytest.raises(ValueError, match=problem):
        runner.parse_line(line)


def test_nonzero_exit_without_output_is_failed(site):
    site.script("exit3", "exit 3\n", suffix=".sh")
    result = _run(site, "exit3")
    assert result.status == "failed" and result.error == "exit status 3"


def test_clean_exit_without_samples_is_failed(site):
    site.script("silent", "true\n", suffix=".sh")
    assert _run(site, "silent").error == "the script printed no measured samples"


def test_children_left_behind_die_with_the_group(site, tmp_path):
    pidfile = tmp_path / "child.pid"
    site.script("leaky", f"""
        sleep 1000 &
        echo $! > {pidfile}
        echo '{{"subject": "a", "metric": "m", "value": 1, "unit": "", "run": 0}}'
    """, suffix=".sh")
    result = _run(site, "leaky")
    assert result.status == "ok"
    assert not alive(int(pidfile.read_text()))


def test_children_die_on_timeout(site, tmp_path):
    pidfile = tmp_path / "child.pid"
    site.script("hang", f"""
        sleep 1000 &
        echo $! > {pidfile}
        wait
    """, block="timeout = 1", suffix=".sh")
    result = _run(site, "hang")
    assert result.error == "timed out after 1 s"
    assert not alive(int(pidfile.read_text()))


def test_failed_run_never_replaces_the_latest_good_result(site):
    path = site.script("flaky", GOOD_PY, block="repeat = 2")
    good = _run(site, "flaky")
    path.write_text(path.read_text() + "\nraise SystemExit(2)\n")
    failed = _run(site, "flaky")
    store = site.store()
    assert failed.status == "failed"
    assert store.latest("flaky").id == good.id
    assert store.latest("flaky", status=None).id == failed.id


def test_second_run_of_the_same_experiment_is_refused_while_locked(site):
    site.script("locked", GOOD_PY)
    with ExperimentLock(site.root / ".chronicle", "locked"):
        with pytest.raises(LabError, match=f"being run by pid {os.getpid()}"):
            _run(site, "locked")


def test_lock_is_released_after_a_run(site):
    site.script("again", GOOD_PY, block="repeat = 1")
    assert _run(site, "again").status == "ok"
    assert _run(site, "again").status == "ok"


def test_log_keeps_only_the_tail_of_a_huge_stderr(site):
    site.script("noisy", """
        import sys
        from chronicle import lab
        for i in range(40000):
            print(f"log line {i:06d} " + "x" * 20, file=sys.stderr)
        lab.emit("a", "m", 1, "", 0)
    """)
    result = _run(site, "noisy")
    assert result.status == "ok"
    assert len(result.log) <= runner.LOG_LIMIT + 200
    assert "earlier bytes of log dropped" in result.log and "log line 039999" in result.log


def test_stored_log_names_repo_paths_relative_to_the_root(site):
    site.script("paths", f"""
        import sys
        print("{site.root.resolve()}/experiments/guest/x.sh failed", file=sys.stderr)
        print('{{"subject": "a", "metric": "m", "value": 1, "unit": "", "run": 0}}')
    """)
    result = _run(site, "paths")
    assert "experiments/guest/x.sh failed" in result.log
    assert str(site.root.resolve()) not in result.log


def test_a_huge_line_without_newline_fails_as_too_long_not_as_a_timeout(site):
    # 100 MB in one line: the old buffer re-split everything on each 64 KiB read (quadratic)
    # and ran into the timeout; the cap fails it as soon as the first MiB is past.
    site.script("huge", """
        import sys
        sys.stdout.buffer.write(b"x" * 100_000_000)
    """, block="timeout = 30")
    started = time.monotonic()
    result = _run(site, "huge")
    assert time.monotonic() - started < 15
    limit = runner.LINE_LIMIT // 2**20
    assert result.status == "failed"
    assert result.error == f"line 1 is over {limit} MiB: not a sample"


def _needs_cgroup() -> None:
    from chronicle.lab.containment import runs_parent

    require(runs_parent()[0] is not None, "a writable cgroup v2 hierarchy")


SETSID_HELPER = """
setsid sh -c 'echo $$ > {pidfile}; exec sleep 1000' > /dev/null 2>&1 &
while [ ! -s {pidfile} ]; do sleep 0.01; done
"""
SAMPLE_SH = """echo '{"subject": "a", "metric": "m", "value": 1, "unit": "", "run": 0}'\n"""


def test_helper_that_calls_setsid_dies_with_a_clean_run(site, tmp_path):
    _needs_cgroup()
    pidfile = tmp_path / "helper.pid"
    site.script("escapes", SETSID_HELPER.format(pidfile=pidfile) + SAMPLE_SH, suffix=".sh")
    result = _run(site, "escapes")
    assert result.status == "ok", result.error
    assert not alive(int(pidfile.read_text()))
    assert result.provenance["containment"] == {"kind": "cgroup"}


def test_helper_that_calls_setsid_dies_on_timeout(site, tmp_path):
    _needs_cgroup()
    pidfile = tmp_path / "helper.pid"
    site.script("escapes-late", SETSID_HELPER.format(pidfile=pidfile) + "sleep 1000\n",
                block="timeout = 1", suffix=".sh")
    result = _run(site, "escapes-late")
    assert result.error == "timed out after 1 s"
    assert not alive(int(pidfile.read_text()))


def test_run_leaves_no_cgroup_and_no_record_behind(site, tmp_path):
    _needs_cgroup()
    from chronicle.lab.containment import runs_parent

    site.script("tidy", SETSID_HELPER.format(pidfile=tmp_path / "p") + SAMPLE_SH, suffix=".sh")
    before = set(runs_parent()[0].iterdir()) if runs_parent()[0].is_dir() else set()
    assert _run(site, "tidy").status == "ok"
    after = set(runs_parent()[0].iterdir())
    assert {p for p in after - before if p.name.startswith("tidy-")} == set()
    assert list((site.root / ".chronicle" / "lab" / "runs").iterdir()) == []


def test_without_cgroups_the_group_is_used_and_the_provenance_says_so(site, tmp_path,
                                                                     monkeypatch):
    from chronicle.lab import containment

    monkeypatch.setattr(containment, "runs_parent", lambda: (None, "no cgroup v2 here"))
    pidfile = tmp_path / "helper.pid"
    site.script("weak", SETSID_HELPER.format(pidfile=pidfile) + SAMPLE_SH, suffix=".sh")
    result = _run(site, "weak")
    held = result.provenance["containment"]
    assert held["kind"] == "process-group"
    assert "setsid" in held["note"] and "no cgroup v2 here" in held["note"]
    # the run's name in the helper's environment still finds it
    assert not alive(int(pidfile.read_text()))


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"subject": "a", "metric": "boot_ms", "value": -1, "unit": "ms", "run": 0}',
         "value: -1 ms is a negative duration"),
        ('{"subject": "a", "metric": "m", "value": NaN, "unit": "", "run": 0}',
         "value: nan is not a finite number"),
        ('{"provenance": {"host": "laptop"}}', "host: 'laptop' is not of type 'object'"),
        ('{"provenance": {"tools": {"qemu": Infinity}}}', "tools/qemu: inf is not"),
    ],
)
def test_lines_are_held_to_the_rules_of_a_stored_result(line, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        runner.parse_line(line)


def test_a_report_of_the_wrong_type_fails_the_run_at_its_line(site):
    site.script("typed", """
        echo '{"subject": "a", "metric": "m", "value": 1, "unit": "", "run": 0}'
        echo '{"provenance": {"subjects": {"a": {"accelerator": "fast"}}}}'
    """, suffix=".sh")
    result = _run(site, "typed")
    assert result.status == "failed"
    assert result.error.startswith("line 2: subjects/a/accelerator: 'fast' is not one of")
    assert site.store().load(result.path) == result


def test_the_run_records_how_busy_the_host_was(site):
    # One core kept busy for a second by the script itself: the share counts it.
    site.script("spin", """
        import time
        from chronicle import lab
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            pass
        lab.emit("a", "t_ms", 1, "ms", 0)
    """)
    load = _run(site, "spin").provenance["load"]
    assert len(load["loadavg_start"]) == len(load["loadavg_end"]) == 3
    assert 0.5 / (os.cpu_count() or 1) < load["busy"] <= 1.0
    assert 0 <= load["niced"] <= load["busy"]


def test_a_signal_landing_in_a_finalizer_still_interrupts_the_run():
    # Python drops an exception raised inside ``__del__`` or a weakref finalizer. A
    # handler that raised there lost the Ctrl-C, and `lab run` finished the experiment
    # as if none had come (seen in CI: urllib3 closing a pool during garbage collection).
    class Dropped:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)  # its handler runs before __del__ returns

    before = signal.getsignal(signal.SIGINT)
    latch = SignalLatch()
    restore = trap_signals(latch)
    try:
        Dropped()
        with pytest.raises(RunInterrupted, match="SIGINT"):
            latch.check()
    finally:
        restore()
    assert signal.getsignal(signal.SIGINT) is before
