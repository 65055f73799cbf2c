"""Exact nearest cloud points inside the compiled step (DiffCD's surface-to-point targets).

Three stages, each exact where it answers and each cheaper than the next:

1. Seed candidates (host KD-tree, at every seed refresh): the K cloud points nearest to the
   surface point's seed, with a certificate (the best candidate is closer than anything outside
   the seed's candidate ball). The best candidate always gives an upper bound on the nearest
   distance.
2. A box hierarchy built once per fit: the cloud in k-d order, cut into leaves of ~`leaf_size`
   points; `FANOUT` consecutive leaves make a node of the level above, and so on up to a top
   level of at most `TOP_NODES` nodes. A point the seeds did not certify visits the nearest top
   nodes, among their children the nearest, down to the leaves, and compares every point of the
   leaves it reaches. The answer is exact when the best distance found is no larger than the
   distance to every node left out at every level; otherwise a wider pass follows, and after the
   widest stage 3. Leaves and their parents are bounded by their box and by their *disc* (a
   thin cylinder along the patch's surface, see `_discs`): a box around a surface patch that
   is tilted against the axes is as thick as it is wide, the disc is not.
3. Brute force against the whole cloud, in chunks.

Stages 2 and 3 run over buffers of the still-open points in a `while_loop`, so a step pays for
the points that need them and no point is ever left unsearched.

Why this shape (docs/speed.md): the cost of a search must not
grow with the cloud. A point 0.01 from a 1M-point scan has ~20x more cloud points in its
neighbourhood than from a 50k one; selections at a fixed count per level (four levels of 8 of
64 at 1M points, three at 50k) and discs that keep the number of leaves a point's
nearest-neighbour ball meets at 3-9 whatever the density leave ~8 µs a point at 1M points.
A stage of hops through each cloud point's 32 nearest neighbours would prove only 5 % of the
points at 1M (the lists cover a radius that shrinks with density), and its random gathers into
the cloud cost more than the hierarchy's search of the same points.

What made it fast on XLA's CPU backend: coordinates kept apart (see `_squared_distances`), and
`top_k`'s outputs never sliced (see `_nearest_boxes`).

A host-side alternative was measured and rejected: scipy's KD-tree asked through
`jax.pure_callback` from the compiled step answers in ~2 µs a point, but a callback inside the
step made the whole step 4x slower on XLA's CPU backend (2.4 against 9.5 steps/s, cpu-quick).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

FANOUT = 8
"""Children per node of the box hierarchy."""
TOP_NODES = 64
"""The most nodes at the top level, which every point scans whole."""
DISC_LEVELS = 2
"""Levels, from the leaves up, bounded by discs as well as boxes. Higher nodes hold patches too
curved for a thin disc (measured: a third disc level gave no fewer visits)."""
TREE_STAGES = ((8, 8, 8, 64), (8, 16, 16, 32), (16, 32, 48, 16), (32, 64, 128, 8))
"""Stage-2 passes as (top nodes, nodes per lower level, leaves, points per pass): a cheap pass
for every open point, wider ones for the points whose nearest-neighbour ball meets more nodes.
The widest keeps points from brute force, whose cost grows with the cloud. On the open points
of a cpu-quick fit on a 1M-point scan (step 96), the first pass proves 92 %."""
BRUTE_BUFFER = 64
"""Points per stage-3 pass."""
BRUTE_CHUNK = 32_768
"""Cloud points per stage-3 block."""

_FAR = np.float32(1e6)
"""Coordinate of padding points: never anyone's nearest neighbour inside the fitting box."""
_BOX_FIELDS = 6
"""lo (3) and hi (3): the first fields of every node; a disc's 8 follow on the disc levels."""


