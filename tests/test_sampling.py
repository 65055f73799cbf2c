"""Per-step draws: the cloud batch is a uniformly random subset drawn without replacement."""

import jax
import numpy as np

from diffcd.sampling import draw_batch_indices


def test_batch_indices_are_distinct_and_in_range():
    for num_points, batch in ((10, 3), (1000, 1000), (50, 80)):
        idx = np.asarray(draw_batch_indices(jax.random.PRNGKey(num_points), num_points, batch))
        assert len(idx) == min(batch, num_points)
        assert len(np.unique(idx)) == len(idx)
        assert idx.min() >= 0 and idx.max() < num_points


def test_every_point_and_every_pair_is_drawn_equally_often():
    """3 of 6 points, 6000 draws: each point is in half the batches (std 0.65 % of draws), each of
    the 15 pairs in a fifth (std 0.52 %); a biased sampler (e.g. one favouring low indices when
    keys tie) fails the 3 % bounds."""
    draws = jax.vmap(lambda k: draw_batch_indices(k, 6, 3))(jax.random.split(jax.random.PRNGKey(0), 6000))
    member = np.zeros((6000, 6), bool)
    np.put_along_axis(member, np.asarray(draws), True, axis=1)
    assert np.all(np.abs(member.mean(axis=0) - 0.5) < 0.03)
    pairs = (member[:, :, None] & member[:, None, :]).mean(axis=0)[np.triu_indices(6, 1)]
    assert np.all(np.abs(pairs - 0.2) < 0.03)


def test_same_key_same_batch_other_key_other_batch():
    a = draw_batch_indices(jax.random.PRNGKey(1), 1000, 100)
    assert np.array_equal(a, draw_batch_indices(jax.random.PRNGKey(1), 1000, 100))
    assert not np.array_equal(a, draw_batch_indices(jax.random.PRNGKey(2), 1000, 100))
