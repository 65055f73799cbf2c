"""The SDF network: the paper's size, geometric initialisation, flattening for the export."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcd.networks import (NetworkConfig, expected_shapes, flatten_params, init_params, make_sdf,
                             parameter_count, unflatten_params)


def test_paper_network_has_the_papers_parameter_count():
    assert parameter_count(init_params(NetworkConfig(), jax.random.PRNGKey(0))) == 461_054


def test_geometric_init_is_close_to_a_sphere_of_radius_one_half():
    config = NetworkConfig()
    params = init_params(config, jax.random.PRNGKey(0))
    directions = np.random.default_rng(0).standard_normal((500, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    f = make_sdf(config)
    inside, on, outside = (np.asarray(f(params, r * directions)) for r in (0.1, 0.5, 0.75))
    assert (inside < 0).all() and (outside > 0).all()
    assert np.abs(on).mean() < 0.15  # finite width: a rough sphere, refined by the first steps
    assert np.all(np.diff(np.stack([inside, on, outside]), axis=0) > 0)  # increases outwards


@pytest.mark.parametrize("config", [NetworkConfig(hidden_layers=3, width=16, skip_layers=(1, 2)),
                                    NetworkConfig(hidden_layers=2, width=8, skip_layers=(), activation="sine")])
def test_flatten_matches_the_shapes_the_config_implies(config):
    params = init_params(config, jax.random.PRNGKey(1))
    flat = flatten_params(params)
    assert {k: tuple(v.shape) for k, v in flat.items()} == expected_shapes(config)
    again = unflatten_params(flat)
    assert all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, params, again)))


def test_invalid_architectures_are_refused():
    with pytest.raises(ValueError, match="skip layers"):
        NetworkConfig(hidden_layers=4, skip_layers=(4,))
    with pytest.raises(ValueError, match="activation"):
        NetworkConfig(activation="relu")


def _dot_precisions(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if "stablehlo.dot_general" in line]
    return [re.search(r"precision = \[(\w+), \w+\]", line).group(1) if "precision" in line else "none"
            for line in lines]


@pytest.mark.parametrize("precision", ["highest", "default"])
def test_the_precision_reaches_every_matmul_of_the_forward_and_both_derivatives(precision):
    config = NetworkConfig(hidden_layers=3, width=16, skip_layers=(1,))
    params = init_params(config, jax.random.PRNGKey(0))
    f = make_sdf(config, precision)

    def eikonal_gradient(p, x):  # what training differentiates: through the spatial gradient
        gradient = jax.vmap(jax.grad(lambda y: f(p, y)))(x)
        return ((1 - jnp.linalg.norm(gradient, axis=-1)) ** 2).mean()

    x = jnp.ones((5, 3))
    for program in (f, jax.grad(eikonal_gradient)):
        found = _dot_precisions(jax.jit(program).lower(params, x).as_text())
        assert len(found) >= 4  # one product per layer at least
        assert set(found) == {precision.upper()}


def test_evaluation_defaults_to_true_float32():
    config = NetworkConfig(hidden_layers=2, width=8, skip_layers=())
    params = init_params(config, jax.random.PRNGKey(0))
    assert set(_dot_precisions(jax.jit(make_sdf(config)).lower(params, jnp.ones((4, 3))).as_text())) == {"HIGHEST"}
    with pytest.raises(ValueError, match="precision"):
        make_sdf(config, "fastest")(params, jnp.ones((4, 3)))
