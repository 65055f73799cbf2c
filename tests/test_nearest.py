"""DiffCD's surface-to-cloud targets are the exact nearest cloud points, whatever the seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial import cKDTree

from diffcd import methods, nearest, sampling


def _dense_cloud_and_far_seeds(count=2000):
    """40k points on a bumpy sphere; seeds uniform in the box (most far from the cloud) and
    surface points drifted 0.05 away from their seeds, so the seed certificate mostly fails."""
    rng = np.random.default_rng(0)
    d = rng.standard_normal((40_000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    cloud = (d * (0.4 + 0.03 * np.sin(8 * d[:, :1]))).astype(np.float32)
    seeds = rng.uniform(-0.75, 0.75, (count, 3)).astype(np.float32)
    surface = (seeds + rng.normal(0, 0.05, seeds.shape)).astype(np.float32)
    return cloud, seeds, surface


def _targets(cloud, seeds, surface, wanted):
    candidates, radius = sampling.nearest_candidates(cKDTree(cloud), seeds, 32)
    _, distance, certified, ids = methods.surface_to_cloud_targets(surface, seeds, candidates, radius, cloud)
    index = nearest.build_index(cloud)
    search = jax.jit(nearest.exact_targets)
    targets, searched = search(surface, ids, distance, certified, wanted, index, cloud)
    return np.asarray(targets), np.asarray(certified), jax.device_get(searched)


def _assert_nearest(cloud, surface, targets):
    distance, nearest_index = cKDTree(cloud).query(surface)
    found = np.linalg.norm(targets - surface, axis=1)
    # The same distance (an equally near point is as good a target), in float32.
    np.testing.assert_allclose(found, distance, rtol=1e-5, atol=1e-7)


def test_every_target_is_the_exact_nearest_cloud_point():
    cloud, seeds, surface = _dense_cloud_and_far_seeds()
    targets, certified, searched = _targets(cloud, seeds, surface, jnp.ones(len(seeds), bool))
    assert certified.mean() < 0.2  # the old targets would have been unproven almost everywhere
    _assert_nearest(cloud, surface, targets)
    assert searched["tree"].mean() > 0.5  # the box hierarchy answers most of them


def test_the_brute_force_stage_is_exact_too(monkeypatch):
    """With stage 2 cut to one leaf per point, nearly every point falls through to stage 3."""
    monkeypatch.setattr(nearest, "TREE_STAGES", ((1, 1, 64),))
    cloud, seeds, surface = _dense_cloud_and_far_seeds(600)
    targets, _, searched = _targets(cloud, seeds, surface, jnp.ones(len(seeds), bool))
    assert searched["brute"].mean() > 0.5
    _assert_nearest(cloud, surface, targets)


def test_points_not_wanted_keep_their_candidate_target():
    cloud, seeds, surface = _dense_cloud_and_far_seeds(300)
    wanted = np.arange(300) % 2 == 0
    targets, _, searched = _targets(cloud, seeds, surface, jnp.asarray(wanted))
    _assert_nearest(cloud, surface[wanted], targets[wanted])
    assert not any(searched[stage][~wanted].any() for stage in ("hop", "tree", "brute"))


def test_neighbour_hops_answer_points_near_the_cloud_exactly():
    """Surface points 0.005 off a dense cloud whose seeds drifted 0.05 away (so the seed
    certificate fails): hops through cloud neighbourhoods prove most of them (walking from a
    first candidate up to 0.1 away), and every target is the nearest cloud point."""
    cloud, _, _ = _dense_cloud_and_far_seeds()
    rng = np.random.default_rng(2)
    surface = (cloud[rng.choice(len(cloud), 2000)] + rng.normal(0, 0.005, (2000, 3))).astype(np.float32)
    seeds = (surface + rng.normal(0, 0.05, surface.shape)).astype(np.float32)
    targets, certified, searched = _targets(cloud, seeds, surface, jnp.ones(len(seeds), bool))
    assert certified.mean() < 0.5
    _assert_nearest(cloud, surface, targets)
    assert searched["hop"].mean() > 0.7 and searched["brute"].mean() < 0.01


def test_hop_neighbourhoods_hold_every_point_inside_their_radius():
    rng = np.random.default_rng(3)
    cloud = rng.uniform(-0.5, 0.5, (3000, 3)).astype(np.float32)
    ids, radius = nearest.hop_neighbourhoods(cloud, neighbours=8)
    assert ids.shape == (3000, 9) and (ids[:, 0] == np.arange(3000)).all()
    distance = np.linalg.norm(cloud[:, None] - cloud[None], axis=-1)
    inside = distance < radius[:, None]
    listed = np.zeros_like(inside)
    np.put_along_axis(listed, ids.astype(np.int64), True, axis=1)
    assert not (inside & ~listed).any()


@pytest.mark.parametrize("count", [1, 7, 100, 1000])
def test_index_of_small_and_odd_sized_clouds(count):
    rng = np.random.default_rng(count)
    cloud = rng.uniform(-0.5, 0.5, (count, 3)).astype(np.float32)
    index = nearest.build_index(cloud)
    leaf_points = index["nn_leaf_points"].transpose(0, 2, 1)  # (leaves, points, 3)
    # Every cloud point is in a leaf, and leaves hold nothing else.
    assert set(map(tuple, leaf_points.reshape(-1, 3))) == set(map(tuple, cloud))
    boxes = lambda name: index[name].transpose(0, 2, 1).reshape(-1, 3)  # (leaves, 3)
    lo, hi = boxes("nn_leaf_lo"), boxes("nn_leaf_hi")
    assert ((leaf_points >= lo[:, None]) & (leaf_points <= hi[:, None])).all()
    # Every leaf is inside its group's box, and the brute-force blocks hold the cloud too.
    groups = len(index["nn_group_lo"][0])
    group_lo = np.repeat(index["nn_group_lo"].T, len(lo) // groups, axis=0)
    group_hi = np.repeat(index["nn_group_hi"].T, len(lo) // groups, axis=0)
    assert ((lo >= group_lo) & (hi <= group_hi)).all()
    brute = index["nn_brute_points"].transpose(0, 2, 1).reshape(-1, 3)
    assert set(map(tuple, brute[:count])) == set(map(tuple, cloud))
    np.testing.assert_array_equal(index["nn_cloud_xyz"].T, cloud)


def _loss_aux(nn_search, cloud, seeds):
    from diffcd.networks import NetworkConfig, init_params, make_sdf

    network = NetworkConfig(hidden_layers=2, width=32, skip_layers=())
    apply, params = make_sdf(network), init_params(network, jax.random.PRNGKey(0))
    config = methods.DiffCDConfig(seed_count=len(seeds), nn_search=nn_search)
    sigma = sampling.local_sigma(cloud, k=10)
    data = methods.diffcd_prepare(cloud, sigma, config, 0)
    candidates, radius = sampling.nearest_candidates(cKDTree(cloud), seeds, config.nn_candidates)
    data.update(points=cloud, sigma=sigma, seeds=seeds, seed_candidates=candidates, seed_radius=radius)
    loss = jax.jit(methods.diffcd_loss, static_argnums=(0, 3, 6))
    _, aux = loss(apply, params, data, config, methods.traced_weights(config), jax.random.PRNGKey(1), len(seeds))
    frozen = lambda x: apply(params, x)
    from diffcd import losses

    surface = losses.project_to_surface(frozen, jnp.asarray(seeds), steps=config.projection_steps)
    valid = np.abs(np.asarray(frozen(surface))) < config.valid_threshold
    truth = cKDTree(cloud).query(np.asarray(surface)[valid])[0].mean()
    return jax.device_get(aux), truth


def test_the_diffcd_loss_measures_distances_to_the_exact_nearest_points():
    """Seeds on the untrained net's sphere (radius 0.5) drifted 0.03, a dense cloud 0.1 inside:
    with every seed in the batch, the surface-to-point term is the mean exact nearest distance;
    the former candidate search overestimates it where its certificate fails."""
    cloud, _, _ = _dense_cloud_and_far_seeds()
    rng = np.random.default_rng(1)
    d = rng.standard_normal((500, 3))
    seeds = (0.5 * d / np.linalg.norm(d, axis=1, keepdims=True) + rng.normal(0, 0.03, d.shape)).astype(np.float32)
    exact, truth = _loss_aux("exact", cloud, seeds)
    assert exact["valid_surface_fraction"] > 0.3
    assert exact["nn_exact_fraction"] == 1.0
    assert exact["surface_to_point"] == pytest.approx(truth, rel=1e-4)
    old, _ = _loss_aux("candidates", cloud, seeds)
    assert old["nn_exact_fraction"] == old["nn_certified_fraction"] < 1.0
    assert old["surface_to_point"] >= exact["surface_to_point"]

