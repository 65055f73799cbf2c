"""Short fits on fixed seeds whose losses and final parameters are pinned in engine_golden.npz.

tests/test_engine.py checks that the training engine still trains these fits as the file says
(it was written with the separate single-shape and batched engines that preceded the shared one;
fit_many then took overlap_seed_refresh=False for the DiffCD group). Rewrite it only on purpose,
with a change that is meant to change fits:

    JAX_PLATFORMS=cpu python tests/_engine_golden.py --write
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import jax
import numpy as np

GOLDEN = Path(__file__).with_name("engine_golden.npz")
TINY = {"hidden_layers": 2, "width": 32, "skip_layers": (1,)}
STEPS = 24


def sphere_cloud(count, seed, radius=1.0):
    rng = np.random.default_rng(seed)
    points = rng.standard_normal((count, 3))
    return (radius * points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def config(method, *, seed=0, overlap=False, **method_overrides):
    from diffcd import make_config

    c = make_config("cpu-quick", method, steps=STEPS, seed=seed, network_overrides=TINY, batch_size=128,
                    method_overrides=method_overrides or None)
    c = dataclasses.replace(c, chunk_steps=5, overlap_seed_refresh=overlap)
    if method == "diffcd":
        c = dataclasses.replace(c, method_config=dataclasses.replace(
            c.method_config, seed_count=200, seed_mesh_resolution=16, seed_refresh_every=10))
    return c


CLOUDS = [sphere_cloud(400, 0), sphere_cloud(530, 1, 2.0)]
SINGLE = {
    "diffcd": (CLOUDS[0], config("diffcd")),
    "diffcd-overlapped": (CLOUDS[0], config("diffcd", overlap=True)),  # seeds swapped in 5 steps late
    "igr": (CLOUDS[0], config("igr")),
    "neural-pull": (CLOUDS[0], config("neural-pull")),
    "siren": (CLOUDS[0], config("siren")),
}
BATCHED = {  # fit_many: one call, three groups (IGR x2, Neural-Pull, DiffCD x2)
    "igr-a": (CLOUDS[0], config("igr")),
    "igr-b": (CLOUDS[1], config("igr", seed=7, eikonal_weight=0.5)),
    "neural-pull": (CLOUDS[1], config("neural-pull", seed=3)),
    "diffcd-a": (CLOUDS[0], config("diffcd")),
    "diffcd-b": (CLOUDS[1], config("diffcd", seed=5)),
}


def record(result) -> dict[str, np.ndarray]:
    from diffcd.networks import flatten_params

    out = {"loss": np.array([row["loss"] for row in result.history], np.float32)}
    out.update({f"params/{k}": np.asarray(v) for k, v in flatten_params(result.fitted.params).items()})
    return out


BATCHED_GROUPS = (("igr-a", "igr-b"), ("neural-pull",), ("diffcd-a", "diffcd-b"))
"""The groups fit_many forms from BATCHED; a group fits the same with or without the others."""


def single_fit(name: str) -> dict[str, np.ndarray]:
    from diffcd import Fitter

    cloud, c = SINGLE[name]
    return record(next(e.result for e in Fitter(cloud, c).run() if e.done))


def batched_fits(names=tuple(BATCHED)) -> dict[str, dict[str, np.ndarray]]:
    from diffcd.batch import fit_many

    clouds = [BATCHED[n][0] for n in names]
    configs = [BATCHED[n][1] for n in names]
    done = {e.index: e.event.result for e in fit_many(clouds, configs) if e.event.done}
    return {names[i]: record(result) for i, result in done.items()}


def flatten(fits: dict[str, dict[str, dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    return {f"{engine}/{case}/{key}": value for engine, cases in fits.items()
            for case, values in cases.items() for key, value in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"write {GOLDEN.name}")
    args = parser.parse_args()
    assert jax.default_backend() == "cpu", "the golden fits are CPU fits (JAX_PLATFORMS=cpu)"
    arrays = flatten({"single": {name: single_fit(name) for name in SINGLE}, "batched": batched_fits()})
    if args.write:
        np.savez_compressed(GOLDEN, **arrays)
        print(f"wrote {len(arrays)} arrays to {GOLDEN}")
    else:
        golden = np.load(GOLDEN)
        worst = max(float(np.max(np.abs(golden[k] - v))) for k, v in arrays.items())
        print(f"largest difference from {GOLDEN.name}: {worst:.3g}")


if __name__ == "__main__":
    main()
