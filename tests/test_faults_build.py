"""A real `chronicle build` killed with SIGKILL at random moments loses nothing.

Each trial copies a 300-post site in a known state, changes it as the scenario says,
starts `python -m chronicle build` and kills it after a seeded random delay spread over
the build's measured duration. Then output/ must be, byte for byte, the tree of the
build before (or no folder, before the first build) or of a clean build of the changed
site; no process of that build may be left; and the next build must succeed with the
clean build's output, leaving no staging folder behind.

The reference trees come from separate clean builds into folders of their own, made
once per scenario. Scenarios: a first build, ``--clean`` over an older output, and
incremental builds after an edited, an added and a removed post and a changed template.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from bench import corpus

import chronicle
from tests.support import (
    build_command,
    build_env,
    corpus_site,
    kill_all,
    left_running,
    tree,
)

POSTS = 300  # above parallel.PARALLEL_MIN: full builds fork their pool
TRIALS = 6  # per scenario; six scenarios
SEED = 13
NICE = 10  # every build here, so the measured duration is a killed build's too
Tree = dict[str, bytes]


def edit_a_post(site: Path) -> None:
    corpus.edit_post(sorted((site / "posts").iterdir())[POSTS // 2], "fault")


def add_a_post(site: Path) -> None:
    corpus.write_posts(site / "posts", [corpus.make_post(POSTS)], "chronicle")


def remove_a_post(site: Path) -> None:
    sorted((site / "posts").iterdir())[POSTS // 3].unlink()


def change_the_template(site: Path) -> None:
    # every page extends base.html: the whole site renders again, file by file
    theme = Path(chronicle.__file__).parent / "skeleton" / "themes" / "chronicle"
    base = (theme / "templates" / "base.html").read_text(encoding="utf-8")
    changed = base.replace('<footer class="site-footer">',
                           '<footer class="site-footer" data-changed="yes">')
    assert changed != base
    (site / "site" / "templates").mkdir(parents=True, exist_ok=True)
    (site / "site" / "templates" / "base.html").write_text(changed, encoding="utf-8")


@dataclass(frozen=True)
class Scenario:
    built_before: bool  # an output/ (and .chronicle/) of the unchanged site exists
    change: Callable[[Path], None] | None
    args: tuple[str, ...] = ()


SCENARIOS = {
    "first-build": Scenario(False, None),
    "clean-build": Scenario(True, edit_a_post, ("--clean",)),
    "edited-post": Scenario(True, edit_a_post),
    "added-post": Scenario(True, add_a_post),
    "removed-post": Scenario(True, remove_a_post),
    "changed-template": Scenario(True, change_the_template),
}


@dataclass(frozen=True)
class Prepared:
    start: Path  # the site before the change: sources, and output/ if built before
    old: Tree | None  # None: no output/ folder
    new: Tree
    duration: float  # seconds, of one uninterrupted build from ``start``


class Sites:
    """The unchanged site, built once, and each scenario's references, made once."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.sources = corpus_site(folder / "sources", POSTS)
        self.built = folder / "built"
        shutil.copytree(self.sources, self.built, symlinks=True)
        run_build(self.built)
        self.prepared: dict[str, Prepared] = {}

    def get(self, name: str) -> Prepared:
        if name not in self.prepared:
            self.prepared[name] = self._prepare(name, SCENARIOS[name])
        return self.prepared[name]

    def _prepare(self, name: str, scenario: Scenario) -> Prepared:
        start = self.built if scenario.built_before else self.sources
        old = tree(self.built / "output") if scenario.built_before else None
        reference = self.folder / f"{name}-reference"
        shutil.copytree(self.sources, reference, symlinks=True)
        if scenario.change is not None:
            scenario.change(reference)
        run_build(reference, "--clean", "--out", str(self.folder / f"{name}-new"))
        new = tree(self.folder / f"{name}-new")
        assert new and new != old
        timed = trial_site(start, scenario, self.folder / f"{name}-timed")
        begun = time.monotonic()
        run_build(timed, *scenario.args)
        duration = time.monotonic() - begun
        assert tree(timed / "output") == new, "an uninterrupted build differs from a clean one"
        return Prepared(start, old, new, duration)


