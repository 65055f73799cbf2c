"""What the noise settings do at each preset: DiffCD on noisy scans with each candidate setting.

    python -m benchmarks.noise_settings [--preset cpu-quick] [--clouds bunny dragon] [--seeds 0]

The paper fits noisy clouds with a stronger eikonal term (λ = 0.5 at medium noise, 1.0 at
maximum noise) and, at maximum noise, a 20x lower peak learning rate, over 40,000 steps. A
short preset may need something else: this sweep fits the bunny and dragon scans at 0.5 % noise
(the `medium` level) and 1 % noise (`max`) with every candidate (eikonal weight, learning-rate
factor) and scores them against the ground truth; `diffcd.presets` (`Preset.noise_settings`) takes the best
per preset from benchmarks/results/noise-settings-cpu.md. Quality at a fixed number of steps does
not depend on the machine's load; the wall times here are for orientation only.
Resumable: finished rows in the JSON are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from benchmarks.conditions import load_case
from benchmarks.guide import fit_mesh, scores

RESULTS = Path(__file__).parent / "results"
JSON_PATH = RESULTS / "noise-settings-cpu.json"
CANDIDATES = {
    "noise-0.5": [(0.1, 1.0), (0.5, 1.0), (1.0, 1.0)],
    "noise-1": [(0.1, 1.0), (0.5, 1.0), (1.0, 1.0), (1.0, 0.05)],
}
"""Per noise condition: (eikonal weight λ, peak learning rate as a multiple of the preset's)."""


def fit_candidate(cloud_name: str, condition: str, weight: float, lr_factor: float, preset: str,
                  seed: int, method: str = "diffcd") -> dict:
    from diffcd import make_config

    cloud, truth = load_case(cloud_name, condition)
    config = make_config(preset, method, seed=seed, method_overrides={"eikonal_weight": weight})
    config = dataclasses.replace(config, schedule=dataclasses.replace(
        config.schedule, learning_rate=config.schedule.learning_rate * lr_factor))
    start = time.perf_counter()
    mesh, _ = fit_mesh(cloud, config)
    return {"preset": preset, "method": method, "cloud": cloud_name, "condition": condition, "eikonal_weight": weight,
            "learning_rate_factor": lr_factor, "seed": seed, "steps": config.schedule.steps,
            **scores(mesh, truth, cloud.points), "wall_seconds": round(time.perf_counter() - start, 1)}


def _key(row: dict) -> tuple:
    return (row["preset"], row.get("method", "diffcd"), row["cloud"], row["condition"], row["eikonal_weight"],
            row["learning_rate_factor"], row["seed"])


def write_page(rows: list[dict]) -> None:
    lines = ["# Noise settings: DiffCD on noisy scans, per preset", "",
             f"{time.strftime('%Y-%m-%d %H:%M')}, `python -m benchmarks.noise_settings`. Chamfer and "
             "Hausdorff as % of the object's longest side, against the clean ground-truth mesh; seed 0 "
             "unless marked. λ is the eikonal weight, LR × the peak learning rate relative to the "
             "preset's. Wall times are for orientation (not measured alone).", "",
             "| preset | method | cloud | noise | λ | LR × | seed | Chamfer % | Hausdorff % | normal ° | F-score | wall s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r["preset"], r.get("method", "diffcd"), r["condition"], r["cloud"],
                                         -r["learning_rate_factor"], r["eikonal_weight"], r["seed"])):
        lines.append(f"| {r['preset']} | {r.get('method', 'diffcd')} | {r['cloud']} | {r['condition']} | "
                     f"{r['eikonal_weight']:g} | "
                     f"{r['learning_rate_factor']:g} | {r['seed']} | {r['chamfer_percent']} | "
                     f"{r['hausdorff_percent']} | {r['normal_angle_deg']} | {r['fscore']} | {r['wall_seconds']} |")
    (RESULTS / "noise-settings-cpu.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-quick")
    parser.add_argument("--clouds", nargs="+", default=["bunny", "dragon"])
    parser.add_argument("--conditions", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--methods", nargs="+", default=["diffcd"], choices=["diffcd", "igr", "siren"])
    parser.add_argument("--weights", nargs="+", type=float, help="only the candidates with these λ")
    args = parser.parse_args()
    from diffcd.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    rows = json.loads(JSON_PATH.read_text())["rows"] if JSON_PATH.is_file() else []
    done = {_key(r) for r in rows}
    todo = [(method, condition, cloud, weight, lr_factor, seed)
            for method in args.methods for condition in args.conditions for cloud in args.clouds
            for weight, lr_factor in CANDIDATES[condition] for seed in args.seeds
            if args.weights is None or weight in args.weights]
    for method, condition, cloud, weight, lr_factor, seed in todo:
        if (args.preset, method, cloud, condition, weight, lr_factor, seed) in done:
            continue
        row = fit_candidate(cloud, condition, weight, lr_factor, args.preset, seed, method)
        rows.append(row)
        RESULTS.mkdir(exist_ok=True)
        JSON_PATH.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
        write_page(rows)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
