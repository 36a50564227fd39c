"""A deterministic synthetic blog: the same N posts written for Chronicle, Hugo and Pelican.

Post ``i`` depends only on the seed and ``i`` (never on N), so the first 200 posts of a
10,000-post corpus are the 200 posts of a small one, and a rerun writes identical bytes.
Each post has about 800 words of prose, 1–4 tags from a pool of 30, two or three
headings, a 20-line code block whose language rotates python → nix → bash → yaml, a GFM
table, a list, three links and a footnote: the features that cost time in a real
generator (highlighting above all).

The words are invented here; nothing is copied from real writing.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

DEFAULT_SEED = 7
PROSE_WORDS = 800
LANGUAGES = ("python", "nix", "bash", "yaml")
CODE_LINES = 20
FIRST_DATE = datetime(2016, 1, 4, 9, 0, tzinfo=UTC)

TAG_POOL = (
    "microvm", "incus", "qemu", "firecracker", "nix", "kernel", "boot-time", "memory",
    "storage", "btrfs", "networking", "containers", "ci", "benchmarks", "debian",
    "initramfs", "virtio", "cgroups", "observability", "packaging", "rollouts", "images",
    "security", "tooling", "python", "shell", "yaml", "scheduling", "caching", "notes",
)

# Invented vocabulary: a few plain English glue words and many made-up technical-sounding
# ones, so text looks like prose to a markdown parser without being anyone's writing.
_GLUE = ("the", "a", "of", "to", "and", "in", "with", "for", "on", "then", "so", "but",
         "when", "each", "every", "our", "this", "that", "it", "we", "is", "was", "not")
_NOUNS = ("guest", "host", "image", "kernel", "rootfs", "snapshot", "profile", "socket",
          "probe", "sample", "runner", "daemon", "pool", "layer", "bundle", "manifest",
          "trace", "budget", "queue", "fence", "overlay", "vsock", "bridge", "tarball",
          "cgroup", "balloon", "console", "shim", "loader", "cache", "hash", "median",
          "quorn", "velt", "drasnik", "ombry", "klute", "farrow", "spindel", "tesk")
_VERBS = ("boots", "measures", "copies", "mounts", "pins", "restarts", "drains",
          "spawns", "rewrites", "hashes", "tracks", "folds", "skips", "stalls", "warms",
          "trims", "splits", "verlates", "gorms", "quibbles", "flenses", "reticks")
_ADJECTIVES = ("cold", "warm", "small", "stale", "noisy", "steady", "lazy", "eager",
               "sparse", "pinned", "shared", "frozen", "brisk", "dim", "plinty", "sorvish",
               "crenate", "mottled", "tidy", "loose")
_TITLE_WORDS = ("Notes", "Measuring", "Taming", "Booting", "Shrinking", "Caching",
                "Tracing", "Pinning", "Counting", "Packing", "Why", "How", "Against",
                "Beyond", "Inside", "Without")


@dataclass(frozen=True)
class SyntheticPost:
    index: int
    slug: str
    title: str
    date: datetime
    tags: tuple[str, ...]
    summary: str
    language: str
    body: str  # markdown, the same for every generator


def make_post(index: int, seed: int = DEFAULT_SEED) -> SyntheticPost:
    """Post ``index`` of the corpus made from ``seed``; independent of every other post."""
    rng = random.Random(f"chronicle-bench:{seed}:{index}")
    topic = [rng.choice(_NOUNS), rng.choice(_NOUNS)]
    title = f"{rng.choice(_TITLE_WORDS)} the {rng.choice(_ADJECTIVES)} {topic[0]} {index}"
    slug = f"post-{index:05d}-{topic[0]}-{topic[1]}"
    tags = tuple(rng.sample(TAG_POOL, rng.randint(1, 4)))
    language = LANGUAGES[index % len(LANGUAGES)]
    date = FIRST_DATE + timedelta(hours=7 * index, minutes=rng.randrange(60))
    return SyntheticPost(
        index=index, slug=slug, title=title, date=date, tags=tags,
        summary=_sentence(rng, 10, 16), language=language,
        body=_body(rng, language, rng.randint(2, 3)),
    )


def make_corpus(n: int, seed: int = DEFAULT_SEED) -> list[SyntheticPost]:
    return [make_post(i, seed) for i in range(n)]


def prose_word_count(body: str) -> int:
    """Words outside code fences, tables and footnote markers: what a reader would read."""
    text = re.sub(r"^```.*?^```$", "", body, flags=re.S | re.M)
    text = re.sub(r"^\|.*\|$", "", text, flags=re.M)
    return len(re.findall(r"[A-Za-z][A-Za-z'-]*", text))


# --- text ------------------------------------------------------------------------------


def _word(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.35:
        return rng.choice(_GLUE)
    if pick < 0.70:
        return rng.choice(_NOUNS)
    if pick < 0.87:
        return rng.choice(_VERBS)
    return rng.choice(_ADJECTIVES)


def _sentence(rng: random.Random, low: int = 8, high: int = 18) -> str:
    words = [_word(rng) for _ in range(rng.randint(low, high))]
    if rng.random() < 0.25:
        words[rng.randrange(len(words))] = f"`{rng.choice(_NOUNS)}`"
    if rng.random() < 0.15:
        spot = rng.randrange(len(words))
        words[spot] = f"*{words[spot]}*"
    words[0] = words[0].capitalize()
    return " ".join(words) + "."


def _paragraph(rng: random.Random, words: int) -> tuple[str, int]:
    sentences: list[str] = []
    count = 0
    while count < words:
        sentence = _sentence(rng)
        sentences.append(sentence)
        count += len(sentence.split())
    return " ".join(sentences), count


def _link(rng: random.Random) -> str:
    text = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    return f"[{text}](https://example.org/{rng.choice(_NOUNS)}/{rng.randrange(1000)})"


def _body(rng: random.Random, language: str, headings: int) -> str:
    # Fixed furniture first (list, table, footnote, headings), then prose fills the rest
    # of the 800-word budget, spread over the paragraphs.
    items = [" ".join(_word(rng) for _ in range(rng.randint(4, 8))) for _ in range(5)]
    furniture = sum(len(item.split()) for item in items) + 4 * headings + 30  # + links
    paragraphs = 3 + 2 * headings
    # a paragraph overshoots its target by half a sentence on average
    per_paragraph = max(20, (PROSE_WORDS - furniture) // paragraphs - 6)

    blocks: list[str] = []
    prose = [_paragraph(rng, per_paragraph)[0] for _ in range(paragraphs)]
    prose[0] += f" See the {_link(rng)} for the set-up.[^1]"
    prose[1] += f" The {_link(rng)} and the {_link(rng)} both disagree."
    blocks += prose[:2]
    blocks.append(f"## {_heading(rng)}")
    blocks.append(prose[2])
    blocks.append(_code_block(rng, language))
    blocks.append(prose[3])
    blocks.append(f"## {_heading(rng)}")
    blocks.append("\n".join(f"- {item}" for item in items))
    blocks.append(prose[4])
    blocks.append(_table(rng))
    rest = prose[5:]
    if headings == 3:
        blocks.append(f"### {_heading(rng)}")
    blocks += rest
    blocks.append(f"[^1]: {_sentence(rng, 6, 10)}")
    return "\n\n".join(blocks) + "\n"


def _heading(rng: random.Random) -> str:
    return f"{rng.choice(_TITLE_WORDS)} the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"


def _table(rng: random.Random) -> str:
    rows = ["| Subject | Boot (ms) | Memory (MiB) |", "|---|---:|---:|"]
    for _ in range(4):
        rows.append(f"| {rng.choice(_NOUNS)}-{rng.randrange(9)} | "
                    f"{rng.uniform(80, 2000):.1f} | {rng.uniform(2, 300):.1f} |")
    return "\n".join(rows)


def _ident(rng: random.Random) -> str:
    return f"{rng.choice(_NOUNS)}_{rng.choice(_ADJECTIVES)}"


def _code_block(rng: random.Random, language: str) -> str:
    lines = _CODE[language](rng)
    assert len(lines) == CODE_LINES
    return f"```{language}\n" + "\n".join(lines) + "\n```"


def _python(rng: random.Random) -> list[str]:
    name = _ident(rng)
    lines = ["import subprocess", "", "", f"def {name}(path, retries={rng.randint(2, 9)}):",
             f'    """{rng.choice(_VERBS).capitalize()} the {rng.choice(_NOUNS)}."""']
    while len(lines) < CODE_LINES - 2:
        var = _ident(rng)
        lines.append(rng.choice([
            f"    {var} = [x * {rng.randint(2, 99)} for x in range(retries)]",
            f'    {var} = subprocess.run(["{rng.choice(_NOUNS)}", path], check=True)',
            f"    if {var} is None:  # {rng.choice(_ADJECTIVES)} path",
            f'    {var} = {{"{rng.choice(_NOUNS)}": {rng.uniform(0, 9):.2f}}}',
        ]))
    lines += [f"    return {rng.randint(0, 1) == 1}", ""]
    return lines


def _nix(rng: random.Random) -> list[str]:
    lines = ["{ pkgs, lib, ... }:", "", "{"]
    while len(lines) < CODE_LINES - 1:
        key = f"{rng.choice(_NOUNS)}.{rng.choice(_NOUNS)}"
        lines.append(rng.choice([
            f'  {key} = "{rng.choice(_ADJECTIVES)}";',
            f"  {key} = {rng.randint(1, 4096)};",
            f"  {key}.enable = {rng.choice(['true', 'false'])};",
            f"  {key} = with pkgs; [ {rng.choice(_NOUNS)} {rng.choice(_NOUNS)} ];",
        ]))
    lines.append("}")
    return lines


def _bash(rng: random.Random) -> list[str]:
    lines = ["#!/usr/bin/env bash", "set -euo pipefail", ""]
    while len(lines) < CODE_LINES:
        lines.append(rng.choice([
            f'{rng.choice(_NOUNS).upper()}="${{1:-{rng.choice(_NOUNS)}}}"',
            f"for i in $(seq 1 {rng.randint(2, 20)}); do echo \"$i\"; done",
            f"if [ -e /tmp/{rng.choice(_NOUNS)} ]; then rm -f /tmp/{rng.choice(_NOUNS)}; fi",
            f"{rng.choice(_NOUNS)} --{rng.choice(_ADJECTIVES)} | grep -c {rng.choice(_NOUNS)}",
        ]))
    return lines


def _yaml(rng: random.Random) -> list[str]:
    lines = [f"name: {rng.choice(_NOUNS)}-{rng.randrange(100)}", "jobs:"]
    while len(lines) < CODE_LINES:
        lines.append(rng.choice([
            f"  {rng.choice(_NOUNS)}:",
            f"    runs-on: {rng.choice(_ADJECTIVES)}",
            f"    timeout: {rng.randint(1, 90)}",
            f"    steps: [{rng.choice(_VERBS)}, {rng.choice(_VERBS)}]",
            f"    enabled: {rng.choice(['true', 'false'])}  # {rng.choice(_NOUNS)}",
        ]))
    return lines


_CODE = {"python": _python, "nix": _nix, "bash": _bash, "yaml": _yaml}


# --- writers ---------------------------------------------------------------------------
# Strings in front matter go through json.dumps: a JSON string is a valid YAML scalar.


def chronicle_source(post: SyntheticPost) -> str:
    tags = ", ".join(json.dumps(tag) for tag in post.tags)
    return (f"---\ntitle: {json.dumps(post.title)}\ndate: {post.date.isoformat()}\n"
            f"tags: [{tags}]\nsummary: {json.dumps(post.summary)}\n---\n\n{post.body}")


def hugo_source(post: SyntheticPost) -> str:
    tags = ", ".join(json.dumps(tag) for tag in post.tags)
    return (f"---\ntitle: {json.dumps(post.title)}\ndate: {post.date.isoformat()}\n"
            f"slug: {post.slug}\ntags: [{tags}]\nsummary: {json.dumps(post.summary)}\n"
            f"---\n\n{post.body}")


def pelican_source(post: SyntheticPost) -> str:
    return (f"Title: {post.title}\nDate: {post.date:%Y-%m-%d %H:%M}\n"
            f"Tags: {', '.join(post.tags)}\nSlug: {post.slug}\nSummary: {post.summary}\n\n"
            f"{post.body}")


def chronicle_filename(post: SyntheticPost) -> str:
    return f"{post.date:%Y-%m-%d}-{post.slug}.md"


def write_posts(folder: Path, posts: Iterable[SyntheticPost], tool: str) -> list[Path]:
    """Write each post in ``tool``'s format into ``folder``; returns the paths in order."""
    render = {"chronicle": chronicle_source, "hugo": hugo_source, "pelican": pelican_source,
              "floor": chronicle_source}[tool]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for post in posts:
        name = chronicle_filename(post) if tool in ("chronicle", "floor") else f"{post.slug}.md"
        path = folder / name
        path.write_text(render(post), encoding="utf-8")
        paths.append(path)
    return paths


def edit_post(path: Path, stamp: str) -> None:
    """A small prose edit: one more paragraph at the end, different for every ``stamp``."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"\nRevised again on run {stamp}, with one more steady sentence.\n")
