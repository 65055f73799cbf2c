"""Quality benchmark: fit the built-in examples and score them against their ground truth.

    python -m benchmarks.quality [--preset cpu-quick] [--methods diffcd igr ...] [--examples ...]
                                 [--protocol default|paper]

Besides the examples there are real-scan cases: `bunny-scan`, 50,000 points sampled from the
Stanford Bunny (benchmarks/data/README.md), the kind of input the cpu-quick preset must fit to
within 1 % of the object's longest side, and `bunny-scan-noise-medium` / `bunny-scan-noise-max`,
the same points with Gaussian noise of 0.5 % / 1 % of the longest side (the examples' levels),
and `dragon-scan`, 50,000 points sampled from the Stanford Dragon: the thin-part case (teeth,
claws, horns, a thin tail) the CPU time ladder is tuned on.
Every noisy case (an example whose noise_level is medium or max, or a noisy scan) is fitted with
the preset's noise setting of that level (`make_config(noise=...)`; `diffcd.presets.noise_setting`).

`--protocol paper` meshes the final fit at 512³ with the original code's grid spacing and scores
it with its Hausdorff definitions (docs/method.md §7), so the CD×100, CD²×10⁴ and
normal-angle columns can be set beside the paper's table; the default uses the preset's
resolution and the true grid step.

Writes benchmarks/results/quality-<preset>-<backend>.md and .json (see docs/benchmarks.md;
rows of examples and methods not run this time are kept from the earlier file):
per example and method, wall time of the whole fit (compile, seed meshes and final mesh
included), Chamfer distance relative to the object's longest side, normal angle, F-score, and the
surface->cloud distance that flags spurious surface.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from diffcd import METHODS, fit_sdf, make_config, metrics
from diffcd.examples import list_examples, load_example
from diffcd.io import load_mesh, load_point_cloud, points_from_array

RESULTS = Path(__file__).parent / "results"
DATA = Path(__file__).parent / "data"
SCANS = {
    "bunny-scan": (DATA / "bunny_gt.ply", 50_000, "none", 0.0),
    "bunny-scan-noise-medium": (DATA / "bunny_gt.ply", 50_000, "medium", 0.005),
    "bunny-scan-noise-max": (DATA / "bunny_gt.ply", 50_000, "max", 0.01),
    "dragon-scan": (DATA / "dragon_gt.ply", 50_000, "none", 0.0),
}
"""Real-scan cases: (ground-truth mesh, points sampled from it, noise level, noise std as a
share of the longest side)."""


def noise_level(case_id: str) -> str:
    """The noise level a case is fitted with: its examples/index.json noise_level."""
    if case_id in SCANS:
        return SCANS[case_id][2]
    return next((e.get("noise_level", "none") for e in list_examples() if e["id"] == case_id), "none")


def load_case(case_id: str):
    """(cloud, ground-truth mesh) of an example or a real-scan case."""
    if case_id in SCANS:
        mesh_path, points, _, std = SCANS[case_id]
        cloud, truth = load_point_cloud(mesh_path, mesh_samples=points, seed=0), load_mesh(mesh_path)
        if std:
            longest = float((truth.bounds[1] - truth.bounds[0]).max())
            noisy = cloud.points + np.random.default_rng(1).normal(0, std * longest, cloud.points.shape)
            cloud = points_from_array(noisy.astype(np.float32))
        return cloud, truth
    return load_example(case_id)


def fit_and_score(example_id: str, cloud, truth, method: str, preset: str, steps: int | None,
                  method_overrides: dict | None = None, protocol: str = "default",
                  batch_size: int | None = None) -> dict:
    noise = noise_level(example_id)
    config = make_config(preset, method, steps=steps, noise=noise, method_overrides=method_overrides,
                         batch_size=batch_size)
    start = time.perf_counter()
    result = fit_sdf(cloud, config)
    fit_wall = time.perf_counter() - start
    if protocol == "paper":
        mesh = result.fitted.extract_mesh(metrics.PAPER_RESOLUTION, spacing="paper")
    else:
        mesh = result.fitted.extract_mesh(config.mesh_resolution)
    wall = time.perf_counter() - start
    longest = float((truth.bounds[1] - truth.bounds[0]).max())
    scores = metrics.evaluate_mesh(mesh, truth, protocol=protocol)
    units = metrics.paper_units(scores, longest)
    distances = metrics.cloud_surface_distances(cloud.points, mesh)
    return {
        "example": example_id, "method": method, "preset": preset, "steps": config.schedule.steps,
        "batch_size": config.batch_size,
        **({"nn_search": config.method_config.nn_search} if method == "diffcd" else {}),
        "noise": noise, "protocol": protocol,
        "wall_seconds": round(wall, 1), "fit_seconds": round(fit_wall, 1),
        "steps_per_second": result.summary["steps_per_second"],
        "chamfer": scores["chamfer"],
        "chamfer_percent_of_size": round(100 * scores["chamfer"] / longest, 3),
        "chamfer_squared_x1e4": round(units["chamfer_squared_x1e4"], 3),
        "hausdorff_x100": round(units["hausdorff_x100"], 3),
        "normal_angle_deg": round(scores["normal_angle_deg"], 2),
        "fscore": round(scores["fscore"], 4),
        "surface_to_cloud_percent": round(100 * distances["surface_to_cloud_mean"] / longest, 3),
    }


def _merge(path: Path, rows: list[dict]) -> list[dict]:
    """Earlier results of the same file, with the (example, method) pairs just measured replaced."""
    if not path.is_file():
        return rows
    fresh = {(r["example"], r["method"]): r for r in rows}
    kept = [r for r in json.loads(path.read_text())["rows"] if (r["example"], r["method"]) not in fresh]
    order = {case: i for i, case in enumerate(_all_cases())}
    methods = list(METHODS)
    return sorted(kept + rows, key=lambda r: (order.get(r["example"], 99), methods.index(r["method"])))


def _all_cases() -> list[str]:
    return [e["id"] for e in list_examples()] + list(SCANS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-quick")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--examples", nargs="+", default=_all_cases())
    parser.add_argument("--steps", type=int, help="override the preset's steps")
    parser.add_argument("--batch", type=int, help="override the preset's batch size")
    parser.add_argument("--diffcd-nn", choices=["exact", "candidates"], default="exact",
                        help="DiffCD's surface-to-cloud targets: exact nearest points (default) or the "
                             "search of each seed's 32 candidates alone (exact where certified), for comparison")
    parser.add_argument("--tag", default="", help="suffix of the results file")
    parser.add_argument("--protocol", default="default", choices=metrics.PROTOCOLS,
                        help="paper: 512³ final mesh with the original grid spacing and Hausdorff definitions")
    args = parser.parse_args()
    from diffcd.compilation_cache import enable_compilation_cache

    enable_compilation_cache()

    rows = []
    for example in args.examples:
        cloud, truth = load_case(example)
        for method in args.methods:
            overrides = {"nn_search": args.diffcd_nn} if method == "diffcd" else None
            row = fit_and_score(example, cloud, truth, method, args.preset, args.steps, overrides,
                                args.protocol, args.batch)
            rows.append(row)
            print(json.dumps(row), flush=True)
    backend = jax.default_backend()
    RESULTS.mkdir(exist_ok=True)
    name = (f"quality-{args.preset}" + (f"-{args.steps}steps" if args.steps else "")
            + (f"-batch{args.batch}" if args.batch else "") + f"-{backend}"
            + ("-paper-protocol" if args.protocol == "paper" else "") + (f"-{args.tag}" if args.tag else ""))
    rows = _merge(RESULTS / f"{name}.json", rows)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "backend": backend,
              "device": jax.devices()[0].device_kind, "rows": rows}
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Quality: {args.preset} on {backend} ({report['device']})", "",
             f"{report['date']}, {args.protocol} evaluation protocol, timings on two CPU cores with "
             "nothing else running. Chamfer and surface->cloud distance as % of the object's longest side; that "
             "is also the paper's CD×100 on the unit-normalised shape. CD²×10⁴ and the normal angle "
             "are the paper's other two columns (same normalisation). Noisy cases use the preset's "
             "noise setting of their level.", "",
             "| example | noise | method | steps | wall s | steps/s | Chamfer % = CD×100 | CD²×10⁴ | normal ° | F-score | surface→cloud % |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['example']} | {r.get('noise', '')} | {r['method']} | {r['steps']} | {r['wall_seconds']} | "
                     f"{r['steps_per_second']} | {r['chamfer_percent_of_size']} | {r.get('chamfer_squared_x1e4', '')} | "
                     f"{r['normal_angle_deg']} | {r['fscore']} | {r['surface_to_cloud_percent']} |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
