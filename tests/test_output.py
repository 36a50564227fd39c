from pathlib import Path

import pytest

from chronicle.errors import BuildError
from chronicle.output import write_site


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_writes_bytes_and_copies_files(tmp_path):
    source = tmp_path / "style.css"
    source.write_text("body{}")
    out = tmp_path / "output"
    assert write_site({"index.html": b"hi", "static/style.css": source}, out) == 2
    assert tree(out) == {"index.html": b"hi", "static/style.css": b"body{}"}


def test_new_build_replaces_the_old_output_entirely(tmp_path):
    out = tmp_path / "output"
    write_site({"old.html": b"old"}, out)
    write_site({"new.html": b"new"}, out)
    assert tree(out) == {"new.html": b"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output"]  # nothing left behind


def test_failure_while_staging_leaves_previous_output_untouched(tmp_path):
    out = tmp_path / "output"
    write_site({"index.html": b"good"}, out)
    missing = tmp_path / "does-not-exist.css"
    with pytest.raises(FileNotFoundError):
        write_site({"index.html": b"half", "static/x.css": missing}, out)
    assert tree(out) == {"index.html": b"good"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output"]


@pytest.mark.parametrize("name", ["../evil.html", "/etc/passwd", "a/../../b", ""])
def test_refuses_paths_outside_the_output_folder(tmp_path, name):
    with pytest.raises(BuildError, match="outside the output folder"):
        write_site({name: b"x"}, tmp_path / "output")
    assert not (tmp_path / "output").exists()
