"""Screened Poisson surface reconstruction: a classical method next to the neural ones.

The cloud is mapped into the unit box (``diffcd.io.Normalization``, as for the neural methods),
normals are estimated and oriented where the cloud has none, Open3D solves the Screened Poisson
equation on an octree, the least supported vertices are trimmed, and the mesh is mapped back.
The solve cannot be interrupted, so it runs in a child process (``_poisson_worker.py``) whose
time the parent bounds and whose memory the child bounds; ``should_stop`` kills it.

References:
  Kazhdan & Hoppe, "Screened Poisson Surface Reconstruction", ACM ToG 32(3), 2013.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import trimesh

from diffcd.errors import ConfigError, DiffCDError, LimitError, NoSurfaceError, PointCloudError, TimeLimitError
from diffcd.io import Normalization

__all__ = ["PoissonConfig", "PoissonResult", "reconstruct", "available", "default_depth", "resolve", "MIN_POINTS"]

MIN_POINTS = 51
"""Fewest points (as diffcd.io loads) and never fewer than the normal-estimation neighbours + 1."""
DEFAULT_MAX_POINTS = 1_000_000
DEFAULT_MAX_FACES = 5_000_000
DEFAULT_TIME_LIMIT_S = 600.0
DEFAULT_MEMORY_BYTES = 4 << 30
_WORKER = Path(__file__).with_name("_poisson_worker.py")
_POLL_S = 0.05


@dataclasses.dataclass(frozen=True)
class PoissonConfig:
    """Settings of a Screened Poisson reconstruction; None means chosen from the cloud."""

    depth: int | None = None
    """Octree depth of the solve (2^depth cells across the box); None: `default_depth(points)`."""
    trim_quantile: float = 0.02
    """Fraction of the lowest-density vertices removed: surface the points do not support."""
    normal_neighbors: int = 30
    """Neighbours of the PCA normal estimate (clouds without normals)."""
    orient_neighbors: int = 15
    """Neighbours of the tangent-plane graph that orients the estimated normals."""
    scale: float = 1.1
    """Side of the solve's cube over the cloud's bounding box (Open3D's default)."""
    use_normals: bool = True
    """Use the cloud's own normals when it has them (False: estimate them anyway)."""
    threads: int = -1
    """Threads of the solve (-1: all cores)."""

    def __post_init__(self) -> None:
        for name in ("depth", "normal_neighbors", "orient_neighbors", "threads"):
            value = getattr(self, name)
            if isinstance(value, float) and value.is_integer():  # "poisson:depth=9" parses as 9.0
                object.__setattr__(self, name, int(value))
        if self.depth is not None and not (isinstance(self.depth, int) and 1 <= self.depth <= 12):
            raise ConfigError(f"PoissonConfig.depth must be an integer from 1 to 12, got {self.depth!r}.")
        if not 0.0 <= self.trim_quantile < 1.0:
            raise ConfigError(f"PoissonConfig.trim_quantile must be in [0, 1), got {self.trim_quantile!r}.")
        for name in ("normal_neighbors", "orient_neighbors"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 3):
                raise ConfigError(f"PoissonConfig.{name} must be an integer of at least 3, got {getattr(self, name)!r}.")
        if not (math.isfinite(self.scale) and 1.0 <= self.scale <= 4.0):
            raise ConfigError(f"PoissonConfig.scale must be from 1 to 4, got {self.scale!r}.")


@dataclasses.dataclass(frozen=True)
class PoissonResult:
    """A reconstruction: the mesh in the input's coordinates and what it took."""

    mesh: trimesh.Trimesh
    summary: dict[str, Any]
    """method, the resolved config, points, normals ("given" or "estimated"), the seconds of
    normals, solve and trim, the child's wall time (fit_seconds) and CPU time, faces solved."""


def available() -> bool:
    """Whether Open3D is installed (the `poisson` extra), without importing it (seconds, ~150 MB)."""
    import importlib.util

    return importlib.util.find_spec("open3d") is not None


def default_depth(point_count: int) -> int:
    """Octree depth for a cloud: about one point per surface cell, from 5 to 10.

    A surface crosses about 4^depth cells of a 2^depth grid, so depth = ceil(log4(points)):
    8 for 16k–65k points (the paper-ish default), 9 up to 262k, 10 above.
    """
    return int(np.clip(math.ceil(math.log(max(point_count, 1), 4)), 5, 10))


def resolve(config: PoissonConfig, point_count: int) -> PoissonConfig:
    """The config with every None chosen from the cloud."""
    if config.depth is None:
        config = dataclasses.replace(config, depth=default_depth(point_count))
    return config


def _check_points(points, normals, max_points: int, min_points: int) -> tuple[np.ndarray, np.ndarray | None]:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise PointCloudError(f"Screened Poisson needs points of shape (N, 3), got {points.shape}.")
    bad = int((~np.isfinite(points)).any(axis=1).sum())
    if bad:
        raise PointCloudError(f"{bad:,} of the {len(points):,} points have NaN or infinite coordinates; "
                              "remove them (diffcd.io.load_point_cloud refuses such files) and try again.")
    if len(points) < min_points:
        raise PointCloudError(f"Screened Poisson needs at least {min_points} points to estimate normals "
                              f"and solve; this cloud has {len(points)}.")
    if len(points) > max_points:
        raise LimitError(f"The cloud has {len(points):,} points; Screened Poisson here takes at most "
                         f"{max_points:,}. Downsample it first.")
    if normals is not None:
        normals = np.asarray(normals, dtype=np.float64)
        if normals.shape != points.shape or not np.isfinite(normals).all():
            raise PointCloudError(f"The normals must be finite and of the points' shape {points.shape}; "
                                  f"got {normals.shape}. Pass no normals to have them estimated.")
    return points, normals


def reconstruct(
    points,
    normals=None,
    config: PoissonConfig = PoissonConfig(),
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    max_faces: int = DEFAULT_MAX_FACES,
    time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[str], None] | None = None,
) -> PoissonResult:
    """Screened Poisson reconstruction of a point cloud, in a bounded child process.

    Args:
      points: ``(N, 3)`` points in any units (a ``diffcd.io.PointCloud`` works too, with its normals).
      normals: optional ``(N, 3)`` normals (oriented outward); estimated when None.
      config: the settings; its None fields are chosen from the cloud (``resolve``).
      max_points: more points than this raise LimitError before any work.
      max_faces: a solved mesh of more faces raises LimitError (lower the depth).
      time_limit_s: wall time of the child, start-up included; past it the child is killed.
      memory_bytes: memory the child may add to the loaded library; past it the solve fails.
      should_stop: polled every 50 ms; True kills the child.
      progress: called with each stage: "starting", "normals", "solve", "trim".

    Returns:
      A PoissonResult with the mesh in the input's coordinates.

    Raises:
      PointCloudError: too few points, non-finite coordinates, bad normals.
      LimitError: too many points or faces, or the memory bound was hit.
      TimeLimitError: past the time limit, or stopped by should_stop.
      NoSurfaceError: nothing was left after trimming.
      DiffCDError: Open3D is missing or the child failed otherwise.
    """
    if normals is None and getattr(points, "normals", None) is not None:
        normals = points.normals
    points = getattr(points, "points", points)
    min_points = max(MIN_POINTS, config.normal_neighbors + 1, config.orient_neighbors + 1)
    points, normals = _check_points(points, normals, max_points, min_points)
    if not config.use_normals:
        normals = None
    config = resolve(config, len(points))
    normalization = Normalization.from_points(points)
    settings = {**dataclasses.asdict(config), "max_faces": int(max_faces), "memory_bytes": int(memory_bytes),
                "cpu_seconds": time_limit_s * (os.cpu_count() or 1)}
    with tempfile.TemporaryDirectory(prefix="diffcd-poisson-") as folder:
        folder = Path(folder)
        arrays = {"points": normalization.apply(points)}
        if normals is not None:
            arrays["normals"] = normals
        np.savez(folder / "input.npz", **arrays)
        (folder / "settings.json").write_text(json.dumps(settings))
        status, wall = _run_child(folder, time_limit_s, should_stop, progress or (lambda stage: None))
        if not status.get("ok"):
            raise _child_error(status, max_faces=max_faces, memory_bytes=memory_bytes, depth=config.depth)
        with np.load(folder / "output.npz") as data:
            vertices, faces = data["vertices"], data["faces"]
    if len(faces) == 0:
        raise NoSurfaceError("Screened Poisson left no surface after trimming; lower trim_quantile or "
                             "check that the cloud samples a surface.")
    mesh = trimesh.Trimesh(normalization.undo(vertices), faces, process=False)
    summary = {
        "method": "poisson",
        "poisson": dataclasses.asdict(config),
        "normalization": normalization.to_dict(),
        "points": len(points),
        "normals": "estimated" if normals is None else "given",
        **{k: round(float(status[k]), 4) for k in ("normals_seconds", "solve_seconds", "trim_seconds")},
        "fit_seconds": round(wall, 4),
        "cpu_seconds": round(float(status["cpu_seconds"]), 4),
        "solved_faces": int(status["solved_faces"]),
    }
    return PoissonResult(mesh, summary)


