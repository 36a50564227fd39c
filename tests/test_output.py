import errno
import os
import stat
from pathlib import Path

import pytest

from chronicle import swap
from chronicle.errors import BuildError
from chronicle.guard import MARKER
from chronicle.output import Staging
from chronicle.swap import atomic_write, exchange, keep_as_spare, new_staging, remove_leftovers
from tests.support import file_size_limit, site_files


def stage(out: Path, files: dict[str, bytes | Path]) -> Staging:
    staging = Staging(out)
    for name, content in files.items():
        staging.write(name, content)
    staging.add_names(list(files))
    return staging


def replace(out: Path, files: dict[str, bytes | Path], keep: tuple[str, ...] = ()) -> None:
    """What a build does: stage ``files``, link ``keep`` from ``out``, exchange."""
    staging = stage(out, files)
    staging.finish([*files, *keep])
    keep_as_spare(staging.replace(), out)


def test_writes_bytes_and_copies_files(tmp_path):
    source = tmp_path / "style.css"
    source.write_text("body{}")
    out = tmp_path / "output"
    replace(out, {"index.html": b"hi", "static/style.css": source})
    assert site_files(out) == {"index.html": b"hi", "static/style.css": b"body{}"}
    assert (out / MARKER).is_file()  # the guard's proof that the folder is ours


def test_new_build_replaces_the_old_output_entirely(tmp_path):
    out = tmp_path / "output"
    replace(out, {"old.html": b"old"})
    replace(out, {"new.html": b"new"})
    assert site_files(out) == {"new.html": b"new"}
    # the old folder is kept as the next build's staging folder, and nothing else
    assert sorted(p.name for p in tmp_path.iterdir()) == [".output.spare", "output"]
    assert site_files(tmp_path / ".output.spare") == {"old.html": b"old"}


def test_exchange_swaps_the_two_folders_in_one_step(tmp_path):
    out = tmp_path / "output"
    replace(out, {"index.html": b"old"})
    staging = stage(out, {"index.html": b"new"})
    old = staging.replace()
    # one renameat2: the old folder is whole under the staging name, never half moved
    assert old == staging.folder
    assert site_files(old) == {"index.html": b"old"}
    assert site_files(out) == {"index.html": b"new"}


def test_failure_while_staging_leaves_previous_output_untouched(tmp_path):
    out = tmp_path / "output"
    replace(out, {"index.html": b"good"})
    missing = tmp_path / "does-not-exist.css"
    staging = Staging(out)
    with pytest.raises(FileNotFoundError):
        staging.write("static/x.css", missing)
    staging.discard()
    assert site_files(out) == {"index.html": b"good"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output"]


def test_linked_files_keep_their_inode_and_mtime(tmp_path):
    out = tmp_path / "output"
    replace(out, {"a/index.html": b"same", "b.html": b"old"})
    before = os.stat(out / "a/index.html")
    replace(out, {"b.html": b"new"}, keep=("a/index.html",))
    after = os.stat(out / "a/index.html")
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert site_files(out) == {"a/index.html": b"same", "b.html": b"new"}


def test_the_spare_is_brought_up_to_date_and_never_written_in_place(tmp_path):
    out = tmp_path / "output"
    replace(out, {"a/index.html": b"one", "b.html": b"one", "gone/x.html": b"one"})
    replace(out, {"b.html": b"two"}, keep=("a/index.html", "gone/x.html"))
    # the spare's a/index.html is the live file itself (one inode, two names)...
    spare = tmp_path / ".output.spare"
    assert os.stat(spare / "a/index.html").st_ino == os.stat(out / "a/index.html").st_ino
    (spare / "junk.html").write_text("left by a killed build")
    (spare / "c").write_text("a file where the next build wants a folder")
    staging = stage(out, {"a/index.html": b"three", "c/index.html": b"three"})
    # ...so staging a new version of it must not change what is being served
    assert site_files(out)["a/index.html"] == b"one"
    staging.finish(["a/index.html", "c/index.html", "b.html"])
    keep_as_spare(staging.replace(), out)
    assert site_files(out) == {"a/index.html": b"three", "b.html": b"two",
                               "c/index.html": b"three"}
    assert not (out / "gone").exists()


@pytest.mark.parametrize("name", ["../evil.html", "/etc/passwd", "a/../../b", "", MARKER])
def test_refuses_paths_outside_the_output_folder(tmp_path, name):
    staging = Staging(tmp_path / "output")
    with pytest.raises(BuildError, match="refusing to write"):
        staging.write(name, b"x")
    staging.discard()
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_ours_are_removed_and_nothing_else(tmp_path):
    out = tmp_path / "output"
    killed = new_staging(out)  # a build killed while staging
    (killed / "2025").mkdir()
    (killed / "2025" / "index.html").write_text("half")
    empty = tmp_path / ".output.staging-abcd1234"  # killed between mkdtemp and its marker
    empty.mkdir()
    foreign = tmp_path / ".output.staging-mine0000"  # not marked, not empty: not ours
    (foreign / "notes").mkdir(parents=True)
    lookalike = tmp_path / ".output.staging-keep"
    lookalike.mkdir()
    (lookalike / MARKER).write_text("")
    remove_leftovers(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [lookalike.name, foreign.name]


def test_leftovers_of_an_older_chronicle_go_once_the_output_is_known_ours(tmp_path):
    out = tmp_path / "output"
    old = tmp_path / ".output.old-x1y2z3w4"  # older versions wrote no marker
    (old / "index.html").parent.mkdir(parents=True)
    (old / "index.html").write_text("old")
    remove_leftovers(out)
    assert old.exists()
    remove_leftovers(out, known=True)
    assert not old.exists()


def test_exchange_into_a_missing_folder_is_one_rename(tmp_path):
    out = tmp_path / "output"
    staging = new_staging(out)
    assert exchange(staging, out) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output"]


def test_where_folders_cannot_be_exchanged_two_renames_stand_in(tmp_path, monkeypatch,
                                                                  capsys):
    monkeypatch.setattr(swap, "_renameat2", lambda: None)  # as without renameat2
    monkeypatch.setattr(swap, "_noted", False)
    out = tmp_path / "output"
    replace(out, {"index.html": b"old"})
    replace(out, {"index.html": b"new"})
    assert site_files(out) == {"index.html": b"new"}
    assert site_files(tmp_path / ".output.spare") == {"index.html": b"old"}
    assert "cannot exchange two folders in one step" in capsys.readouterr().err


def test_a_file_is_replaced_in_one_step_and_readable_by_all(tmp_path):
    path = tmp_path / "charts" / "chart.svg"
    atomic_write(path, b"old")
    atomic_write(path, b"new", durable=False)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(path.parent) == ["chart.svg"]


def test_a_file_write_that_fails_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "result.json"
    atomic_write(path, b"old")
    with file_size_limit(4), pytest.raises(OSError) as failed:
        atomic_write(path, b"new, and longer than the disk has room for")
    assert failed.value.errno == errno.EFBIG
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["result.json"]
