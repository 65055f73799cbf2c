"""The loss terms, above all DiffCD's implicit surface-to-point gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcd import losses
from diffcd.networks import NetworkConfig, init_params, make_sdf

SMALL = NetworkConfig(hidden_layers=3, width=32, skip_layers=(2,))


def _setup(dtype=jnp.float32, count=64):
    params = init_params(SMALL, jax.random.PRNGKey(0))
    params = jax.tree_util.tree_map(lambda p: p.astype(dtype), params)
    apply = make_sdf(SMALL)
    rng = np.random.default_rng(0)
    directions = rng.standard_normal((count, 3))
    start = 0.45 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    frozen = lambda x: apply(params, x)
    surface = start.astype(dtype)
    for _ in range(30):  # proper Newton steps: converge tightly onto the level set
        values, gradients = losses.values_and_gradients(frozen, surface)
        surface = surface - (values / jnp.sum(gradients**2, -1))[:, None] * gradients
    targets = jnp.asarray(surface + 0.05 * rng.standard_normal((count, 3)), dtype)
    return apply, params, surface, targets


def _point_loss(targets):
    return lambda s: jnp.mean(losses.safe_norm(s - targets))


def _surrogate_gradient(apply, params, surface, targets):
    _, gradients = losses.values_and_gradients(lambda x: apply(params, x), surface)

    def loss(p):
        return losses.implicit_surface_loss(apply(p, surface), surface, gradients, _point_loss(targets))

    return jax.grad(loss)(params)


def _flat(tree):
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


def test_surrogate_gradient_equals_per_point_parameter_gradients():
    """The slow way: one full parameter gradient per surface point, chained by the IFT."""
    apply, params, surface, targets = _setup()
    fast = _flat(_surrogate_gradient(apply, params, surface, targets))

    v = jax.grad(_point_loss(targets))(surface)  # dℓ/ds, (N, 3)
    spatial = jax.vmap(jax.grad(lambda x: apply(params, x)))(surface)
    per_point = jax.vmap(lambda x: _flat(jax.grad(lambda p: apply(p, x))(params)))(surface)
    # ds/dθ = -∇ₓf (∂f/∂θ)ᵀ / |∇ₓf|²  =>  dℓ/dθ = Σ_s v_s · ds/dθ
    ds_dtheta = -spatial[:, :, None] * per_point[:, None, :] / jnp.sum(spatial**2, -1)[:, None, None]
    slow = jnp.einsum("nk,nkp->p", v, ds_dtheta)

    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(slow))))


def test_surrogate_gradient_matches_finite_differences_of_the_projected_loss():
    """Independent check: move θ, re-project the points onto the new level set, difference ℓ."""
    with jax.enable_x64(True):
        apply, params, surface, targets = _setup(jnp.float64)
        grad = _surrogate_gradient(apply, params, surface, targets)
        direction = jax.tree_util.tree_map(
            lambda p, k: jax.random.normal(k, p.shape, jnp.float64),
            params,
            jax.tree_util.tree_unflatten(
                jax.tree_util.tree_structure(params),
                list(jax.random.split(jax.random.PRNGKey(1), len(jax.tree_util.tree_leaves(params)))),
            ),
        )

        def loss_after_move(eps):
            moved = jax.tree_util.tree_map(lambda p, d: p + eps * d, params, direction)
            f = lambda x: apply(moved, x)
            s = surface
            for _ in range(20):
                values, gradients = losses.values_and_gradients(f, s)
                s = s - (values / jnp.sum(gradients**2, -1))[:, None] * gradients
            return _point_loss(targets)(s)

        eps = 1e-5
        numeric = (loss_after_move(eps) - loss_after_move(-eps)) / (2 * eps)
        analytic = jnp.vdot(_flat(grad), _flat(direction))
        assert float(jnp.abs(numeric - analytic)) <= 1e-4 * float(jnp.abs(numeric))


def test_implicit_surface_loss_value_is_the_point_loss():
    apply, params, surface, targets = _setup()
    _, gradients = losses.values_and_gradients(lambda x: apply(params, x), surface)
    value = losses.implicit_surface_loss(apply(params, surface), surface, gradients, _point_loss(targets))
    assert float(value) == pytest.approx(float(_point_loss(targets)(surface)), rel=1e-6)


def test_safe_norm_has_a_finite_gradient_at_zero():
    g = jax.grad(lambda x: losses.safe_norm(x))(jnp.zeros(3))
    assert np.all(np.isfinite(g)) and np.allclose(g, 0)


def test_eikonal_is_zero_for_a_true_distance_function():
    sdf = lambda x: jnp.linalg.norm(x, axis=-1) - 0.3
    points = jax.random.normal(jax.random.PRNGKey(0), (100, 3))
    _, gradients = losses.values_and_gradients(sdf, points)
    np.testing.assert_allclose(losses.eikonal(gradients), 0, atol=1e-10)


def test_projection_lands_on_an_analytic_sphere():
    sdf = lambda x: jnp.linalg.norm(x, axis=-1) - 0.3
    points = jax.random.normal(jax.random.PRNGKey(0), (100, 3)) * 0.1 + 0.2
    projected = losses.project_to_surface(sdf, points, steps=4)
    np.testing.assert_allclose(jnp.linalg.norm(projected, axis=-1), 0.3, atol=1e-5)


def test_area_term_peaks_on_the_surface():
    values = jnp.array([0.0, 0.01, 0.1])
    a = losses.area(values, alpha=100.0)
    np.testing.assert_allclose(a, np.exp(-100 * np.abs(values)), rtol=1e-6)


def test_loss_terms_run_under_jit():
    apply, params, surface, targets = _setup()
    g = jax.jit(lambda p: _flat(_surrogate_gradient(apply, p, surface, targets)))(params)
    assert np.all(np.isfinite(g))
