"""Run folders: the files a finished fit leaves behind, a contract for the app, Hub and scripts.

    mesh.ply, mesh.glb      the final mesh in the input's coordinates
    model.safetensors       the export (see diffcd.export), with config.json
    config.json
    checkpoint/             Orbax training state, to resume (when a state is given)
    metrics.csv             one row per step: losses and elapsed seconds
    summary.json            method, steps, seed, timings (seed refreshes: how much overlapped
                            training), matmul precision, nan_steps_skipped, mesh facts
    cloud_distances.json    input cloud <-> fitted surface distances (always, given the cloud)
    eval.json               metrics against a ground-truth mesh (only when one is given)
    cloud.npy               the input cloud, subsampled to at most 20,000 points (given the cloud)

A Screened Poisson run (diffcd.poisson, `write_mesh_run`) has no network: mesh.ply, mesh.glb,
summary.json (with the seconds of normals, solve and trim), cloud_distances.json, eval.json and
cloud.npy only. `network_absent_reason` says so in a sentence to whoever asks for its network.

A run is written into a temporary sibling folder and moved into place at the end, so an
interrupted write never leaves partial files over an earlier run.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import trimesh

from diffcd import metrics
from diffcd.checkpoint import save_train_state
from diffcd.errors import ConfigError, NoSurfaceError
from diffcd.export import export_sdf
from diffcd.fit import FitResult, TrainState

SUMMARY_FILE = "summary.json"
EVAL_FILE = "eval.json"
CLOUD_DISTANCES_FILE = "cloud_distances.json"
METRICS_FILE = "metrics.csv"
CLOUD_FILE = "cloud.npy"
CLOUD_PREVIEW_POINTS = 20_000
EVAL_KEYS = ("chamfer", "chamfer_squared", "normal_angle_deg", "hausdorff", "fscore", "fscore_threshold")


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    columns = list(dict.fromkeys(k for row in history for k in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns or ["step"])
        writer.writeheader()
        writer.writerows(history)


def check_output_folder(run_dir: str | os.PathLike, *, overwrite: bool) -> Path:
    """Refuse to replace a non-empty folder unless asked to (before any work is done)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a folder; choose another --out.")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise ConfigError(
            f"{run_dir} already holds files; choose another --out or pass --overwrite to replace them."
        )
    return run_dir


