from pathlib import Path

import pytest

from chronicle.config import MenuLink, load_config
from chronicle.errors import BuildError
from tests.conftest import SITE_TOML, write


def config_file(tmp_path: Path, text: str) -> Path:
    return write(tmp_path / "site" / "site.toml", text)


def test_valid_config_loads_with_menu_and_normalised_base_url(tmp_path):
    path = config_file(tmp_path, SITE_TOML.replace("blog.example.org/", "blog.example.org"))
    config = load_config(path)
    assert config.title == "Chronicle"
    assert config.base_url == "https://blog.example.org/"
    assert config.posts_per_page == 2
    assert config.menu == (MenuLink("Posts", "/"),)
    assert str(config.tz) == "UTC"


def test_defaults_fill_optional_keys(tmp_path):
    config = load_config(config_file(tmp_path, 'title = "T"\nbase_url = "https://x.org/"\n'))
    assert (config.language, config.theme, config.posts_per_page) == ("en", "chronicle", 10)


def test_unknown_key_is_an_error_naming_key_and_file(tmp_path):
    path = config_file(tmp_path, 'colour = "blue"\n' + SITE_TOML)
    with pytest.raises(BuildError) as caught:
        load_config(path)
    assert "'colour'" in str(caught.value)
    assert str(path) in str(caught.value)


def test_wrong_type_is_an_error_naming_key_and_file(tmp_path):
    path = config_file(tmp_path, SITE_TOML.replace("posts_per_page = 2", 'posts_per_page = "2"'))
    with pytest.raises(BuildError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "'posts_per_page'" in message and "an integer" in message and str(path) in message


def test_boolean_is_not_an_integer(tmp_path):
    path = config_file(tmp_path, SITE_TOML.replace("posts_per_page = 2", "posts_per_page = true"))
    with pytest.raises(BuildError, match="posts_per_page"):
        load_config(path)


def test_missing_title_is_an_error(tmp_path):
    path = config_file(tmp_path, 'base_url = "https://x.org/"\n')
    with pytest.raises(BuildError, match="missing required key 'title'"):
        load_config(path)


def test_unknown_time_zone_is_an_error(tmp_path):
    path = config_file(tmp_path, SITE_TOML.replace('"UTC"', '"Mars/Olympus"'))
    with pytest.raises(BuildError, match="timezone"):
        load_config(path)


def test_unknown_menu_key_is_an_error(tmp_path):
    path = config_file(tmp_path, SITE_TOML + 'icon = "x"\n')
    with pytest.raises(BuildError, match="menu.icon"):
        load_config(path)


def test_toml_syntax_error_names_the_line(tmp_path):
    path = config_file(tmp_path, 'title = "T"\nbase_url = \n')
    with pytest.raises(BuildError) as caught:
        load_config(path)
    assert caught.value.line == 2


def test_bad_key_error_names_the_key_line(tmp_path):
    path = config_file(tmp_path, 'title = "T"\nbase_url = "https://x.org/"\n\ncolour = "blue"\n')
    with pytest.raises(BuildError) as caught:
        load_config(path)
    assert caught.value.line == 4


def test_bad_value_error_names_the_key_line(tmp_path):
    path = config_file(tmp_path, 'title = "T"\nbase_url = "ftp://x.org/"\n')
    with pytest.raises(BuildError) as caught:
        load_config(path)
    assert caught.value.line == 2
