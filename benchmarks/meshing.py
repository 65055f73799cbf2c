"""Meshing host-work benchmark: the coarse-to-fine mesher against a reference implementation.

    python -m benchmarks.meshing [--resolution 256] [--repeats 3] [--params FILE.pkl]

Interleaves, in one process, A/B runs of
- grid evaluation with host (NumPy) parameters, copied to the device on every 32k-point chunk,
  against parameters put on the device once per mesh (`diffcd.sdf.on_device`);
- a reference coarse-to-fine driver (per-block Python fill loop, no check of the |∇f| <= 2
  assumption; the code of commit 1eb098f, read with `git show`) against `diffcd.meshing`'s
  (vectorised fill, corner checks and post-hoc verification),
on the cpu-quick network (untrained: geometric initialisation, close to a sphere; or the trained
parameters of a pickle {"params", "network"}). Writes benchmarks/results/meshing-<backend>.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from diffcd import meshing
from diffcd.presets import PRESETS
from diffcd.networks import init_params
from diffcd.sdf import evaluate_in_chunks, on_device

RESULTS = Path(__file__).parent / "results"
BEFORE_COMMIT = "1eb098f"


def _old_meshing():
    source = subprocess.run(["git", "show", f"{BEFORE_COMMIT}:diffcd/meshing.py"], capture_output=True,
                            text=True, check=True, cwd=Path(__file__).parent.parent).stdout
    path = Path(tempfile.mkdtemp()) / "meshing_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("meshing_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--params", help="pickle of {'params', 'network'} (a trained fit)")
    args = parser.parse_args()
    if args.params:
        saved = pickle.loads(Path(args.params).read_bytes())
        network, host_params, label = saved["network"], saved["params"], f"trained ({Path(args.params).name})"
    else:
        network = PRESETS["cpu-quick"].network
        host_params = jax.tree_util.tree_map(np.asarray, init_params(network, jax.random.PRNGKey(0)))
        label = "untrained (geometric init)"
    old = _old_meshing()
    host_eval = lambda x: evaluate_in_chunks(network, host_params, x)
    device_eval = on_device(network, host_params)
    res = args.resolution
    points = np.random.default_rng(0).uniform(-0.8, 0.8, (res * res * 4, 3)).astype(np.float32)
    host_eval(points[:40_000]), device_eval(points[:40_000])  # compile both chunk sizes
    timings: dict[str, list[float]] = {}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        timings.setdefault(name, []).append(time.perf_counter() - start)
        return out

    for _ in range(args.repeats):
        timed("evaluate, params re-uploaded per chunk", lambda: host_eval(points))
        timed("evaluate, params on the device once", lambda: device_eval(points))
        before = timed("coarse-to-fine before (loop fill, unchecked)",
                       lambda: old.extract_mesh(host_eval, res))
        after = timed("coarse-to-fine now (vectorised, checked)", lambda: meshing.extract_mesh(device_eval, res))
    same = np.array_equal(before.vertices, after.vertices) and np.array_equal(before.faces, after.faces)
    lines = [f"# Meshing host work: {res}³, cpu-quick network, {label}", "",
             f"{time.strftime('%Y-%m-%d %H:%M')}, {jax.default_backend()}, median of {args.repeats} "
             f"interleaved runs on {os.cpu_count()} cores.", "",
             "| what | median s | runs |", "| --- | --- | --- |"]
    for name, values in timings.items():
        lines.append(f"| {name} | {np.median(values):.3f} | {', '.join(f'{v:.2f}' for v in values)} |")
    lines += ["", f"Evaluated points: before {before.evaluated_points:,}, now {after.evaluated_points:,} "
              f"(dense {res ** 3:,}); fallback blocks now: {after.fallback_blocks}; "
              f"identical mesh: {same}. Evaluate rows: {len(points):,} points."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"meshing-{jax.default_backend()}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