def _run_child(folder: Path, time_limit_s: float, should_stop, progress) -> tuple[dict, float]:
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "PYTHONNOUSERSITE": "1"}
    start = time.perf_counter()
    progress("starting")
    with open(folder / "stderr.txt", "wb") as stderr:
        child = subprocess.Popen([sys.executable, str(_WORKER), str(folder)], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=stderr, env=env, start_new_session=True)
    stage = None
    try:
        while child.poll() is None:
            if should_stop is not None and should_stop():
                _kill(child)
                raise TimeLimitError("Screened Poisson was stopped before it finished.")
            if time.perf_counter() - start > time_limit_s:
                _kill(child)
                raise TimeLimitError(f"Screened Poisson ran past its time limit of {time_limit_s:g} s and was "
                                     "stopped; lower the octree depth or the number of points.")
            stage = _report_stage(folder, stage, progress)
            time.sleep(_POLL_S)
    finally:
        if child.poll() is None:
            _kill(child)
    _report_stage(folder, stage, progress)
    wall = time.perf_counter() - start
    try:
        return json.loads((folder / "status.json").read_text()), wall
    except (OSError, ValueError):
        return {"ok": False, "kind": "crash", "returncode": child.returncode,
                "stderr": (folder / "stderr.txt").read_text(errors="replace")[-2000:]}, wall


