"""What the 3D viewers and the loss plot show: GLB files and small tables. Presentation only.

Gradio 6.31's Model3D draws a GLB point primitive one pixel wide, too faint to read a cloud by,
so the input cloud is shown as small octahedra (a subsample of at most PREVIEW_POINTS points).
Meshes are written as they are; trimesh derives the normals from the faces (the marching-cubes
normals point inwards and would make the viewer draw the mesh dark and inside out).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import trimesh

from diffcd.metrics import nearest_distances
from diffcd.runs import subsample

PREVIEW_POINTS = 6000
CLOUD_COLOUR = (37, 99, 235, 255)
MESH_COLOUR = (165, 178, 200, 255)
OVERLAY_CLOUD_COLOUR = (234, 88, 12, 255)
"""Orange: the cloud drawn over the grey surface (blue would vanish in the viewer's shading)."""
OVERLAY_GLYPH_SIZE = 0.003
EMPTY_TABLE_CSS = """
.table-container.no-rows .table-wrap, .table-container.no-rows .toolbar {display: none}
"""
"""A gr.Dataframe with no rows shows only its label (Gradio 6.31 draws a header row "1 2 3")."""
GLYPH_SIZE = 0.004
"""Octahedron radius as a fraction of the cloud's longest side."""

# Near -> far: steel blue, light blue, pale yellow, red, at these fractions of the scale. The
# surface between cloud points (up to about half the point spacing away) stays blue; spurious
# surface shouts.
COLOUR_STOPS = np.array([[49, 104, 174], [140, 180, 220], [250, 225, 130], [215, 40, 40]], dtype=np.float64)
COLOUR_POSITIONS = np.array([0.0, 0.3, 0.65, 1.0])
DISTANCE_SCALE = 0.02
"""The colour scale ends at this fraction of the cloud's longest side (farther: full red)."""

_OCTAHEDRON_VERTICES = np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64
)
_OCTAHEDRON_FACES = np.array(
    [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
)

HIDDEN_LOSS_TERMS = {"step", "elapsed", "valid_surface_fraction"}
"""History columns that are not loss terms; nor is any "nn_" column (DiffCD's shares of points
answered by each nearest-neighbour stage)."""


def _write_glb(scene_or_mesh, path: Path) -> Path:
    """Write atomically: a viewer must never read a half-written file."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(scene_or_mesh.export(file_type="glb"))
    os.replace(partial, path)
    return path


def longest_side(points: np.ndarray) -> float:
    extent = np.ptp(np.asarray(points, np.float64), axis=0)
    return float(extent.max()) if extent.size else 1.0


def _glyphs(points: np.ndarray, *, max_points: int, size: float, colour) -> trimesh.Trimesh:
    """Small octahedra, one per point of a subsample, of radius size × the cloud's longest side."""
    shown = subsample(points, max_points).astype(np.float64)
    radius = size * max(longest_side(points), 1e-9)
    n_vertices = len(_OCTAHEDRON_VERTICES)
    vertices = (shown[:, None, :] + radius * _OCTAHEDRON_VERTICES[None]).reshape(-1, 3)
    faces = (_OCTAHEDRON_FACES[None] + n_vertices * np.arange(len(shown))[:, None, None]).reshape(-1, 3)
    glyphs = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    glyphs.visual.vertex_colors = np.tile(colour, (len(vertices), 1)).astype(np.uint8)
    return glyphs


def cloud_glb(points: np.ndarray, path: Path, *, max_points: int = PREVIEW_POINTS) -> Path:
    """A GLB showing the cloud as small octahedra (one per point of a subsample)."""
    return _write_glb(_glyphs(points, max_points=max_points, size=GLYPH_SIZE, colour=CLOUD_COLOUR), path)


def overlay_glb(mesh: trimesh.Trimesh, points: np.ndarray, path: Path, *,
                max_points: int = PREVIEW_POINTS) -> Path:
    """The mesh in its neutral grey with the input cloud over it as small orange glyphs.

    Glyphs inside the surface are hidden by it and glyphs off the surface stand out, so one sees
    where the surface leaves the data (and where data has no surface).
    """
    plain = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=False)
    plain.visual.vertex_colors = np.tile(MESH_COLOUR, (len(plain.vertices), 1)).astype(np.uint8)
    glyphs = _glyphs(points, max_points=max_points, size=OVERLAY_GLYPH_SIZE, colour=OVERLAY_CLOUD_COLOUR)
    scene = trimesh.Scene()
    scene.add_geometry(plain, geom_name="surface")
    scene.add_geometry(glyphs, geom_name="cloud")
    return _write_glb(scene, path)


