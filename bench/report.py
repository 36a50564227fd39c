"""The benchmark's one table, three ways: a rich table on the terminal, JSON, Markdown."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


@dataclass
class Row:
    tool: str
    case: str
    n: int
    times_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    peak_mib: float = 0.0
    compare_with: str = "cold"
    ratio: float | None = None  # this row's median ÷ Chronicle's median on the matched case
    note: str = ""

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.times_s) if self.times_s else None

    @property
    def median_cpu_s(self) -> float | None:
        return statistics.median(self.cpu_s) if self.cpu_s else None

    @property
    def pages_per_s(self) -> float | None:
        median = self.median_s
        return self.n / median if median else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["median_s"] = _round(self.median_s)
        data["pages_per_s"] = _round(self.pages_per_s)
        data["times_s"] = [round(t, 4) for t in self.times_s]
        data["median_cpu_s"] = _round(self.median_cpu_s)
        data["cpu_s"] = [round(t, 4) for t in self.cpu_s]
        data["peak_mib"] = round(self.peak_mib, 1)
        data["ratio"] = _round(self.ratio)
        return data


def load_rows(path: Path) -> list[Row]:
    """The rows of an earlier ``latest.json`` (none if there is no such file)."""
    if not path.exists():
        return []
    rows = []
    for data in json.loads(path.read_text(encoding="utf-8"))["rows"]:
        rows.append(Row(tool=data["tool"], case=data["case"], n=data["n"],
                        times_s=data["times_s"], cpu_s=data.get("cpu_s", []),
                        peak_mib=data["peak_mib"], compare_with=data["compare_with"],
                        note=data["note"]))
    return rows


def load_meta(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    data.pop("rows", None)
    return data


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def fill_ratios(rows: list[Row]) -> None:
    chronicle = {(r.case, r.n): r.median_s for r in rows if r.tool == "chronicle"}
    for row in rows:
        base = chronicle.get((row.compare_with, row.n))
        if row.median_s and base:
            row.ratio = row.median_s / base


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                       .splitlines() if line.startswith("MemTotal:"))
    except (OSError, StopIteration):
        mem_kib = 0
    distro = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / MIB, 1),
            "kernel": platform.release(), "os": distro, "python": platform.python_version(),
            # which build: a distribution's optimised one or a plain one runs ~7 % apart
            "python_binary": os.path.realpath(getattr(sys, "_base_executable", sys.executable))}


def to_json(rows: list[Row], meta: dict[str, Any]) -> str:
    return json.dumps({**meta, "rows": [row.to_json() for row in rows]}, indent=2) + "\n"


def _cells(row: Row) -> list[str]:
    def num(value: float | None, fmt: str) -> str:
        return "—" if value is None else format(value, fmt)
    ratio = "—" if row.ratio is None else f"{row.ratio:.2f}×"
    peak = f"{row.peak_mib:.0f}" if row.times_s else "—"
    return [row.tool, row.case, str(row.n), num(row.median_s, ".3f"),
            num(row.median_cpu_s, ".3f"), num(row.pages_per_s, ".0f"), peak, ratio, row.note]


HEADERS = ["tool", "case", "N", "median s", "cpu s", "posts/s", "peak MiB", "vs Chronicle",
           "note"]
NUMERIC = range(3, 8)


def to_markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        "# Latest benchmark",
        "",
        f"Run {meta['finished']} with `{meta['command']}`: median of {meta['runs']} run(s) "
        f"per case, corpus seed {meta['seed']}.",
        *([("Rows merged from: " + "; ".join(f"`{c}`" for c in meta["commands"]) + ".")]
          if len(meta.get("commands", [])) > 1 else []),
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, "
        f"kernel {m['kernel']}, Python {m['python']} ({m.get('python_binary', '?')}).",
        f"Chronicle: {meta.get('chronicle_source', 'working tree')}.",
        "",
        "\"vs Chronicle\" is this row's median time divided by Chronicle's on the matching "
        "case (a peer's `full` is matched with Chronicle's `cold`): above 1 means Chronicle "
        "is faster; `chronicle-figures` (the figure-heavy blog, `bench/figures.py`) is "
        "matched with the plain blog's same case, so its ratio is what the figures cost. "
        "`cpu s` is the median user + system time of the process tree; "
        "posts/s is N over the median wall time. Peak MiB is the process tree's peak "
        "resident memory. Load average before the run: "
        f"{meta.get('load_before', '?')}, after: {meta.get('load_after', '?')}.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * 5 + ["---"]) + "|",
    ]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    lines += ["", "Versions:", ""]
    lines += [f"- {tool}: {version}" for tool, version in sorted(meta["versions"].items())]
    return "\n".join(lines) + "\n"


def print_table(rows: list[Row], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    with_notes = any(row.note for row in rows)
    for index, header in enumerate(HEADERS if with_notes else HEADERS[:-1]):
        table.add_column(header, justify="right" if index in NUMERIC else "left",
                         no_wrap=index < len(HEADERS) - 1, overflow="fold")
    for row in rows:
        table.add_row(*(_cells(row) if with_notes else _cells(row)[:-1]))
    console = Console()
    if not console.is_terminal:  # a pipe or a log: rich would squeeze it to 80 columns
        console = Console(width=140)
    console.print(table)
