"""Exact nearest cloud points inside the compiled step (DiffCD's surface-to-point targets).

Four stages, each exact where it answers and each cheaper than the next:

1. Seed candidates (host KD-tree, at every seed refresh): the K cloud points nearest to the
   surface point's seed, with a certificate (the best candidate is closer than anything outside
   the seed's candidate ball). The best candidate always gives an upper bound on the nearest
   distance.
1b. Neighbour hops, for every open point at once: from its best cloud point c so far (at
   distance d), compare the cloud points of c's neighbourhood (its `HOP_NEIGHBOURS` nearest,
   radius r_c, computed once per fit) and move to the best, d'. The nearest cloud point is
   within d' of the surface point, so within d + d' of c: when d + d' < r_c it is in that
   neighbourhood, and the answer is exact. A few hops (`HOPS`) walk a point near the cloud to
   its nearest neighbour and prove it with dense gathers only (no sort, no loop). On a CPU the
   stages below cost ~80 µs a point (XLA's CPU backend runs their box selection and gathers
   slowly), so from a few hundred steps into a fit, when the surface is near the cloud, they
   are left with well under 1 % of the points; early on, with the surface far from the cloud,
   most points still need them (benchmarks/results/issue10-nn-and-draw-cpu.md).
2. A two-level box hierarchy built once per fit: the cloud in k-d order, cut into leaves of
   ~`leaf_size` points, 64 consecutive leaves to a group. A point not certified by stage 1 visits
   its nearest groups, among their leaves its nearest ones, and compares every point of those
   leaves. The answer is exact when the best distance found is no larger than the distance to
   the nearest box left out; otherwise a wider pass follows, and after it stage 3.
3. Brute force against the whole cloud, in chunks.

A host-side alternative was measured and rejected: scipy's KD-tree asked through
`jax.pure_callback` from the compiled step answers in ~2 µs a point, but a callback inside the
step made the whole step 4x slower on XLA's CPU backend (2.4 against 9.5 steps/s, cpu-quick).

Stages 2 and 3 run over buffers of the still-open points in a `while_loop`, so a step pays for
the points that need them and no point is ever left unsearched.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import cKDTree

LEAVES_PER_GROUP = 64
TREE_STAGES = ((4, 16, 64), (16, 128, 32), (64, 512, 8))
"""Stage-2 passes as (groups, leaves, points per pass): a cheap pass for every open point, wider
ones for the points (far from the cloud) whose nearest-neighbour ball meets more boxes. The
widest keeps points from brute force, whose cost grows with the cloud (a 64-point pass took
51 ms over 50k points on two cores; over 1M, twenty times that, ~20 cpu-quick steps)."""
HOP_NEIGHBOURS = 32
"""Cloud neighbours per point for stage 1b (plus the point itself)."""
HOPS = 4
"""Stage-1b hops per step."""
BRUTE_BUFFER = 64
"""Points per stage-3 pass."""
BRUTE_CHUNK = 32_768
"""Cloud points per stage-3 block."""

_FAR = np.float32(1e6)
"""Coordinate of padding points: never anyone's nearest neighbour inside the fitting box."""


