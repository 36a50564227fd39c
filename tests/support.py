"""Shared test helpers: real parts are required in CI and optional on a laptop."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from chronicle.guard import MARKER

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(available: bool, what: str) -> None:
    """Skip when a real part (Incus, qemu, Chromium) is missing — but fail in CI.

    CI installs every part the tests need, so a missing part there is a broken
    set-up that must turn the run red, never a silent skip.
    """
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing", pytrace=False)
    pytest.skip(f"{what} not available on this machine")


def incus_client():
    """A pylxd client of the real daemon with the lab's busybox image (required in CI)."""
    from chronicle.lab import host
    from chronicle.lab.image import BUSYBOX_ALIAS

    try:
        found = host.incus_client()
        found.images.get_by_alias(BUSYBOX_ALIAS)
    except Exception:
        found = None
    require(found is not None, "Incus with the chronicle-busybox image (`chronicle lab setup`)")
    return found


def redirect_target(out: Path, site_path: str, base_url: str) -> str | None:
    """Where the built page at ``site_path`` (``2019/03/x/``, ``a/b.html``) sends a
    reader: its canonical URL's path if it is a redirect page, else ``site_path`` itself;
    None when nothing is built there."""
    name = site_path + "index.html" if site_path.endswith("/") or not site_path else site_path
    if not (out / name).is_file():
        return None
    html = (out / name).read_text("utf-8")
    found = re.search(r'<meta http-equiv="refresh"[^>]*>', html)
    if found is None:
        return site_path
    canonical = re.search(r'<link rel="canonical" href="([^"]*)"', html)
    if canonical is None or not canonical.group(1).startswith(base_url):
        return None
    return canonical.group(1).removeprefix(base_url)


def site_files(folder: Path) -> dict[str, bytes]:
    """What a built or published folder serves: every file but Chronicle's marker."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MARKER}


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` unwritable: by its mode for a user, by the immutable attribute
    for root (whom modes do not stop)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    require(done.returncode == 0, "chattr +i on the test folder's file system")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


_HOLD_THE_LOCK = """
import sys
from pathlib import Path
from chronicle.lock import site_lock
with site_lock(Path(sys.argv[1]) / ".chronicle"):
    print("held", flush=True)
    sys.stdin.read()
"""


@contextmanager
def another_process_holding_the_lock(root: Path) -> Iterator[subprocess.Popen]:
    """A separate process holding the build lock of the site at ``root`` until the block
    ends."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_THE_LOCK, str(root)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield holder
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
