"""Writing the built site: stage everything, then swap it in.

The whole site is written into a staging folder next to the output folder (same file
system, so renames are cheap and never copy). Only when every file is written does the
staging folder replace the output folder: the old one is renamed aside, the new one
renamed into place, the old one deleted. If anything fails before the swap, the staging
folder is removed and the previous output is untouched; if the second rename fails, the
old folder is put back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from chronicle.errors import BuildError


def write_site(files: Mapping[str, bytes | Path], out: Path) -> int:
    """Replace ``out`` with exactly ``files`` (output path → bytes, or a file to copy).

    Returns the number of files written.
    """
    out = out.absolute()
    for name in files:
        _check_inside(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        for name in sorted(files):
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            content = files[name]
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                target.write_bytes(content)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a web server must read it
        _swap(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return len(files)


def _swap(staging: Path, out: Path) -> None:
    if not out.exists():
        staging.rename(out)
        return
    if not out.is_dir():
        raise BuildError("output path exists and is not a folder", out)
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()  # we only wanted a unique name
    out.rename(old)
    try:
        staging.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _check_inside(name: str) -> None:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise BuildError(f"refusing to write {name!r}: outside the output folder")
