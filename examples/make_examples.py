"""Generates the example point clouds and ground-truth meshes that ship with diffcd.

Run from the repository root (needs only numpy, trimesh and scikit-image)::

    python examples/make_examples.py            # writes into examples/
    python examples/make_examples.py OUT_DIR    # writes somewhere else

The output is deterministic: every random draw uses a fixed seed, so re-running gives the same
arrays (tests/test_examples.py checks this). Each example is a point cloud drawn area-uniformly
from its ground-truth (GT) mesh:

- sphere: radius 1 icosphere (unitless), 20k points, no noise.
- torus: tilted, off-centre torus (R = 1, r = 0.3), 25k points, no noise.
- goblet: a wine glass in centimetres (16 cm tall) made by revolving a profile: a 0.25 cm thin
  bowl wall, a 0.6 cm thin stem and a 0.2 cm thin foot. The thin-structure test. 40k points,
  stored as a binary PLY.
- bracket: an L-shaped mechanical part in millimetres (80 x 50 x 50): two plates, two gusset
  ribs, three cylindrical holes; sharp convex and concave edges. No boolean engine is available
  offline, so its GT mesh is marching cubes (0.8 mm cells) of the analytic CSG signed distance
  (min/max of boxes, half-spaces and cylinders), each vertex then projected onto the exact zero
  set; edges are therefore sharp to within about one cell. 30k points.
- bracket-noise-medium: the bracket cloud with Gaussian noise of std 0.005 x the longest
  bounding-box side (0.4 mm), the DiffCD paper's "medium" noise for shapes normalised to a unit
  bounding box.
- torus-noise-max: the torus cloud with std 0.01 x the longest side, the paper's "max" noise.

Noisy examples share the GT mesh of their clean version. Clouds are float32 (N, 3) .npy files
(the goblet a .ply); GT meshes are binary little-endian PLY with float32 vertices. index.json
lists every example with its files, point count and noise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import trimesh
from skimage.measure import marching_cubes

HERE = Path(__file__).resolve().parent
NOISE_MEDIUM = 0.005  # std relative to the longest bounding-box side
NOISE_MAX = 0.01


# ----------------------------------------------------------------------------------------------
# Writers (self-contained so the script does not depend on the package being importable)


def write_mesh_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(vertices)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    face_records = np.zeros(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    face_records["n"] = 3
    face_records["v"] = faces
    path.write_bytes(header.encode("ascii") + np.ascontiguousarray(vertices, "<f4").tobytes()
                     + face_records.tobytes())


def write_points_ply(path: Path, points: np.ndarray) -> None:
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(points)}\n"
              "property float x\nproperty float y\nproperty float z\nend_header\n")
    path.write_bytes(header.encode("ascii") + np.ascontiguousarray(points, "<f4").tobytes())


def float32_mesh(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The mesh as it will be stored (float32 vertices), outward-facing."""
    mesh = trimesh.Trimesh(np.asarray(mesh.vertices, np.float32).astype(np.float64),
                           np.asarray(mesh.faces, np.int64), process=False)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def sample_cloud(mesh: trimesh.Trimesh, n: int, seed: int) -> np.ndarray:
    """Area-uniform surface samples (same scheme as diffcd.metrics.sample_surface)."""
    triangles = mesh.vertices[mesh.faces]
    areas = np.linalg.norm(np.cross(triangles[:, 1] - triangles[:, 0],
                                    triangles[:, 2] - triangles[:, 0]), axis=1)
    cumulative = np.cumsum(areas)
    rng = np.random.default_rng(seed)
    face = np.minimum(np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right"),
                      len(triangles) - 1)
    r1, r2 = rng.random((2, n))
    s = np.sqrt(r1)
    weights = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    return np.einsum("nk,nkd->nd", weights, triangles[face])


