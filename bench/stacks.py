"""Summarise py-spy's raw (collapsed) stacks: where a build spends its time.

    py-spy record -f raw -o cold.raw -- chronicle build --root SITE
    python bench/stacks.py cold.raw [--top 30] [--focus chronicle]

Prints the functions with the most *inclusive* time (the share of samples in which the
function is on the stack) and the most *self* time (the share in which it is the frame
running), each as a percentage of all samples.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]*)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """``render (chronicle/render.py)`` from py-spy's ``render (/long/path/render.py:12)``."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def summarise(raw: Path) -> tuple[int, Counter[str], Counter[str]]:
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [short(frame) for frame in stack.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    return total, inclusive, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--focus", help="inclusive list: only frames whose text has this")
    args = parser.parse_args()
    total, inclusive, own = summarise(args.raw)
    print(f"{total} samples")
    print("\ninclusive")
    shown = [(f, n) for f, n in inclusive.most_common() if not args.focus or args.focus in f]
    for frame, count in shown[: args.top]:
        print(f"{100 * count / total:6.1f}%  {frame}")
    print("\nself")
    for frame, count in own.most_common(args.top):
        print(f"{100 * count / total:6.1f}%  {frame}")


if __name__ == "__main__":
    main()
