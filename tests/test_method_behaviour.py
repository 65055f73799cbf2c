"""The methods' losses as the fit uses them, checked against geometry worked out by hand.

test_losses.py checks the loss helpers alone; these call the registry's loss functions (what the
fit loop compiles) on analytic SDFs and on a small network, so a term that silently loses its
gradient, or pushes the wrong way, fails here even when every logged number looks normal.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial import cKDTree

from diffcd import losses, sampling
from diffcd.methods import (
    DiffCDConfig,
    NeuralPullConfig,
    diffcd_loss,
    diffcd_prepare,
    neural_pull_loss,
    neural_pull_prepare,
    surface_to_cloud_targets,
    traced_weights,
)
from diffcd.networks import NetworkConfig, init_params, make_sdf

TINY = NetworkConfig(hidden_layers=2, width=32, skip_layers=())
TINY_SDF = make_sdf(TINY)


def sphere_points(count: int, radius: float, seed: int = 0) -> np.ndarray:
    directions = np.random.default_rng(seed).standard_normal((count, 3))
    return (radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)).astype(np.float32)


def analytic_sphere(params, x):
    """An exact SDF with one parameter, the radius: f(r, x) = |x| - r."""
    return losses.safe_norm(x) - params["r"]


def diffcd_data(points: np.ndarray, seeds: np.ndarray, config: DiffCDConfig) -> dict:
    """The per-fit arrays diffcd_loss reads, built the way the fit loop builds them."""
    sigma = sampling.local_sigma(points, k=10)
    data = {"points": points, "sigma": sigma, **diffcd_prepare(points, sigma, config, 0)}
    candidates, radius = sampling.nearest_candidates(cKDTree(points), seeds, config.nn_candidates)
    data.update(seeds=seeds, seed_candidates=candidates, seed_radius=radius)
    return jax.device_put(data)


@functools.partial(jax.jit, static_argnames=("apply", "config", "batch_size", "terms"))
def diffcd_terms(apply, params, data, config, weights, key, batch_size, terms):
    """diffcd_loss's total and aux values, and their gradients in θ (the aux values carry
    gradients), from one compiled program shared by the tests of the same shapes."""

    def vector(p):
        total, aux = diffcd_loss(apply, p, data, config, weights, key, batch_size)
        return jnp.stack([total] + [aux[name] for name in terms]), aux

    jacobian, aux = jax.jacrev(vector, has_aux=True)(params)
    rows = [jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], jacobian) for i in range(1 + len(terms))]
    return aux, rows[0], dict(zip(terms, rows[1:]))


# ---------------------------------------------------------------------------------------------
# DiffCD on an exact sphere: every term's gradient in the radius is ±1 by geometry


@pytest.mark.parametrize("radius, expected_sign", [(0.35, -1.0), (0.45, 1.0)])
def test_diffcd_loss_pulls_an_exact_sphere_towards_the_cloud_through_both_terms(radius, expected_sign):
    """Cloud on |x| = 0.4, surface |x| = r. Seeds on the surface along the cloud's directions: each
    surface point's nearest cloud point is straight out (or in), so the surface→cloud distance is
    |r - 0.4| for every seed and its gradient in r is sign(r - 0.4); the cloud→surface term |f(p)|
    has the same gradient; the eikonal term is 0 (|∇f| = 1). DiffCD's loss is the mean of the two,
    so ∂L/∂r = sign(r - 0.4): half of it must come from the surface→cloud term."""
    config = DiffCDConfig(seed_count=400, nn_candidates=8)
    cloud = sphere_points(400, 0.4)
    seeds = cloud * np.float32(radius / 0.4)
    data = diffcd_data(cloud, seeds, config)
    weights = traced_weights(config)
    params = {"r": jnp.float32(radius)}
    aux, total, parts = diffcd_terms(analytic_sphere, params, data, config, weights, jax.random.PRNGKey(0), 100,
                                     ("point_to_surface", "eikonal"))
    cloud_to_surface, eikonal = parts["point_to_surface"], parts["eikonal"]
    assert float(aux["valid_surface_fraction"]) == 1.0
    assert float(aux["surface_to_point"]) == pytest.approx(abs(radius - 0.4), abs=1e-5)
    assert float(aux["point_to_surface"]) == pytest.approx(abs(radius - 0.4), abs=1e-5)
    assert float(eikonal["r"]) == pytest.approx(0.0, abs=1e-5)
    assert float(cloud_to_surface["r"]) == pytest.approx(expected_sign, abs=1e-5)
    surface_to_cloud = total["r"] - 0.5 * cloud_to_surface["r"] - weights["eikonal_weight"] * eikonal["r"]
    assert float(surface_to_cloud) == pytest.approx(0.5 * expected_sign, abs=1e-4)
    assert float(total["r"]) == pytest.approx(expected_sign, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# DiffCD on a network: the surface term's gradient is the implicit-function-theorem one


def _newton_projection(f, x: jax.Array, steps: int) -> jax.Array:
    """x ← x - f(x)∇f/|∇f|, written out here (not losses.project_to_surface)."""
    step = jax.jit(jax.vmap(jax.value_and_grad(f)))
    for _ in range(steps):
        value, grad = step(x)
        x = x - value[:, None] * grad / jnp.linalg.norm(grad, axis=1, keepdims=True)
    return x


def _flat(tree) -> jax.Array:
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


@jax.jit
def _implicit_gradient_point_by_point(params, surface, v):
    """Σ_s -(v_s·∇ₓf/|∇ₓf|²) ∂f(θ, s)/∂θ, one full parameter gradient per point."""
    f = lambda p, x: TINY_SDF(p, x[None])[0]
    spatial = jax.vmap(jax.grad(f, argnums=1), (None, 0))(params, surface)
    coefficients = jnp.sum(v * spatial, axis=1) / jnp.sum(spatial**2, axis=1)
    per_point = jax.vmap(lambda x: _flat(jax.grad(f)(params, x)))(surface)
    return -jnp.einsum("n,np->p", coefficients, per_point)


def test_diffcd_surface_gradient_is_the_per_point_implicit_formula_on_the_projected_points():
    """∂L/∂θ minus the cloud→surface and eikonal parts must be ½ Σ_s -(v_s·∇ₓf/|∇ₓf|²) ∂f(θ, s)/∂θ,
    with s the projected seeds, v_s = ∂ℓ/∂s for ℓ = mean |s - NN(s)|, computed here one point at
    a time. Every seed is drawn (seed_count = batch), so the set of projected points is known."""
    count = 64
    config = DiffCDConfig(seed_count=count, nn_candidates=300, projection_steps=4)
    apply = TINY_SDF
    params = init_params(TINY, jax.random.PRNGKey(3))
    f = lambda x: apply(params, x[None])[0]
    rng = np.random.default_rng(1)
    cloud = (sphere_points(300, 0.42, seed=2) + 0.03 * rng.standard_normal((300, 3))).astype(np.float32)
    seeds = sphere_points(count, 0.5, seed=4) + np.float32(0.01)  # near the untrained level set
    data = diffcd_data(cloud, seeds, config)
    weights = traced_weights(config)
    aux, total, parts = diffcd_terms(apply, params, data, config, weights, jax.random.PRNGKey(5), count,
                                     ("point_to_surface", "eikonal"))
    cloud_to_surface, eikonal = parts["point_to_surface"], parts["eikonal"]
    measured = _flat(total) - 0.5 * _flat(cloud_to_surface) - weights["eikonal_weight"] * _flat(eikonal)

    surface = _newton_projection(f, jnp.asarray(seeds), config.projection_steps)
    valid = np.abs(np.asarray(jax.vmap(f)(surface))) < config.valid_threshold
    assert float(aux["valid_surface_fraction"]) == pytest.approx(valid.mean()) and valid.mean() > 0.5
    nearest = cloud[cKDTree(cloud).query(np.asarray(surface))[1]]
    offsets = np.asarray(surface) - nearest
    distances = np.linalg.norm(offsets, axis=1)
    v = np.where(valid[:, None], offsets / distances[:, None], 0.0) / valid.sum()  # ∂ mean|s - t| / ∂s
    expected = 0.5 * _implicit_gradient_point_by_point(params, surface, jnp.asarray(v, jnp.float32))

    assert float(aux["surface_to_point"]) == pytest.approx(float(distances[valid].mean()), rel=1e-4)
    scale = float(jnp.max(jnp.abs(expected)))
    assert scale > 1e-3  # the surface term has a gradient worth checking
    np.testing.assert_allclose(measured, expected, rtol=1e-3, atol=2e-3 * scale)


# ---------------------------------------------------------------------------------------------
# Neural-Pull


def test_pull_step_moves_queries_onto_an_analytic_sphere():
    queries = jnp.asarray(sphere_points(200, 1.0) * np.random.default_rng(0).uniform(0.3, 1.7, (200, 1)), jnp.float32)
    pulled = losses.pulled_points(lambda x: jnp.linalg.norm(x, axis=-1) - 0.6, queries)
    np.testing.assert_allclose(jnp.linalg.norm(pulled, axis=-1), 0.6, atol=1e-5)
    directions = queries / jnp.linalg.norm(queries, axis=-1, keepdims=True)
    np.testing.assert_allclose(pulled, 0.6 * directions, atol=1e-5)  # along the gradient, not across


@functools.partial(jax.jit, static_argnames=("config",))
def _pull_value_and_grad(params, data, config, weights):
    loss = lambda p: neural_pull_loss(analytic_sphere, p, data, config, weights, jax.random.PRNGKey(0), 500)[0]
    return jax.value_and_grad(loss)(params)


@pytest.mark.parametrize("radius, expected_gradient", [(0.3, -1.0), (0.4, 0.0), (0.5, 1.0)])
def test_neural_pull_loss_is_zero_at_the_true_sphere_and_pulls_towards_it(radius, expected_gradient):
    """Queries around |x| = 0.4 whose targets are their projections onto it: pulled along an exact
    SDF of radius r, each query lands at distance |r - 0.4| from its target."""
    rng = np.random.default_rng(0)
    queries = sphere_points(2000, 1.0) * rng.uniform(0.3, 0.5, (2000, 1)).astype(np.float32)
    targets = 0.4 * queries / np.linalg.norm(queries, axis=1, keepdims=True)
    data = {"pull_queries": jnp.asarray(queries), "pull_targets": jnp.asarray(targets, jnp.float32)}
    config = NeuralPullConfig()
    value, gradient = _pull_value_and_grad({"r": jnp.float32(radius)}, data, config, traced_weights(config))
    assert float(value) == pytest.approx(abs(radius - 0.4), abs=1e-5)
    if expected_gradient:
        assert float(gradient["r"]) == pytest.approx(expected_gradient, abs=1e-4)


def test_neural_pull_pairs_target_each_querys_nearest_cloud_point():
    cloud = sphere_points(500, 0.4)
    sigma = sampling.local_sigma(cloud, k=10)
    extra = neural_pull_prepare(cloud, sigma, NeuralPullConfig(samples_per_point=4), seed=0)
    queries, targets = extra["pull_queries"], extra["pull_targets"]
    assert queries.shape == targets.shape == (2000, 3)
    _, nearest = cKDTree(cloud).query(queries)
    np.testing.assert_array_equal(targets, cloud[nearest])
    source = np.repeat(cloud, 4, axis=0)  # each query is a Gaussian sample around its point
    assert np.all(np.linalg.norm(queries - source, axis=1) < 6 * np.repeat(sigma, 4) + 1e-7)


# ---------------------------------------------------------------------------------------------
# The nearest-neighbour certificate


def test_certified_nearest_neighbours_are_exact_and_most_close_points_are_certified():
    """surface_to_cloud_targets picks a surface point's nearest cloud point among its seed's K
    nearest and certifies it when no point outside that candidate ball can be closer. Certified
    must imply exact (checked against a KD-tree), and points that moved little must certify."""
    rng = np.random.default_rng(0)
    cloud = rng.uniform(-0.5, 0.5, (2000, 3)).astype(np.float32)
    seeds = rng.uniform(-0.4, 0.4, (3000, 3)).astype(np.float32)
    # some surface points stay near their seed, some move several candidate radii away
    moves = rng.standard_normal((3000, 3)) * np.repeat([0.005, 0.05, 0.3], 1000)[:, None]
    surface = (seeds + moves).astype(np.float32)
    candidates, radius = sampling.nearest_candidates(cKDTree(cloud), seeds, 8)
    targets, _, certified = surface_to_cloud_targets(
        jnp.asarray(surface), jnp.asarray(seeds), jnp.asarray(candidates), jnp.asarray(radius), jnp.asarray(cloud)
    )
    targets, certified = np.asarray(targets), np.asarray(certified)
    exact = cloud[cKDTree(cloud).query(surface)[1]]
    correct = np.all(targets == exact, axis=1)
    assert np.all(correct[certified]), f"{np.sum(certified & ~correct)} certified targets are not the nearest"
    assert certified[:1000].mean() > 0.9  # points that hardly moved are certified
    assert not correct[2000:].all()  # the far-moved points do miss: this test can see a false certificate
    assert not certified[2000:].all()


# ---------------------------------------------------------------------------------------------
# SIREN = IGR + the area term


@pytest.mark.parametrize("method", ["siren", "igr"])
def test_siren_adds_the_area_term_and_igr_does_not(method):
    """On an exact sphere of radius 0.4 (cloud on it, eikonal 0) the loss is μ·area, where the area
    term's mean over the box [-0.8, 0.8]³ is ≈ 4π r² (2/α) / 1.6³ = 0.0098 for α = 100."""
    from diffcd.methods import METHODS, igr_loss

    config = METHODS[method].config_type()
    cloud = sphere_points(2000, 0.4)
    data = jax.device_put({"points": cloud, "sigma": sampling.local_sigma(cloud, k=10)})
    weights = traced_weights(config)
    total, aux = jax.jit(igr_loss, static_argnums=(0, 3, 6))(
        analytic_sphere, {"r": jnp.float32(0.4)}, data, config, weights, jax.random.PRNGKey(0), 20_000)
    assert float(aux["point_to_surface"]) == pytest.approx(0.0, abs=1e-5)
    if method == "igr":
        assert float(total) == pytest.approx(0.0, abs=1e-5)
    else:
        expected_area = 4 * np.pi * 0.4**2 * (2 / config.area_alpha) / 1.6**3
        assert float(aux["area"]) == pytest.approx(expected_area, rel=0.3)
        assert float(total) == pytest.approx(config.area_weight * float(aux["area"]), rel=1e-3, abs=1e-6)