def add_noise(points: np.ndarray, relative_std: float, seed: int) -> tuple[np.ndarray, float]:
    std = relative_std * float(np.ptp(points, axis=0).max())
    return points + np.random.default_rng(seed).normal(scale=std, size=points.shape), std


# ----------------------------------------------------------------------------------------------
# Shapes


def sphere() -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=4, radius=1.0)


def torus() -> trimesh.Trimesh:
    transform = trimesh.transformations.rotation_matrix(np.radians(30), [1, 0, 0])
    transform[:3, 3] = [0.5, -0.2, 1.0]
    return trimesh.creation.torus(1.0, 0.3, major_sections=96, minor_sections=48,
                                  transform=transform)


def goblet() -> trimesh.Trimesh:
    """A wine glass (cm): profile in the (radius, height) plane revolved about the z axis."""
    wall, a, b, z_centre = 0.25, 3.6, 4.0, 11.0  # bowl: half-ellipse then a straight wall
    rim_radius, rim_height, stem_radius = 3.3, 16.0, 0.3
    theta0 = np.arcsin(stem_radius / a)
    outer_theta = np.linspace(theta0, np.pi / 2, 40)
    inner_theta = np.linspace(np.pi / 2, 0.0, 40)
    outer = np.stack([a * np.sin(outer_theta), z_centre - b * np.cos(outer_theta)], axis=1)
    inner = np.stack([(a - wall) * np.sin(inner_theta), z_centre - (b - wall) * np.cos(inner_theta)],
                     axis=1)
    foot = [[0.0, 0.0], [3.4, 0.0], [3.4, 0.2], [1.0, 0.45], [stem_radius, 1.2]]
    profile = np.concatenate([
        foot,
        outer,                                          # stem top -> widest point of the bowl
        [[rim_radius, rim_height], [rim_radius - wall, rim_height]],
        inner,                                          # widest point -> bottom of the bowl
    ])
    return trimesh.creation.revolve(profile, sections=96)


def _box(p, low, high):
    centre, half = (np.asarray(low) + high) / 2, (np.asarray(high) - low) / 2
    q = np.abs(p - centre) - half
    return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(axis=-1), 0)


def _cylinder(p, axis: int, centre, radius):
    other = [i for i in range(3) if i != axis]
    return np.linalg.norm(p[..., other] - np.asarray(centre), axis=-1) - radius


def bracket_sdf(p: np.ndarray) -> np.ndarray:
    """Signed distance (mm, negative inside) of an L-bracket with ribs and holes."""
    base = _box(p, [-40, 0, 0], [40, 50, 8])
    upright = _box(p, [-40, 0, 0], [40, 8, 50])
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    ribs = [np.maximum.reduce([np.abs(x - cx) - 3, (y + z - 40) / np.sqrt(2), -y, -z])
            for cx in (-34.0, 34.0)]
    body = np.minimum.reduce([base, upright, *ribs])
    holes = np.minimum.reduce([
        _cylinder(p, 2, [-18, 32], 5.0),   # bolt holes through the base (along z)
        _cylinder(p, 2, [18, 32], 5.0),
        _cylinder(p, 1, [0, 30], 9.0),     # large hole through the upright (along y)
    ])
    return np.maximum(body, -holes)


def _project(sdf, points: np.ndarray, steps: int = 4, eps: float = 1e-4) -> np.ndarray:
    """Newton steps x <- x - f(x) grad f / |grad f|^2 onto the zero set (central differences)."""
    offsets = np.eye(3) * eps
    for _ in range(steps):
        value = sdf(points)
        gradient = np.stack([(sdf(points + o) - sdf(points - o)) / (2 * eps) for o in offsets], axis=1)
        points = points - (value / np.maximum(np.sum(gradient**2, axis=1), 1e-12))[:, None] * gradient
    return points


