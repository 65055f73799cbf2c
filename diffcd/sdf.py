"""FittedSDF: a trained network with its normalisation, evaluated and meshed in input units."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import numpy as np
import trimesh

from diffcd import meshing
from diffcd.io import Normalization
from diffcd.networks import NetworkConfig, Params, make_sdf

EVAL_CHUNK = 32_768
"""Points per compiled evaluation call."""
EVAL_BUCKETS = (4096, 8192, 16_384, EVAL_CHUNK)
"""The only call shapes (compiled once each): full chunks, and the smallest bucket that holds
the remainder, so a call of a few thousand points (coarse-to-fine meshing makes many) does not
pay for 32k."""


@functools.lru_cache(maxsize=16)
def _compiled_sdf(network: NetworkConfig):
    return jax.jit(make_sdf(network))


def evaluate_in_chunks(network: NetworkConfig, params: Params, points: np.ndarray) -> np.ndarray:
    """f(params, points) for any number of points (N, 3), in fixed-size padded chunks.

    Pass parameters already on the device (`jax.device_put`) when calling this repeatedly, as
    meshing does: host (NumPy) parameters are copied to the device on every chunk. All chunks
    are dispatched before the first result is read, so the device never waits for the host.
    """
    apply = _compiled_sdf(network)
    points = np.asarray(points, np.float32)
    out = np.empty(len(points), np.float32)
    pending = []
    for start in range(0, len(points), EVAL_CHUNK):
        part = points[start : start + EVAL_CHUNK]
        size = next(b for b in EVAL_BUCKETS if b >= len(part))
        if len(part) < size:
            part = np.concatenate([part, np.zeros((size - len(part), 3), np.float32)])
        pending.append((start, apply(params, part)))
    for start, values in pending:
        stop = min(start + EVAL_CHUNK, len(points))
        out[start:stop] = np.asarray(values)[: stop - start]
    return out


def on_device(network: NetworkConfig, params: Params):
    """An evaluator (N, 3) -> (N,) whose parameters are copied to the device once, not per chunk."""
    params = jax.device_put(params)
    return lambda points: evaluate_in_chunks(network, params, points)


def to_trimesh(result: meshing.MeshResult, normalization: Normalization) -> trimesh.Trimesh:
    """A mesh in the input's coordinates; trimesh derives outward normals from the faces."""
    return trimesh.Trimesh(
        vertices=normalization.undo(result.vertices), faces=result.faces, process=False
    )


@dataclasses.dataclass(frozen=True)
class FittedSDF:
    """A fitted signed distance function, ready to evaluate or mesh in the input's units."""

    network: NetworkConfig
    params: Params
    normalization: Normalization
    method: str = "diffcd"
    method_config: Any = None
    steps: int = 0
    seed: int = 0

    def normalized(self, points: np.ndarray) -> np.ndarray:
        """f in normalised units at normalised points."""
        return evaluate_in_chunks(self.network, self.params, points)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Signed distances (N,) at points (N, 3) given in the input's coordinates and units."""
        points = np.asarray(points, np.float32).reshape(-1, 3)
        return self.normalized(self.normalization.apply(points)) * self.normalization.scale

    def extract_mesh(
        self,
        resolution: int = 256,
        *,
        coarse_to_fine: bool = True,
        max_faces: int | None = None,
        should_stop: meshing.StopCheck | None = None,
        spacing: str = "true",
    ) -> trimesh.Trimesh:
        """Marching-cubes mesh of the zero level set, in input coordinates.

        spacing="paper" places vertices as the original DiffCD code does (see
        `diffcd.meshing.marching_cubes`); only for comparing with the paper's tables.

        Raises NoSurfaceError when the level set is empty in the fitting box, LimitError above
        `max_faces` triangles and TimeLimitError when `should_stop()` turns true.
        """
        result = meshing.extract_mesh(
            on_device(self.network, self.params), resolution, coarse_to_fine=coarse_to_fine,
            max_faces=max_faces, should_stop=should_stop, spacing=spacing,
        )
        return to_trimesh(result, self.normalization)
