"""Constants and helpers shared by the Hub tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_test_SECRET_token_5f2c9a"
OTHER_TOKEN = "hf_test_OTHER_token_77ab01"

import json  # noqa: E402

import numpy as np  # noqa: E402

TINY_NETWORK = {"hidden_layers": 2, "width": 16, "skip_layers": ()}
EVAL = {"chamfer": 0.0123, "chamfer_squared": 0.0002, "normal_angle_deg": 7.5, "hausdorff": 0.08,
        "fscore": 0.91, "fscore_threshold": 0.01}
CLOUD_DISTANCES = {"cloud_to_surface_mean": 0.004, "cloud_to_surface_max": 0.02,
                   "surface_to_cloud_mean": 0.005, "surface_to_cloud_max": 0.03}


def make_fitted(*, method: str = "diffcd", seed: int = 0, steps: int = 10):
    """A tiny untrained FittedSDF: geometric initialisation makes it a sphere, no fit needed."""
    import jax

    from diffcd.io import Normalization
    from diffcd.networks import NetworkConfig, init_params
    from diffcd.sdf import FittedSDF

    network = NetworkConfig(**TINY_NETWORK)
    params = init_params(network, jax.random.PRNGKey(seed))
    return FittedSDF(network, params, Normalization((0.1, -0.2, 0.3), 2.0), method=method, steps=steps, seed=seed)


def make_run(folder: Path, *, method: str = "diffcd", seed: int = 0, metrics: bool = True,
             cloud_points: int = 0) -> Path:
    """A folder laid out like diffcd.runs.write_run's (export, mesh.glb, summary, metrics)."""
    from diffcd.export import export_sdf

    fitted = make_fitted(method=method, seed=seed)
    export_sdf(fitted, folder, metadata={"cloud": "sphere.ply", "points": 1000})
    fitted.extract_mesh(24).export(folder / "mesh.glb")
    summary = {"method": method, "steps": 10, "seed": seed, "fit_seconds": 1.5, "mesh_resolution": 24}
    (folder / "summary.json").write_text(json.dumps(summary))
    if metrics:
        (folder / "eval.json").write_text(json.dumps(EVAL))
        (folder / "cloud_distances.json").write_text(json.dumps(CLOUD_DISTANCES))
    if cloud_points:
        rng = np.random.default_rng(seed)
        points = rng.normal(size=(cloud_points, 3)).astype(np.float32)
        np.save(folder / "cloud.npy", points / np.linalg.norm(points, axis=1, keepdims=True))
    return folder


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under root whose bytes contain needle."""
    data = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


def upload_files(api, repo_id: str, files: dict[str, bytes], private: bool = False) -> str:
    """Commit raw files to a repo on the test Hub (crafted repos that `hub push` would never make)."""
    from huggingface_hub import CommitOperationAdd

    api.create_repo(repo_id, private=private, exist_ok=True)
    ops = [CommitOperationAdd(path, data) for path, data in files.items()]
    return api.create_commit(repo_id, ops, commit_message="upload").oid
