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


def steep_shell(p):
    """A thin shell (thickness 0.02) whose field grows 40x faster than distance."""
    return (40 * (np.abs(np.linalg.norm(p, axis=1) - 0.5) - 0.01)).astype(np.float32)


def steep_sphere(p):
    return (50 * (np.linalg.norm(p, axis=1) - 0.5)).astype(np.float32)


def sine_field(p):
    return (np.sin(25 * p[:, 0]) * np.sin(25 * p[:, 1]) * np.sin(25 * p[:, 2]) + 0.2).astype(np.float32)


@pytest.mark.parametrize("field", [steep_shell, steep_sphere, sine_field], ids=["shell", "sphere", "sine"])
def test_fields_steeper_than_the_bound_get_exactly_the_dense_mesh(field):
    # Every far-block skip of these fields would be wrong (|∇f| is 25-50, not <= 2): without the
    # check, coarse-to-fine drops most of the surface or finds none at all.
    dense = extract_mesh(field, 64, coarse_to_fine=False)
    fast = extract_mesh(field, 64, coarse_to_fine=True)
    np.testing.assert_array_equal(dense.faces, fast.faces)
    np.testing.assert_array_equal(dense.vertices, fast.vertices)


def test_a_steep_network_gets_exactly_the_dense_mesh():
    import jax

    from diffcd.networks import NetworkConfig, init_params
    from diffcd.sdf import evaluate_in_chunks

    network = NetworkConfig(hidden_layers=2, width=32, skip_layers=())
    params = init_params(network, jax.random.PRNGKey(3))  # geometric init: about |x| - 0.5
    output = params["params"]["output"]
    # Scaled output weights: f about 20 (|x| - 0.5), far steeper than |∇f| <= 2.
    params["params"]["output"] = jax.tree_util.tree_map(lambda w: 20 * w, output)
    evaluate = lambda x: evaluate_in_chunks(network, params, x)
    dense = extract_mesh(evaluate, 40, coarse_to_fine=False)
    fast = extract_mesh(evaluate, 40, coarse_to_fine=True)
    np.testing.assert_array_equal(dense.faces, fast.faces)
    np.testing.assert_array_equal(dense.vertices, fast.vertices)


def test_a_true_sdf_needs_no_fallback():
    mesh = extract_mesh(sphere(0.5), 97)
    assert mesh.fallback_blocks == 0 and mesh.evaluated_points < 0.3 * 97**3


def test_paper_spacing_shrinks_the_mesh_by_n_minus_1_over_n():
    true = extract_mesh(sphere(0.5), 64)
    paper = extract_mesh(sphere(0.5), 64, spacing="paper")
    # Same grid values; vertices scaled by 63/64 about the box's lower corner (-0.8, -0.8, -0.8).
    np.testing.assert_allclose(paper.vertices + 0.8, (true.vertices + 0.8) * 63 / 64, atol=1e-5)
