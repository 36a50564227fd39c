"""Host fingerprint, KVM kind, and what provenance leaves out."""

from __future__ import annotations

import subprocess
from pathlib import Path

from chronicle.lab import provenance
from tests.lab.test_host import fake_host


def git_repo(folder: Path, files: dict[str, str]) -> None:
    """A git repository in ``folder`` with ``files`` committed."""
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)

    git("init", "-q")
    for name, text in files.items():
        (folder / name).write_text(text)
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "a")


def test_kvm_kind_is_none_without_dev_kvm(tmp_path):
    assert provenance.kvm_kind(**fake_host(tmp_path, kvm=False, modules=("kvm_intel",))) == "none"


def test_kvm_kind_is_pvm_when_the_pvm_module_is_loaded(tmp_path):
    assert provenance.kvm_kind(**fake_host(tmp_path, kvm=True, modules=("kvm", "kvm_pvm"))) == "pvm"


def test_kvm_kind_is_hw_with_a_vendor_module(tmp_path):
    assert provenance.kvm_kind(**fake_host(tmp_path, kvm=True, modules=("kvm", "kvm_amd"))) == "hw"


def test_kvm_kind_on_this_machine_is_one_of_three():
    assert provenance.kvm_kind() in ("hw", "pvm", "none")


def test_host_facts_are_filled_in():
    host = provenance.host()
    assert host["cpu_model"] and host["kernel"] and host["os"]
    assert host["cores"] >= 1 and host["memory_bytes"] > 0


def test_only_listed_environment_variables_are_recorded(tmp_path):
    env = {"SECRET_TOKEN": "x", "BENCH_MODE": "fast"}
    facts = provenance.collect(tmp_path, env_names=["BENCH_MODE", "ABSENT"], environ=env)
    assert facts["env"] == {"BENCH_MODE": "fast"}
    assert "SECRET_TOKEN" not in repr(facts)


def test_no_git_is_tolerated(tmp_path):
    assert provenance.git_state(tmp_path) == {}


def test_git_commit_and_dirty_flag(tmp_path):
    git_repo(tmp_path, {"a.txt": "a\n"})
    clean = provenance.git_state(tmp_path)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    (tmp_path / "a.txt").write_text("b\n")
    assert provenance.git_state(tmp_path)["dirty"] is True


def test_new_results_do_not_make_the_tree_dirty(tmp_path):
    git_repo(tmp_path, {"a.txt": "a\n"})
    (tmp_path / "experiments" / "results" / "x").mkdir(parents=True)
    (tmp_path / "experiments" / "results" / "x" / "r.json").write_text("{}\n")
    assert provenance.git_state(tmp_path)["dirty"] is False


def test_deep_merge_merges_subject_tables():
    base = {"subjects": {"a": {"qemu": "7"}}, "x": 1}
    merged = provenance.deep_merge(base, {"subjects": {"a": {"accelerator": "tcg"}, "b": {}}})
    assert merged == {"subjects": {"a": {"qemu": "7", "accelerator": "tcg"}, "b": {}}, "x": 1}
    assert base == {"subjects": {"a": {"qemu": "7"}}, "x": 1}


def test_git_state_tells_own_sources_from_other_changes(tmp_path):
    git_repo(tmp_path, {"exp.py": "print()\n", "other.txt": "a\n"})
    (tmp_path / "other.txt").write_text("b\n")
    state = provenance.git_state(tmp_path, ["exp.py"])
    assert state["dirty"] and not state["sources_dirty"]
    assert "as committed" in provenance.describe_git(state)
    (tmp_path / "exp.py").write_text("print(1)\n")
    state = provenance.git_state(tmp_path, ["exp.py"])
    assert state["sources_dirty"]
    assert "changed since this commit" in provenance.describe_git(state)
