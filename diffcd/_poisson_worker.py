"""The child process of diffcd.poisson: Open3D's Screened Poisson on a cloud in the unit box.

Run as a script (``python _poisson_worker.py FOLDER``), not imported: it needs only NumPy and
Open3D, so the child starts without JAX. FOLDER holds ``input.npz`` (points, optional normals) and
``settings.json``; the child writes ``stage`` as it goes, then ``output.npz`` and ``status.json``
(``{"ok": true, ...timings}`` or ``{"ok": false, "kind": ..., "message": ...}``). The parent
(diffcd.poisson.reconstruct) bounds its time and can kill it; the child bounds its own memory.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


_OUT_OF_MEMORY = ("bad_alloc", "Cannot allocate memory", "failed to map segment", "out of memory",
                  "insufficient memory", "Resource temporarily unavailable")
"""What running into RLIMIT_AS looks like from NumPy, Open3D, Qhull and thread creation."""


def _vm_bytes() -> int:
    """Address space in use now (VmSize), which RLIMIT_AS bounds."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _limit_memory(extra_bytes: int) -> None:
    # After Open3D is loaded: the bound is what the reconstruction may add to the loaded library.
    limit = _vm_bytes() + int(extra_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _limit_cpu(seconds: float) -> None:
    # The parent kills the child at its wall-time limit first; this ends a child whose parent died.
    limit = int(seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (limit, limit))


def _write_json(folder: Path, name: str, data: dict) -> None:
    partial = folder / f".{name}.partial"
    partial.write_text(json.dumps(data))
    partial.replace(folder / name)


def _stage(folder: Path, name: str) -> None:
    _write_json(folder, "stage", {"stage": name})


def _outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces wound so that the (closed, untrimmed) Poisson surface has positive volume."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    volume = float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) / 6.0
    return faces if volume >= 0 else np.ascontiguousarray(faces[:, ::-1])


def _orient(o3d, cloud, neighbours: int) -> None:
    """Orient the normals consistently on the tangent-plane graph, which Open3D builds with Qhull.

    Qhull's Delaunay step is slow on exactly coplanar points (a CAD part's flat faces: 57 s of CPU
    for the bracket example instead of 1.6 s) and fails on exactly cospherical ones (a synthetic
    sphere), so the graph is built on a copy moved by a millionth of the box; its normals are kept.
    """
    moved = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(
        np.asarray(cloud.points) + np.random.default_rng(0).normal(scale=1e-6, size=(len(cloud.points), 3))))
    moved.normals = cloud.normals
    moved.orient_normals_consistent_tangent_plane(neighbours)
    cloud.normals = moved.normals


def reconstruct(folder: Path, settings: dict, points: np.ndarray, normals: np.ndarray | None) -> dict:
    import open3d as o3d

    import numpy.random  # noqa: F401  (loaded now: a module loaded under the bound could fail to map)

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    _limit_memory(settings["memory_bytes"])
    times = {}
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    _stage(folder, "normals")
    start = time.perf_counter()
    if normals is None:
        cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=settings["normal_neighbors"]))
        _orient(o3d, cloud, settings["orient_neighbors"])
    else:
        cloud.normals = o3d.utility.Vector3dVector(normals.astype(np.float64))
    times["normals_seconds"] = time.perf_counter() - start

    _stage(folder, "solve")
    start = time.perf_counter()
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
        cloud, depth=settings["depth"], scale=settings["scale"], linear_fit=False, n_threads=settings["threads"])
    times["solve_seconds"] = time.perf_counter() - start

    _stage(folder, "trim")
    start = time.perf_counter()
    vertices = np.asarray(mesh.vertices)
    faces = np.asarray(mesh.triangles, dtype=np.int64)
    densities = np.asarray(densities)
    solved_faces = len(faces)
    if solved_faces > settings["max_faces"]:
        return {"ok": False, "kind": "faces", "faces": solved_faces, **times}
    if solved_faces:
        faces = _outward(vertices, faces)
        keep = densities >= np.quantile(densities, settings["trim_quantile"])
        faces = faces[keep[faces].all(axis=1)]
        used = np.unique(faces)
        remap = np.full(len(vertices), -1, np.int64)
        remap[used] = np.arange(len(used))
        vertices, faces = vertices[used], remap[faces]
    times["trim_seconds"] = time.perf_counter() - start
    np.savez(folder / "output.npz", vertices=vertices, faces=faces)
    return {"ok": True, "solved_faces": solved_faces, "cpu_seconds": time.process_time(), **times}


def main(folder: str) -> int:
    folder = Path(folder)
    settings = json.loads((folder / "settings.json").read_text())
    _limit_cpu(settings["cpu_seconds"])
    with np.load(folder / "input.npz") as data:
        points = data["points"]
        normals = data["normals"] if "normals" in data.files else None
    try:
        status = reconstruct(folder, settings, points, normals)
    except MemoryError:
        status = {"ok": False, "kind": "memory"}
    except Exception as error:  # Open3D raises RuntimeError for std::bad_alloc and for its own checks
        text = str(error)
        kind = "memory" if any(s in text for s in _OUT_OF_MEMORY) else "error"
        first_line = (text.strip().splitlines() or [""])[0][:300]
        status = {"ok": False, "kind": kind, "message": f"{type(error).__name__}: {first_line}"}
    _write_json(folder, "status.json", status)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
