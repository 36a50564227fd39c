"""Running one experiment: the protocol, the timeout, cancellation, and storing the run.

The script runs in its own session (so its own process group): a Ctrl-C at the terminal
reaches only Chronicle, which then ends the whole group — the script *and* whatever it
started (qemu, incus clients, sleeps) — with SIGTERM, then SIGKILL after a grace period.
Where the host allows, the run also has its own cgroup, which catches what left the
group with ``setsid`` (see ``containment``); a record of the run lets the next run end
it if Chronicle itself is killed (see ``leftovers``).
Every run is stored, whatever its status; ``ResultStore.latest`` only returns ``ok`` runs
by default, so a failed run never replaces a good one.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chronicle
from chronicle.errors import LabError
from chronicle.lab import experiment as exp
from chronicle.lab import leftovers, provenance
from chronicle.lab.containment import RUN_ENV, Containment, end_cgroup, spawn
from chronicle.lab.lock import ExperimentLock
from chronicle.lab.procgroup import (
    RunInterrupted,
    SignalLatch,
    ignore_signals,
    trap_signals,
)
from chronicle.lab.results import Result, ResultStore, Sample
from chronicle.lab.validation import provenance_problems, sample_problems
from chronicle.paths import SitePaths

# Passed through to every script; anything else must be listed in the block's `env`.
BASE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "TERM",
            "CHRONICLE_LAB_DIR", "CI")
QUICK_REPEAT = 3
LOG_LIMIT = 256 * 1024
LINE_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class RunOptions:
    quick: bool = False
    repeat: int | None = None
    warmup: int | None = None
    seed: int = 0
    grace: float = 5.0
    lab_host: str = "local"  # the name in site/lab.toml of the host this runs on
    # The checkout's git state when this run's copy is not one (a lab host's working
    # folder): the checkout that sent it knows the commit.
    git: dict[str, Any] | None = None
    # The id of the fresh run this one repeats (`lab run --again`): the two are an A/A
    # pair, which measures how much this host's runs move when nothing changed.
    repeats: str | None = None
    # `lab run --incus HOST`: the script's Incus subjects talk to HOST's API (an
    # `incus_remote.Remote`); the run is HOST's, and its host facts are the API's.
    incus: Any = None


@dataclass
class _Run:
    """Mutable state of one run while it is being read; becomes a frozen Result."""

    samples: list[Sample] = field(default_factory=list)
    reported: dict[str, Any] = field(default_factory=dict)
    log: bytearray = field(default_factory=bytearray)
    dropped: int = 0
    error: str | None = None
    status: str = "ok"
    lines: int = 0

    def add_log(self, chunk: bytes) -> None:
        self.log += chunk
        if len(self.log) > LOG_LIMIT:
            cut = len(self.log) - LOG_LIMIT
            self.dropped += cut
            del self.log[:cut]

    def log_text(self, root: Path | None = None) -> str:
        text = self.log.decode("utf-8", errors="replace")
        if root is not None:
            text = portable_log(text, root)
        if self.dropped:
            return f"[… {self.dropped} earlier bytes of log dropped …]\n{text}"
        return text


def portable_log(text: str, root: Path) -> str:
    """Paths under the repo written relative to it: a committed log names no machine's
    folders, and reads the same from every checkout."""
    return text.replace(f"{root.resolve()}{os.sep}", "")


def parse_line(text: str) -> Sample | dict[str, Any]:
    """A sample, or a provenance dict from a ``{"provenance": {...}}`` line; ValueError."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    reported = set(data) == {"provenance"}
    problems = provenance_problems(data["provenance"]) if reported else sample_problems(data)
    if problems:
        raise ValueError("; ".join(p.removeprefix("(top): ") for p in problems))
    return data["provenance"] if reported else Sample.from_json(data)


