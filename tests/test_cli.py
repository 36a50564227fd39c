from datetime import date

import pytest

from chronicle.cli import main
from tests.conftest import write


def test_build_prints_a_one_line_summary(site_root, capsys):
    assert main(["build", "--root", str(site_root), "--now", "2025-06-01"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("built ") and out[0].endswith(" s")


def test_build_finds_the_root_from_a_subfolder(site_root, monkeypatch):
    monkeypatch.chdir(site_root / "posts")
    assert main(["build", "--now", "2025-06-01"]) == 0
    assert (site_root / "output/index.html").exists()


def test_build_out_flag_chooses_the_folder(site_root, tmp_path):
    assert main(["build", "--root", str(site_root), "--out", str(tmp_path / "elsewhere"),
                 "--now", "2025-06-01"]) == 0
    assert (tmp_path / "elsewhere/index.html").exists()
    assert not (site_root / "output").exists()


def test_bad_posts_print_one_line_each_and_exit_1(site_root, capsys):
    write(site_root / "posts/a.md", "---\ntitle: A\n---\n")
    write(site_root / "posts/b.md", "---\ndate: 2025-01-01\n---\n")
    assert main(["build", "--root", str(site_root)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("error:")] == [
        f"error: {site_root}/posts/a.md: missing required front matter key 'date'",
        f"error: {site_root}/posts/b.md: missing required front matter key 'title'",
    ]
    assert not (site_root / "output").exists()


def test_bad_config_is_one_error_line(site_root, capsys):
    config = site_root / "site/site.toml"
    config.write_text("bogus = 1\n" + config.read_text())
    assert main(["build", "--root", str(site_root)]) == 1
    err = capsys.readouterr().err
    assert "'bogus'" in err and "site.toml" in err and "Traceback" not in err


def test_bad_now_is_a_usage_error(site_root):
    with pytest.raises(SystemExit) as caught:
        main(["build", "--root", str(site_root), "--now", "soon"])
    assert caught.value.code == 2


def test_new_writes_a_draft_post_that_builds_with_drafts(site_root, capsys):
    assert main(["new", "Nix & Incus: part 2", "--root", str(site_root),
                 "--date", "2025-05-01"]) == 0
    path = site_root / "posts/2025-05-01-nix-incus-part-2.md"
    assert 'title: "Nix & Incus: part 2"' in path.read_text()
    assert main(["build", "--root", str(site_root), "--drafts", "--now", "2025-06-01"]) == 0
    assert (site_root / "output/2025/05/nix-incus-part-2/index.html").exists()


def test_new_refuses_to_overwrite(site_root, capsys):
    args = ["new", "Same title", "--root", str(site_root)]
    assert main(args) == 0
    path = site_root / f"posts/{date.today().isoformat()}-same-title.md"
    path.write_text(path.read_text() + "my words\n")
    assert main(args) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert path.read_text().endswith("my words\n")


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "chronicle", "--version"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.startswith("chronicle ")


def test_repository_blog_builds_byte_identical_twice_through_the_cli(tmp_path):
    """With every hook the CLI plugs in (embeds, lab pages, search) and a fixed now."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for name in ("one", "two"):
        assert main(["build", "--root", str(repo), "--out", str(tmp_path / name),
                     "--now", "2030-01-01"]) == 0
    def tree(folder):
        return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert tree(tmp_path / "one") == tree(tmp_path / "two")


def test_the_command_exits_with_mains_code_after_freezing_the_collector(monkeypatch):
    # `chronicle` (the console script) and `python -m chronicle` go through run(): the
    # exit code is main's, and the collector skips the site model on the way out
    import gc

    import pytest

    from chronicle import cli

    calls: list[str] = []
    monkeypatch.setattr(cli, "main", lambda: calls.append("main") or 3)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    with pytest.raises(SystemExit) as exited:
        cli.run()
    assert exited.value.code == 3 and calls == ["main", "freeze"]
