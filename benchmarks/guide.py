"""Which method? Every method on four clouds under six conditions, scored against ground truth.

    python -m benchmarks.guide [--only poisson diffcd ...] [--clouds ...] [--conditions ...]
                               [--max-minutes M] [--table]

Cells (benchmarks/conditions.py for the clouds and conditions):

- Screened Poisson (the product's `diffcd.poisson`, depth and trim chosen from the cloud) and
  DiffCD (the default preset, seeds 0 and 1) on all 24 cloud × condition cells;
- IGR, Neural-Pull and SIREN (seed 0) on the clean clouds.

Neural fits use the library's default preset (cpu-quick) and the noise setting a user would pick for the
condition (`NOISE_FOR_CONDITION`); their wall time includes compilation, DiffCD's seed meshes and
the final mesh, Poisson's the child process, normal estimation, solve and trim. Each cell also
records its process CPU time and the load average around it, so a figure taken on a busy machine
shows it.

The run is resumable: every finished cell is appended to benchmarks/results/guide-cpu.json at
once and skipped by the next run, cheapest and most telling cells first (Poisson, then DiffCD
seed 0, the clean neural cells, DiffCD seed 1), so an interrupted run still leaves a useful
table. The results page, benchmarks/results/guide-cpu.md, is rewritten after every cell; `--table`
only rewrites it from the JSON. `--retime` runs again, in the same order, the cells that were
timed on a busy machine, and replaces a row only when the new run had the machine to itself.
Run it alone on a quiet machine: the wall times are part of the result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.conditions import CLOUDS, CONDITIONS, load_case
from benchmarks.guide_table import QUIET_LOAD, write_page
from diffcd import metrics
from diffcd.presets import DEFAULT_PRESET

RESULTS = Path(__file__).parent / "results"
JSON_PATH = RESULTS / "guide-cpu.json"
NEURAL = ("diffcd", "igr", "neural-pull", "siren")
NOISE_FOR_CONDITION = {"clean": "none", "noise-0.5": "medium", "noise-1": "max", "sparse": "none",
                       "partial": "none", "scanner": "medium"}
"""The app's noise setting for each condition: the one a user who knows their scan would choose."""
DIFFCD_SEEDS = (0, 1)


def plan(methods: list[str], clouds: list[str], conditions: list[str]) -> list[dict[str, Any]]:
    """The cells in the order they run."""
    cells = []

    def add(method: str, condition_filter, seed: int) -> None:
        if method in methods:
            cells.extend({"cloud": c, "condition": k, "method": method, "seed": seed}
                         for c in clouds for k in conditions if condition_filter(k))

    add("poisson", lambda k: True, 0)
    add("diffcd", lambda k: True, DIFFCD_SEEDS[0])
    for method in ("igr", "neural-pull", "siren"):
        add(method, lambda k: k == "clean", 0)
    for seed in DIFFCD_SEEDS[1:]:
        add("diffcd", lambda k: True, seed)
    return cells


def cell_key(cell: dict[str, Any]) -> tuple:
    return cell["cloud"], cell["condition"], cell["method"], cell["seed"]


def scores(mesh, truth, cloud_points: np.ndarray) -> dict[str, float]:
    """The table's columns, distances as % of the object's longest side."""
    longest = float((truth.bounds[1] - truth.bounds[0]).max())
    s = metrics.evaluate_mesh(mesh, truth)
    return {
        "chamfer_percent": round(100 * s["chamfer"] / longest, 3),
        "hausdorff_percent": round(100 * s["hausdorff"] / longest, 2),
        "normal_angle_deg": round(s["normal_angle_deg"], 2),
        "fscore": round(s["fscore"], 4),
        "faces": int(len(mesh.faces)),
        "points": int(len(cloud_points)),
    }


def fit_mesh(cloud, config):
    """(final mesh at the config's resolution, fit summary): a neural fit as the app makes it."""
    from diffcd import fit_sdf

    result = fit_sdf(cloud, config)
    return result.fitted.extract_mesh(config.mesh_resolution), result.summary


def run_neural(cloud, method: str, condition: str, seed: int, preset: str):
    from diffcd import make_config

    config = make_config(preset, method, seed=seed, noise=NOISE_FOR_CONDITION[condition])
    mesh, summary = fit_mesh(cloud, config)
    return mesh, {"preset": preset, "noise_setting": NOISE_FOR_CONDITION[condition],
                  "steps": config.schedule.steps, "steps_per_second": summary["steps_per_second"]}


def run_poisson(cloud):
    from diffcd import poisson

    result = poisson.reconstruct(cloud.points)
    summary = result.summary
    return result.mesh, {"depth": summary["poisson"]["depth"],
                         **{k: summary[k] for k in ("normals_seconds", "solve_seconds", "trim_seconds") if k in summary}}


def run_cell(cell: dict[str, Any], preset: str) -> dict[str, Any]:
    cloud, truth = load_case(cell["cloud"], cell["condition"])
    load_before = os.getloadavg()[0]
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    if cell["method"] == "poisson":
        mesh, details = run_poisson(cloud)
    else:
        mesh, details = run_neural(cloud, cell["method"], cell["condition"], cell["seed"], preset)
    wall = time.perf_counter() - start
    return {**cell, **scores(mesh, truth, cloud.points), **details, "wall_seconds": round(wall, 1),
            "cpu_seconds": round(_cpu_seconds() - cpu_before, 1),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (Poisson's solve runs in one)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def read_rows() -> list[dict[str, Any]]:
    if not JSON_PATH.is_file():
        return []
    return json.loads(JSON_PATH.read_text())["rows"]


def write_rows(rows: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    JSON_PATH.write_text(json.dumps({"updated": time.strftime("%Y-%m-%d %H:%M"), "commit": commit,
                                     "rows": rows}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=["poisson", *NEURAL], help="methods to run")
    parser.add_argument("--clouds", nargs="+", default=list(CLOUDS), choices=CLOUDS)
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    parser.add_argument("--max-minutes", type=float, default=None, help="start no cell after this long")
    parser.add_argument("--table", action="store_true", help="only rewrite the results page")
    parser.add_argument("--retime", action="store_true",
                        help="run again the finished cells that were timed on a busy machine, and keep a "
                             "new row only where the machine stayed quiet")
    args = parser.parse_args()
    if not args.table:
        from diffcd.compilation_cache import enable_compilation_cache

        enable_compilation_cache()
        rows = read_rows()
        done = {cell_key(r) for r in rows}
        busy = {cell_key(r) for r in rows if max(r["load_before"], r["load_after"]) > QUIET_LOAD}
        start = time.monotonic()
        for cell in plan(args.only, args.clouds, args.conditions):
            if (cell_key(cell) not in busy) if args.retime else (cell_key(cell) in done):
                continue
            if args.max_minutes is not None and time.monotonic() - start > 60 * args.max_minutes:
                print("time is up; run again to go on", flush=True)
                break
            row = run_cell(cell, args.preset)
            if args.retime:
                if max(row["load_before"], row["load_after"]) > QUIET_LOAD:
                    print(f"{cell_key(cell)}: still busy, the earlier row stays", flush=True)
                    continue
                rows = [r for r in rows if cell_key(r) != cell_key(cell)]
            rows.append(row)
            write_rows(rows)
            write_page(rows)
            print(json.dumps(row), flush=True)
    write_page(read_rows())


if __name__ == "__main__":
    main()
