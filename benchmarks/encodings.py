"""Input encodings at the cpu-quick budget: the plain MLP against grid and Fourier variants
(`--preset gpu-demo`: the same at the GPU demo's size, which the GPU check runs).

    nice -n 19 python -m benchmarks.encodings [--cases bunny-scan dragon-scan] [--variants mlp grid-128]
                                              [--seeds 0 1 2] [--method diffcd] [--steps N]

Each row is one fit (case, variant, seed) of the cpu-quick schedule (1600 steps, batches of 1250
points) with the variant's network, meshed at the preset's resolution and scored against the
ground truth: Chamfer and Hausdorff as % of the longest side, normal angle, steps/s, wall time,
the checkpoint's parameter count and bytes, and what coarse-to-fine meshing's |∇f| <= 2 test did
(blocks it refuted and leaf blocks it evaluated after all, beside the evaluations a dense grid
takes). The run is resumable: rows already in benchmarks/results/encodings-<backend>.json are kept
and not fitted again (--again refits them). Timings depend on what else the machine runs; the
quality columns do not.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks.quality import load_case
from diffcd import fit_sdf, make_config, meshing, metrics
from diffcd.networks import expected_shapes
from diffcd.sdf import on_device, to_trimesh

RESULTS = Path(__file__).parent / "results"
POISSON_CHAMFER = {"bunny-scan": 0.444, "dragon-scan": 0.377, "bunny:noise-0.5": 0.482, "bunny:noise-1": 0.575,
                   "dragon:noise-0.5": 0.429, "dragon:noise-1": 0.578}
"""Screened Poisson's Chamfer % on the same clouds (diffcd.poisson; the noisy ones from
benchmarks/results/guide-cpu.md), the reference to reach."""

GRID = dict(encoding="grid", encoding_levels=4, grid_min_resolution=16, grid_max_resolution=128, grid_features=2,
            encoding_learning_rate_scale=10.0, encoding_level_steps=100)
"""Dense grids 16³..128³, 2 features a level, tables at 10x the MLP's rate, a level every 100 steps."""
FOURIER = dict(encoding="fourier", encoding_levels=6, encoding_level_steps=100)
"""sin/cos at pi..2^(K-1) pi, a band every 100 steps, the bands' weights at the MLP's rate."""


@dataclasses.dataclass(frozen=True)
class Variant:
    """Changes to the preset's network and, optionally, to the method's loss settings."""

    network: dict
    method: dict = dataclasses.field(default_factory=dict)


VARIANTS: dict[str, Variant] = {
    "preset": Variant({}),
    "mlp": Variant({"encoding": "none"}),
    "grid-128": Variant(GRID),
    "grid-128-lr20": Variant({**GRID, "encoding_learning_rate_scale": 20.0}),
    "grid-128-lr5": Variant({**GRID, "encoding_learning_rate_scale": 5.0}),
    "grid-64": Variant({**GRID, "encoding_levels": 3, "grid_max_resolution": 64}),
    "grid-128-f4": Variant({**GRID, "grid_features": 4}),
    "grid-128-all": Variant({**GRID, "encoding_level_steps": 0}),
    "grid-128-c2f300": Variant({**GRID, "encoding_level_steps": 300}),
    "fourier-6": Variant(FOURIER),
    "fourier-4": Variant({**FOURIER, "encoding_levels": 4}),
    "fourier-6-c2f200": Variant({**FOURIER, "encoding_level_steps": 200}),
    "fourier-6-c2f50": Variant({**FOURIER, "encoding_level_steps": 50}),
    "fourier-8": Variant({**FOURIER, "encoding_levels": 8}),
    "fourier-8-lr3": Variant({**FOURIER, "encoding_levels": 8, "encoding_learning_rate_scale": 3.0}),
    "fourier-6-eik0.02": Variant(FOURIER, {"eikonal_weight": 0.02}),
    "fourier-6-eik0.05": Variant(FOURIER, {"eikonal_weight": 0.05}),
    "fourier-6-eik0.1": Variant(FOURIER, {"eikonal_weight": 0.1}),
    "fourier-6-eik0.3": Variant(FOURIER, {"eikonal_weight": 0.3}),
    "fourier-6-eik0.01": Variant(FOURIER, {"eikonal_weight": 0.01}),
    "fourier-8-eik0.02": Variant({**FOURIER, "encoding_levels": 8}, {"eikonal_weight": 0.02}),
}
"""Changes to the preset (cpu-quick unless --preset says otherwise), by name. "preset" is the
preset as it is (cpu-quick-fourier: Fourier-6 with DiffCD's eikonal weight at 0.02); "mlp" the
preset's network without an encoding; the eik variants set the eikonal weight of the methods that
have one (DiffCD's default is 0.1)."""


