"""Mesh extraction: true grid step, coarse-to-fine equals dense where the surface is, no-surface errors."""

import numpy as np
import pytest

from diffcd.errors import NoSurfaceError
from diffcd.meshing import extract_mesh, grid_axis


def sphere(radius=0.5, centre=(0.0, 0.0, 0.0)):
    return lambda p: (np.linalg.norm(p - np.asarray(centre), axis=-1) - radius).astype(np.float32)


def torus(major=0.5, minor=0.15):
    def f(p):
        q = np.stack([np.linalg.norm(p[:, :2], axis=1) - major, p[:, 2]], axis=1)
        return (np.linalg.norm(q, axis=1) - minor).astype(np.float32)

    return f


def test_grid_step_is_the_true_spacing():
    axis, step = grid_axis(5, 0.8)
    np.testing.assert_allclose(axis, [-0.8, -0.4, 0.0, 0.4, 0.8])
    assert step == pytest.approx(0.4)


@pytest.mark.parametrize("resolution", [33, 64, 100])
def test_sphere_vertices_lie_on_the_sphere(resolution):
    mesh = extract_mesh(sphere(0.5), resolution)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    step = 1.6 / (resolution - 1)
    # Linear interpolation along grid edges errs by O(step²/radius).
    assert np.abs(radii - 0.5).max() < step**2 / 0.5 + 1e-4


@pytest.mark.parametrize("shape", [sphere(0.5), sphere(0.2, (0.3, -0.1, 0.2)), torus()])
@pytest.mark.parametrize("resolution", [64, 97])
def test_coarse_to_fine_gives_the_dense_mesh_with_fewer_evaluations(shape, resolution):
    dense = extract_mesh(shape, resolution, coarse_to_fine=False)
    fast = extract_mesh(shape, resolution, coarse_to_fine=True)
    np.testing.assert_array_equal(dense.vertices, fast.vertices)
    np.testing.assert_array_equal(dense.faces, fast.faces)
    assert fast.evaluated_points < 0.5 * dense.evaluated_points


def test_faces_are_wound_outward():
    mesh = extract_mesh(sphere(0.5), 48)
    triangles = mesh.vertices[mesh.faces]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    assert np.mean(np.sum(normals * triangles.mean(axis=1), axis=1) > 0) > 0.99


@pytest.mark.parametrize("coarse_to_fine", [True, False])
def test_a_field_without_zero_crossing_says_no_surface(coarse_to_fine):
    with pytest.raises(NoSurfaceError, match="No surface found"):
        extract_mesh(lambda p: np.ones(len(p), np.float32), 32, coarse_to_fine=coarse_to_fine)
    with pytest.raises(NoSurfaceError):
        extract_mesh(sphere(5.0), 32, coarse_to_fine=coarse_to_fine)  # everything inside
