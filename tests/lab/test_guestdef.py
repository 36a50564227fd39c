"""Guest definitions: the shipped ones load, and every mistake names its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from chronicle.errors import LabError
from chronicle.lab import guestdef

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
description = "a page"
suite = "bookworm"
packages = ["nginx-light"]

[app]
service = "nginx.service"
port = 80
url = "/"

[[files]]
path = "/var/www/html/index.html"
content = "<p>hi</p>"

[[files]]
path = "/etc/motd"
source = "web/motd"
mode = "0600"
"""


def write(tmp_path: Path, text: str, name: str = "web") -> Path:
    (tmp_path / "web").mkdir(exist_ok=True)
    (tmp_path / "web" / "motd").write_text("hello\n")
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def error_of(path: Path) -> LabError:
    with pytest.raises(LabError) as caught:
        guestdef.load(path)
    return caught.value


def test_the_shipped_guests_load():
    found = {d.name: d for d in guestdef.discover(ROOT)}
    assert {"static-nginx", "rails-sqlite"} <= set(found)
    rails = found["rails-sqlite"]
    assert {"ruby-rails", "ruby-sqlite3", "puma"} <= set(rails.packages)
    assert (rails.app.service, rails.app.port) == ("notes.service", 3000)
    assert all(path.is_file() for path in rails.input_files())
    assert found["static-nginx"].app.port == 80


def test_a_good_definition_is_read_whole(tmp_path):
    definition = guestdef.load(write(tmp_path, GOOD))
    assert (definition.name, definition.suite, definition.packages) == (
        "web", "bookworm", ("nginx-light",))
    assert definition.files[0] == guestdef.PlacedFile("/var/www/html/index.html",
                                                      content="<p>hi</p>")
    assert definition.files[1].source == (tmp_path / "web" / "motd").resolve()
    assert definition.files[1].mode == 0o600


def test_an_unknown_key_names_file_and_line(tmp_path):
    path = write(tmp_path, GOOD.replace('port = 80\n', 'port = 80\nprot = 8080\n'))
    error = error_of(path)
    assert (error.path, error.line) == (path, 8)
    assert "unknown key 'app.prot'" in error.message


def test_a_wrong_type_names_file_and_line(tmp_path):
    path = write(tmp_path, GOOD.replace("port = 80", 'port = "80"'))
    error = error_of(path)
    assert (error.path, error.line) == (path, 7)
    assert error.message == "key 'app.port' must be an integer"


def test_a_missing_service_names_the_app_table(tmp_path):
    path = write(tmp_path, GOOD.replace('service = "nginx.service"\n', ""))
    error = error_of(path)
    assert (error.path, error.line) == (path, 5)
    assert error.message == "missing required key 'app.service'"


def test_a_bad_entry_in_the_second_files_table_names_its_line(tmp_path):
    path = write(tmp_path, GOOD.replace('mode = "0600"', 'mode = "rw"'))
    error = error_of(path)
    assert (error.path, error.line) == (path, 17)
    assert error.message.startswith("key 'files[1].mode': must be an octal mode")


def test_a_source_that_does_not_exist_is_named(tmp_path):
    path = write(tmp_path, GOOD.replace("web/motd", "web/nope"))
    error = error_of(path)
    assert (error.path, error.line) == (path, 16)
    assert "web/nope does not exist" in error.message


def test_a_service_that_is_not_a_unit_and_bad_toml_are_errors(tmp_path):
    error = error_of(write(tmp_path, GOOD.replace('"nginx.service"', '"nginx"')))
    assert error.line == 6 and "ending in .service" in error.message
    error = error_of(write(tmp_path, GOOD.replace("port = 80", "port = ")))
    assert error.line == 7 and error.message.startswith("TOML error")


def test_the_key_changes_with_a_placed_file_and_not_otherwise(tmp_path):
    path = write(tmp_path, GOOD)
    before = guestdef.load(path).key
    assert guestdef.load(path).key == before
    (tmp_path / "web" / "motd").write_text("changed\n")
    assert guestdef.load(path).key != before


def test_an_unknown_guest_lists_the_defined_ones(tmp_path):
    folder = tmp_path / "experiments" / "guests"
    folder.mkdir(parents=True)
    write(folder, GOOD)
    with pytest.raises(LabError, match=r"no guest definition 'nope' \(defined: web\)"):
        guestdef.find(tmp_path, "nope")


def test_teardown_knows_a_guest_image_as_ours():
    from chronicle.lab import guestbuild, image

    # lab teardown deletes images by this prefix: a guest image it missed kept the
    # storage pool in use and the teardown failed
    assert guestbuild.image_alias("static-nginx").startswith(image.GUEST_PREFIX)
