"""Exact nearest cloud points inside the compiled step (DiffCD's surface-to-point targets).

Four stages, each exact where it answers and each cheaper than the next:

1. Seed candidates (host KD-tree, at every seed refresh): the K cloud points nearest to the
   surface point's seed, with a certificate (the best candidate is closer than anything outside
   the seed's candidate ball). The best candidate always gives an upper bound on the nearest
   distance.
1b. Neighbour hops: from its best cloud point c so far (at distance d), an open point compares
   the cloud points of c's neighbourhood (its `HOP_NEIGHBOURS` nearest, radius r_c, computed once
   per fit) and moves to the best, d'. The nearest cloud point is within d' of the surface
   point, so within d + d' of c: when d + d' < r_c it is in that neighbourhood, and the answer
   is exact. A few hops (`HOPS`) walk a point near the cloud to its nearest neighbour and prove
   it with dense gathers only (no sort).
2. A two-level box hierarchy built once per fit: the cloud in k-d order, cut into leaves of
   ~`leaf_size` points, 64 consecutive leaves to a group. A point not certified by stage 1 visits
   its nearest groups, among their leaves its nearest ones, and compares every point of those
   leaves. The answer is exact when the best distance found is no larger than the distance to
   the nearest box left out; otherwise a wider pass follows, and after the widest stage 3.
3. Brute force against the whole cloud, in chunks.

Stages 1b, 2 and 3 run over buffers of the still-open points in a `while_loop`, so a step pays
for the points that need them and no point is ever left unsearched.

What made this fast on XLA's CPU backend (benchmarks/results/issue10-nn-and-draw-cpu.md): the
coordinates kept apart (see `_squared_distances`), and `top_k`'s outputs never sliced (see
`_nearest_boxes`). A point that reaches stage 2 costs ~8-15 µs (it cost ~90 µs before both),
so the first 100 steps of a cpu-quick fit, when the surface is far from the cloud and most
points need stage 2, cost ~20 % more than with the former, inexact search, and a whole fit ~2-4 %.

A host-side alternative was measured and rejected: scipy's KD-tree asked through
`jax.pure_callback` from the compiled step answers in ~2 µs a point, but a callback inside the
step made the whole step 4x slower on XLA's CPU backend (2.4 against 9.5 steps/s, cpu-quick).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import cKDTree

LEAVES_PER_GROUP = 64
TREE_STAGES = ((4, 16, 64), (8, 48, 32), (16, 128, 16), (64, 512, 8))
"""Stage-2 passes as (groups, leaves, points per pass): a cheap pass for every open point, wider
ones for the points (far from the cloud) whose nearest-neighbour ball meets more boxes. The
widest keeps points from brute force, whose cost grows with the cloud. Chosen on 1,250 surface
points 0.02-0.2 from a 50k-point scan: 7-13 ms a batch, against 9-20 ms without the (8, 48) pass."""
HOP_NEIGHBOURS = 32
"""Cloud neighbours per point for stage 1b (plus the point itself)."""
HOPS = 4
"""Stage-1b hops per step."""
HOP_BUFFER = 512
"""Points per stage-1b pass (a `while_loop` over the open points, like stages 2 and 3): late in
a fit, when the seeds certify nearly every point, a step pays for one pass over a few points
instead of hops over the whole batch (0.4-1 against 2 ms at 1,250 points), and early on, with
most points open, it costs what hops over the whole batch cost."""
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
    by_group = lambda boxes: np.ascontiguousarray(boxes.reshape(groups, per_group, 3).transpose(0, 2, 1))
    return {
        "nn_hop_ids": hop_ids, "nn_hop_radius": hop_radius,
        "nn_cloud_xyz": np.ascontiguousarray(points.T),
        "nn_leaf_points": np.ascontiguousarray(leaf_points.transpose(0, 2, 1)),
        "nn_leaf_lo": by_group(leaf_lo), "nn_leaf_hi": by_group(leaf_hi),
        "nn_group_lo": np.ascontiguousarray(group_lo.T), "nn_group_hi": np.ascontiguousarray(group_hi.T),
        "nn_brute_points": np.ascontiguousarray(brute.transpose(0, 2, 1)),
    }


# The search keeps coordinates apart: every array holds x, y and z on an axis of its own before
# the points' axis (structure of arrays), and distances are summed coordinate by coordinate.
# On XLA's CPU backend this vectorises over the points where a trailing axis of 3 does not:
# box gaps 12x and leaf distances 4x faster, and three scalar gathers beat one gather of rows 3x.

def _take(array: jax.Array, axis: int, i: int) -> jax.Array:
    return jax.lax.index_in_dim(array, i, axis, keepdims=False)


def _squared_distances(query: jax.Array, cloud: jax.Array, axis: int) -> jax.Array:
    """|query - cloud|² with the coordinates of `cloud` on `axis` (query: (B, 3); cloud: B first
    and any axes after `axis`, which the query broadcasts over)."""
    total = 0.0
    for a in range(3):
        x = query[:, a].reshape((-1,) + (1,) * (cloud.ndim - 2))
        total = total + (x - _take(cloud, axis, a)) ** 2
    return total


def _box_gap2(query: jax.Array, lo: jax.Array, hi: jax.Array, axis: int) -> jax.Array:
    """Squared distance from each query to axis-aligned boxes [lo, hi] (0 inside), coordinates
    on `axis` of lo/hi; leading axis of lo/hi: len(query), or 1 for boxes shared by all."""
    total = 0.0
    for a in range(3):
        x = query[:, a].reshape((-1,) + (1,) * (lo.ndim - 2))
        gap = jnp.maximum(jnp.maximum(_take(lo, axis, a) - x, x - _take(hi, axis, a)), 0.0)
        total = total + gap * gap
    return total


def _nearest_boxes(gap2: jax.Array, count: int) -> tuple[jax.Array, jax.Array]:
    """Per row of squared box distances (B, boxes), the `count` nearest boxes and a bound on
    every box left out: the squared distance to the farthest of those chosen (inf when none is
    left out).

    `top_k`'s outputs are used whole: on XLA's CPU backend, slicing them (a column of values,
    or the first `count` of `count + 1` ids) turns top_k into a full sort of every row, 10x
    slower (48 against 4 ms for 1024 points choosing 17 of 256 leaves).
    """
    if count >= gap2.shape[1]:
        every = jnp.broadcast_to(jnp.arange(gap2.shape[1]), gap2.shape)
        return every, jnp.full(gap2.shape[:1], jnp.inf, gap2.dtype)
    negative, ids = jax.lax.top_k(-gap2, count)
    return ids, -jnp.min(negative, axis=1)


def _tree_search(query, bound, index, group_slots, leaf_slots):
    """Stage 2 for a buffer of points: (best point, best distance, exact?).

    Visits the nearest `group_slots` groups and among their leaves the nearest `leaf_slots`;
    exact when the best distance found (or the bound) is below the distance to every box left
    out. Groups are gathered as whole blocks of leaves (contiguous rows), not leaf by leaf.
    """
    group_count, _, per_group = index["nn_leaf_lo"].shape
    group_slots = min(group_slots, group_count)
    group_gap2 = _box_gap2(query, index["nn_group_lo"][None], index["nn_group_hi"][None], axis=1)
    groups, next_group2 = _nearest_boxes(group_gap2, group_slots)
    leaf_gap2 = _box_gap2(query, index["nn_leaf_lo"][groups], index["nn_leaf_hi"][groups], axis=2)
    leaf_slots = min(leaf_slots, group_slots * per_group)
    nearest_leaves, next_leaf2 = _nearest_boxes(leaf_gap2.reshape(len(query), -1), leaf_slots)
    rows = jnp.arange(len(query))[:, None]
    chosen = groups[rows, nearest_leaves // per_group] * per_group + nearest_leaves % per_group
    cloud = index["nn_leaf_points"][chosen]  # (B, leaves, 3, points per leaf)
    coords = [_take(cloud, 2, a).reshape(len(query), -1) for a in range(3)]
    d2 = _squared_distances(query, jnp.stack(coords, axis=1), axis=1)
    best = jnp.argmin(d2, axis=1)
    best_distance = jnp.sqrt(jnp.min(d2, axis=1))
    point = jnp.stack([jnp.take_along_axis(c, best[:, None], axis=1)[:, 0] for c in coords], axis=1)
    # Box distances are computed in float32 like the point distances; the slack keeps a box
    # whose distance rounds up from being treated as farther than a point it contains.
    settled = jnp.minimum(best_distance, bound) * (1 + 1e-5) + 1e-6
    exact = (settled * settled <= next_group2) & (settled * settled <= next_leaf2)
    return point, best_distance, exact


def _brute_force(query, index):
    """Stage 3 for a buffer of points: the nearest of all cloud points, block by block."""
    blocks = index["nn_brute_points"]  # (blocks, 3, points per block)

    def scan_block(carry, block):
        best_point, best_distance = carry
        d2 = _squared_distances(query, block[None], axis=1)
        i = jnp.argmin(d2, axis=1)
        d = jnp.sqrt(jnp.min(d2, axis=1))
        closer = d < best_distance
        best_point = jnp.where(closer[:, None], block[:, i].T, best_point)
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


def _hops(surface, ids, distance, open_, cloud_xyz, hop_ids, hop_radius, hops):
    """Stage 1b: (nearest ids, their distances, still open?) after `hops` neighbourhood hops."""
    rows = jnp.arange(len(ids))
    for _ in range(hops):
        around = hop_ids[ids]  # (M, k+1)
        d2 = sum((surface[:, a, None] - cloud_xyz[a][around]) ** 2 for a in range(3))
        best = jnp.argmin(d2, axis=1)
        found = jnp.sqrt(jnp.min(d2, axis=1))
        found = jnp.minimum(found, distance)  # c itself is in its list; rounding aside
        proven = (distance + found) * (1 + 1e-5) + 1e-6 < hop_radius[ids]
        better = found < distance
        ids = jnp.where(open_ & better, around[rows, best], ids)
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

    def hop_pass(slots, state):
        ids, distance, open_ = state
        take = jnp.maximum(slots, 0)
        found, found_distance, still_open = _hops(
            surface[take], ids[take], distance[take], open_[take] & (slots >= 0),
            index["nn_cloud_xyz"], index["nn_hop_ids"], index["nn_hop_radius"], HOPS)
        rows = jnp.where(slots >= 0, slots, n)
        return (ids.at[rows].set(found, mode="drop"), distance.at[rows].set(found_distance, mode="drop"),
                open_.at[rows].set(still_open, mode="drop"))

    ids, distance, tree = _over_buffers(hop_open, HOP_BUFFER, hop_pass,
                                        (candidate_ids, candidate_distance, hop_open))
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
