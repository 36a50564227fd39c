import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from chronicle.build import BuildOptions
from chronicle.errors import BuildError
from chronicle.guard import MARKER, mark
from chronicle.publish import (
    choose_target,
    is_remote,
    load_targets,
    publish,
    publish_dir,
    publish_git,
    publish_rsync_local,
)
from tests.support import another_process_holding_the_lock, read_only, require, site_files
from tests.test_check import make_site, post

NOW = datetime(2025, 4, 1, 12, 0)
REPO = Path(__file__).resolve().parents[1]


def site_with(tmp_path: Path, targets: str, posts: dict[str, str] | None = None) -> Path:
    root = make_site(tmp_path / "site", posts or {
        "2025-03-01-boot.md": post("Boot time", "Published words."),
        "2025-03-05-draft.md": post("Secret draft", "Not yet.", date="2025-03-05",
                                    extra="draft: true\n"),
        "2025-05-01-future.md": post("From the future", "Later.", date="2025-05-01"),
    })
    with (root / "site" / "site.toml").open("a") as config:
        config.write(targets)
    return root


def run(root: Path, target: str | None = None, force: bool = False, **kw):
    options = BuildOptions(root=root, now=NOW, drafts=kw.pop("drafts", False))
    return publish(options, target, force=force, log=lambda line: None)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def break_a_link(root: Path) -> None:
    (root / "posts" / "2025-03-01-boot.md").write_text(post("Boot time", "[x](../gone/)"))


# -- configuration ---------------------------------------------------------------------

def test_targets_are_read_from_site_toml(tmp_path):
    root = site_with(tmp_path, '[publish.default]\nkind = "dir"\npath = "../www"\n'
                               '[publish.pages]\nkind = "git"\nbranch = "gh-pages"\n')
    targets = load_targets(root / "site" / "site.toml")
    assert sorted(targets) == ["default", "pages"]
    assert choose_target(targets, None, root).name == "default"
    assert targets["pages"].kind == "git"


@pytest.mark.parametrize("table, message", [
    ('kind = "ftp"\n', "must be one of dir, rsync, git"),
    ('kind = "dir"\n', "needs 'path'"),
    ('kind = "dir"\npath = "x"\ndest = "y"\n', "unknown key 'publish.default.dest'"),
    ('kind = "rsync"\ndest = 3\n', "must be a non-empty string"),
])
def test_bad_target_is_an_error_naming_the_key(tmp_path, table, message):
    root = site_with(tmp_path, "[publish.default]\n" + table)
    with pytest.raises(BuildError, match=message):
        load_targets(root / "site" / "site.toml")


def test_bad_target_error_names_the_line_of_its_table(tmp_path):
    root = site_with(tmp_path, "\n[publish.default]\nkind = \"ftp\"\n")
    config = root / "site" / "site.toml"
    with pytest.raises(BuildError) as caught:
        load_targets(config)
    lines = config.read_text().splitlines()
    assert lines[caught.value.line - 1] == "[publish.default]"


def test_several_targets_without_default_must_be_named(tmp_path):
    root = site_with(tmp_path, '[publish.a]\nkind = "dir"\npath = "a"\n'
                               '[publish.b]\nkind = "dir"\npath = "b"\n')
    with pytest.raises(BuildError, match="name one"):
        run(root)


def test_rsync_destinations_with_a_host_are_remote():
    assert is_remote("web1:/srv/blog") and is_remote("me@web1:blog")
    assert not is_remote("/srv/blog") and not is_remote("./a:b") and not is_remote("www")


# -- dir ---------------------------------------------------------------------------------

DIR_TARGET = '[publish.default]\nkind = "dir"\npath = "../www"\n'


def test_dir_target_gets_exactly_the_built_site_without_drafts_or_future(tmp_path):
    root = site_with(tmp_path, DIR_TARGET)
    done = run(root, drafts=True)  # publishing ignores a request for drafts
    www = tmp_path / "www"
    assert tree(www) == tree(root / ".chronicle" / "publish" / "site")
    assert (www / "2025" / "03" / "boot" / "index.html").is_file()
    assert not (www / "2025" / "03" / "draft").exists()
    assert not (www / "2025" / "05").exists()
    assert b"Secret draft" not in b"".join(tree(www).values())
    assert done.files == len(site_files(www))