def _kd_order(points: np.ndarray, leaf_size: int) -> tuple[np.ndarray, int]:
    """Point indices in k-d order and the number of leaves (a power of two).

    Splits every cell at the median of its widest axis until cells hold at most `leaf_size`
    points. The cloud is first padded to equal leaves by repeating points (a duplicate never
    changes a nearest distance).
    """
    n = len(points)
    levels = max(0, math.ceil(math.log2(max(n / leaf_size, 1))))
    leaves = 2**levels
    pad = leaves * -(-n // leaves) - n
    order = np.concatenate([np.arange(n), np.linspace(0, n - 1, pad).astype(np.int64)]) if pad else np.arange(n)
    for level in range(levels):
        cells = order.reshape(2**level, -1)
        coords = points[cells]  # (cells, size, 3)
        axis = np.argmax(coords.max(axis=1) - coords.min(axis=1), axis=1)
        keys = np.take_along_axis(coords, axis[:, None, None], axis=2)[..., 0]
        split = np.argpartition(keys, cells.shape[1] // 2, axis=1)
        order = np.take_along_axis(cells, split, axis=1).ravel()
    return order, leaves


def _discs(points: np.ndarray) -> np.ndarray:
    """The bounding cylinder of each point set (M, S, 3), as (M, 8): centre, unit normal (the
    set's least-spread direction), half thickness along it and radius across it, both grown a
    little so that float32 rounding never puts one of the points outside."""
    points = points.astype(np.float64)
    centre = points.mean(axis=1)
    offset = points - centre[:, None]
    _, axes = np.linalg.eigh(np.einsum("msi,msj->mij", offset, offset))
    normal = axes[:, :, 0]
    along = np.einsum("msi,mi->ms", offset, normal)
    across = np.sqrt(np.maximum(np.einsum("msi,msi->ms", offset, offset) - along**2, 0.0))
    grow = lambda length: length.max(axis=1) * (1 + 1e-4) + 1e-6
    return np.concatenate([centre, normal, grow(np.abs(along))[:, None], grow(across)[:, None]],
                          axis=1).astype(np.float32)


def build_index(points: np.ndarray, leaf_size: int = 32) -> dict[str, np.ndarray]:
    """The host-side arrays of stages 2 and 3 for a cloud (N, 3); built once per fit.

    `nn_top` (`_BOX_FIELDS`, nodes): the top level's boxes (lo, hi). `nn_node{level}` for the levels below
    (0: the leaves), (parents, fields, FANOUT): a parent's children side by side, each as its
    box (lo, hi) and, on the `DISC_LEVELS` lowest levels, its disc: one gather a level. The
    leaves' points are `nn_leaf_points` (leaves, 3, points per leaf).
    """
    points = np.asarray(points, np.float32)
    n = len(points)
    order, leaves = _kd_order(points, leaf_size)
    leaf_points = points[order].reshape(leaves, -1, 3)
    lo, hi = leaf_points.min(axis=1), leaf_points.max(axis=1)
    boxes = [np.concatenate([lo, hi], axis=1)]
    while len(lo) > TOP_NODES:
        lo, hi = lo.reshape(-1, FANOUT, 3).min(axis=1), hi.reshape(-1, FANOUT, 3).max(axis=1)
        boxes.append(np.concatenate([lo, hi], axis=1))
    top = len(boxes) - 1
    index = {"nn_top": np.ascontiguousarray(boxes[top].T)}
    for level in range(top):
        fields = boxes[level]
        if level < DISC_LEVELS:
            per_node = leaf_points.shape[1] * FANOUT**level
            fields = np.concatenate([fields, _discs(leaf_points.reshape(-1, per_node, 3))], axis=1)
        index[f"nn_node{level}"] = np.ascontiguousarray(fields.reshape(-1, FANOUT, fields.shape[1]).transpose(0, 2, 1))
    chunk = min(BRUTE_CHUNK, 1 << max(0, (n - 1).bit_length()))
    brute = np.full((-(-n // chunk), chunk, 3), _FAR, np.float32)
    brute.reshape(-1, 3)[:n] = points
    return {
        **index,
        "nn_leaf_points": np.ascontiguousarray(leaf_points.transpose(0, 2, 1)),
        "nn_brute_points": np.ascontiguousarray(brute.transpose(0, 2, 1)),
    }


# The search keeps coordinates apart: every array holds x, y and z on an axis of its own before
# the points' axis (structure of arrays), and distances are summed coordinate by coordinate.
# On XLA's CPU backend this vectorises over the points where a trailing axis of 3 does not:
# box gaps 12x and leaf distances 4x faster, and three scalar gathers beat one gather of rows 3x.

def _take(array: jax.Array, axis: int, i: int) -> jax.Array:
    return jax.lax.index_in_dim(array, i, axis, keepdims=False)


def _query_axis(query: jax.Array, a: int, ndim: int) -> jax.Array:
    return query[:, a].reshape((-1,) + (1,) * (ndim - 2))


def _squared_distances(query: jax.Array, cloud: jax.Array, axis: int) -> jax.Array:
    """|query - cloud|² with the coordinates of `cloud` on `axis` (query: (B, 3); cloud: B first
    and any axes after `axis`, which the query broadcasts over)."""
    total = 0.0
    for a in range(3):
        total = total + (_query_axis(query, a, cloud.ndim) - _take(cloud, axis, a)) ** 2
    return total


def _box_gap2(query: jax.Array, lo: jax.Array, hi: jax.Array, axis: int) -> jax.Array:
    """Squared distance from each query to axis-aligned boxes [lo, hi] (0 inside), coordinates
    on `axis` of lo/hi; leading axis of lo/hi: len(query), or 1 for boxes shared by all."""
    total = 0.0
    for a in range(3):
        x = _query_axis(query, a, lo.ndim)
        gap = jnp.maximum(jnp.maximum(_take(lo, axis, a) - x, x - _take(hi, axis, a)), 0.0)
        total = total + gap * gap
    return total


def _disc_gap2(query: jax.Array, disc: jax.Array, axis: int) -> jax.Array:
    """Squared distance from each query to cylinders (see `_discs`), fields on `axis`."""
    field = lambda i: _take(disc, axis, i)
    offset = [_query_axis(query, a, disc.ndim) - field(a) for a in range(3)]
    along = offset[0] * field(3) + offset[1] * field(4) + offset[2] * field(5)
    length2 = offset[0] ** 2 + offset[1] ** 2 + offset[2] ** 2
    above = jnp.maximum(jnp.abs(along) - field(6), 0.0)
    # length² - along² cancels when the query is near the axis: float32 leaves an error of up to
    # ~1e-6 length², whose square root could exceed the search's slack. Taking it off keeps the
    # gap a lower bound (and costs nothing off the axis).
    across2 = jnp.maximum(length2 * (1 - 1e-5) - along * along, 0.0)
    beside = jnp.maximum(jnp.sqrt(across2) - field(7), 0.0)
    return above * above + beside * beside


def _nearest_boxes(gap2: jax.Array, count: int) -> tuple[jax.Array, jax.Array]:
    """Per row of squared node distances (B, nodes), the `count` nearest nodes and a bound on
    every node left out: the squared distance to the farthest of those chosen (inf when none is
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


def _levels(index: dict[str, jax.Array]) -> int:
    return 1 + sum(1 for name in index if name.startswith("nn_node"))


def _tree_search(query, bound, index, top_slots, node_slots, leaf_slots):
    """Stage 2 for a buffer of points: (best point, best distance, exact?).

    Visits the nearest `top_slots` top nodes, at each level below the nearest `node_slots`
    children of the nodes chosen (`leaf_slots` at the leaves), and compares every point of the
    leaves chosen. Exact when the best distance found (or the bound) is below the distance to
    every node left out, at every level.
    """
    b = len(query)
    top = _levels(index) - 1
    boxes = index["nn_top"][None]
    gap2 = _box_gap2(query, boxes[:, :3], boxes[:, 3:], axis=1)
    nodes, left_out2 = _nearest_boxes(gap2, leaf_slots if top == 0 else top_slots)
    for level in range(top - 1, -1, -1):
        fields = index[f"nn_node{level}"][nodes]  # (B, nodes chosen, fields, FANOUT)
        gap2 = _box_gap2(query, fields[:, :, :3], fields[:, :, 3:_BOX_FIELDS], axis=2)
        if fields.shape[2] > _BOX_FIELDS:
            gap2 = jnp.maximum(gap2, _disc_gap2(query, fields[:, :, _BOX_FIELDS:], axis=2))
        chosen, level_left_out2 = _nearest_boxes(gap2.reshape(b, -1), leaf_slots if level == 0 else node_slots)
        nodes = jnp.take_along_axis(nodes, chosen // FANOUT, axis=1) * FANOUT + chosen % FANOUT
        left_out2 = jnp.minimum(left_out2, level_left_out2)
    cloud = index["nn_leaf_points"][nodes]  # (B, leaves, 3, points per leaf)
    coords = [_take(cloud, 2, a).reshape(b, -1) for a in range(3)]
    d2 = _squared_distances(query, jnp.stack(coords, axis=1), axis=1)
    best = jnp.argmin(d2, axis=1)
    best_distance = jnp.sqrt(jnp.min(d2, axis=1))
    point = jnp.stack([jnp.take_along_axis(c, best[:, None], axis=1)[:, 0] for c in coords], axis=1)
    # Node distances are computed in float32 like the point distances; the slack keeps a node
    # whose distance rounds up from being treated as farther than a point it contains.
    settled = jnp.minimum(best_distance, bound) * (1 + 1e-5) + 1e-6
    return point, best_distance, settled * settled <= left_out2


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


def exact_targets(
    surface: jax.Array,
    candidate_targets: jax.Array,
    candidate_distance: jax.Array,
    certified: jax.Array,
    wanted: jax.Array,
    index: dict[str, jax.Array],
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The exact nearest cloud point of every `wanted` surface point.

    `candidate_*` (points, distances) and `certified` are stage 1's answer; returns the targets
    and per-point flags of which later stage answered (`tree`, `brute`), for the fit's
    statistics.
    """
    surface, candidate_targets, candidate_distance = jax.lax.stop_gradient(
        (surface, candidate_targets, candidate_distance))
    n = surface.shape[0]
    tree = wanted & ~certified

    def tree_pass(top_slots, node_slots, leaf_slots):
        def work(slots, state):
            targets, distance, open_ = state
            take = jnp.maximum(slots, 0)
            point, found, exact = _tree_search(surface[take], distance[take], index,
                                               top_slots, node_slots, leaf_slots)
            better = found < distance[take]
            rows = jnp.where(slots >= 0, slots, n)
            targets = targets.at[rows].set(jnp.where(better[:, None], point, targets[take]), mode="drop")
            distance = distance.at[rows].set(jnp.minimum(found, distance[take]), mode="drop")
            return targets, distance, open_.at[rows].set(~exact, mode="drop")

        return work

    state = (candidate_targets, candidate_distance, tree)
    for top_slots, node_slots, leaf_slots, buffer in TREE_STAGES:
        state = _over_buffers(state[2], buffer, tree_pass(top_slots, node_slots, leaf_slots), state)
    targets, _, brute = state

    def brute_pass(slots, targets):
        found = _brute_force(surface[jnp.maximum(slots, 0)], index)
        return targets.at[jnp.where(slots >= 0, slots, n)].set(found, mode="drop")

    targets = _over_buffers(brute, BRUTE_BUFFER, brute_pass, targets)
    return targets, {"tree": tree & ~brute, "brute": brute}
