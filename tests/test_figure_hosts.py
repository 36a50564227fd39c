"""Figures that put two hosts' runs side by side, or KVM beside TCG: refused unless the
fence says ``mix:``, and then named in the caption. The runs are real runs of the shell
protocol stored under three host labels (``lab run --as-host``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from chronicle.embed_fences import parse_fence
from chronicle.errors import BuildError
from tests.support import build_command, lab_run, level_experiment, make_site, write_post


def split_compare(mix: str = "") -> str:
    """A comparison of ``fast`` on alpha (TCG) with ``fast`` on kvmbox (KVM)."""
    return ("```compare level\nleft: {subject: fast, host: alpha}\n"
            f"right: {{subject: fast, host: kvmbox}}\n{mix}```\n")


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site with a run of ``level`` from host alpha (TCG), one from kvmbox (KVM) and one
    from mixbox, where ``fast`` ran under KVM and ``slow`` under TCG."""
    root = make_site(tmp_path_factory.mktemp("hosts"))
    level_experiment(root, 100)
    lab_run(root, host="alpha", accelerator="tcg")
    lab_run(root, host="kvmbox", accelerator="kvm")
    lab_run(root, host="mixbox", accelerator="kvm tcg")
    return root


@pytest.fixture
def site(stored: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(stored, tmp_path / "site"))


def build(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(build_command(root), capture_output=True, text=True, timeout=120)


def page(root: Path, name: str) -> str:
    return (root / "output" / "2026" / "11" / name / "index.html").read_text()


def test_a_compare_of_two_hosts_without_mix_fails_at_the_fence_s_line(site):
    post = write_post(site, "hosts", "Prose.\n\n" + split_compare())
    done = build(site)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{post}:8: this ```compare mixes hosts (fast on alpha; fast on kvmbox) and " \
           "accelerators (fast on kvmbox under KVM; fast on alpha under TCG)" in done.stderr
    assert "'mix: [hosts, accelerators]'" in done.stderr
    assert not (site / "output").exists()


def test_mixing_hosts_alone_still_refuses_kvm_beside_tcg(site):
    write_post(site, "hosts", split_compare("mix: hosts\n"))
    done = build(site)
    assert done.returncode == 1
    assert "mixes accelerators (fast on kvmbox under KVM; fast on alpha under TCG)" \
        in done.stderr and "mixes hosts" not in done.stderr


def test_with_mix_the_caption_names_each_side_s_host_and_accelerator(site):
    write_post(site, "hosts", split_compare("mix: [hosts, accelerators]\n"))
    done = build(site)
    assert done.returncode == 0, done.stderr
    html = page(site, "hosts")
    assert html.count('aria-label="fast on alpha"') == html.count(
        'aria-label="fast on kvmbox"') == 1
    caption = html[html.index('<figcaption class="provenance">'):]
    assert "host: fast on alpha: " in caption and "; fast on kvmbox: " in caption
    assert "fast on alpha: TCG (emulated" in caption and "fast on kvmbox: KVM" in caption
    runs = sorted((site / "experiments" / "results" / "level").glob("*.json"))
    alpha, kvmbox = runs[0].stem, runs[1].stem
    assert f"<code>{alpha}</code> and <code>{kvmbox}</code>" in caption
    assert "<strong>fast on alpha</strong> is" in html


def test_a_table_of_a_kvm_and_a_tcg_subject_needs_mix_accelerators(site):
    fence = "```table level\nhost: mixbox\n{mix}```\n"
    write_post(site, "table", fence.format(mix=""))
    done = build(site)
    assert done.returncode == 1
    assert ":6: this ```table mixes accelerators (fast under KVM; slow under TCG)" \
        in done.stderr
    write_post(site, "table", fence.format(mix="mix: accelerators\n"))
    done = build(site)
    assert done.returncode == 0, done.stderr
    caption = page(site, "table").split('<figcaption class="provenance">')[1]
    assert "host: mixbox: " in caption
    assert "fast: KVM" in caption and "slow: TCG (emulated" in caption


def test_one_host_s_subjects_under_one_accelerator_need_no_mix(site):
    write_post(site, "one", "```compare level\nleft: fast\nright: slow\nhost: kvmbox\n```\n")
    done = build(site)
    assert done.returncode == 0, done.stderr
    assert "host: kvmbox: " in page(site, "one")


@pytest.mark.parametrize(("body", "line", "message"), [
    ("left: fast\nright: slow\nmix: machines\n", 8,
     "'mix' must be one of hosts, accelerators or a list of them, not 'machines'"),
    ("left: {subject: fast, host: a, as_of: 2026-11-01}\nright: slow\n", 6,
     "unknown key 'as_of' in 'left' (known: subject, host)"),
    ("left: {host: a}\nright: slow\n", 6, "'left' needs 'subject: NAME'"),
    ("left: {subject: fast, host: a}\nright: {subject: fast, host: a}\n", 7,
     "needs two different subjects, or one subject from two hosts"),
    ("left: {subject: fast, host: a}\nright: fast\nresult: 20261120T100000Z-abcdef12\n", 8,
     "'result' pins one run, of one host, and the sides name two hosts"),
])
def test_a_bad_side_or_mix_is_an_error_at_its_line(body, line, message):
    with pytest.raises(BuildError) as caught:
        parse_fence("compare", "level", body, 5, Path("p.md"))
    assert caught.value.line == line and message in caught.value.message


def test_a_chart_cannot_mix_hosts(tmp_path):
    with pytest.raises(BuildError) as caught:
        parse_fence("chart", "level", "metric: boot_ms\nmix: [hosts]\n", 5, Path("p.md"))
    assert caught.value.line == 7 and "only a ```compare whose sides name hosts" in \
        caught.value.message


def test_a_side_from_another_host_has_its_own_source():
    spec = parse_fence("compare", "level", "left: fast\nright: {subject: fast, host: b}\n"
                       "host: a\n", 5, Path("p.md"))
    assert spec.hosts == ("a", "b") and spec.sources == ("level@a", "level@b")
    assert (spec.left, spec.right, spec.split) == ("fast", "fast", True)