def test_republishing_removes_pages_that_are_gone(tmp_path):
    root = site_with(tmp_path, DIR_TARGET)
    run(root)
    (root / "posts" / "2025-03-01-boot.md").unlink()
    run(root)
    assert not (tmp_path / "www" / "2025" / "03" / "boot").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".www")] == []


def test_failed_check_refuses_and_leaves_the_target_as_it_was(tmp_path):
    root = site_with(tmp_path, DIR_TARGET)
    run(root)
    before = tree(tmp_path / "www")
    break_a_link(root)
    with pytest.raises(BuildError, match="not publishing: 1 problem"):
        run(root)
    assert tree(tmp_path / "www") == before


def test_force_publishes_despite_failed_checks(tmp_path):
    root = site_with(tmp_path, DIR_TARGET)
    break_a_link(root)
    done = run(root, force=True)
    assert len(done.forced) == 1 and "broken link" in done.forced[0]
    assert (tmp_path / "www" / "index.html").is_file()


def test_failed_build_refuses_even_with_force(tmp_path):
    root = site_with(tmp_path, DIR_TARGET)
    run(root)
    before = tree(tmp_path / "www")
    (root / "posts" / "2025-03-01-boot.md").write_text("---\ntitle: [x\n---\n")
    with pytest.raises(BuildError):
        run(root, force=True)
    assert tree(tmp_path / "www") == before


def built_with_a_broken_link(tmp_path: Path, link: str, target: str) -> tuple[Path, Path]:
    """A built site holding a dangling symlink at ``link``, and an earlier publication."""
    site = tmp_path / "built"
    (site / link).parent.mkdir(parents=True)
    (site / "index.html").write_text("new")
    (site / link).symlink_to(tmp_path / "nowhere")
    published = tmp_path / target
    published.mkdir()
    (published / "index.html").write_text("old")
    mark(published)
    return site, published


def assert_left_as_it_was(published: Path) -> None:
    """The earlier publication is intact and no staging folder was left beside it."""
    assert site_files(published) == {"index.html": b"old"}
    assert (published / MARKER).is_file()
    assert sorted(p.name for p in published.parent.iterdir()) == ["built", published.name]


def test_copy_that_fails_midway_leaves_the_target_as_it_was(tmp_path):
    site, www = built_with_a_broken_link(tmp_path, "a/broken.html", "www")  # cannot be copied
    with pytest.raises(BuildError, match="copying the site failed"):
        publish_dir(site, www)
    assert_left_as_it_was(www)


def test_dir_target_refuses_a_folder_that_is_not_a_site(tmp_path):
    site = tmp_path / "built"
    site.mkdir()
    (site / "index.html").write_text("new")
    home = tmp_path / "documents"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    with pytest.raises(BuildError, match="non-empty folder Chronicle did not write"):
        publish_dir(site, home)
    with pytest.raises(BuildError, match="holds the site"):
        publish_dir(site, tmp_path, root=tmp_path / "blog")
    assert (home / "thesis.tex").read_text() == "precious"


def test_dir_target_inside_the_theme_is_refused_though_it_holds_index_html(tmp_path):
    root = site_with(tmp_path, '[publish.default]\nkind = "dir"\n'
                               'path = "themes/chronicle/templates"\n')
    shutil.copytree(REPO / "themes", root / "themes")  # an old init's full copy
    templates = root / "themes" / "chronicle" / "templates"
    before = tree(templates)
    assert "index.html" in before
    with pytest.raises(BuildError, match="lies inside the site's themes folder"):
        run(root)
    assert tree(templates) == before


def test_guard_sees_through_a_symlinked_source_folder(tmp_path):
    site = tmp_path / "built"
    (site / "index.html").parent.mkdir()
    (site / "index.html").write_text("new")
    theme = tmp_path / "shared-theme"
    (theme / "templates" / "index.html").parent.mkdir(parents=True)
    (theme / "templates" / "index.html").write_text("{{ page }}")
    root = tmp_path / "blog"
    root.mkdir()
    (root / "themes").symlink_to(theme, target_is_directory=True)
    with pytest.raises(BuildError, match="lies inside the site's themes folder"):
        publish_dir(site, root / "themes" / "templates", root)
    assert (theme / "templates" / "index.html").read_text() == "{{ page }}"


