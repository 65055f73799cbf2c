"""Mesh extraction (method.md §6): grid evaluation + marching cubes, coarse-to-fine.

Grid evaluation is the whole cost of meshing on a CPU. `extract_mesh` evaluates the SDF densely
only in blocks that may hold the zero level set: blocks of a hierarchy are tested at their
centres, and a block whose |f(centre)| exceeds `lipschitz` x its half-diagonal cannot contain
the surface (for an SDF with |∇f| <= lipschitz), so its points get the centre's value (the right
sign) instead of an evaluation. Where the surface is, the grid values and so the mesh are exactly
those of dense evaluation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
from skimage import measure

from diffcd.errors import LimitError, NoSurfaceError, TimeLimitError
from diffcd.sampling import BOX

GridFunction = Callable[[np.ndarray], np.ndarray]
"""Evaluates the SDF at points (N, 3) in normalised coordinates, returning (N,) values."""
StopCheck = Callable[[], bool]
"""Called between evaluation chunks; returning True aborts meshing with TimeLimitError."""


def _check_stop(should_stop: StopCheck | None) -> None:
    if should_stop is not None and should_stop():
        raise TimeLimitError(
            "Meshing was stopped: it ran past its time limit. Mesh at a lower resolution."
        )


def active_cells(values: np.ndarray) -> int:
    """Grid cells whose corners change sign: each gives marching cubes at least one triangle."""
    inside = values < 0
    any_in = np.zeros(np.subtract(values.shape, 1), bool)
    all_in = np.ones(np.subtract(values.shape, 1), bool)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                corner = inside[dx : dx + any_in.shape[0], dy : dy + any_in.shape[1], dz : dz + any_in.shape[2]]
                any_in |= corner
                all_in &= corner
    return int(np.count_nonzero(any_in & ~all_in))


def check_mesh_size(values: np.ndarray, max_faces: int | None) -> None:
    """Refuse, before marching cubes, a level set that would give more than max_faces triangles."""
    if max_faces is None:
        return
    cells = active_cells(values)
    if cells > max_faces:
        raise LimitError(
            f"The mesh would have more than {max_faces:,} triangles ({cells:,} grid cells cross the "
            "surface): the field is too irregular for this resolution. Mesh at a lower resolution."
        )


@dataclasses.dataclass(frozen=True)
class MeshResult:
    vertices: np.ndarray  # (V, 3) normalised coordinates
    faces: np.ndarray  # (F, 3)
    evaluated_points: int
    """How many grid points the SDF was evaluated at (dense: resolution³)."""


def grid_axis(resolution: int, bound: float = BOX) -> tuple[np.ndarray, float]:
    """Grid coordinates along one axis and the true grid step (upper - lower)/(n - 1)."""
    return np.linspace(-bound, bound, resolution, dtype=np.float32), 2 * bound / (resolution - 1)


def evaluate_dense(
    evaluate: GridFunction, resolution: int, bound: float = BOX, *, should_stop: StopCheck | None = None
) -> np.ndarray:
    """f on every point of the n³ grid, a slab of x-slices at a time."""
    axis, _ = grid_axis(resolution, bound)
    values = np.empty((resolution,) * 3, np.float32)
    slab = max(1, 2**18 // (resolution * resolution))
    for start in range(0, resolution, slab):
        _check_stop(should_stop)
        stop = min(resolution, start + slab)
        points = np.stack(np.meshgrid(axis[start:stop], axis, axis, indexing="ij"), -1)
        values[start:stop] = evaluate(points.reshape(-1, 3)).reshape(stop - start, resolution, resolution)
    return values


def evaluate_coarse_to_fine(
    evaluate: GridFunction,
    resolution: int,
    bound: float = BOX,
    *,
    leaf_cells: int = 4,
    lipschitz: float = 2.0,
    should_stop: StopCheck | None = None,
) -> tuple[np.ndarray, int]:
    """f on the n³ grid where the surface may be, sign-correct fill elsewhere.

    Returns the grid values and the number of SDF evaluations made.
    """
    axis, step = grid_axis(resolution, bound)
    cells = resolution - 1
    values = np.empty((resolution,) * 3, np.float32)
    levels = max(0, math.ceil(math.log2(max(1, cells / leaf_cells))) - 1)
    size = leaf_cells * 2**levels  # block size in cells at the top level
    count = math.ceil(cells / size)
    blocks = np.stack(np.meshgrid(*[np.arange(count)] * 3, indexing="ij"), -1).reshape(-1, 3)
    evaluations = 0
    while True:
        _check_stop(should_stop)
        start = np.minimum(blocks * size, cells)
        stop = np.minimum(start + size, cells)
        centres = (start + stop) / 2.0
        points = (-bound + centres * step).astype(np.float32)
        centre_values = evaluate(points)
        evaluations += len(points)
        half_diagonal = 0.5 * step * np.linalg.norm(stop - start, axis=1)
        near = np.abs(centre_values) <= lipschitz * half_diagonal + 1e-6
        for (a, b, c), (x, y, z), v in zip(start[~near], stop[~near], centre_values[~near]):
            values[a : x + 1, b : y + 1, c : z + 1] = v
        blocks = blocks[near]
        if size == leaf_cells or len(blocks) == 0:
            break
        size //= 2
        children = (blocks[:, None, :] * 2 + _CHILD_OFFSETS[None]).reshape(-1, 3)
        blocks = children[np.all(children * size < cells, axis=1)]
    if len(blocks):
        start = np.minimum(blocks * size, cells)
        mask = np.zeros((resolution,) * 3, bool)
        offsets = np.stack(np.meshgrid(*[np.arange(size + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
        index = np.minimum(start[:, None, :] + offsets[None], cells).reshape(-1, 3)
        mask[index[:, 0], index[:, 1], index[:, 2]] = True
        index = np.argwhere(mask)
        _check_stop(should_stop)
        values[mask] = evaluate(axis[index])
        evaluations += len(index)
    return values, evaluations


_CHILD_OFFSETS = np.stack(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), -1).reshape(-1, 3)


def marching_cubes(values: np.ndarray, bound: float = BOX) -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of a grid over [-bound, bound]³ as (vertices, faces), normalised coords."""
    if not (values.min() < 0 < values.max()):
        raise NoSurfaceError(
            "No surface found: the SDF has no zero crossing in the fitting box "
            f"(values range from {values.min():.3g} to {values.max():.3g}). "
            "The fit diverged or is too short; fit longer or with another seed."
        )
    step = 2 * bound / (values.shape[0] - 1)
    vertices, faces, _, _ = measure.marching_cubes(values, level=0.0, spacing=(step,) * 3)
    return (vertices - bound).astype(np.float32), faces.astype(np.int64)


