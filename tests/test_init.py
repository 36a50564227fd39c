import shutil

from chronicle.cli import main


def test_init_creates_a_blog_that_builds(tmp_path, capsys):
    target = tmp_path / "newblog"
    assert main(["init", str(target)]) == 0
    for name in ["site/site.toml", "site/pages/about.md", "themes/chronicle/templates/base.html",
                 "themes/chronicle/static/chronicle.css", ".gitignore"]:
        assert (target / name).is_file(), name
    assert (target / "experiments/results").is_dir()
    assert len(list((target / "posts").glob("*.md"))) == 1
    assert main(["build", "--root", str(target)]) == 0
    assert (target / "output/index.html").exists()
    assert "Hello, Chronicle" in (target / "output/index.html").read_text()


def test_init_site_builds_with_the_bundled_theme_when_its_copy_is_gone(tmp_path):
    target = tmp_path / "newblog"
    main(["init", str(target)])
    shutil.rmtree(target / "themes")
    assert main(["build", "--root", str(target)]) == 0


def test_init_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["init", str(tmp_path / "busy")]) == 1
    assert "not empty" in capsys.readouterr().err


def test_init_under_a_file_is_an_error_not_a_traceback(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    assert main(["init", str(tmp_path / "notes.txt" / "blog")]) == 1
    assert "cannot create the folder" in capsys.readouterr().err


def test_init_on_a_file_is_an_error_not_a_traceback(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    assert main(["init", str(tmp_path / "notes.txt")]) == 1
    assert "is not a folder" in capsys.readouterr().err