def _report_stage(folder: Path, stage, progress):
    try:
        now = json.loads((folder / "stage").read_text())["stage"]
    except (OSError, ValueError, KeyError):
        return stage
    if now != stage:
        progress(now)
    return now


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)  # its own session: Open3D's threads go with it
    except ProcessLookupError:
        pass
    child.wait()


def _child_error(status: dict, *, max_faces: int, memory_bytes: int, depth: int) -> DiffCDError:
    kind = status.get("kind")
    gigabytes = memory_bytes / 2**30
    if kind == "faces":
        return LimitError(f"Screened Poisson made {status['faces']:,} faces at depth {depth}, more than the "
                          f"limit of {max_faces:,}; lower the octree depth.")
    stderr = status.get("stderr", "") + status.get("message", "")
    if kind == "memory" or any(s in stderr for s in ("bad_alloc", "MemoryError", "Cannot allocate memory")):
        return LimitError(f"Screened Poisson needed more than its memory limit of {gigabytes:.2g} GB at depth "
                          f"{depth}; lower the octree depth or the number of points.")
    if "No module named 'open3d'" in stderr or "cannot open shared object file" in stderr:
        return DiffCDError("Screened Poisson needs Open3D and, on Linux, the system libraries of "
                           "packages.txt (libgl1, libegl1, ...): pip install 'diffcd[poisson]'. "
                           f"({_last_line(stderr)})")
    if kind == "crash":
        return DiffCDError(f"Screened Poisson's process ended without a result (exit code {status.get('returncode')}): "
                           f"{_last_line(stderr)}")
    return DiffCDError(f"Screened Poisson failed: {status.get('message', 'no reason given')}.")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "it printed nothing."
