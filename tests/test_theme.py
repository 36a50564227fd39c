from chronicle.cli import main
from chronicle.render import BUNDLED_THEMES
from tests.conftest import write

INSTALLED = BUNDLED_THEMES / "chronicle" / "templates"


def test_eject_copies_exactly_the_named_template(site_root, capsys):
    assert main(["theme", "eject", "post.html", "--root", str(site_root)]) == 0
    ejected = site_root / "site/templates"
    assert [p.name for p in ejected.iterdir()] == ["post.html"]
    assert (ejected / "post.html").read_bytes() == (INSTALLED / "post.html").read_bytes()
    out = capsys.readouterr().out
    assert "site/templates/post.html" in out and "frozen" in out


def test_eject_without_names_copies_every_template(site_root):
    assert main(["theme", "eject", "--root", str(site_root)]) == 0
    ejected = sorted(p.name for p in (site_root / "site/templates").iterdir())
    assert ejected == sorted(p.name for p in INSTALLED.iterdir())


def test_eject_keeps_a_template_already_in_the_site(site_root, capsys):
    write(site_root / "site/templates/post.html", "mine\n")
    assert main(["theme", "eject", "post.html", "index.html", "--root", str(site_root)]) == 0
    assert (site_root / "site/templates/post.html").read_text() == "mine\n"
    assert (site_root / "site/templates/index.html").is_file()
    assert "kept site/templates/post.html" in capsys.readouterr().out


def test_eject_of_an_unknown_template_names_the_ones_there_are(site_root, capsys):
    assert main(["theme", "eject", "pots.html", "--root", str(site_root)]) == 1
    err = capsys.readouterr().err
    assert "no template 'pots.html'" in err and "post.html" in err
    assert not (site_root / "site/templates").exists()


def test_eject_refuses_a_name_outside_the_theme(site_root, capsys):
    assert main(["theme", "eject", "../static/chronicle.css", "--root", str(site_root)]) == 1
    assert "no template" in capsys.readouterr().err


def test_an_ejected_template_is_what_the_build_uses(site_root):
    main(["theme", "eject", "404.html", "--root", str(site_root)])
    write(site_root / "site/templates/404.html", "edited\n")
    assert main(["build", "--root", str(site_root), "--now", "2025-06-01"]) == 0
    assert (site_root / "output/404.html").read_text() == "edited\n"
