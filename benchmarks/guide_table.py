"""The results page of benchmarks/guide.py: a summary of who wins each cell, then every row."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.conditions import CLOUDS, CONDITIONS

RESULTS = Path(__file__).parent / "results"
PAGE = RESULTS / "guide-cpu.md"
METHOD_ORDER = ("poisson", "diffcd", "igr", "neural-pull", "siren")
TITLES = {"poisson": "Screened Poisson", "diffcd": "DiffCD", "igr": "IGR", "neural-pull": "Neural-Pull",
          "siren": "SIREN"}
COLUMNS = ("chamfer_percent", "hausdorff_percent", "normal_angle_deg", "fscore", "cpu_seconds")
QUIET_LOAD = 2.5
"""A run whose 1-minute load average stayed at or below this (two cores) was timed on a quiet
machine; its wall time is published. A cell with no such run shows its CPU time only, which the
load changes far less."""


def combine(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(cloud, condition, method) -> the mean of each column over its seeds, with the seeds'
    Chamfer values kept (`chamfer_seeds`) to show their spread."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["cloud"], row["condition"], row["method"]), []).append(row)
    combined = {}
    for key, members in groups.items():
        members = sorted(members, key=lambda r: r["seed"])
        cell = {c: statistics.fmean(r[c] for r in members) for c in COLUMNS}
        cell["chamfer_seeds"] = [r["chamfer_percent"] for r in members]
        quiet = [r["wall_seconds"] for r in members if max(r["load_before"], r["load_after"]) <= QUIET_LOAD]
        cell["wall_seconds"] = statistics.fmean(quiet) if quiet else None  # quietly timed seeds only
        cell["noise_setting"] = members[0].get("noise_setting", "")
        combined[key] = cell
    return combined


def summary_lines(cells: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    """Chamfer of Screened Poisson against DiffCD per cloud and condition, the lower in bold."""
    lines = ["| condition | " + " | ".join(CLOUDS) + " |", "| --- |" + " --- |" * len(CLOUDS)]
    for condition in CONDITIONS:
        entries = []
        for cloud in CLOUDS:
            p, d = cells.get((cloud, condition, "poisson")), cells.get((cloud, condition, "diffcd"))
            if p is None or d is None:
                entries.append("not yet run")
                continue
            ps, ds = f"{p['chamfer_percent']:.3f}", f"{d['chamfer_percent']:.3f}"
            if p["chamfer_percent"] <= d["chamfer_percent"]:
                ps = f"**{ps}**"
            else:
                ds = f"**{ds}**"
            entries.append(f"{ps} / {ds}")
        lines.append(f"| {condition} | " + " | ".join(entries) + " |")
    return lines


def row_lines(cells: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    lines = ["| cloud | condition | method | Chamfer % | Hausdorff % | normal ° | F-score | wall s | CPU s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for cloud in CLOUDS:
        for condition in CONDITIONS:
            for method in METHOD_ORDER:
                cell = cells.get((cloud, condition, method))
                if cell is None:
                    continue
                seeds = cell["chamfer_seeds"]
                chamfer = f"{cell['chamfer_percent']:.3f}"
                if len(seeds) > 1:
                    chamfer += f" ({', '.join(f'{s:.3f}' for s in seeds)})"
                title = TITLES[method] + (f" ({cell['noise_setting']})" if cell["noise_setting"] not in ("", "none") else "")
                wall = "busy" if cell["wall_seconds"] is None else f"{cell['wall_seconds']:.1f}"
                lines.append(f"| {cloud} | {condition} | {title} | {chamfer} | {cell['hausdorff_percent']:.2f} | "
                             f"{cell['normal_angle_deg']:.1f} | {cell['fscore']:.3f} | {wall} | "
                             f"{cell['cpu_seconds']:.0f} |")
    return lines


def write_page(rows: list[dict[str, Any]]) -> None:
    cells = combine(rows)
    expected = len(CLOUDS) * len(CONDITIONS)
    done = sum(1 for k in cells if k[2] == "poisson"), sum(1 for k in cells if k[2] == "diffcd")
    presets = sorted({r.get("preset") for r in rows if r.get("preset")})
    lines = [
        "# Which method? Screened Poisson and the neural fits on four clouds, six conditions", "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, `python -m benchmarks.guide`, CPU (two cores). "
        f"Neural fits: the `{', '.join(presets) or 'cpu-quick'}` preset, the library's default (the plain "
        "4×128 network; the encoded presets are in encodings-cpu.md); DiffCD is the mean "
        "of seeds 0 and 1 (each in brackets). Screened Poisson: `diffcd.poisson` with depth and trim chosen "
        "from the cloud and normals estimated (no cloud here carries normals). Distances are % of the object's "
        "longest side against the whole clean ground-truth mesh; the F-score threshold is 1 % of it. "
        "Wall time is the whole run: compilation, DiffCD's seed meshes and the final mesh, or Poisson's "
        "normals, solve and trim; it is the mean over the seeds timed on a quiet machine (1-minute load "
        f"average at most {QUIET_LOAD} on the two cores around the run); a cell with none says `busy`. CPU s is the "
        "process's CPU time (Poisson's child included), which another job on the machine changes far less. "
        "The conditions are defined in `benchmarks/conditions.py`.", "",
        f"Cells run: Screened Poisson {done[0]} of {expected}, DiffCD {done[1]} of {expected}.", "",
        "## Chamfer % (Screened Poisson / DiffCD, the lower in bold)", "",
        *summary_lines(cells), "",
        "## Every cell", "",
        *row_lines(cells), "",
    ]
    PAGE.write_text("\n".join(lines))