def script_env(experiment: exp.Experiment, plan: dict[str, Any], scratch: Path
               ) -> dict[str, str]:
    env = {name: os.environ[name] for name in (*BASE_ENV, *experiment.env) if name in os.environ}
    src = str(Path(chronicle.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({
        "CHRONICLE_EXPERIMENT": experiment.name,
        "CHRONICLE_ROOT": str(experiment.root),
        "CHRONICLE_REPEAT": str(plan["repeat"]),
        "CHRONICLE_WARMUP": str(plan["warmup"]),
        "CHRONICLE_QUICK": "1" if plan["quick"] else "0",
        "CHRONICLE_SEED": str(plan["seed"]),
        "CHRONICLE_PARAMS": json.dumps(experiment.params, sort_keys=True),
        "CHRONICLE_SCRATCH": str(scratch),
    })
    return env


def command(experiment: exp.Experiment) -> list[str]:
    """Python scripts run with Chronicle's own interpreter (it has the lab's deps)."""
    if experiment.path.suffix == ".py":
        return [sys.executable, str(experiment.path)]
    if not os.access(experiment.path, os.X_OK):
        raise LabError("experiment script is not executable (chmod +x)", experiment.path)
    return [str(experiment.path)]


def run(experiment: exp.Experiment, store: ResultStore, options: RunOptions = RunOptions(),
        *, cache: Path | None = None, progress: Progress | None = None) -> Result:
    """Run ``experiment`` once, store the run, return it (whatever its status)."""
    cache = cache or SitePaths(experiment.root).cache
    with ExperimentLock(cache, experiment.name):
        return _run_locked(experiment, store, options, progress or Progress(), cache)


def _plan(experiment: exp.Experiment, options: RunOptions) -> dict[str, Any]:
    repeat = options.repeat or experiment.repeat
    warmup = experiment.warmup if options.warmup is None else options.warmup
    if options.quick:
        repeat = options.repeat or min(repeat, QUICK_REPEAT)
        warmup = 0 if options.warmup is None else options.warmup
    return {"repeat": repeat, "warmup": warmup, "quick": options.quick, "seed": options.seed}


def _remote_facts(remote: Any) -> dict[str, Any]:
    """What a run through a remote Incus API records of where it ran: the API's own
    account of its machine, in place of this machine's."""
    from chronicle.lab import host
    from chronicle.lab.incus_remote import host_facts

    client = remote.client(timeout=30)
    return {"host": host_facts(client), "tools": {"incus": host.incus_version(client)},
            "incus_remote": {"url": remote.url, "fingerprint": remote.fingerprint,
                             "target": remote.target}}


def _run_locked(experiment: exp.Experiment, store: ResultStore, options: RunOptions,
                progress: Progress, cache: Path) -> Result:
    environment = exp.environment_facts(experiment)
    inputs = exp.input_hashes(experiment)  # hashed once: for the key and the provenance
    parts = exp.key_parts(experiment, environment=environment, inputs=inputs)
    key = exp.key_of(parts)
    plan = _plan(experiment, options)
    facts = provenance.collect(experiment.root, env_names=experiment.env,
                               sources=[experiment.relpath, *inputs])
    facts.update(environment=environment, inputs=inputs, plan=plan, lab_host=options.lab_host)
    if options.git is not None:
        facts["git"] = options.git
    if options.repeats is not None:
        facts["repeats"] = options.repeats
    if options.incus is not None:
        facts.update(_remote_facts(options.incus))
    scratch = Path(tempfile.mkdtemp(prefix=f"chronicle-{experiment.name}-"))
    state = _Run()
    run_name = leftovers.run_name(experiment.name)
    held = Containment.plan(run_name)
    # Through a remote Incus API the guests load the remote, which this machine cannot see.
    load = provenance.HostLoad() if options.incus is None else None
    try:
        argv = command(experiment)
        env = script_env(experiment, plan, scratch)
        env[RUN_ENV] = run_name
        if options.incus is not None:
            env[options.incus.ENV] = options.incus.to_env()
        _execute(experiment, argv, env, state, options, progress,
                 leftovers.RunRecord.mine(run_name, experiment.name, held.cgroup, options.incus),
                 held, cache)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    facts["containment"] = held.provenance()
    if load is not None:
        facts["load"] = load.facts()
    facts = provenance.deep_merge(facts, state.reported)
    facts["finished"] = provenance.utc_now()
    result = Result(
        experiment=experiment.name,
        id=store.new_id(experiment.name, facts["started"], key, options.lab_host),
        status=state.status,
        key=key,
        key_parts=parts,
        params=experiment.params,
        provenance=facts,
        samples=tuple(state.samples),
        quick=options.quick,
        log=state.log_text(experiment.root),
        error=state.error,
    )
    path = store.write(result)
    return Result(**{**result.__dict__, "path": path})


def _execute(experiment: exp.Experiment, argv: list[str], env: dict[str, str], state: _Run,
             options: RunOptions, progress: Progress, record: leftovers.RunRecord,
             held: Containment, cache: Path) -> None:
    started = time.monotonic()
    # Signals are noted from before the spawn and acted on after it and while reading
    # the script's output: never raised from inside Popen (the child's pid would be lost).
    latch = SignalLatch()
    restore = trap_signals(latch)
    proc: subprocess.Popen | None = None
    try:
        # The record goes first: a `lab run` killed from here on leaves a run that the
        # next one can find and end.
        leftovers.keep(cache, record)
        held.create()
        proc = spawn(held, argv, cwd=experiment.root, env=env, stdin=subprocess.DEVNULL,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        latch.check()
        with progress:
            _pump(proc, experiment, state, started, progress, latch)
        latch.check()
    except RunInterrupted:
        state.status, state.error = "cancelled", "cancelled by the user"
    finally:
        ignore_signals()  # a second Ctrl-C must not cut the clean-up short
        try:
            ended = True
            if proc is not None:
                # Everything goes in every case: after an error, a timeout, a cancel — and
                # after a clean exit too, since a child left running by the script is a leak.
                ended = held.end(proc, options.grace)
                for pipe in (proc.stdout, proc.stderr):
                    if pipe:
                        pipe.close()
                proc.wait()
                _sweep_instances(experiment, state, options.incus, record.run)
            elif held.cgroup is not None:
                ended = end_cgroup(held.cgroup)
            if ended:
                leftovers.drop(cache, record)
        finally:
            # Even when the clean-up fails: signals left ignored would be inherited by
            # every process this one starts later (a caller's, a test suite's).
            restore()
    if proc is None:
        return
    if state.status == "ok" and state.error is None:
        code = proc.returncode
        if code < 0:
            state.status, state.error = "failed", f"killed by {signal.Signals(-code).name}"
        elif code:
            state.status, state.error = "failed", f"exit status {code}"
        elif not [s for s in state.samples if not s.warmup]:
            state.status, state.error = "failed", "the script printed no measured samples"


def _sweep_instances(experiment: exp.Experiment, state: _Run, remote: Any,
                     run: str) -> None:
    """Instances outlive a killed script: delete what it left, and say so in the log."""
    from chronicle.lab.subjects.incus import sweep_experiment

    swept = sweep_experiment(experiment.name) if remote is None else remote.sweep(
        experiment.name, run)
    for name in swept:
        state.add_log(f"chronicle: deleted leftover Incus instance {name}\n".encode())


def _pump(proc: subprocess.Popen, experiment: exp.Experiment, state: _Run, started: float,
          progress: Progress, latch: SignalLatch) -> None:
    """Read stdout (samples) and stderr (log) until both close, the timeout, an error or
    a signal (``RunInterrupted``, at most one 0.2 s wait after it came)."""
    sel = selectors.DefaultSelector()
    lines = _Lines()
    for pipe in (proc.stdout, proc.stderr):
        os.set_blocking(pipe.fileno(), False)
        sel.register(pipe, selectors.EVENT_READ)
    exited_at: float | None = None
    while sel.get_map():
        latch.check()
        now = time.monotonic()
        if now - started > experiment.timeout:
            state.status, state.error = "failed", f"timed out after {experiment.timeout:g} s"
            return
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > 1.0:
            return  # the script is gone; its children hold the pipes: stop reading
        for sel_key, _ in sel.select(timeout=0.2):
            pipe = sel_key.fileobj
            chunk = os.read(pipe.fileno(), 65536)
            if not chunk:
                sel.unregister(pipe)
            if pipe is proc.stderr:
                state.add_log(chunk)
                if chunk:
                    progress.note(chunk)
                continue
            for raw in lines.feed(chunk):
                if not _take_line(raw, state, progress):
                    return
            if lines.pending > LINE_LIMIT:
                state.status = "failed"
                state.error = (f"line {state.lines + 1} is over {LINE_LIMIT // 2**20} MiB: "
                               "not a sample")
                return
        progress.tick(time.monotonic() - started)


class _Lines:
    """Complete lines out of a byte stream, each byte looked at once.

    Only the unfinished tail is kept, and only the new chunk is searched for a newline,
    so a long line costs time in proportion to its length (not to its square).
    """

    def __init__(self) -> None:
        self.tail = bytearray()

    @property
    def pending(self) -> int:
        return len(self.tail)

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines ``chunk`` completes; an empty chunk (end of stream) ends the last one."""
        if not chunk:
            last, self.tail = bytes(self.tail), bytearray()
            return [last] if last else []
        end = chunk.rfind(b"\n")
        if end < 0:
            self.tail += chunk
            return []
        self.tail += chunk[:end]
        done = bytes(self.tail).split(b"\n")
        self.tail = bytearray(chunk[end + 1:])
        return done


def _take_line(raw: bytes, state: _Run, progress: Progress) -> bool:
    state.lines += 1
    text = raw.decode("utf-8", errors="replace").rstrip("\r")
    if not text.strip():
        return True
    try:
        parsed = parse_line(text)
    except ValueError as exc:
        shown = text if len(text) <= 200 else text[:200] + "…"
        state.status, state.error = "failed", f"line {state.lines}: {exc}: {shown}"
        return False
    if isinstance(parsed, Sample):
        state.samples.append(parsed)
        progress.sample(parsed)
    else:
        state.reported = provenance.deep_merge(state.reported, parsed)
    return True


class Progress:
    """What the runner tells a live display; this one shows nothing.

    The CLI passes a rich display (``chronicle.lab.cli.LiveProgress``) with the same
    methods; the runner itself stays free of presentation.
    """

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def sample(self, sample: Sample) -> None:
        pass

    def note(self, chunk: bytes) -> None:
        pass

    def tick(self, elapsed: float) -> None:
        pass