def bracket() -> trimesh.Trimesh:
    # The grid is offset by a non-round amount so no grid point lies exactly on a face of the
    # part: the signs MC sees never hinge on the last bit of a float.
    cell, offset = 0.8, 0.137
    axes = [np.arange(-42.0 - offset, 42.0 + cell, cell), np.arange(-2.0 - offset, 52.0 + cell, cell),
            np.arange(-2.0 - offset, 52.0 + cell, cell)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    vertices, faces, _, _ = marching_cubes(bracket_sdf(grid), level=0.0, spacing=(cell,) * 3)
    vertices = vertices + [axes[0][0], axes[1][0], axes[2][0]]
    return trimesh.Trimesh(_project(bracket_sdf, vertices), faces, process=False)


# ----------------------------------------------------------------------------------------------


def build(out_dir: Path) -> list[dict]:
    """Writes every example into ``out_dir`` and returns the index entries."""
    out_dir.mkdir(parents=True, exist_ok=True)
    meshes = {"sphere": float32_mesh(sphere()), "torus": float32_mesh(torus()),
              "goblet": float32_mesh(goblet()), "bracket": float32_mesh(bracket())}
    for name, mesh in meshes.items():
        write_mesh_ply(out_dir / f"{name}_gt.ply", mesh.vertices, mesh.faces)

    specs = [  # id, title, shape, points, seed, noise label, relative std, units, description
        ("sphere", "Sphere", "sphere", 20_000, 1, "none", 0.0, "unitless",
         "A unit sphere: the simplest closed surface, a sanity check for every method."),
        ("torus", "Torus", "torus", 25_000, 2, "none", 0.0, "unitless",
         "A tilted, off-centre torus (R = 1, r = 0.3): genus one, curved everywhere."),
        ("goblet", "Goblet (thin walls)", "goblet", 40_000, 3, "none", 0.0, "cm",
         "A 16 cm wine glass with a 0.25 cm bowl wall, a thin stem and a thin foot: thin "
         "structures that an area penalty tends to close up or erase."),
        ("bracket", "Bracket (CSG part)", "bracket", 30_000, 4, "none", 0.0, "mm",
         "An 80 mm L-bracket with gusset ribs and three holes: sharp convex and concave edges."),
        ("bracket-noise-medium", "Bracket, medium noise", "bracket", 30_000, 5, "medium",
         NOISE_MEDIUM, "mm", "The bracket with Gaussian noise of std 0.005 x the longest side "
         "(0.4 mm), the paper's medium noise level."),
        ("torus-noise-max", "Torus, max noise", "torus", 25_000, 6, "max", NOISE_MAX, "unitless",
         "The torus with Gaussian noise of std 0.01 x the longest side, the paper's maximum "
         "noise level."),
    ]
    entries = []
    for example_id, title, shape, count, seed, level, relative_std, units, description in specs:
        mesh = meshes[shape]
        points = sample_cloud(mesh, count, seed)
        std = 0.0
        if relative_std:
            points, std = add_noise(points, relative_std, seed + 1000)
        points = points.astype(np.float32)
        cloud_name = f"{example_id}_cloud.ply" if shape == "goblet" else f"{example_id}_cloud.npy"
        if cloud_name.endswith(".ply"):
            write_points_ply(out_dir / cloud_name, points)
        else:
            np.save(out_dir / cloud_name, points)
        entries.append({
            "id": example_id, "title": title, "description": description,
            "cloud": cloud_name, "gt_mesh": f"{shape}_gt.ply", "points": count,
            "noise_level": level, "noise_std_relative": relative_std,
            "noise_std": round(std, 6), "units": units,
            "bbox_longest_side": round(float(np.ptp(mesh.vertices, axis=0).max()), 6),
            "seed": seed,
        })
    (out_dir / "index.json").write_text(json.dumps({"examples": entries}, indent=2) + "\n")
    return entries


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    out_dir = Path(argv[0]) if argv else HERE
    for entry in build(out_dir):
        print(f"{entry['id']:>22}: {entry['points']} points -> {entry['cloud']}, {entry['gt_mesh']}")


if __name__ == "__main__":
    main()