def run_build(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(build_command(site, *args), env=build_env(), capture_output=True,
                          text=True, timeout=300, preexec_fn=lambda: os.nice(NICE))
    assert done.returncode == 0, done.stderr
    return done


def trial_site(start: Path, scenario: Scenario, site: Path) -> Path:
    shutil.copytree(start, site, symlinks=True)
    if scenario.change is not None:
        scenario.change(site)
    return site


def start_and_kill(site: Path, args: tuple[str, ...], duration: float,
                   rng: random.Random, trial: int) -> str:
    """Start a build of ``site`` and SIGKILL it; returns when it was killed.

    The first half of the trials die at moments spread over the build's first four
    fifths, one in each stretch. The rest die a moment after output/ first changes
    (its inode or its listing): writing output/ is where a kill can mix old and new,
    and it is a short stretch at the end (a 300-post build of 1.5-2.5 s moved 484
    changed pages in within 10-30 ms) that a timer alone mostly misses. The build is
    niced so that this process, watching, runs as soon as output/ changes: on a loaded
    machine it otherwise saw the change tens of milliseconds late."""
    build = subprocess.Popen(build_command(site, *args), env=build_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             preexec_fn=lambda: os.nice(NICE))
    half = TRIALS // 2
    try:
        if trial < half:
            moment = duration * 0.8 * (trial + rng.random()) / half
            time.sleep(moment)
            return f"{moment:.2f} s after the start"
        delay = duration * 0.005 * (trial - half + rng.random()) / (TRIALS - half)
        before = folder_state(site / "output")
        while build.poll() is None and folder_state(site / "output") == before:
            time.sleep(0.0005)
        time.sleep(delay)
        return f"{delay * 1000:.0f} ms after output/ changed"
    finally:
        build.kill()
        build.wait()


def folder_state(folder: Path) -> tuple[int, int] | None:
    try:
        state = folder.stat()
    except FileNotFoundError:
        return None
    return state.st_ino, state.st_mtime_ns


def difference(found: Tree | None, old: Tree | None, new: Tree) -> str:
    if found is None:
        return "output/ is gone"

    def apart(reference: Tree | None) -> int:
        reference = reference or {}
        return sum(found.get(name) != reference.get(name) for name in {*found, *reference})

    return (f"output/ is neither old nor new: {apart(old)} files differ from the old "
            f"build, {apart(new)} from the new one")


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> Sites:
    return Sites(tmp_path_factory.mktemp("faults"))


@pytest.mark.parametrize(("name", "trial"),
                         [(name, trial) for name in SCENARIOS for trial in range(TRIALS)])
def test_a_build_killed_at_a_random_moment_leaves_old_or_new(sites, tmp_path, name, trial):
    prepared, scenario = sites.get(name), SCENARIOS[name]
    site = trial_site(prepared.start, scenario, tmp_path / "site")
    when = start_and_kill(site, scenario.args, prepared.duration,
                          random.Random(f"{SEED}:{name}:{trial}"), trial)

    problems = []
    out = site / "output"
    found = tree(out) if out.is_dir() else None
    if found != prepared.old and found != prepared.new:
        problems.append(difference(found, prepared.old, prepared.new))
    left = left_running(str(site), within=2)
    if left:
        problems.append(f"processes of the killed build left running: {left}")
        kill_all(left)
    after = subprocess.run(build_command(site), env=build_env(), capture_output=True,
                           text=True, timeout=300)
    if after.returncode != 0:
        problems.append(f"the next build failed: {after.stderr.strip()[-500:]}")
    elif tree(out) != prepared.new:
        problems.append("the next build's output differs from a clean build's")
    staging = sorted(p.name for p in site.glob(".output.staging-*"))
    if staging:
        problems.append(f"staging folders left after the next build: {staging}")
    assert not problems, f"killed {when} (a build takes {prepared.duration:.2f} s): " + \
        "; ".join(problems)
