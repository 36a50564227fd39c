"""Small site fixtures for the site half: a blog written into tmp_path, file by file."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Tests that press Ctrl-C send SIGINT to a child and expect what a terminal user
    gets. A shell starts a background job (`./dev test &`) with SIGINT ignored, and a
    child inherits that, so those tests would fail for the way they were started:
    give the children the disposition a foreground run has."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

SITE_TOML = """\
title = "Chronicle"
description = "A test blog."
base_url = "https://blog.example.org/"
author = "Tester"
timezone = "UTC"
posts_per_page = 2
theme = "chronicle"

[[menu]]
title = "Posts"
url = "/"
"""


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def post_text(title: str = "A post", date: str = "2025-03-01", body: str = "Some text.\n",
              **extra: str) -> str:
    lines = [f"title: {title}", f"date: {date}", *(f"{k}: {v}" for k, v in extra.items())]
    return "---\n" + "\n".join(lines) + "\n---\n\n" + body


@pytest.fixture
def site_root(tmp_path: Path) -> Path:
    """A valid site with three posts, no theme of its own (the bundled one is used)."""
    root = tmp_path / "blog"
    write(root / "site" / "site.toml", SITE_TOML)
    write(root / "posts" / "2025-03-01-first.md", post_text("First", "2025-03-01", tags="[boot]"))
    write(root / "posts" / "2025-03-05-second.md",
          post_text("Second", "2025-03-05", tags="[boot, Nix]"))
    write(root / "posts" / "2025-04-02-third.md", post_text("Third", "2025-04-02", tags="[nix]"))
    write(root / "site" / "pages" / "about.md", "---\ntitle: About\n---\n\nAbout us.\n")
    return root
