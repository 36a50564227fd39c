"""A fake site root in tmp_path, and helpers to write experiment scripts into it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chronicle.lab import experiment as exp
from chronicle.lab.results import ResultStore

SRC = Path(__file__).resolve().parents[2] / "src"


class Site:
    def __init__(self, root: Path):
        self.root = root
        self.results = root / "experiments" / "results"

    def script(self, name: str, body: str, *, block: str = "", suffix: str = ".py") -> Path:
        """An experiment file; ``block`` is TOML lines for the chronicle block."""
        body = textwrap.dedent(body).lstrip("\n")
        shebang = "#!/usr/bin/env python3\n" if suffix == ".py" else "#!/bin/sh\n"
        if body.startswith("#!"):
            shebang, body = body.split("\n", 1)[0] + "\n", body.split("\n", 1)[1]
        meta = "".join(f"# {line}\n" for line in textwrap.dedent(block).strip().splitlines())
        text = f"{shebang}# /// chronicle\n{meta}# ///\n{body}"
        path = self.root / "experiments" / f"{name}{suffix}"
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return path

    def experiment(self, name: str) -> exp.Experiment:
        return next(e for e in exp.discover(self.root) if e.name == name)

    def store(self) -> ResultStore:
        return ResultStore(self.results)

    def chronicle(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "chronicle", *args, "--root", str(self.root)],
            capture_output=True, text=True, timeout=120, env=cli_env(), **kwargs,
        )


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture
def site(tmp_path: Path) -> Site:
    root = tmp_path / "blog"
    (root / "site").mkdir(parents=True)
    (root / "site" / "site.toml").write_text('title = "t"\n')
    (root / "experiments").mkdir()
    return Site(root)


@pytest.fixture(scope="module")
def qemu_guest():
    """The built guest kernel and initramfs, for tests that boot qemu (skips without)."""
    import shutil

    from chronicle.errors import LabError
    from chronicle.lab.guest import guest_assets
    from chronicle.paths import lab_dir
    from tests.support import require

    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64")
    try:
        found = guest_assets(lab_dir(SRC.parent))
    except LabError:
        found = None
    require(found is not None, "guest kernel and initramfs (`chronicle lab setup`)")
    return found
