"""What the app hands back: number formatting, the metrics table, mesh downloads and checkpoint zips."""

from __future__ import annotations

import math
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import trimesh

from diffcd.methods import is_reconstructor
from diffcd_space import viewer

EXPORT_FILES = ("config.json", "model.safetensors", "summary.json", "metrics.csv", "eval.json",
                "cloud_distances.json")
METRIC_ROWS = (
    # (group, key, label, what it says)
    ("eval", "chamfer", "Chamfer distance (vs ground truth)",
     "½ (mean GT→fit + mean fit→GT distance); lower is better"),
    ("eval", "chamfer_squared", "Squared Chamfer (vs ground truth)", "the same with squared distances"),
    ("eval", "normal_angle_deg", "Normal angle error (°)", "mean angle between matched normals"),
    ("eval", "hausdorff", "Hausdorff (vs ground truth)", "the largest distance either way"),
    ("eval", "fscore", "F-score", "share of both surfaces within the threshold of the other"),
    ("eval", "fscore_threshold", "F-score threshold", "1 % of the ground truth's longest side"),
    ("cloud_distances", "cloud_to_surface_mean", "Cloud → surface, mean",
     "how well the surface explains the points"),
    ("cloud_distances", "cloud_to_surface_max", "Cloud → surface, max", "the worst-explained point"),
    ("cloud_distances", "surface_to_cloud_mean", "Surface → cloud, mean",
     "large: surface where there is no data"),
    ("cloud_distances", "surface_to_cloud_max", "Surface → cloud, max", "the most spurious surface point"),
)
TRAINING_ROWS = (
    # (key, label, what it says)
    ("steps", "Steps", "training steps done"),
    ("fit_seconds", "Fit time (s)", "wall time, compilation and snapshots included"),
    ("steps_per_second", "Steps per second", "training only"),
    ("compile_seconds", "Compile time (s)", "XLA compilation of the training chunk"),
    ("nan_steps_skipped", "NaN steps skipped", "updates dropped for a non-finite gradient"),
    ("mesh_vertices", "Mesh vertices", "of the final mesh"),
)
RECONSTRUCTION_ROWS = (
    ("fit_seconds", "Wall time (s)", "the whole reconstruction, its process's start included"),
    ("normals_seconds", "Normals (s)", "estimating and orienting normals (none when the cloud has them)"),
    ("solve_seconds", "Solve (s)", "the Screened Poisson solve on the octree"),
    ("trim_seconds", "Trim (s)", "removing the least supported vertices"),
    ("mesh_vertices", "Mesh vertices", "of the final mesh"),
)
COMPARE_COLUMNS = (
    ("cloud_distances", "cloud_to_surface_mean", "cloud→surface mean"),
    ("cloud_distances", "surface_to_cloud_mean", "surface→cloud mean"),
    ("cloud_distances", "surface_to_cloud_max", "surface→cloud max"),
    ("eval", "chamfer", "Chamfer (GT)"),
    ("eval", "normal_angle_deg", "normal angle ° (GT)"),
    ("eval", "fscore", "F-score (GT)"),
    ("eval", "hausdorff", "Hausdorff (GT)"),
)


def seconds(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "…"
    if value < 10:
        return f"{value:.1f} s"
    if value < 60:
        return f"{value:.0f} s"
    return f"{int(value // 60)} min {int(value % 60):02d} s"


def table_seconds(value: float) -> float:
    """Seconds for a table cell: one decimal from a second up, two significant digits below it (a
    20 ms reconstruction reads 0.02, not 0.0)."""
    value = float(value)
    return round(value, 1) if value >= 1 else float(f"{value:.2g}")


def number(value: Any) -> str:
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def metrics_table(summary: dict, units: str = "") -> pd.DataFrame:
    """Rows (metric, value, what it says) for the metrics present in a run summary."""
    rows = []
    for group, key, label, meaning in METRIC_ROWS:
        value = (summary.get(group) or {}).get(key)
        if value is None:
            continue
        text = number(value)
        if units and key not in ("normal_angle_deg", "fscore", "chamfer_squared"):
            text += f" {units}"
        rows.append((label, text, meaning))
    for key, label, meaning in RECONSTRUCTION_ROWS if is_reconstruction(summary) else TRAINING_ROWS:
        if summary.get(key) is not None:
            rows.append((label, number(summary[key]), meaning))
    return pd.DataFrame(rows, columns=["metric", "value", "what it says"])


def is_reconstruction(summary: dict) -> bool:
    """Whether a run summary is a classical reconstructor's (no network, no steps)."""
    return is_reconstructor(str(summary.get("method")))


def wall_seconds(summary: dict) -> float:
    """Seconds from a method's start to its mesh: training (or the reconstruction) plus meshing."""
    return float(summary.get("fit_seconds") or 0.0) + float(summary.get("mesh_seconds") or 0.0)


def mesh_files(mesh: trimesh.Trimesh, folder: Path, name: str, *, ply_from: Path | None = None) -> list[Path]:
    """The mesh as name.glb (what the viewer shows), name.ply and name.obj, each written once; GLB first.

    With `ply_from` (the same mesh already saved as PLY), name.ply is a link to it, not a copy."""
    glb = viewer.mesh_glb(mesh, folder / f"{name}.glb")
    ply, obj = folder / f"{name}.ply", folder / f"{name}.obj"
    if ply_from is not None and ply_from != ply:
        ply.unlink(missing_ok=True)
        try:
            os.link(ply_from, ply)
        except OSError:
            shutil.copyfile(ply_from, ply)
    elif ply_from is None:
        mesh.export(ply)
    mesh.export(obj, file_type="obj")
    return [glb, ply, obj]


def checkpoint_zip(folder: Path, name: str, files: tuple[str, ...]) -> Path:
    """name-checkpoint.zip of those of `files` that folder has, under a top folder `name`."""
    archive = folder / f"{name}-checkpoint.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in files:
            if (folder / file).is_file():
                zf.write(folder / file, f"{name}/{file}")
    return archive


def run_downloads(run_dir: Path, name: str, *, checkpoint: bool = True) -> tuple[str | None, list[str]]:
    """(the GLB the viewer shows, the download files): the shown GLB is the downloaded one.

    `checkpoint`: add the checkpoint zip (a run without a network has none)."""
    files: list[Path] = []
    if (run_dir / "mesh.ply").is_file():
        files = mesh_files(trimesh.load(run_dir / "mesh.ply", process=False), run_dir, name,
                           ply_from=run_dir / "mesh.ply")
    shown = str(files[0]) if files else None
    if checkpoint:
        files.append(checkpoint_zip(run_dir, name, EXPORT_FILES))
    return shown, [str(f) for f in files]


def error_message(error: BaseException, secret: str | None = None) -> str:
    text = str(error) or type(error).__name__
    return text.replace(secret, "***") if secret else text


def plain_markdown(value: Any, max_length: int = 120) -> str:
    """`value` as an inert Markdown code span: no HTML, links, autolinks or images (a pulled repo's
    metadata is visitor-controlled, and a rendered remote image is a tracking pixel)."""
    text = " ".join(str(value)[:max_length].replace("`", "'").split())
    return f"`{text}`" if text else "`?`"
