"""Quality benchmark: fit the built-in examples and score them against their ground truth.

    python -m benchmarks.quality [--preset cpu-quick] [--methods diffcd igr ...] [--examples ...]

Besides the examples there is one real-scan case, `bunny-scan`: 50,000 points sampled from the
Stanford Bunny (benchmarks/data/README.md), the kind of input the cpu-quick preset must fit to
within 1 % of the object's longest side.

Writes benchmarks/results/quality-<preset>-<backend>.md and .json (linked from the README; rows
of examples and methods not run this time are kept from the earlier file):
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

from diffcd import METHODS, fit_sdf, make_config, metrics
from diffcd.examples import list_examples, load_example
from diffcd.io import load_mesh, load_point_cloud

RESULTS = Path(__file__).parent / "results"
SCANS = {"bunny-scan": (Path(__file__).parent / "data" / "bunny_gt.ply", 50_000)}
"""Real-scan cases: (ground-truth mesh, points sampled from it)."""


def load_case(case_id: str):
    """(cloud, ground-truth mesh) of an example or a real-scan case."""
    if case_id in SCANS:
        mesh_path, points = SCANS[case_id]
        return load_point_cloud(mesh_path, mesh_samples=points, seed=0), load_mesh(mesh_path)
    return load_example(case_id)


def fit_and_score(example_id: str, cloud, truth, method: str, preset: str, steps: int | None,
                  method_overrides: dict | None = None) -> dict:
    config = make_config(preset, method, steps=steps, method_overrides=method_overrides)
    start = time.perf_counter()
    result = fit_sdf(cloud, config)
    mesh = result.fitted.extract_mesh(config.mesh_resolution)
    wall = time.perf_counter() - start
    longest = float((truth.bounds[1] - truth.bounds[0]).max())
    scores = metrics.evaluate_mesh(mesh, truth)
    distances = metrics.cloud_surface_distances(cloud.points, mesh)
    return {
        "example": example_id, "method": method, "preset": preset, "steps": config.schedule.steps,
        "wall_seconds": round(wall, 1),
        "steps_per_second": result.summary["steps_per_second"],
        "chamfer": scores["chamfer"],
        "chamfer_percent_of_size": round(100 * scores["chamfer"] / longest, 3),
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
    parser.add_argument("--diffcd-nn", choices=["exact", "candidates"], default="exact",
                        help="DiffCD's surface-to-cloud targets: exact nearest points (default) or the "
                             "former seed-candidate search, for an A/B comparison")
    parser.add_argument("--tag", default="", help="suffix of the results file")
    args = parser.parse_args()
    from diffcd.compilation_cache import enable_compilation_cache

    enable_compilation_cache()

    rows = []
    for example in args.examples:
        cloud, truth = load_case(example)
        for method in args.methods:
            overrides = {"nn_search": args.diffcd_nn} if method == "diffcd" else None
            row = fit_and_score(example, cloud, truth, method, args.preset, args.steps, overrides)
            rows.append(row)
            print(json.dumps(row), flush=True)
    backend = jax.default_backend()
    RESULTS.mkdir(exist_ok=True)
    name = f"quality-{args.preset}-{backend}{'-' + args.tag if args.tag else ''}"
    rows = _merge(RESULTS / f"{name}.json", rows)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "backend": backend,
              "device": jax.devices()[0].device_kind, "rows": rows}
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Quality: {args.preset} on {backend} ({report['device']})", "",
             f"{report['date']}. Chamfer and surface->cloud distance as % of the object's longest side.", "",
             "| example | method | steps | wall s | steps/s | Chamfer % | normal ° | F-score | surface→cloud % |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['example']} | {r['method']} | {r['steps']} | {r['wall_seconds']} | "
                     f"{r['steps_per_second']} | {r['chamfer_percent_of_size']} | {r['normal_angle_deg']} | "
                     f"{r['fscore']} | {r['surface_to_cloud_percent']} |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
