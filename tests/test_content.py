from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from chronicle.content import read_page, read_post, slugify
from chronicle.errors import BuildError
from tests.conftest import post_text, write


def post(tmp_path: Path, text: str | bytes, name: str = "2025-03-01-hello-world.md") -> Path:
    return write(tmp_path / "posts" / name, text)


def test_post_reads_front_matter_body_and_url(tmp_path):
    path = post(tmp_path, post_text("Hello", "2025-03-01", body="Body here.\n",
                                    tags="[boot, Incus]", summary="Short"))
    result = read_post(path, UTC)
    assert result.title == "Hello"
    assert result.date == datetime(2025, 3, 1, tzinfo=UTC)
    assert result.tags == ("boot", "Incus")
    assert result.summary == "Short"
    assert result.url == "2025/03/hello-world/"
    assert result.body.strip() == "Body here."
    assert result.body_line == 7  # the line after the closing ---


def test_slug_defaults_to_file_name_without_date_prefix(tmp_path):
    path = post(tmp_path, post_text(), name="2025-01-09-Nix & Incus, part 2.md")
    assert read_post(path, UTC).slug == "nix-incus-part-2"


def test_explicit_slug_wins(tmp_path):
    assert read_post(post(tmp_path, post_text(slug="boot")), UTC).url == "2025/03/boot/"


@pytest.mark.parametrize("slug", ["../../etc", "a/b", "..", "/abs"])
def test_slug_escaping_the_output_folder_is_an_error(tmp_path, slug):
    path = post(tmp_path, post_text(slug=f'"{slug}"'))
    with pytest.raises(BuildError, match="escape the output folder") as caught:
        read_post(path, UTC)
    assert caught.value.path == path and caught.value.line == 4


@pytest.mark.parametrize("slug", ["Upper", "with space", "trailing-", "a--b", "ünï"])
def test_slug_must_be_lower_case_letters_digits_and_hyphens(tmp_path, slug):
    with pytest.raises(BuildError, match="lower-case"):
        read_post(post(tmp_path, post_text(slug=f'"{slug}"')), UTC)


def test_unknown_front_matter_key_names_key_file_and_line(tmp_path):
    path = post(tmp_path, post_text(author="me"))
    with pytest.raises(BuildError, match="'author'") as caught:
        read_post(path, UTC)
    assert (caught.value.path, caught.value.line) == (path, 4)


def test_missing_title_is_an_error(tmp_path):
    path = post(tmp_path, "---\ndate: 2025-01-01\n---\nx\n")
    with pytest.raises(BuildError, match="'title'"):
        read_post(path, UTC)


def test_missing_date_is_an_error(tmp_path):
    path = post(tmp_path, "---\ntitle: T\n---\nx\n")
    with pytest.raises(BuildError, match="'date'"):
        read_post(path, UTC)


@pytest.mark.parametrize("value", ["2025-02-30", "'2025-13-01'", "yesterday"])
def test_impossible_date_is_an_error_with_its_line(tmp_path, value):
    path = post(tmp_path, f"---\ntitle: T\ndate: {value}\n---\nx\n")
    with pytest.raises(BuildError, match="date") as caught:
        read_post(path, UTC)
    assert caught.value.line == 3


def test_yaml_error_names_the_line_in_the_file(tmp_path):
    path = post(tmp_path, "---\ntitle: T\ndate: 2025-01-01\ntags: [a, b\n---\nx\n")
    with pytest.raises(BuildError, match="YAML") as caught:
        read_post(path, UTC)
    assert caught.value.path == path
    assert caught.value.line in (4, 5)


def test_file_that_is_not_utf8_is_an_error(tmp_path):
    path = post(tmp_path, b"---\ntitle: T\ndate: 2025-01-01\n---\ncaf\xe9\n")
    with pytest.raises(BuildError, match="UTF-8") as caught:
        read_post(path, UTC)
    assert caught.value.line == 5


def test_missing_front_matter_is_an_error(tmp_path):
    with pytest.raises(BuildError, match="front matter"):
        read_post(post(tmp_path, "# Just markdown\n"), UTC)


def test_naive_date_gets_the_site_time_zone(tmp_path):
    berlin = ZoneInfo("Europe/Berlin")
    result = read_post(post(tmp_path, post_text(date="2025-03-01 10:30")), berlin)
    assert result.date == datetime(2025, 3, 1, 10, 30, tzinfo=berlin)


def test_iso_string_with_offset_keeps_its_offset(tmp_path):
    result = read_post(post(tmp_path, post_text(date="'2025-03-01T10:30:00+02:00'")), UTC)
    assert result.date.utcoffset() == timedelta(hours=2)
    assert result.date == datetime(2025, 3, 1, 8, 30, tzinfo=UTC)


def test_updated_draft_and_toc_are_read(tmp_path):
    result = read_post(post(tmp_path, post_text(updated="2025-03-04", draft="true",
                                                toc="false")), UTC)
    assert result.updated == datetime(2025, 3, 4, tzinfo=UTC)
    assert result.last_modified == result.updated
    assert result.draft is True and result.toc is False


def test_draft_must_be_a_boolean(tmp_path):
    with pytest.raises(BuildError, match="'draft'"):
        read_post(post(tmp_path, post_text(draft='"yes"')), UTC)


def test_page_gets_url_from_file_name(tmp_path):
    page = read_page(write(tmp_path / "site/pages/about.md", "---\ntitle: About\n---\nHi\n"))
    assert page.url == "about/"


def test_page_cannot_take_a_reserved_slug(tmp_path):
    with pytest.raises(BuildError, match="reserved"):
        read_page(write(tmp_path / "site/pages/tags.md", "---\ntitle: Tags\n---\nHi\n"))


def test_slugify_keeps_ascii_words():
    assert slugify("Boot time: qemu vs. Incus — é!") == "boot-time-qemu-vs-incus-e"
