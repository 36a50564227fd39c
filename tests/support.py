"""Shared test helpers: real parts are required in CI and optional on a laptop."""

from __future__ import annotations

import os

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