def mesh_glb(mesh: trimesh.Trimesh, path: Path) -> Path:
    """The mesh as GLB in a neutral colour, normals derived from the faces."""
    plain = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=False)
    plain.visual.vertex_colors = np.tile(MESH_COLOUR, (len(plain.vertices), 1)).astype(np.uint8)
    return _write_glb(plain, path)


def distance_colours(distances: np.ndarray, scale: float) -> np.ndarray:
    """RGBA uint8 colours of distances on the near-to-far colour scale [0, scale]."""
    t = np.clip(np.asarray(distances, np.float64) / max(scale, 1e-12), 0.0, 1.0)
    rgb = np.stack([np.interp(t, COLOUR_POSITIONS, COLOUR_STOPS[:, c]) for c in range(3)], axis=1)
    alpha = np.full((len(rgb), 1), 255.0)
    return np.hstack([rgb, alpha]).round().astype(np.uint8)


def distance_mesh_glb(mesh: trimesh.Trimesh, points: np.ndarray, scale: float, path: Path) -> Path:
    """The mesh with each vertex coloured by its distance to the nearest cloud point."""
    coloured = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=False)
    coloured.visual.vertex_colors = distance_colours(nearest_distances(mesh.vertices, points), scale)
    return _write_glb(coloured, path)


def format_length(value: float, units: str = "") -> str:
    text = f"{value:.3g}"
    return f"{text} {units}".strip()


def legend_html(scale: float | None, units: str = "") -> str:
    """A horizontal colour bar from 0 to `scale` (and beyond), with its meaning.

    With scale None the ticks are fractions of the cloud's longest side (before a comparison).
    """
    stops = ", ".join(f"rgb({r:.0f},{g:.0f},{b:.0f}) {100 * p:.0f}%"
                      for (r, g, b), p in zip(COLOUR_STOPS, COLOUR_POSITIONS))
    labels = []
    for f in (0, 0.25, 0.5, 0.75, 1):
        text = f"{100 * DISTANCE_SCALE * f:g} %" if scale is None else format_length(scale * f, units)
        labels.append(("≥ " if f == 1 else "") + text)
    if scale is None:
        labels[-1] += " of the cloud's longest side"
    ticks = "".join(f"<span>{label}</span>" for label in labels)
    return (
        '<div id="distance-legend" style="max-width:560px">'
        '<div style="font-size:0.9em;margin-bottom:4px">Colour: distance from each surface point to '
        "the nearest input point. Red surface has no data near it (spurious surface).</div>"
        f'<div style="height:14px;border-radius:3px;background:linear-gradient(to right, {stops})"></div>'
        f'<div style="display:flex;justify-content:space-between;font-size:0.8em">{ticks}</div></div>'
    )


def loss_frame(history: list[dict[str, float]], *, max_rows: int = 300) -> pd.DataFrame | None:
    """Long-format table (step, log10 value, term) of the loss terms for gr.LinePlot.

    Log scale, since the terms span orders of magnitude; terms that stay 0 are left out; long
    histories are thinned to at most `max_rows` steps. None while there is nothing to plot (an
    empty table would make the plot take its colour field for a number).
    """
    if not history:
        return None
    stride = max(1, math.ceil(len(history) / max_rows))
    rows = history[::stride]
    if rows[-1] is not history[-1]:
        rows = rows + [history[-1]]
    terms = [k for k in history[-1] if k not in HIDDEN_LOSS_TERMS and not k.startswith("nn_")]
    frames = []
    for term in terms:
        values = np.array([row.get(term, np.nan) for row in rows], dtype=np.float64)
        if not np.any(np.abs(values[np.isfinite(values)]) > 0):
            continue
        frames.append(pd.DataFrame({
            "step": [int(row["step"]) for row in rows],
            "log10 loss": np.log10(np.maximum(np.abs(values), 1e-12)),
            "term": term,
        }))
    return pd.concat(frames, ignore_index=True) if frames else None