def load_cloud(case: str):
    """(cloud, ground truth) of a scan case ("dragon-scan") or a guide cell ("dragon:noise-1")."""
    if ":" in case:
        from benchmarks.conditions import load_case as load_condition

        return load_condition(*case.split(":"))
    return load_case(case)


def mesh_and_score(fitted, resolution: int, truth):
    """Mesh a fitted SDF at `resolution` and score it against the ground truth: the MeshResult,
    metrics.evaluate_mesh's scores and their paper units (% of the longest side)."""
    meshed = meshing.extract_mesh(on_device(fitted.network, fitted.params), resolution)
    scores = metrics.evaluate_mesh(to_trimesh(meshed, fitted.normalization), truth)
    longest = float((truth.bounds[1] - truth.bounds[0]).max())
    return meshed, scores, metrics.paper_units(scores, longest)


def run_one(case: str, cloud, truth, variant: str, seed: int, method: str, steps: int | None,
            preset: str = "cpu-quick") -> dict:
    change = VARIANTS[variant]
    method_overrides = {k: v for k, v in change.method.items() if method != "neural-pull"} or None
    config = make_config(preset, method, seed=seed, steps=steps, network_overrides=change.network or None,
                         method_overrides=method_overrides)
    start = time.perf_counter()
    result = fit_sdf(cloud, config)
    fit_seconds = time.perf_counter() - start
    mesh_start = time.perf_counter()
    meshed, scores, units = mesh_and_score(result.fitted, config.mesh_resolution, truth)
    mesh_seconds = time.perf_counter() - mesh_start
    parameters = sum(math.prod(s) for s in expected_shapes(config.network).values())
    return {
        "case": case, "variant": variant, "seed": seed, "method": method, "preset": preset,
        "steps": config.schedule.steps,
        "batch_size": config.batch_size, "network": dataclasses.asdict(config.network),
        "chamfer_percent": round(units["chamfer_x100"], 4),
        "hausdorff_percent": round(units["hausdorff_x100"], 3),
        "normal_angle_deg": round(scores["normal_angle_deg"], 2),
        "fscore": round(scores["fscore"], 4),
        "steps_per_second": result.summary["steps_per_second"],
        "fit_seconds": round(fit_seconds, 1), "mesh_seconds": round(mesh_seconds, 1),
        "wall_seconds": round(fit_seconds + mesh_seconds, 1),
        "nan_steps_skipped": result.summary["nan_steps_skipped"],
        "parameters": parameters, "checkpoint_bytes": 4 * parameters,
        "mesh_resolution": config.mesh_resolution, "mesh_evaluations": int(meshed.evaluated_points),
        "mesh_dense_evaluations": config.mesh_resolution**3,
        "mesh_refuted_blocks": int(meshed.refuted_blocks), "mesh_fallback_blocks": int(meshed.fallback_blocks),
        "load_average": round(__import__("os").getloadavg()[0], 2),
    }


def _key(row: dict) -> tuple:
    return row["case"], row["variant"], row["seed"], row["method"], row["steps"], row.get("preset", "cpu-quick")


def _cell(row: dict, key: str, fmt: str = "{}") -> str:
    return fmt.format(row[key]) if row.get(key) is not None else "—"


