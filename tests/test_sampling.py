"""Per-step draws: the cloud batch is a uniformly random subset drawn without replacement, at a
cost that does not depend on the cloud's size."""

import functools

import jax
import numpy as np

from diffcd.sampling import draw_batch_indices, spatial_order

draw = jax.jit(draw_batch_indices, static_argnums=(1, 2))


def test_batch_indices_are_distinct_and_in_range():
    for num_points, batch in ((10, 3), (1000, 1000), (50, 80), (1, 5), (65_537, 5000)):
        idx = np.asarray(draw(jax.random.PRNGKey(num_points), num_points, batch))
        assert len(idx) == min(batch, num_points)
        assert len(np.unique(idx)) == len(idx)
        assert idx.min() >= 0 and idx.max() < num_points


def test_every_point_and_every_pair_is_drawn_equally_often():
    """3 of 6 points, 6000 draws: each point is in half the batches (std 0.65 % of draws), each of
    the 15 pairs in a fifth (std 0.52 %); a biased sampler (e.g. one favouring low indices when
    keys tie) fails the 3 % bounds."""
    draws = jax.jit(jax.vmap(lambda k: draw_batch_indices(k, 6, 3)))(jax.random.split(jax.random.PRNGKey(0), 6000))
    member = np.zeros((6000, 6), bool)
    np.put_along_axis(member, np.asarray(draws), True, axis=1)
    assert np.all(np.abs(member.mean(axis=0) - 0.5) < 0.03)
    pairs = (member[:, :, None] & member[:, None, :]).mean(axis=0)[np.triu_indices(6, 1)]
    assert np.all(np.abs(pairs - 0.2) < 0.03)


def test_counts_over_a_larger_range_are_uniform():
    """700 points (not a power of two: the draw cycle-walks), 70 a draw, 2000 draws: every point
    is expected 200 times; a chi-square far above its 699 degrees of freedom means bias, and so
    does any point's first position being favoured."""
    keys = jax.random.split(jax.random.PRNGKey(3), 2000)
    draws = np.asarray(jax.jit(jax.vmap(lambda k: draw_batch_indices(k, 700, 70)))(keys))
    counts = np.bincount(draws.ravel(), minlength=700)
    chi2 = np.sum((counts - 200.0) ** 2 / 200.0)
    assert chi2 < 699 + 5 * np.sqrt(2 * 699)
    first = np.bincount(draws[:, 0], minlength=700)
    assert np.sum((first - 2000 / 700) ** 2 / (2000 / 700)) < 699 + 5 * np.sqrt(2 * 699)


def test_same_key_same_batch_other_key_other_batch():
    a = draw(jax.random.PRNGKey(1), 1000, 100)
    assert np.array_equal(a, draw(jax.random.PRNGKey(1), 1000, 100))
    assert not np.array_equal(a, draw(jax.random.PRNGKey(2), 1000, 100))


@functools.lru_cache
def _compiled_cost(num_points: int) -> dict:
    compiled = draw.lower(jax.random.PRNGKey(0), num_points, 2500).compile()
    analysis = compiled.cost_analysis()
    return analysis[0] if isinstance(analysis, (list, tuple)) else analysis


def test_draw_cost_does_not_grow_with_the_cloud():
    """The compiled draw touches no array of the cloud's size: XLA counts the same bytes at 30k
    and at 10M points (the former top-k over N random keys grew linearly)."""
    small, large = _compiled_cost(30_000), _compiled_cost(10_000_000)
    assert large["bytes accessed"] <= 1.1 * small["bytes accessed"]
    assert large["bytes accessed"] < 4 * 10_000_000  # not even one 32-bit word per point


def test_local_sigma_queried_in_blocks_matches_one_query():
    """Fitter asks the KD-tree for sigma (the 50th other point) block by block, to bound scipy's
    float64 tables on big clouds: the same values as one query of the whole cloud."""
    from scipy.spatial import cKDTree

    from diffcd.sampling import local_sigma

    rng = np.random.default_rng(0)
    points = rng.uniform(-0.5, 0.5, (70_000, 3)).astype(np.float32)  # more than one query block
    sigma = local_sigma(points, k=50)
    distance, _ = cKDTree(points).query(points, k=[51])
    np.testing.assert_allclose(sigma, 0.2 * distance[:, 0], rtol=1e-6)
    assert sigma.dtype == np.float32 and (local_sigma(points[:1]) == 0).all()


def test_spatial_order_is_a_permutation_that_keeps_neighbours_near_in_memory():
    rng = np.random.default_rng(0)
    points = rng.standard_normal((20_000, 3)).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)  # a surface, as scans are
    order = spatial_order(points)
    assert np.array_equal(np.sort(order), np.arange(len(points)))
    ordered = points[order]
    step = np.linalg.norm(np.diff(ordered, axis=0), axis=1)
    # consecutive points in Z-curve order are neighbours on the sphere (typical spacing ~0.025),
    # not random pairs (~1.3 apart)
    assert np.median(step) < 0.05
    # a Z-curve visits the eight octants of the (cubic) box one after another, x fastest
    lo = points.min(axis=0)
    middle = lo + np.max(points.max(axis=0) - lo) / 2
    clear = np.all(np.abs(ordered - middle) > 1e-4, axis=1)
    octant = ((ordered > middle) * [1, 2, 4]).sum(axis=1)[clear]
    assert np.all(np.diff(octant) >= 0) and len(set(octant)) == 8


def test_spatial_order_of_one_point_and_of_identical_points():
    assert spatial_order(np.zeros((1, 3), np.float32)).tolist() == [0]
    assert spatial_order(np.ones((4, 3), np.float32)).tolist() == [0, 1, 2, 3]  # ties keep their order
