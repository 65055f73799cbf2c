"""Exact nearest cloud points inside the compiled step (DiffCD's surface-to-point targets).

Three stages, each exact where it answers and each cheaper than the next:

1. Seed candidates (host KD-tree, at every seed refresh): the K cloud points nearest to the
   surface point's seed, with a certificate (the best candidate is closer than anything outside
   the seed's candidate ball). Most points end here; the best candidate always gives an upper
   bound u on the nearest distance.
2. A two-level box hierarchy built once per fit: the cloud in k-d order, cut into leaves of
   ~`leaf_size` points, 64 consecutive leaves to a group. A point not certified by stage 1 visits
   its nearest groups, among their leaves its nearest ones, and compares every point of those
   leaves. The answer is exact when the best distance found is no larger than the distance to
   the nearest box left out; otherwise a wider pass follows, and after it stage 3.
3. Brute force against the whole cloud, in chunks.

Stages 2 and 3 run over buffers of the still-open points in a `while_loop`, so a step pays for
the points that need them and no point is ever left unsearched.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from diffcd.losses import safe_norm

LEAVES_PER_GROUP = 64
TREE_STAGES = ((4, 16, 256), (16, 128, 32))
"""Stage-2 passes as (groups, leaves, points per pass): a cheap pass for every open point, a
wider one for the points (far from the cloud) whose nearest-neighbour ball meets more boxes."""
BRUTE_BUFFER = 64
"""Points per stage-3 pass."""
BRUTE_CHUNK = 32_768
"""Cloud points per stage-3 block."""

_FAR = np.float32(1e6)
"""Coordinate of padding points: never anyone's nearest neighbour inside the fitting box."""