def hop_neighbourhoods(points: np.ndarray, tree: cKDTree | None = None,
                       neighbours: int = HOP_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """Each cloud point's nearest cloud points (itself first), (N, k+1) int32, and the distance
    to the farthest of them, (N,) float32: every cloud point nearer than that is in the list."""
    from diffcd.sampling import sigma_and_neighbours

    _, ids, radius = sigma_and_neighbours(np.asarray(points, np.float32), k=0, tree=tree,
                                          neighbours=neighbours)
    return ids, radius


def build_index(points: np.ndarray, leaf_size: int = 32, tree: cKDTree | None = None,
                hops: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The host-side arrays of stages 1b, 2 and 3 for a cloud (N, 3); built once per fit.

    `hops`: the hop neighbourhoods when the caller already has them (see
    sampling.sigma_and_neighbours); otherwise they are queried from `tree`.

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
    hop_ids, hop_radius = hops if hops is not None else hop_neighbourhoods(points, tree)
    return {
        "nn_hop_ids": hop_ids, "nn_hop_radius": hop_radius,
        "nn_leaf_points": leaf_points, "nn_leaf_lo": leaf_lo, "nn_leaf_hi": leaf_hi,
        "nn_group_lo": group_lo, "nn_group_hi": group_hi, "nn_brute_points": brute,
    }


def _box_gap2(x: jax.Array, lo: jax.Array, hi: jax.Array) -> jax.Array:
    """Squared distance from x to the axis-aligned box [lo, hi] (0 inside); broadcasts."""
    gap = jnp.maximum(jnp.maximum(lo - x, x - hi), 0.0)
    return jnp.sum(gap * gap, axis=-1)


def _nearest_boxes(query, lo, hi, count):
    """Per query, the `count` boxes nearest to it (ascending) and the squared distance to the
    next one (inf when there is none): no box left out is nearer than that.

    lo/hi: (1 or len(query), ..., 3); boxes are numbered in row-major order of the middle axes.
    """
    x = query.reshape(query.shape[:1] + (1,) * (lo.ndim - 2) + (3,))
    gap2 = _box_gap2(x, lo, hi).reshape(len(query), -1)
    take = min(count + 1, gap2.shape[1])
    negative, ids = jax.lax.top_k(-gap2, take)
    following = -negative[:, count] if take > count else jnp.full(len(query), jnp.inf, gap2.dtype)
    return ids[:, :count], following


def _tree_search(query, bound, index, group_slots, leaf_slots):
    """Stage 2 for a buffer of points: (best point, best distance, exact?).

    Visits the nearest `group_slots` groups and among their leaves the nearest `leaf_slots`;
    exact when the best distance found (or the bound) is below the distance to every box left
    out. Groups are gathered as whole blocks of leaves (contiguous rows), not leaf by leaf.
    """
    group_count = index["nn_group_lo"].shape[0]
    per_group = index["nn_leaf_lo"].shape[0] // group_count
    group_slots = min(group_slots, group_count)
    groups, next_group2 = _nearest_boxes(
        query, index["nn_group_lo"][None], index["nn_group_hi"][None], group_slots
    )
    blocks = lambda name: index[name].reshape(group_count, per_group, 3)[groups]
    leaf_slots = min(leaf_slots, group_slots * per_group)
    nearest_leaves, next_leaf2 = _nearest_boxes(query, blocks("nn_leaf_lo"), blocks("nn_leaf_hi"), leaf_slots)
    chosen = groups[jnp.arange(len(query))[:, None], nearest_leaves // per_group] * per_group + nearest_leaves % per_group
    cloud = index["nn_leaf_points"][chosen].reshape(len(query), -1, 3)
    d2 = jnp.sum((query[:, None] - cloud) ** 2, axis=-1)
    best = jnp.argmin(d2, axis=1)
    best_distance = jnp.sqrt(jnp.take_along_axis(d2, best[:, None], axis=1)[:, 0])
    # Box distances are computed in float32 like the point distances; the slack keeps a box
    # whose distance rounds up from being treated as farther than a point it contains.
    settled = jnp.minimum(best_distance, bound) * (1 + 1e-5) + 1e-6
    exact = (settled * settled <= next_group2) & (settled * settled <= next_leaf2)
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


def _hops(surface, ids, distance, open_, points, hop_ids, hop_radius, hops):
    """Stage 1b: (nearest ids, their distances, still open?) after `hops` neighbourhood hops."""
    for _ in range(hops):
        around = hop_ids[ids]  # (M, k+1)
        d2 = jnp.sum((surface[:, None] - points[around]) ** 2, axis=-1)
        best = jnp.argmin(d2, axis=1)
        found = jnp.sqrt(jnp.take_along_axis(d2, best[:, None], axis=1)[:, 0])
        found = jnp.minimum(found, distance)  # c itself is in its list; rounding aside
        proven = (distance + found) * (1 + 1e-5) + 1e-6 < hop_radius[ids]
        better = found < distance
        ids = jnp.where(open_ & better, around[jnp.arange(len(ids)), best], ids)
        distance = jnp.where(open_, found, distance)
        open_ = open_ & ~proven
    return ids, distance, open_


def exact_targets(
    surface: jax.Array,
    candidate_ids: jax.Array,
    candidate_distance: jax.Array,
    certified: jax.Array,
    wanted: jax.Array,
    index: dict[str, jax.Array],
    points: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The exact nearest cloud point of every `wanted` surface point.

    `candidate_*` (cloud indices into `points`, distances) and `certified` are stage 1's
    answer; returns the targets and per-point flags of which later stage answered (`hop`,
    `tree`, `brute`), for the fit's statistics.
    """
    surface, candidate_distance = jax.lax.stop_gradient((surface, candidate_distance))
    n = surface.shape[0]
    hop_open = wanted & ~certified
    ids, distance, tree = _hops(surface, candidate_ids, candidate_distance, hop_open, points,
                                index["nn_hop_ids"], index["nn_hop_radius"], HOPS)
    candidate_targets = points[ids]

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

    state = (candidate_targets, distance, tree)
    for group_slots, leaf_slots, buffer in TREE_STAGES:
        state = _over_buffers(state[2], buffer, tree_pass(group_slots, leaf_slots), state)
    targets, _, brute = state

    def brute_pass(slots, targets):
        found = _brute_force(surface[jnp.maximum(slots, 0)], index)
        return targets.at[jnp.where(slots >= 0, slots, n)].set(found, mode="drop")

    targets = _over_buffers(brute, BRUTE_BUFFER, brute_pass, targets)
    return targets, {"hop": hop_open & ~tree, "tree": tree & ~brute, "brute": brute}
