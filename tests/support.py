"""Shared test helpers: real parts are required in CI and optional on a laptop."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

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


def drawn_charts(root: Path) -> dict[str, int]:
    """The site's cached chart files by name, with their inode: a chart drawn again is
    written again (a new inode), whichever process drew it."""
    folder = root / ".chronicle" / "charts"
    return {p.name: p.stat().st_ino for p in folder.glob("*.svg")} if folder.is_dir() else {}
