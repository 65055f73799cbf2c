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


def _targets(cloud, seeds, surface, wanted, leaf_size=32):
    candidates, radius = sampling.nearest_candidates(cKDTree(cloud), seeds, 32)
    found, distance, certified = methods.surface_to_cloud_targets(surface, seeds, candidates, radius, cloud)
    index = nearest.build_index(cloud, leaf_size=leaf_size)
    search = jax.jit(nearest.exact_targets)
    targets, searched = search(surface, found, distance, certified, wanted, index)
    return np.asarray(targets), np.asarray(certified), jax.device_get(searched)


def _assert_nearest(cloud, surface, targets):
    distance, nearest_index = cKDTree(cloud).query(surface)
    found = np.linalg.norm(targets - surface, axis=1)
    # The same distance (an equally near point is as good a target), in float32.
    np.testing.assert_allclose(found, distance, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("leaf_size", [32, 4])
def test_every_target_is_the_exact_nearest_cloud_point(leaf_size):
    """Three levels of boxes with the default leaves, five with leaves of 4 points (as deep as a
    cloud of ~1M points gets with the default)."""
    cloud, seeds, surface = _dense_cloud_and_far_seeds()
    targets, certified, searched = _targets(cloud, seeds, surface, jnp.ones(len(seeds), bool), leaf_size)
    assert certified.mean() < 0.2  # the old targets would have been unproven almost everywhere
    _assert_nearest(cloud, surface, targets)
    assert searched["tree"].mean() > 0.5  # the box hierarchy answers most of them


def test_the_brute_force_stage_is_exact_too(monkeypatch):
    """With stage 2 cut to one leaf per point, nearly every point falls through to stage 3."""
    monkeypatch.setattr(nearest, "TREE_STAGES", ((1, 1, 1, 64),))
    cloud, seeds, surface = _dense_cloud_and_far_seeds(600)
    targets, _, searched = _targets(cloud, seeds, surface, jnp.ones(len(seeds), bool))
    assert searched["brute"].mean() > 0.5
    _assert_nearest(cloud, surface, targets)


def test_points_not_wanted_keep_their_candidate_target():
    cloud, seeds, surface = _dense_cloud_and_far_seeds(300)
    wanted = np.arange(300) % 2 == 0
    targets, _, searched = _targets(cloud, seeds, surface, jnp.asarray(wanted))
    _assert_nearest(cloud, surface[wanted], targets[wanted])
    assert not any(searched[stage][~wanted].any() for stage in ("tree", "brute"))


def test_points_near_a_dense_cloud_are_proved_by_the_first_pass():
    """Surface points 0.005 off a dense cloud whose seeds drifted 0.05 away (so the seed
    certificate fails): the first, cheapest pass of the hierarchy proves nearly all of them,
    none falls through to brute force, and every target is the nearest cloud point."""
    cloud, _, _ = _dense_cloud_and_far_seeds()
    rng = np.random.default_rng(2)
    surface = (cloud[rng.choice(len(cloud), 2000)] + rng.normal(0, 0.005, (2000, 3))).astype(np.float32)
    seeds = (surface + rng.normal(0, 0.05, surface.shape)).astype(np.float32)
    candidates, radius = sampling.nearest_candidates(cKDTree(cloud), seeds, 32)
    _, distance, certified = methods.surface_to_cloud_targets(surface, seeds, candidates, radius, cloud)
    index = {name: jnp.asarray(value) for name, value in nearest.build_index(cloud).items()}
    first = jax.jit(lambda q, d: nearest._tree_search(q, d, index, *nearest.TREE_STAGES[0][:3]))
    open_ = ~np.asarray(certified)
    assert open_.mean() > 0.5
    _, _, exact = first(surface[open_], distance[open_])
    assert np.asarray(exact).mean() > 0.95
    targets, _, searched = _targets(cloud, seeds, surface, jnp.ones(len(seeds), bool))
    _assert_nearest(cloud, surface, targets)
    assert not searched["brute"].any()


def test_discs_are_never_farther_than_their_points():
    """A disc's distance bounds the distance to each of its points from below, also for queries
    on its axis far away, where float32 cancellation would otherwise overstate it; and it is
    much tighter than the box of a tilted patch."""
    rng = np.random.default_rng(4)
    patches = rng.uniform(-0.05, 0.05, (64, 31, 3)) * np.array([1, 1, 0.002])  # flat patches
    tilt = np.linalg.qr(rng.standard_normal((64, 3, 3)))[0]
    patches = (np.einsum("mij,msj->msi", tilt, patches) + rng.uniform(-0.7, 0.7, (64, 1, 3))).astype(np.float32)
    discs = nearest._discs(patches)
    centre, normal = discs[:, :3], discs[:, 3:6]
    on_axis = centre[:, None] + normal[:, None] * rng.uniform(-1, 1, (64, 40, 1))
    around = centre[:, None] + rng.normal(0, 0.05, (64, 40, 3))
    queries = np.concatenate([on_axis, around, patches], axis=1).astype(np.float32)  # (64, 111, 3)
    flat = queries.reshape(-1, 3)
    gap2 = np.asarray(nearest._disc_gap2(jnp.asarray(flat), jnp.asarray(np.repeat(discs, 111, axis=0))[:, :, None], axis=1))[:, 0]
    nearest_point = np.linalg.norm(queries[:, :, None] - patches[:, None], axis=-1).min(axis=2).ravel()
    assert (np.sqrt(gap2) <= nearest_point).all()
    assert (gap2.reshape(64, 111)[:, -31:] == 0).all()  # every point is inside its own disc
    # 0.01 off a patch's middle: the disc knows it, the box of a tilted patch holds the query.
    near = (centre + 0.01 * normal).astype(np.float32)
    disc_gap = np.sqrt(np.asarray(nearest._disc_gap2(jnp.asarray(near), jnp.asarray(discs)[:, :, None], axis=1))[:, 0])
    lo, hi = patches.min(axis=1), patches.max(axis=1)
    box_gap = np.linalg.norm(np.maximum(np.maximum(lo - near, near - hi), 0), axis=-1)
    assert (disc_gap > 0.008).all() and np.median(box_gap) < 0.002


@pytest.mark.parametrize("count", [1, 7, 100, 1000, 20_000])
def test_index_of_small_and_odd_sized_clouds(count):
    rng = np.random.default_rng(count)
    cloud = rng.uniform(-0.5, 0.5, (count, 3)).astype(np.float32)
    index = nearest.build_index(cloud)
    leaf_points = index["nn_leaf_points"].transpose(0, 2, 1)  # (leaves, points, 3)
    # Every cloud point is in a leaf, and leaves hold nothing else.
    assert set(map(tuple, leaf_points.reshape(-1, 3))) == set(map(tuple, cloud))
    levels = nearest._levels(index)
    children = lambda name: index[name].transpose(0, 2, 1).reshape(-1, index[name].shape[1])  # (nodes, fields)
    nodes = [children(f"nn_node{level}") for level in range(levels - 1)] + [index["nn_top"].T]
    boxes = [(fields[:, 0:3], fields[:, 3:6]) for fields in nodes]
    assert len(boxes[0][0]) == len(leaf_points) and len(boxes[-1][0]) <= nearest.TOP_NODES
    lo, hi = boxes[0]
    assert ((leaf_points >= lo[:, None]) & (leaf_points <= hi[:, None])).all()
    for level in range(1, levels):  # every node's box holds its children's
        parent = lambda a: np.repeat(a, nearest.FANOUT, axis=0)
        assert len(boxes[level - 1][0]) == nearest.FANOUT * len(boxes[level][0])
        assert (boxes[level - 1][0] >= parent(boxes[level][0])).all()
        assert (boxes[level - 1][1] <= parent(boxes[level][1])).all()
    for level in range(min(nearest.DISC_LEVELS, levels - 1)):  # every point is inside its discs
        discs = nodes[level][:, 6:]
        members = leaf_points.reshape(len(discs), -1, 3)
        gap2 = nearest._disc_gap2(jnp.asarray(members.reshape(-1, 3)),
                                  jnp.asarray(np.repeat(discs, members.shape[1], axis=0))[:, :, None], axis=1)
        assert (np.asarray(gap2) == 0).all()
    brute = index["nn_brute_points"].transpose(0, 2, 1).reshape(-1, 3)
    assert set(map(tuple, brute[:count])) == set(map(tuple, cloud))


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