@contextlib.contextmanager
def _staged_folder(run_dir: Path) -> Iterator[Path]:
    """A fresh folder beside run_dir that replaces it when the block ends; removed on any error,
    so a run folder is never left half written."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f".{run_dir.name}.partial-"))
    try:
        yield staging
        _replace_folder(staging, run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_run(
    run_dir: str | os.PathLike,
    result: FitResult,
    *,
    resolution: int = 256,
    cloud_points: np.ndarray | None = None,
    gt_mesh: trimesh.Trimesh | None = None,
    fscore_threshold: float | None = None,
    state: TrainState | None = None,
    metadata: dict[str, Any] | None = None,
    eval_samples: int = 30_000,
) -> dict[str, Any]:
    """Mesh, evaluate and save a finished fit into run_dir, replacing it atomically.

    Returns the summary (also written to summary.json). Without a surface (the fit diverged)
    the export, history and summary are still written, with `surface_found: false`.
    """
    with _staged_folder(Path(run_dir)) as staging:
        summary = dict(result.summary)
        summary.update(_write_mesh_and_metrics(
            staging, result, resolution, cloud_points, gt_mesh, fscore_threshold, eval_samples
        ))
        export_sdf(result.fitted, staging, metadata={**(metadata or {}), "summary": _short(summary)})
        if state is not None:
            save_train_state(staging / "checkpoint", state)
        write_history(staging / METRICS_FILE, result.history)
        if cloud_points is not None:
            np.save(staging / CLOUD_FILE, subsample(cloud_points, CLOUD_PREVIEW_POINTS))
        write_json(staging / SUMMARY_FILE, summary)
    return summary


def write_mesh_run(
    run_dir: str | os.PathLike,
    mesh: trimesh.Trimesh,
    summary: dict[str, Any],
    *,
    cloud_points: np.ndarray | None = None,
    gt_mesh: trimesh.Trimesh | None = None,
    fscore_threshold: float | None = None,
    metadata: dict[str, Any] | None = None,
    eval_samples: int = 30_000,
) -> dict[str, Any]:
    """Evaluate and save a mesh made without a network (a reconstructor's) into run_dir, atomically.

    `summary` is the reconstructor's (it names the method); the mesh facts, metrics and
    `metadata` are added. Returns the summary (also written to summary.json).
    """
    with _staged_folder(Path(run_dir)) as staging:
        summary = {**summary, "steps": 0, "steps_per_second": 0.0, "surface_found": True,
                   **({"metadata": metadata} if metadata else {})}
        summary.update(_write_mesh_files(staging, mesh, cloud_points, gt_mesh, fscore_threshold, eval_samples))
        if cloud_points is not None:
            np.save(staging / CLOUD_FILE, subsample(cloud_points, CLOUD_PREVIEW_POINTS))
        write_json(staging / SUMMARY_FILE, summary)
    return summary


def network_absent_reason(folder: str | os.PathLike, *, name: str | None = None) -> str | None:
    """A sentence when `folder` is a run of a method without a network (Screened Poisson), else None.

    `name` is what the sentence calls the run (default: the folder's path; an app names it instead
    of showing a server path)."""
    from diffcd.methods import RECONSTRUCTORS

    try:
        method = read_summary(folder).get("method")
    except (OSError, ValueError, AttributeError):
        return None
    if method not in RECONSTRUCTORS:
        return None
    return (f"{name or folder} is a {RECONSTRUCTORS[method].title} run: it has a mesh (mesh.ply, mesh.glb) but no "
            "network, so there is no checkpoint to export, push or re-mesh; share its mesh instead.")


def subsample(points: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """At most `count` of the points, chosen at random but reproducibly."""
    points = np.asarray(points, np.float32)
    if len(points) <= count:
        return points
    return points[np.sort(np.random.default_rng(seed).choice(len(points), count, replace=False))]


def _short(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("steps", "fit_seconds", "steps_per_second", "matmul_precision", "surface_found", "eval",
            "cloud_distances")
    return {k: summary[k] for k in keys if k in summary}


def _write_mesh_and_metrics(folder, result, resolution, cloud_points, gt_mesh, threshold, samples):
    start = time.perf_counter()
    info: dict[str, Any] = {"mesh_resolution": resolution}
    try:
        mesh = result.fitted.extract_mesh(resolution)
    except NoSurfaceError as error:
        info.update(surface_found=False, mesh_error=str(error))
        return info
    info.update(surface_found=True, mesh_seconds=round(time.perf_counter() - start, 4))
    info.update(_write_mesh_files(folder, mesh, cloud_points, gt_mesh, threshold, samples))
    return info


def _write_mesh_files(folder, mesh, cloud_points, gt_mesh, threshold, samples) -> dict[str, Any]:
    """mesh.ply, mesh.glb and the metrics (cloud distances; eval given a ground truth)."""
    info: dict[str, Any] = {"mesh_vertices": int(len(mesh.vertices)), "mesh_faces": int(len(mesh.faces))}
    mesh.export(folder / "mesh.ply")
    mesh.export(folder / "mesh.glb")
    if cloud_points is not None:
        distances = metrics.cloud_surface_distances(cloud_points, mesh, n_samples=samples)
        write_json(folder / CLOUD_DISTANCES_FILE, distances)
        info["cloud_distances"] = distances
    if gt_mesh is not None:
        scores = metrics.evaluate_mesh(mesh, gt_mesh, n_samples=samples, fscore_threshold=threshold)
        write_json(folder / EVAL_FILE, scores)
        info["eval"] = scores
    return info


def _replace_folder(staging: Path, run_dir: Path) -> None:
    if run_dir.exists():
        old = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f".{run_dir.name}.old-"))
        os.replace(run_dir, old / "run")
        os.replace(staging, run_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, run_dir)


def read_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(run_dir) / SUMMARY_FILE).read_text())