def write_report(path: Path, rows: list[dict]) -> None:
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "backend": jax.default_backend(), "rows": rows}
    path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Input encodings against the plain network and Screened Poisson", "",
             f"{report['date']}, backend {report['backend']}; `python -m benchmarks.encodings`. DiffCD unless "
             "the method says otherwise; the cpu-quick preset (1600 steps, batches of 1250, 192³ mesh) unless "
             "the variant names another. Chamfer and Hausdorff in % of the longest side; × Poisson is the mean "
             "Chamfer over Screened Poisson's on the same cloud ("
             + ", ".join(f"{c} {v} %" for c, v in POISSON_CHAMFER.items())
             + "). Steps/s and wall seconds were measured beside other work (load average column): "
             "compare them only between rows of similar load; `benchmarks.snapshots` times the presets on a "
             "quiet machine. — : not recorded for that row.", "",
             "## Means over seeds", "",
             "| case | variant | method | seeds | Chamfer % | ± | × Poisson | Hausdorff % | normal ° | steps/s | "
             "wall s | parameters |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["case"], r["variant"], r["method"], r["steps"], r.get("preset", "cpu-quick")), []).append(r)
    for (case, variant, method, steps, preset), members in groups.items():
        notes = ([] if preset == "cpu-quick" else [preset]) + (
            [] if steps == make_config(preset).schedule.steps else [f"{steps} steps"])
        variant = f"{variant} ({', '.join(notes)})" if notes else variant
        def mean(key: str) -> float:
            values = [m[key] for m in members if m.get(key) is not None]
            return float(np.mean(values)) if values else float("nan")

        spread = float(np.std([m["chamfer_percent"] for m in members]))
        ratio = mean("chamfer_percent") / POISSON_CHAMFER[case] if case in POISSON_CHAMFER else float("nan")
        lines.append(f"| {case} | {variant} | {method} | {len(members)} | {mean('chamfer_percent'):.3f} | "
                     f"{spread:.3f} | {ratio:.2f} | {mean('hausdorff_percent'):.2f} | "
                     f"{mean('normal_angle_deg'):.2f} | {mean('steps_per_second'):.1f} | "
                     f"{'—' if math.isnan(mean('wall_seconds')) else round(mean('wall_seconds'))} | "
                     f"{members[0]['parameters']:,} |")
    lines += ["", "## Every fit", "",
              "| case | variant | preset | steps | method | seed | Chamfer % | Hausdorff % | normal ° | F-score | steps/s | "
              "wall s | load | mesh evaluations (dense) | refuted blocks | fallback leaves |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        evaluations = (f"{r['mesh_evaluations']:,} ({r['mesh_dense_evaluations']:,})"
                       if r.get("mesh_evaluations") is not None else "—")
        lines.append(f"| {r['case']} | {r['variant']} | {r.get('preset', 'cpu-quick')} | {r['steps']} | {r['method']} | {r['seed']} | "
                     f"{r['chamfer_percent']} | {r['hausdorff_percent']} | {r['normal_angle_deg']} | {r['fscore']} | "
                     f"{r['steps_per_second']} | {_cell(r, 'wall_seconds')} | {r['load_average']} | {evaluations} | "
                     f"{_cell(r, 'mesh_refuted_blocks')} | {_cell(r, 'mesh_fallback_blocks')} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["bunny-scan", "dragon-scan"], choices=list(POISSON_CHAMFER))
    parser.add_argument("--variants", nargs="+", default=["mlp", "grid-128", "fourier-6"], choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--method", default="diffcd")
    parser.add_argument("--steps", type=int, help="override the preset's steps")
    parser.add_argument("--preset", default="cpu-quick", help="the preset whose network the variants change "
                        "(gpu-demo: the GPU check's paper-size fits)")
    parser.add_argument("--again", action="store_true", help="refit rows already in the results file")
    args = parser.parse_args()
    from diffcd.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"encodings-{jax.default_backend()}.json"
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    for case in args.cases:
        cloud, truth = load_cloud(case)
        for variant in args.variants:
            for seed in args.seeds:
                steps = args.steps or make_config(args.preset).schedule.steps
                key = (case, variant, seed, args.method, steps, args.preset)
                if not args.again and any(_key(r) == key for r in rows):
                    continue
                row = run_one(case, cloud, truth, variant, seed, args.method, args.steps, args.preset)
                rows = [r for r in rows if _key(r) != key] + [row]
                print(json.dumps({k: v for k, v in row.items() if k != "network"}), flush=True)
                write_report(path, rows)


if __name__ == "__main__":
    main()