def test_unwritable_target_is_a_clear_refusal(tmp_path):
    root = site_with(tmp_path, '[publish.default]\nkind = "dir"\npath = "../locked/www"\n')
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked), pytest.raises(BuildError, match="cannot write next to the "
                                          "publish target .*target left as it was"):
        run(root)
    assert list(locked.iterdir()) == []


def test_publish_waits_for_a_build_of_the_same_site(tmp_path):
    root = site_with(tmp_path, DIR_TARGET)
    with another_process_holding_the_lock(root) as holder:
        second = subprocess.Popen([sys.executable, "-m", "chronicle", "publish", "--root",
                                   str(root), "--now", "2025-04-01T12:00"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert f"pid {holder.pid}" in second.stderr.readline()
        assert second.poll() is None and not (tmp_path / "www").exists()
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert (tmp_path / "www" / "index.html").is_file()


# -- rsync -------------------------------------------------------------------------------

@pytest.fixture
def rsync():
    require(shutil.which("rsync") is not None, "rsync")


def test_rsync_to_a_local_folder_publishes_the_site(tmp_path, rsync):
    root = site_with(tmp_path, '[publish.mirror]\nkind = "rsync"\ndest = "../mirror"\n')
    run(root, "mirror")
    assert tree(tmp_path / "mirror") == tree(root / ".chronicle" / "publish" / "site")
    (root / "posts" / "2025-03-01-boot.md").write_text(post("Boot time", "Second edition."))
    run(root, "mirror")
    assert b"Second edition." in (tmp_path / "mirror/2025/03/boot/index.html").read_bytes()


def test_rsync_refusal_leaves_the_mirror_as_it_was(tmp_path, rsync):
    root = site_with(tmp_path, '[publish.mirror]\nkind = "rsync"\ndest = "../mirror"\n')
    run(root, "mirror")
    before = tree(tmp_path / "mirror")
    break_a_link(root)
    with pytest.raises(BuildError, match="not publishing"):
        run(root, "mirror")
    assert tree(tmp_path / "mirror") == before


def test_rsync_that_fails_midway_leaves_the_mirror_as_it_was(tmp_path, rsync):
    site, mirror = built_with_a_broken_link(tmp_path, "z.html", "mirror")  # rsync -L fails
    with pytest.raises(BuildError, match="rsync failed"):
        publish_rsync_local(site, mirror)
    assert_left_as_it_was(mirror)


def test_rsync_to_host_path_goes_through_the_remote_shell(tmp_path, rsync):
    # A stand-in for ssh that runs the remote half of rsync on this machine: the real
    # rsync protocol, no network.
    shell = tmp_path / "local-ssh"
    shell.write_text('#!/bin/sh\nshift\nexec "$@"\n')
    shell.chmod(0o755)
    dest = tmp_path / "remote-www"
    root = site_with(tmp_path, f'[publish.web]\nkind = "rsync"\ndest = "web1:{dest}"\n'
                               f'rsh = "{shell}"\n')
    run(root, "web")
    assert tree(dest) == site_files(root / ".chronicle" / "publish" / "site")  # no marker


# -- git ---------------------------------------------------------------------------------

@pytest.fixture
def bare(tmp_path) -> Path:
    repo = tmp_path / "pages.git"
    git("init", "--quiet", "--bare", str(repo))
    return repo


def git_target(repo: Path) -> str:
    return f'[publish.pages]\nkind = "git"\nrepo = "{repo}"\nbranch = "gh-pages"\n'


def branch_files(repo: Path, ref: str = "gh-pages") -> list[str]:
    return git("--git-dir", str(repo), "ls-tree", "-r", "--name-only", ref).splitlines()


def test_git_target_commits_the_site_to_the_branch(tmp_path, bare):
    root = site_with(tmp_path, git_target(bare))
    done = run(root, "pages")
    built = root / ".chronicle" / "publish" / "site"
    assert branch_files(bare) == sorted(site_files(built))  # no marker
    assert git("--git-dir", str(bare), "show", "gh-pages:2025/03/boot/index.html") == \
        (built / "2025/03/boot/index.html").read_text().rstrip("\n")
    assert "commit" in done.detail


def test_git_publish_twice_without_changes_adds_no_commit(tmp_path, bare):
    root = site_with(tmp_path, git_target(bare))
    run(root, "pages")
    first = git("--git-dir", str(bare), "rev-parse", "gh-pages")
    assert run(root, "pages").detail == "already up to date"
    assert git("--git-dir", str(bare), "rev-parse", "gh-pages") == first


def test_git_publish_of_a_change_adds_one_commit_on_top(tmp_path, bare):
    root = site_with(tmp_path, git_target(bare))
    run(root, "pages")
    (root / "posts" / "2025-03-01-boot.md").write_text(post("Boot time", "Edited."))
    run(root, "pages")
    assert git("--git-dir", str(bare), "rev-list", "--count", "gh-pages") == "2"


def test_git_commits_are_reproducible(tmp_path):
    site = tmp_path / "built"
    site.mkdir()
    (site / "index.html").write_text("hello")
    commits = []
    for name in ("one.git", "two.git"):
        git("init", "--quiet", "--bare", str(tmp_path / name))
        commits.append(publish_git(site, str(tmp_path / name), "gh-pages", "Publish", 1700000000))
    assert commits[0] == commits[1]


def test_rejected_push_leaves_the_branch_as_it_was(tmp_path, bare):
    root = site_with(tmp_path, git_target(bare))
    run(root, "pages")
    before = git("--git-dir", str(bare), "rev-parse", "gh-pages")
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'no thanks' >&2\nexit 1\n")
    hook.chmod(0o755)
    (root / "posts" / "2025-03-01-boot.md").write_text(post("Boot time", "Edited."))
    with pytest.raises(BuildError, match="git push failed"):
        run(root, "pages")
    assert git("--git-dir", str(bare), "rev-parse", "gh-pages") == before


def test_git_refusal_pushes_nothing(tmp_path, bare):
    root = site_with(tmp_path, git_target(bare))
    break_a_link(root)
    with pytest.raises(BuildError, match="not publishing"):
        run(root, "pages")
    assert git("--git-dir", str(bare), "for-each-ref") == ""


def test_git_target_defaults_to_the_sites_own_remote(tmp_path, bare):
    root = site_with(tmp_path, '[publish.pages]\nkind = "git"\nbranch = "gh-pages"\n')
    git("init", "--quiet", str(root))
    git("remote", "add", "origin", str(bare), cwd=root)
    run(root, "pages")
    assert "index.html" in branch_files(bare)


# -- stale results -----------------------------------------------------------------------

def test_stale_result_refuses_unless_forced(tmp_path):
    from chronicle.hooks import standard_hooks

    results = REPO / "experiments" / "results" / "baseline-spawn"
    require(results.is_dir() and any(results.glob("*.json")), "a stored baseline-spawn result")
    body = "Spawn times:\n\n```table baseline-spawn\nmetrics: [spawn_reap_ms]\n```\n"
    root = site_with(tmp_path, DIR_TARGET, {"2025-03-01-spawn.md": post("Spawn", body)})
    (root / "experiments").mkdir()
    script = root / "experiments" / "baseline-spawn.py"
    shutil.copyfile(REPO / "experiments" / "baseline-spawn.py", script)
    shutil.copytree(results, root / "experiments" / "results" / "baseline-spawn")
    script.write_text(script.read_text() + "# edited after the run: the result is stale\n")
    options = standard_hooks(BuildOptions(root=root, now=NOW))
    with pytest.raises(BuildError, match="not publishing"):
        publish(options, log=lambda line: None)
    assert not (tmp_path / "www").exists()
    done = publish(standard_hooks(BuildOptions(root=root, now=NOW)), force=True,
                   log=lambda line: None)
    assert any("stale result: baseline-spawn" in line for line in done.forced)
    assert (tmp_path / "www" / "2025" / "03" / "spawn" / "index.html").is_file()


def test_command_publishes_and_reports_where(tmp_path, capsys):
    from chronicle.cli import main

    root = site_with(tmp_path, DIR_TARGET)
    assert main(["publish", "--root", str(root), "--now", "2025-04-01"]) == 0
    assert f"to default ({tmp_path / 'www'})" in capsys.readouterr().out


def test_command_refusal_exits_1(tmp_path, capsys):
    from chronicle.cli import main

    root = site_with(tmp_path, DIR_TARGET)
    break_a_link(root)
    assert main(["publish", "--root", str(root), "--now", "2025-04-01"]) == 1
    assert "not publishing" in capsys.readouterr().err
    assert not (tmp_path / "www").exists()
