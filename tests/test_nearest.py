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
    stage1 = methods.surface_to_cloud_targets(surface, seeds, candidates, radius, cloud)
    index = nearest.build_index(cloud)
    search = jax.jit(nearest.exact_targets)
    targets, searched = search(surface, *stage1, wanted, index)
    return np.asarray(targets), np.asarray(stage1[2]), jax.device_get(searched)


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
    assert not searched["tree"][~wanted].any() and not searched["brute"][~wanted].any()


@pytest.mark.parametrize("count", [1, 7, 100, 1000])
def test_index_of_small_and_odd_sized_clouds(count):
    rng = np.random.default_rng(count)
    cloud = rng.uniform(-0.5, 0.5, (count, 3)).astype(np.float32)
    index = nearest.build_index(cloud)
    leaves = index["nn_leaf_points"].reshape(-1, 3)
    # Every cloud point is in a leaf, and leaves hold nothing else.
    assert set(map(tuple, leaves)) == set(map(tuple, cloud))
    lo, hi = index["nn_leaf_lo"], index["nn_leaf_hi"]
    inside = (index["nn_leaf_points"] >= lo[:, None]) & (index["nn_leaf_points"] <= hi[:, None])
    assert inside.all()