def extract_mesh(
    evaluate: GridFunction,
    resolution: int = 256,
    *,
    bound: float = BOX,
    coarse_to_fine: bool = True,
    lipschitz: float = 2.0,
    max_faces: int | None = None,
    should_stop: StopCheck | None = None,
) -> MeshResult:
    """Mesh the zero level set of `evaluate` on a resolution³ grid over [-bound, bound]³.

    Args:
      max_faces: refuse (LimitError), before marching cubes, a mesh of more triangles.
      should_stop: polled between evaluation chunks; True raises TimeLimitError.
    """
    if resolution < 8:
        raise ValueError("mesh resolution must be at least 8")
    if coarse_to_fine:
        values, evaluations = evaluate_coarse_to_fine(
            evaluate, resolution, bound, lipschitz=lipschitz, should_stop=should_stop
        )
    else:
        values = evaluate_dense(evaluate, resolution, bound, should_stop=should_stop)
        evaluations = resolution**3
    check_mesh_size(values, max_faces)
    vertices, faces = marching_cubes(values, bound)
    if max_faces is not None and len(faces) > max_faces:
        raise LimitError(
            f"The mesh has {len(faces):,} triangles, more than the limit of {max_faces:,}. "
            "Mesh at a lower resolution."
        )
    return MeshResult(vertices, faces, evaluations)
