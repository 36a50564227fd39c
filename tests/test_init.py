from chronicle.cli import main


def test_init_creates_a_blog_that_builds(tmp_path, capsys):
    target = tmp_path / "newblog"
    assert main(["init", str(target)]) == 0
    for name in ["site/site.toml", "site/pages/about.md", ".gitignore"]:
        assert (target / name).is_file(), name
    assert (target / "experiments/results").is_dir()
    assert len(list((target / "posts").glob("*.md"))) == 1
    assert main(["build", "--root", str(target)]) == 0
    assert (target / "output/index.html").exists()
    assert "Hello, Chronicle" in (target / "output/index.html").read_text()


def test_init_uses_the_installed_theme_by_reference(tmp_path):
    target = tmp_path / "newblog"
    main(["init", str(target)])
    assert not (target / "themes").exists()
    assert 'theme = "chronicle"' in (target / "site/site.toml").read_text()
    assert main(["build", "--root", str(target)]) == 0
    assert (target / "output/static/chronicle.css").is_file()


def test_init_without_a_folder_makes_the_blog_in_the_current_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert (tmp_path / "site/site.toml").is_file()


def test_init_accepts_a_folder_holding_only_git(tmp_path, monkeypatch):
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert (tmp_path / "site/site.toml").is_file()


def test_init_refuses_a_current_folder_that_is_not_empty_naming_what_is_there(
        tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "drafts").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 1
    err = capsys.readouterr().err
    assert "not empty (drafts, notes.txt)" in err and "--force" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drafts", "notes.txt"]


def test_init_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["init", str(tmp_path / "busy")]) == 1
    assert "not empty (notes.txt)" in capsys.readouterr().err


def test_init_with_force_adds_the_blog_and_keeps_every_file_there(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".gitignore").write_text("*.log\n")
    assert main(["init", "--force", str(tmp_path)]) == 0
    assert (tmp_path / "site/site.toml").is_file()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / ".gitignore").read_text() == "*.log\n"
    assert "kept" in capsys.readouterr().out


def test_init_refuses_an_existing_site_even_with_force(tmp_path, capsys):
    assert main(["init", str(tmp_path)]) == 0
    assert main(["init", "--force", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_init_under_a_file_is_an_error_not_a_traceback(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    assert main(["init", str(tmp_path / "notes.txt" / "blog")]) == 1
    assert "cannot create the folder" in capsys.readouterr().err


def test_init_on_a_file_is_an_error_not_a_traceback(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    assert main(["init", str(tmp_path / "notes.txt")]) == 1
    assert "is not a folder" in capsys.readouterr().err
