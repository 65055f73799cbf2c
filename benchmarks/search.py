"""DiffCD's exact nearest-neighbour search alone, on the inputs it gets inside real fits.

A cpu-quick DiffCD fit runs on a cloud sampled from the bunny scan, with the search's inputs
(the projected surface points, their seed candidates and certificates, the valid flags) copied
out of the compiled step at a few steps; then `nearest.exact_targets` is timed on each copy
(best of 5 rounds of 5 calls) and its answers checked against scipy's KD-tree. Early steps,
when the surface is far from the cloud and few seed certificates hold, are the expensive ones;
the gap between cloud sizes is what `benchmarks.speed --cloud-sweep` sees in whole steps.

    python -m benchmarks.search --points 30000 1000000 --at 20 50 96 200 400 700
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
from scipy.spatial import cKDTree

from benchmarks.speed import SWEEP_MESH, write_results
from diffcd import Fitter, make_config, nearest
from diffcd.io import load_point_cloud

INPUTS = ("surface", "candidate_targets", "candidate_distance", "certified", "wanted")


def captured_inputs(points: int, steps: list[int], preset: str) -> tuple[Fitter, dict[int, dict]]:
    """Fit to the last of `steps` and return the search's inputs at each of them."""
    seen: list[dict] = []
    search = nearest.exact_targets

    def copy(*arrays):
        seen.append(dict(zip(INPUTS, (np.asarray(a) for a in arrays))))

    def capturing(surface, candidate_targets, candidate_distance, certified, wanted, index):
        jax.debug.callback(copy, surface, candidate_targets, candidate_distance, certified, wanted,
                           ordered=True)
        return search(surface, candidate_targets, candidate_distance, certified, wanted, index)

    cloud = load_point_cloud(SWEEP_MESH, mesh_samples=points, seed=0)
    nearest.exact_targets = capturing
    try:
        fitter = Fitter(cloud, make_config(preset, "diffcd", steps=max(steps) + 1))
        for _ in fitter.run():
            pass
    finally:
        nearest.exact_targets = search
    return fitter, {step: seen[step] for step in steps if step < len(seen)}


def _best_ms(function, arguments, rounds: int = 5, calls: int = 5) -> float:
    jax.block_until_ready(function(*arguments))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            out = function(*arguments)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e3


def time_search(fitter: Fitter, inputs: dict[int, dict]) -> list[dict]:
    # The index is an argument, as in the fit's step (not constants folded into the program).
    index = {name: value for name, value in fitter.data.items() if name.startswith("nn_")}
    search = jax.jit(nearest.exact_targets)
    tree = cKDTree(np.asarray(fitter.data["points"]))
    rows = []
    for step, arrays in inputs.items():
        arguments = [arrays[name] for name in INPUTS] + [index]
        targets, searched = jax.device_get(search(*arguments))
        wanted, surface = arrays["wanted"], arrays["surface"]
        truth, _ = tree.query(surface[wanted])
        error = np.abs(np.linalg.norm(targets[wanted] - surface[wanted], axis=1) - truth).max()
        rows.append({"step": step, "valid": int(wanted.sum()),
                     "certified": int((wanted & arrays["certified"]).sum()),
                     "tree": int(searched["tree"].sum()), "brute": int(searched["brute"].sum()),
                     "median_distance": round(float(np.median(truth)), 4),
                     "max_error": float(error), "ms": round(_best_ms(search, arguments), 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", nargs="+", type=int, default=[30_000, 1_000_000])
    parser.add_argument("--at", nargs="+", type=int, default=[20, 50, 96, 200, 400, 700])
    parser.add_argument("--preset", default="cpu-quick")
    args = parser.parse_args()
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "backend": jax.default_backend(),
              "jax": jax.__version__, "preset": args.preset, "cloud": f"{SWEEP_MESH.name} sampled",
              "tree_stages": nearest.TREE_STAGES, "sizes": {}}
    for points in args.points:
        fitter, inputs = captured_inputs(points, sorted(args.at), args.preset)
        report["sizes"][points] = rows = time_search(fitter, inputs)
        for row in rows:
            print(json.dumps({"points": points, **row}), flush=True)
    backend = report["backend"]
    lines = [f"# DiffCD's exact search on in-fit inputs ({backend})", "",
             f"{report['date']}, JAX {report['jax']}; {args.preset} DiffCD fits on clouds sampled from "
             f"{SWEEP_MESH.name}; `nearest.exact_targets` alone on the inputs of the steps shown, best "
             "of 5 rounds of 5 calls. certified: by the seed candidates; tree and brute: points the "
             "box hierarchy and brute force answered; max error: against scipy's KD-tree.", "",
             "| points | step | valid | certified | tree | brute | median distance | max error | ms |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for points, rows in report["sizes"].items():
        for r in rows:
            lines.append(f"| {points:,} | {r['step']} | {r['valid']} | {r['certified']} | {r['tree']} | "
                         f"{r['brute']} | {r['median_distance']} | {r['max_error']:.1e} | {r['ms']} |")
        lines.append(f"| {points:,} | sum | | | | | | | {round(sum(r['ms'] for r in rows), 1)} |")
    write_results(f"search-{backend}", report, lines)


if __name__ == "__main__":
    main()