def build_index(points: np.ndarray, leaf_size: int = 32) -> dict[str, np.ndarray]:
    """The host-side arrays of stage 2 and 3 for a cloud (N, 3); built once per fit.

    k-d order: split every cell at the median of its widest axis until cells hold at most
    `leaf_size` points. The cloud is first padded to a power-of-two number of equal leaves by
    repeating points (a duplicate never changes a nearest distance).
    """
    points = np.asarray(points, np.float32)
    n = len(points)
    levels = max(0, math.ceil(math.log2(max(n / leaf_size, 1))))
    leaves = 2**levels
    per_leaf = -(-n // leaves)
    pad = leaves * per_leaf - n
    order = np.concatenate([np.arange(n), np.linspace(0, n - 1, pad).astype(np.int64)]) if pad else np.arange(n)
    for level in range(levels):
        cells = order.reshape(2**level, -1)
        coords = points[cells]  # (cells, size, 3)
        axis = np.argmax(coords.max(axis=1) - coords.min(axis=1), axis=1)
        keys = np.take_along_axis(coords, axis[:, None, None], axis=2)[..., 0]
        half = cells.shape[1] // 2
        split = np.argpartition(keys, half, axis=1)
        order = np.take_along_axis(cells, split, axis=1).ravel()
    leaf_points = points[order].reshape(leaves, per_leaf, 3)
    leaf_lo, leaf_hi = leaf_points.min(axis=1), leaf_points.max(axis=1)
    per_group = min(LEAVES_PER_GROUP, leaves)
    groups = leaves // per_group
    group_lo = leaf_lo.reshape(groups, per_group, 3).min(axis=1)
    group_hi = leaf_hi.reshape(groups, per_group, 3).max(axis=1)
    chunk = min(BRUTE_CHUNK, 1 << max(0, (n - 1).bit_length()))
    brute = np.full((-(-n // chunk), chunk, 3), _FAR, np.float32)
    brute.reshape(-1, 3)[:n] = points
    return {
        "nn_leaf_points": leaf_points, "nn_leaf_lo": leaf_lo, "nn_leaf_hi": leaf_hi,
        "nn_group_lo": group_lo, "nn_group_hi": group_hi, "nn_brute_points": brute,
    }


def _box_distance(x: jax.Array, lo: jax.Array, hi: jax.Array) -> jax.Array:
    """Distance from x to the axis-aligned box [lo, hi] (0 inside); broadcasts."""
    gap = jnp.maximum(jnp.maximum(lo - x, x - hi), 0.0)
    return jnp.sqrt(jnp.sum(gap * gap, axis=-1))


def _nearest_boxes(query, lo, hi, count):
    """Per query, the `count` boxes nearest to it (ascending) and the distance to the next one
    (inf when there is none): no box left out is nearer than that."""
    gap = _box_distance(query[:, None], lo, hi)
    take = min(count + 1, gap.shape[1])
    negative, ids = jax.lax.top_k(-gap, take)
    following = -negative[:, count] if take > count else jnp.full(len(query), jnp.inf, gap.dtype)
    return ids[:, :count], following


def _tree_search(query, bound, index, group_slots, leaf_slots):
    """Stage 2 for a buffer of points: (best point, best distance, exact?).

    Visits the nearest `group_slots` groups and among their leaves the nearest `leaf_slots`;
    exact when the best distance found (or the bound) is below the distance to every box left
    out.
    """
    leaves_per_group = index["nn_leaf_lo"].shape[0] // index["nn_group_lo"].shape[0]
    group_slots = min(group_slots, index["nn_group_lo"].shape[0])
    groups, next_group = _nearest_boxes(
        query, index["nn_group_lo"][None], index["nn_group_hi"][None], group_slots
    )
    leaf_ids = (groups[:, :, None] * leaves_per_group + jnp.arange(leaves_per_group)).reshape(len(query), -1)
    leaf_slots = min(leaf_slots, leaf_ids.shape[1])
    nearest_leaves, next_leaf = _nearest_boxes(
        query, index["nn_leaf_lo"][leaf_ids], index["nn_leaf_hi"][leaf_ids], leaf_slots
    )
    chosen = jnp.take_along_axis(leaf_ids, nearest_leaves, axis=1)
    cloud = index["nn_leaf_points"][chosen].reshape(len(query), -1, 3)
    distance = safe_norm(query[:, None] - cloud)
    best = jnp.argmin(distance, axis=1)
    best_distance = jnp.min(distance, axis=1)
    # Box distances are computed in float32 like the point distances; the slack keeps a box
    # whose distance rounds up from being treated as farther than a point it contains.
    settled = jnp.minimum(best_distance, bound) * (1 + 1e-5) + 1e-6
    exact = (settled <= next_group) & (settled <= next_leaf)
    return cloud[jnp.arange(len(query)), best], best_distance, exact


def _brute_force(query, index):
    """Stage 3 for a buffer of points: the nearest of all cloud points, block by block."""
    blocks = index["nn_brute_points"]

    def scan_block(carry, block):
        best_point, best_distance = carry
        d2 = jnp.sum((query[:, None] - block[None]) ** 2, axis=-1)
        i = jnp.argmin(d2, axis=1)
        d = jnp.sqrt(jnp.take_along_axis(d2, i[:, None], axis=1)[:, 0])
        closer = d < best_distance
        best_point = jnp.where(closer[:, None], block[i], best_point)
        return (best_point, jnp.where(closer, d, best_distance)), None

    init = (jnp.zeros_like(query), jnp.full(len(query), jnp.inf, query.dtype))
    return jax.lax.scan(scan_block, init, blocks)[0][0]


def _over_buffers(pending, buffer, work, state):
    """Run `work(slots, state) -> state` over the pending points, `buffer` at a time."""
    n = pending.shape[0]
    buffer = min(buffer, n)
    rank = jnp.cumsum(pending) - 1
    order = jnp.full((n + buffer,), -1, jnp.int32)
    order = order.at[jnp.where(pending, rank, n + buffer)].set(jnp.arange(n, dtype=jnp.int32), mode="drop")
    count = jnp.sum(pending)

    def body(carry):
        i, state = carry
        slots = jax.lax.dynamic_slice(order, (i * buffer,), (buffer,))
        return i + 1, work(slots, state)

    return jax.lax.while_loop(lambda c: c[0] * buffer < count, body, (0, state))[1]


def exact_targets(
    surface: jax.Array,
    candidate_targets: jax.Array,
    candidate_distance: jax.Array,
    certified: jax.Array,
    wanted: jax.Array,
    index: dict[str, jax.Array],
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The exact nearest cloud point of every `wanted` surface point.

    `candidate_*` and `certified` are stage 1's answer; returns the targets and per-point flags
    of which stage answered (`tree`, `brute`), for the fit's statistics.
    """
    surface, candidate_targets, candidate_distance = jax.lax.stop_gradient(
        (surface, candidate_targets, candidate_distance)
    )
    n = surface.shape[0]

    def tree_pass(group_slots, leaf_slots):
        def work(slots, state):
            targets, distance, open_ = state
            take = jnp.maximum(slots, 0)
            point, found, exact = _tree_search(surface[take], distance[take], index, group_slots, leaf_slots)
            better = found < distance[take]
            rows = jnp.where(slots >= 0, slots, n)
            targets = targets.at[rows].set(jnp.where(better[:, None], point, targets[take]), mode="drop")
            distance = distance.at[rows].set(jnp.minimum(found, distance[take]), mode="drop")
            return targets, distance, open_.at[rows].set(~exact, mode="drop")

        return work

    tree = wanted & ~certified
    state = (candidate_targets, candidate_distance, tree)
    for group_slots, leaf_slots, buffer in TREE_STAGES:
        state = _over_buffers(state[2], buffer, tree_pass(group_slots, leaf_slots), state)
    targets, _, brute = state

    def brute_pass(slots, targets):
        found = _brute_force(surface[jnp.maximum(slots, 0)], index)
        return targets.at[jnp.where(slots >= 0, slots, n)].set(found, mode="drop")

    targets = _over_buffers(brute, BRUTE_BUFFER, brute_pass, targets)
    return targets, {"tree": tree & ~brute, "brute": brute}
