"""Mesh extraction (docs/method.md §6): grid evaluation + marching cubes, coarse-to-fine.

Grid evaluation is the whole cost of meshing on a CPU. `extract_mesh` evaluates the SDF densely
only in blocks that may hold the zero level set: blocks of a hierarchy are tested at their
centres, and a block whose |f(centre)| exceeds `lipschitz` x its half-diagonal cannot contain
the surface (for an SDF with |∇f| <= lipschitz), so its points get the centre's value (the right
sign) instead of an evaluation.

That assumption holds for trained fits but not for every network (an untrained or early one, a
checkpoint from elsewhere, a sine network). It is checked on the values evaluated anyway: grid
differences steeper than `lipschitz`, or values on a skipped block's faces that contradict its
skip, send the blocks concerned to dense evaluation, until nothing contradicts a skip. Where the
surface is, the grid values and so the mesh are exactly those of dense evaluation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
from scipy import ndimage
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
    fallback_blocks: int = 0
    """Leaf blocks evaluated because a skip was contradicted (0 when |∇f| <= lipschitz held)."""
    refuted_blocks: int = 0
    """Blocks of every level whose skip their corners refuted, refined instead (0 likewise)."""


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
    stats: dict | None = None,
) -> tuple[np.ndarray, int]:
    """f on the n³ grid where the surface may be, sign-correct fill elsewhere.

    Skipping a block whose centre value exceeds `lipschitz` x its half-diagonal is safe only if
    |∇f| <= lipschitz. That is checked on what was evaluated, and blocks where it fails are
    evaluated after all (see `_verify`). Returns the grid values and the number of SDF
    evaluations made; `stats`, when given, receives how many leaf blocks the check added
    ("fallback_blocks") and how many skips the corner check refuted on the way down
    ("refuted_blocks"): both 0 where |∇f| <= lipschitz held.
    """
    axis, step = grid_axis(resolution, bound)
    grid = _LeafGrid(resolution, leaf_cells)
    levels = max(0, math.ceil(math.log2(max(1, grid.cells / leaf_cells))) - 1)
    size = leaf_cells * 2**levels  # block size in cells at the top level
    count = math.ceil(grid.cells / size)
    blocks = np.stack(np.meshgrid(*[np.arange(count)] * 3, indexing="ij"), -1).reshape(-1, 3)
    evaluations = 0
    refuted = 0
    while True:
        _check_stop(should_stop)
        start = np.minimum(blocks * size, grid.cells)
        stop = np.minimum(start + size, grid.cells)
        centres = (start + stop) / 2.0
        centre_values = evaluate((-bound + centres * step).astype(np.float32))
        evaluations += len(blocks)
        half_diagonal = 0.5 * step * np.linalg.norm(stop - start, axis=1)
        near = np.abs(centre_values) <= lipschitz * half_diagonal + 1e-6
        # A block about to be skipped has its corners checked too: a corner of the other sign,
        # or one further from the centre's value than the slope bound allows, refutes the skip
        # (a field steeper than `lipschitz`); such a block is refined like a near one.
        corner_values, corner_count = _corner_values(evaluate, axis, start[~near], stop[~near], grid.cells)
        evaluations += corner_count
        far_values = centre_values[~near, None]
        contradicted = np.any(
            (np.sign(corner_values) != np.sign(far_values))
            | (np.abs(corner_values - far_values) > lipschitz * half_diagonal[~near, None] + 1e-6),
            axis=1,
        )
        near[np.flatnonzero(~near)[contradicted]] = True
        refuted += int(np.count_nonzero(contradicted))
        grid.fill(blocks[~near], size // leaf_cells, centre_values[~near])
        blocks = blocks[near]
        if size == leaf_cells or len(blocks) == 0:
            break
        size //= 2
        children = (blocks[:, None, :] * 2 + _CHILD_OFFSETS[None]).reshape(-1, 3)
        blocks = children[np.all(children * size < grid.cells, axis=1)]
    values = grid.filled_values()
    mask = np.zeros((resolution,) * 3, bool)
    fresh = blocks
    added = 0
    while len(fresh):
        grid.state[tuple(fresh.T)] = _EVALUATED
        index = grid.new_points(fresh, mask)
        _check_stop(should_stop)
        if len(index):
            values[tuple(index.T)] = evaluate(axis[index])
            evaluations += len(index)
        fresh = _verify(grid, fresh, values, mask, lipschitz, step)
        added += len(fresh)
    if stats is not None:
        stats["fallback_blocks"] = added
        stats["refuted_blocks"] = refuted
    return values, evaluations


_FILLED, _EVALUATED = 1, 2


def _corner_values(evaluate: GridFunction, axis: np.ndarray, start: np.ndarray, stop: np.ndarray,
                   cells: int) -> tuple[np.ndarray, int]:
    """f at the 8 corner grid points of each block (B, 8), each distinct point evaluated once."""
    if not len(start):
        return np.empty((0, 8), np.float32), 0
    corners = np.minimum(start[:, None, :] + _CHILD_OFFSETS[None] * (stop - start)[:, None, :], cells)
    keys = np.ravel_multi_index(tuple(corners.reshape(-1, 3).T), (cells + 1,) * 3)
    unique, inverse = np.unique(keys, return_inverse=True)
    points = np.stack(np.unravel_index(unique, (cells + 1,) * 3), -1)
    return evaluate(axis[points])[inverse.reshape(-1)].reshape(-1, 8), len(unique)


class _LeafGrid:
    """Bookkeeping of coarse-to-fine meshing at the finest block size ("leaf" blocks).

    Every leaf block is either filled (its points take the value at the centre of the skipped
    block it lies in) or evaluated densely.
    """

    def __init__(self, resolution: int, leaf_cells: int):
        self.resolution = resolution
        self.cells = resolution - 1
        self.leaf = leaf_cells
        self.count = math.ceil(self.cells / leaf_cells)
        shape = (self.count,) * 3
        self.state = np.zeros(shape, np.int8)
        self.value = np.zeros(shape, np.float32)
        offsets = np.arange(leaf_cells + 1)
        self.offsets = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), -1).reshape(-1, 3).astype(np.int32)

    def fill(self, blocks: np.ndarray, factor: int, values: np.ndarray) -> None:
        """Mark the leaves of skipped blocks (each `factor` leaves a side) as filled, vectorised."""
        if not len(blocks):
            return
        per_axis = np.arange(factor)
        offsets = np.stack(np.meshgrid(per_axis, per_axis, per_axis, indexing="ij"), -1).reshape(-1, 3)
        leaves = (blocks[:, None, :] * factor + offsets[None]).reshape(-1, 3)
        owner = np.repeat(np.arange(len(blocks)), len(offsets))
        inside = np.all(leaves < self.count, axis=1)
        leaves, owner = leaves[inside], owner[inside]
        at = tuple(leaves.T)
        self.state[at] = _FILLED
        self.value[at] = values[owner]

    def filled_values(self) -> np.ndarray:
        """The grid with every point set to its leaf's fill value (evaluated points come later)."""
        owner = np.minimum(np.arange(self.resolution) // self.leaf, self.count - 1)
        # np.take keeps the result C-contiguous (chained fancy indexing does not, and marching
        # cubes would then copy the whole grid).
        return np.take(np.take(np.take(self.value, owner, 0), owner, 1), owner, 2)

    def points(self, leaves: np.ndarray) -> np.ndarray:
        """Grid indices (L, (leaf+1)³, 3) of the points of each leaf block, faces included."""
        leaves = leaves.astype(np.int32)  # int32 halves the memory of (L, 125, 3) at 512³
        return np.minimum(leaves[:, None, :] * self.leaf + self.offsets[None], self.cells)

    def new_points(self, leaves: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Points of these leaves not evaluated yet, marked as evaluated in `mask`."""
        keys = np.ravel_multi_index(tuple(self.points(leaves).reshape(-1, 3).T), mask.shape)
        flat = mask.reshape(-1)
        new = np.zeros_like(flat)
        new[keys] = True  # a flag array, not np.unique: far cheaper for millions of keys
        new &= ~flat
        keys = np.flatnonzero(new)
        flat[keys] = True
        return np.stack(np.unravel_index(keys, mask.shape), -1)


def _neighbours(flags: np.ndarray) -> np.ndarray:
    """Flags dilated to the 26 neighbours of each flagged leaf."""
    return ndimage.binary_dilation(flags, structure=np.ones((3, 3, 3), bool))


def _verify(grid: _LeafGrid, fresh: np.ndarray, values: np.ndarray, mask: np.ndarray,
            lipschitz: float, step: float) -> np.ndarray:
    """Filled leaves whose skip the newly evaluated values contradict, to evaluate after all.

    A block was skipped because |f(c)| > lipschitz x its half-diagonal, which for a field with
    |∇f| <= lipschitz means no zero inside. Two observations refute that for a filled leaf next
    to the evaluated region: (1) a neighbouring evaluated leaf whose grid differences are steeper
    than `lipschitz`, (2) an evaluated point on its own faces with the other sign than its fill.
    When more than a quarter of
    the filled leaves are refuted at once, the assumption is broken wholesale and every remaining
    filled leaf is evaluated (the dense mesh).
    """
    filled = grid.state == _FILLED
    if not filled.any():
        return np.empty((0, 3), np.int64)
    tolerance = 1e-6 + 1e-5 * float(np.abs(grid.value[filled]).max())
    # (1) slopes inside the newly evaluated leaves
    block = values[tuple(np.moveaxis(grid.points(fresh), -1, 0))].reshape((len(fresh),) + (grid.leaf + 1,) * 3)
    slope = max_grid_slope(block, step)
    steep = np.zeros_like(filled)
    steep[tuple(fresh[slope > lipschitz * (1 + 1e-3) + tolerance / step].T)] = True
    suspect = _neighbours(steep) & filled
    # (2) evaluated points on filled leaves next to the new ones, of the other sign than the fill
    near_fresh = np.zeros_like(filled)
    near_fresh[tuple(fresh.T)] = True
    candidates = np.argwhere(_neighbours(near_fresh) & filled & ~suspect)
    if len(candidates):
        at = tuple(np.moveaxis(grid.points(candidates), -1, 0))
        fill_sign = np.sign(grid.value[tuple(candidates.T)])[:, None]
        wrong = mask[at] & (np.sign(values[at]) != fill_sign)
        suspect[tuple(candidates[wrong.any(axis=1)].T)] = True
    if suspect.sum() > 0.25 * filled.sum():
        suspect = filled
    return np.argwhere(suspect)


def max_grid_slope(blocks: np.ndarray, step: float) -> np.ndarray:
    """Largest |difference| / step between neighbouring grid points, per block (B, n, n, n)."""
    slope = np.zeros(len(blocks), np.float32)
    for axis in (1, 2, 3):
        slope = np.maximum(slope, np.abs(np.diff(blocks, axis=axis)).reshape(len(blocks), -1).max(axis=1))
    return slope / step


_CHILD_OFFSETS = np.stack(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), -1).reshape(-1, 3)


def marching_cubes(
    values: np.ndarray, bound: float = BOX, *, spacing: str = "true"
) -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of a grid over [-bound, bound]³ as (vertices, faces), normalised coords.

    spacing="true" places vertices with the grid's real step (upper - lower)/(n - 1).
    spacing="paper" uses (upper - lower)/n as the original DiffCD code does: the grid is still
    evaluated at linspace(lower, upper, n), so its mesh comes out scaled by (n - 1)/n about the
    lower corner of the box (slightly small and shifted). Only for comparing with its tables.
    """
    if not (values.min() < 0 < values.max()):
        raise NoSurfaceError(
            "No surface found: the SDF has no zero crossing in the fitting box "
            f"(values range from {values.min():.3g} to {values.max():.3g}). "
            "The fit diverged or is too short; fit longer or with another seed."
        )
    if spacing not in ("true", "paper"):
        raise ValueError(f"spacing must be 'true' or 'paper', not {spacing!r}")
    n = values.shape[0]
    step = 2 * bound / (n - 1 if spacing == "true" else n)
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
    spacing: str = "true",
) -> MeshResult:
    """Mesh the zero level set of `evaluate` on a resolution³ grid over [-bound, bound]³.

    Args:
      max_faces: refuse (LimitError), before marching cubes, a mesh of more triangles.
      should_stop: polled between evaluation chunks; True raises TimeLimitError.
      spacing: "true" (the grid's real step) or "paper" (the original code's, see marching_cubes).
    """
    if resolution < 8:
        raise ValueError("mesh resolution must be at least 8")
    stats = {"fallback_blocks": 0, "refuted_blocks": 0}
    if coarse_to_fine:
        values, evaluations = evaluate_coarse_to_fine(
            evaluate, resolution, bound, lipschitz=lipschitz, should_stop=should_stop, stats=stats
        )
    else:
        values = evaluate_dense(evaluate, resolution, bound, should_stop=should_stop)
        evaluations = resolution**3
    check_mesh_size(values, max_faces)
    vertices, faces = marching_cubes(values, bound, spacing=spacing)
    if max_faces is not None and len(faces) > max_faces:
        raise LimitError(
            f"The mesh has {len(faces):,} triangles, more than the limit of {max_faces:,}. "
            "Mesh at a lower resolution."
        )
    return MeshResult(vertices, faces, evaluations, stats["fallback_blocks"], stats["refuted_blocks"])
