"""Files derived from a guest's build — its other roots (``guestroots``), its VM disk
(``guestvm``): keyed by what they are made from, made whole in a staging folder and
swapped in, and every tool's failure reported with the guest and the step named."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from chronicle.errors import LabError
from chronicle.lab.guestbuild import GuestBuild
from chronicle.lab.guestdef import GuestDefinition
from chronicle.swap import exchange, new_staging, remove_leftovers, remove_tree

T = TypeVar("T")


def derived_key(recipe: str, build: GuestBuild) -> str:
    """What a derivation reads: its recipe, the build, and the identities (size,
    modification time) of the build's ``root.ext4`` and ``initrd.img``. A rebuilt guest
    or a new recipe derives again; nothing else does."""
    parts = [recipe, build.key, build.fingerprint]
    for path in (build.disk, build.initrd):
        info = path.stat()
        parts.append(f"{path.name}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def made_whole(folder: Path, make: Callable[[Path], T]) -> T:
    """``make(staging)`` in a fresh staging folder beside ``folder``, which then takes
    ``folder``'s place; on any error (Ctrl-C too) the staging folder goes and ``folder``
    stays as it was. What a killed derivation left is removed first."""
    remove_leftovers(folder)
    staging = new_staging(folder)
    try:
        made = make(staging)
        old = exchange(staging, folder)
    except BaseException:
        remove_tree(staging)
        raise
    if old is not None:
        remove_tree(old)
    return made


def run_step(definition: GuestDefinition, step: str, argv: list[str], **kwargs: Any
             ) -> subprocess.CompletedProcess:
    """Run one tool; a failure is a LabError naming the guest and the step."""
    try:
        run = subprocess.run(argv, **{"stdout": subprocess.PIPE, **kwargs},
                             stderr=subprocess.PIPE)
    except OSError as exc:
        raise LabError(f"guest {definition.name}: {step}: cannot run {argv[0]}: {exc}",
                       definition.path) from None
    if run.returncode != 0:
        text = run.stderr if isinstance(run.stderr, str) else run.stderr.decode(errors="replace")
        tail = " | ".join(text.strip().splitlines()[-4:])
        raise LabError(f"guest {definition.name}: {step} failed (exit {run.returncode}): "
                       f"{tail[-600:]}", definition.path)
    return run
