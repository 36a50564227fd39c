"""The command line: parses, calls, prints. Only this module catches ChronicleError."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from chronicle import __version__
from chronicle.errors import ChronicleError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chronicle", description=__doc__)
    parser.add_argument("--version", action="version", version=f"chronicle {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from chronicle.lab.cli import register as register_lab

    register_lab(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ChronicleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
