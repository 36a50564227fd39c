"""Fixtures for the embed, chart and lab page tests: a site with stored results in tmp_path.

Results here are synthetic and exist only inside a test's tmp_path; they are written
through the real ResultStore so the files have the shape a lab run leaves.
"""

from __future__ import annotations

from pathlib import Path

from chronicle.lab.results import Result, ResultStore, Sample

SITE_TOML = """\
title = "Test blog"
description = "Embeds under test."
base_url = "https://blog.example.org/"
author = "Tester"
timezone = "UTC"
"""
SCRIPT = """\
#!/usr/bin/env python3
# /// chronicle
# title = "Boot to init"
# tags = ["boot"]
# ///
print("hello")
"""


def make_site(root: Path) -> Path:
    (root / "site").mkdir(parents=True, exist_ok=True)
    (root / "site" / "site.toml").write_text(SITE_TOML, encoding="utf-8")
    (root / "posts").mkdir(exist_ok=True)
    return root


def write_post(root: Path, name: str, body: str, date: str = "2026-11-01") -> Path:
    path = root / "posts" / f"{date}-{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\ntitle: {name}\ndate: {date}\n---\n\n{body}", encoding="utf-8")
    return path


def write_script(root: Path, name: str = "boot-to-init", text: str = SCRIPT) -> Path:
    path = root / "experiments" / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def fresh_key_parts(root: Path, name: str = "boot-to-init") -> dict[str, str]:
    """The key parts the current script and inputs give, as a fresh run would store."""
    from chronicle.lab import experiment as lab_experiment

    found = {e.name: e for e in lab_experiment.discover(root)}
    return lab_experiment.key_parts(found[name], include_environment=False)


def make_result(
    experiment: str = "boot-to-init",
    *,
    started: str = "2026-11-20T10:00:00.000000Z",
    finished: str = "2026-11-20T10:05:00.000000Z",
    status: str = "ok",
    quick: bool = False,
    accelerator: str | None = "tcg",
    shift: float = 0.0,
    n: int = 10,
    key_parts: dict[str, str] | None = None,
    unsupported: dict[str, str] | None = None,
    warmup: bool = True,
) -> Result:
    samples = []
    if warmup:
        samples.append(Sample("qemu-microvm", "boot_ms", 9000.0, "ms", 0, warmup=True))
    for run in range(1, n + 1):
        samples += [
            Sample("qemu-microvm", "boot_ms", 2500.0 + 10 * run + shift, "ms", run),
            Sample("incus-container", "boot_ms", 500.0 + 2 * run, "ms", run),
            Sample("qemu-microvm", "pss_mib", 200.0 + run, "MiB", run, phase="idle"),
            Sample("incus-container", "pss_mib", 2.5 + 0.01 * run, "MiB", run, phase="idle"),
        ]
    subjects: dict[str, dict] = {"qemu-microvm": {}, "incus-container": {}}
    if accelerator:
        subjects["qemu-microvm"] = {"accelerator": accelerator,
                                    "kvm_kind": "pvm" if accelerator == "tcg" else "hw"}
    for name, reason in (unsupported or {}).items():
        subjects[name] = {"status": "unsupported", "reason": reason}
    stamp = started.replace("-", "").replace(":", "").split(".")[0] + "Z"
    return Result(
        experiment=experiment, id=f"{stamp}-abcdef12", status=status, key="ab" * 32,
        key_parts=key_parts or {"script": "1" * 64, "inputs": "2" * 64, "params": "3" * 64},
        params={},
        provenance={
            "host": {"cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "cores": 2,
                     "kernel": "6.1.0-28-amd64", "machine": "x86_64", "kvm_kind": "pvm",
                     "os": "Debian GNU/Linux 12 (bookworm)", "memory_bytes": 2**34},
            "started": started, "finished": finished, "subjects": subjects,
        },
        samples=tuple(samples) if status == "ok" else (), quick=quick,
        error=None if status == "ok" else "boom",
    )


def store_result(root: Path, result: Result) -> Result:
    ResultStore(root / "experiments" / "results").write(result)
    return result


def fresh_experiment(root: Path) -> Result:
    """The boot-to-init script under ``root`` and a stored result that is fresh for it."""
    write_script(root)
    return store_result(root, make_result(key_parts=fresh_key_parts(root)))


def store_edited(root: Path, result: Result, old: str = "", new: str = "") -> Path:
    """``result``'s file as the store writes it, then with ``old`` replaced by ``new``:
    what a hand edit, a bad merge or another tool leaves in the store. Written by hand,
    since the store refuses to write an invalid result."""
    from chronicle.lab.results import canonical_json

    text = canonical_json(result.to_json()).decode("utf-8")
    assert old in text, f"{old!r} is not in the stored file"
    path = root / "experiments" / "results" / result.experiment / f"{result.id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def in_the_future(days: int = 1) -> str:
    """A start time ``days`` ahead of the clock, as a host whose clock ran fast writes it."""
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def figure_renderer(root: Path):  # noqa: ANN201 - a chronicle.render.Renderer
    """The renderer a build of the site at ``root`` draws its figures with (no posts)."""
    from datetime import UTC, datetime

    from chronicle.config import SiteConfig
    from chronicle.model import build_site
    from chronicle.paths import SitePaths
    from chronicle.render import Renderer, find_theme

    config = SiteConfig(title="T", description="", base_url="https://b.example/", author="")
    paths = SitePaths(root)
    site = build_site(config, [], [], datetime(2026, 12, 1, tzinfo=UTC))
    return Renderer(site, paths, find_theme(paths, config.theme))
