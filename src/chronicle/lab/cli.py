"""``chronicle lab …``: placeholder until the lab lands; registers the subcommand group."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser("lab", help="run experiments and inspect stored results")
    lab.add_subparsers(dest="lab_command", required=True, metavar="LAB_COMMAND")
