"""Fit many shapes at once: K shapes of one method and network size in one compiled program.

`fit_many(clouds, config)` groups the fits whose compiled program would be the same (method and
its structural settings, network, batch size, chunk length, step count) and trains each group in
lockstep: parameters, optimiser states, clouds and PRNG keys get a leading shape axis and one
training step is `jax.vmap`-ed over it. Clouds of different sizes are padded to a common length;
the padded data carries each cloud's real length ("point_count", "pair_count") and the batch
draws respect it, so a shape's random stream does not depend on its neighbours or on padding
(with JAX's partitionable threefry, the default since 0.5, the first n random bits of a padded
array are those of an array of n).

A shape's set-up and key derivation are the single-shape `Fitter`'s, so a shape fitted in a
group equals the same shape fitted alone (to float tolerance: vmapped kernels round differently).

The shape axis is sharded over the given devices (default: every local device) with a
`jax.sharding.Mesh`; XLA then runs each device's shapes on that device, with no communication
(the shapes are independent).

DiffCD's seed refreshes run for the whole group: one batched program evaluates every shape's
grid on the device, then marching cubes, seed sampling and the nearest-neighbour set-up run on
the host in a background thread while the device trains on. With `overlap_seed_refresh` (the
default) the seeds used from step s on come from the mesh of the parameters at step s - every
(one refresh period of lag, the price of never waiting for the host); without it every refresh
waits, as `Fitter` does.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import time
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from diffcd import meshing, sampling
from diffcd.errors import ConfigError, MeshError, NoSurfaceError
from diffcd.fit import CompiledChunks, FitConfig, FitEvent, FitResult, chunk_length, chunk_plan, learning_rate
from diffcd.io import Normalization, PointCloud, points_from_array
from diffcd.methods import METHODS, compile_key, host_setup, traced_weights
from diffcd.metrics import sample_triangles
from diffcd.networks import init_params, make_sdf
from diffcd.sdf import FittedSDF

__all__ = ["ShapeEvent", "fit_many", "plan_groups", "DEFAULT_SHAPES_PER_DEVICE"]

SHAPE_AXIS = "shapes"
DEFAULT_SHAPES_PER_DEVICE = 8
"""Shapes per device in one compiled program (a group larger than this is split)."""
PAD_MULTIPLE = 1024
"""Padded cloud lengths are rounded up to this, so groups of similar clouds share a program."""
PADDED = {"points": "point_count", "sigma": "point_count",
          "pull_queries": "pair_count", "pull_targets": "pair_count"}
"""Arrays padded along their first axis, and the data entry that holds their real length."""
_HOST_THREADS = 4
"""Shapes meshed at once on the host (KD-tree queries, and NumPy where it can, run without the GIL)."""
_GRID_POINTS_PER_CALL = 2**18
"""Grid points per shape and per step of the batched seed-grid evaluation."""


@dataclasses.dataclass
class ShapeEvent:
    """Progress of one shape of a `fit_many` run, and of the whole run."""

    index: int
    """Which of the clouds passed to fit_many."""
    event: FitEvent
    """That shape's progress; done=True (with the FitResult) at its last step."""
    shapes_done: int
    shapes_total: int
    steps_done: int
    """Training steps finished over all shapes."""
    steps_total: int
    elapsed: float
    eta: float
    """Seconds to the end of all shapes, from the throughput so far."""
    shapes_in_program: int
    """K: how many shapes trained in this shape's compiled program."""


class _Shape:
    """One cloud's fit set-up: exactly what `Fitter.__init__` derives from (cloud, config)."""

    def __init__(self, index: int, cloud: PointCloud | np.ndarray, config: FitConfig):
        self.index = index
        self.cloud = cloud if isinstance(cloud, PointCloud) else points_from_array(cloud)
        self.config = config
        self.spec = config.spec
        self.normalization = Normalization.from_points(self.cloud.points)
        points = self.normalization.apply(self.cloud.points).astype(np.float32)
        points, tree, sigma, extra = host_setup(self.spec, points, config.method_config, config.seed,
                                                config.sigma_neighbors)
        self.points = points
        self.arrays = {"points": points, "sigma": sigma, **extra}
        self.tree = tree if self.spec.uses_surface_seeds else None
        # The same derivation as Fitter: the first half initialises, the second drives sampling.
        init_key, self.key = jax.random.split(jax.random.PRNGKey(config.seed))
        self.params = init_params(config.network, init_key)
        self.weights = {k: np.float32(v) for k, v in traced_weights(config.method_config).items()}
        schedule = config.schedule
        self.schedule = {"steps": np.float32(schedule.steps),
                         "warmup_steps": np.float32(schedule.warmup_steps),
                         "learning_rate": np.float32(schedule.learning_rate)}
        self.batch_size = min(config.batch_size, len(points))
        self.history: list[dict[str, float]] = []

    def group_key(self) -> tuple:
        """Everything that must be equal for two fits to share one compiled program."""
        c, s = self.config, self.config.schedule
        mc = c.method_config
        unpadded = tuple(sorted((k, v.shape) for k, v in self.arrays.items() if k not in PADDED))
        padded = tuple(sorted((k, v.shape[1:]) for k, v in self.arrays.items() if k in PADDED))
        refresh = (mc.seed_refresh_every, mc.seed_mesh_resolution) if self.spec.uses_surface_seeds else None
        return (c.method, compile_key(mc), c.network, self.batch_size, c.chunk_steps,
                (s.adam_b1, s.adam_b2, s.adam_eps), s.steps, refresh, unpadded, padded)


def plan_groups(keys: Sequence[Any], capacity: int) -> list[list[int]]:
    """Indices grouped by equal key (first-seen order), each group cut to at most `capacity`."""
    by_key: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    return [members[i:i + capacity] for members in by_key.values()
            for i in range(0, len(members), capacity)]


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def _pad_to(array: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros((length, *array.shape[1:]), array.dtype)
    out[: len(array)] = array
    return out


def _padded_data(shapes: Sequence[_Shape]) -> dict[str, np.ndarray]:
    """Every shape's arrays on a leading shape axis, padded arrays with their real lengths."""
    names = shapes[0].arrays.keys()
    data = {}
    for name in names:
        arrays = [s.arrays[name] for s in shapes]
        if name in PADDED:
            length = PAD_MULTIPLE * math.ceil(max(len(a) for a in arrays) / PAD_MULTIPLE)
            data[name] = np.stack([_pad_to(a, length) for a in arrays])
            data[PADDED[name]] = np.array([len(a) for a in arrays], np.int32)
        else:
            data[name] = np.stack(arrays)
    return data


class _GroupProgram(CompiledChunks):
    """The compiled chunks of training steps for K shapes; steps vmapped over the shape axis.

    A chunk's length is static, as in `Fitter`: whole chunks and one-step pieces (see
    `fit.chunk_plan`), so no step of the compiled loop is conditional (on a GPU a per-step
    conditional copies its predicate to the host). Shared by every group of the same structure
    (`_group_program`), so a later `fit_many` reuses its executables."""

    def __init__(self, network, method, method_key, batch_size, adam):
        self.spec = METHODS[method]
        self.apply = make_sdf(network)
        self.method_key = method_key
        self.batch_size = batch_size
        self.optimizer = optax.scale_by_adam(*adam)
        self.init_optimizer = jax.jit(jax.vmap(self.optimizer.init))
        self.grid = jax.jit(self._grid_values, static_argnums=(1,))
        super().__init__()

    def _train_step(self, params, opt_state, step, data, weights, schedule, key):
        """One shape's step: Fitter's step (same key folding, update and NaN skip)."""
        (loss, aux), grads = jax.value_and_grad(self.spec.loss, argnums=1, has_aux=True)(
            self.apply, params, data, self.method_key, weights, jax.random.fold_in(key, step),
            self.batch_size,
        )
        finite = jnp.isfinite(loss) & jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)])
        )
        updates, new_opt_state = self.optimizer.update(grads, opt_state, params)
        rate = learning_rate(step, schedule)
        new_params = jax.tree_util.tree_map(lambda p, u: p - rate * u, params, updates)
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)
        return keep(new_params, params), keep(new_opt_state, opt_state), ~finite, {"loss": loss, **aux}

    def _chunk(self, length, params, opt_state, first_step, data, weights, schedule, keys):
        step_all = jax.vmap(self._train_step, in_axes=(0, 0, None, 0, 0, 0, 0))
        skipped = jnp.zeros(keys.shape[:1], jnp.int32)

        def body(carry, i):
            p, o, s = carry
            p, o, bad, out = step_all(p, o, first_step + i, data, weights, schedule, keys)
            return (p, o, s + bad), out

        (params, opt_state, skipped), outputs = jax.lax.scan(
            body, (params, opt_state, skipped), jnp.arange(length)
        )
        return params, opt_state, skipped, outputs

    def _grid_values(self, params, resolution):
        """f of every shape on the resolution³ seed grid, (K, n, n, n), slab by slab."""
        axis, _ = meshing.grid_axis(resolution)
        axis = jnp.asarray(axis)
        slab = max(1, _GRID_POINTS_PER_CALL // (resolution * resolution))
        slabs = math.ceil(resolution / slab)
        xs = jnp.pad(axis, (0, slabs * slab - resolution), mode="edge").reshape(slabs, slab)
        yz = jnp.stack(jnp.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)

        def one_slab(x):
            points = jnp.concatenate(
                [jnp.repeat(x, len(yz))[:, None], jnp.tile(yz, (slab, 1))], axis=1
            )
            return jax.vmap(self.apply, in_axes=(0, None))(params, points)

        values = jax.lax.map(one_slab, xs)  # (slabs, K, slab * n * n)
        k = values.shape[1]
        values = jnp.moveaxis(values, 1, 0).reshape(k, slabs * slab, resolution, resolution)
        return values[:, :resolution]


@functools.lru_cache(maxsize=16)
def _group_program(network, method, method_key, batch_size, adam) -> _GroupProgram:
    return _GroupProgram(network, method, method_key, batch_size, adam)


def _surface_seeds(shape: _Shape, values: np.ndarray, step: int) -> dict[str, np.ndarray]:
    """Fitter's seed refresh from an already evaluated grid: mesh, sample, candidates."""
    cfg = shape.config.method_config
    seed = [shape.config.seed, step]
    try:
        vertices, faces = meshing.marching_cubes(values)
        seeds = sample_triangles(vertices[faces], cfg.seed_count, seed, "seed mesh")[0]
        fallback = False
    except (NoSurfaceError, MeshError):
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(shape.points), cfg.seed_count, replace=len(shape.points) < cfg.seed_count)
        seeds, fallback = shape.points[pick], True
    seeds = seeds.astype(np.float32)
    candidates, radius = sampling.nearest_candidates(shape.tree, seeds, cfg.nn_candidates)
    return {"seeds": seeds, "seed_candidates": candidates, "seed_radius": radius, "fallback": fallback}


class _Group:
    """K shapes training in lockstep in one compiled program, sharded over devices."""

    def __init__(self, shapes: list[_Shape], devices: Sequence[jax.Device], pool, overlap: bool):
        self.shapes = shapes
        self.config = shapes[0].config
        self.spec = self.config.spec
        self.pool = pool
        self.overlap = overlap
        # The shape axis is padded to a multiple of the device count with copies of shape 0
        # (their results are dropped).
        self.devices = list(devices)[: max(1, len(shapes))] if len(shapes) < len(devices) else list(devices)
        slots = len(self.devices) * math.ceil(len(shapes) / len(self.devices))
        self.slots = shapes + [shapes[0]] * (slots - len(shapes))
        mesh = Mesh(np.array(self.devices), (SHAPE_AXIS,))
        self.sharding = NamedSharding(mesh, PartitionSpec(SHAPE_AXIS))
        self.replicated = NamedSharding(mesh, PartitionSpec())
        s = self.config.schedule
        self.program = _group_program(
            self.config.network, self.config.method, compile_key(self.config.method_config),
            shapes[0].batch_size, (s.adam_b1, s.adam_b2, s.adam_eps),
        )
        put = lambda tree: jax.device_put(tree, self.sharding)
        self.params = put(_stack([x.params for x in self.slots]))
        self.opt_state = self.program.init_optimizer(self.params)
        self.data = put(_padded_data(self.slots))
        self.weights = put(_stack([x.weights for x in self.slots]))
        self.schedule = put(_stack([x.schedule for x in self.slots]))
        self.keys = put(np.stack([np.asarray(x.key) for x in self.slots]))
        self.step = 0
        self.timings = {"compile_seconds": 0.0, "train_seconds": 0.0, "seed_mesh_seconds": 0.0,
                        "seed_wait_seconds": 0.0}
        self.nan_steps = np.zeros(len(self.slots), np.int64)
        self.seed_fallbacks = np.zeros(len(self.slots), np.int64)

    # -- DiffCD seeds ----------------------------------------------------------------------
    def _launch_refresh(self, step: int) -> concurrent.futures.Future:
        """Evaluate every shape's grid on the device now; mesh on the host in the background."""
        resolution = self.config.method_config.seed_mesh_resolution
        values = self.program.grid(self.params, resolution)  # dispatched before params are donated

        def host_work():
            start = time.perf_counter()
            grids = np.array(values)  # writable: scikit-image needs it
            with concurrent.futures.ThreadPoolExecutor(min(len(self.shapes), _HOST_THREADS)) as meshers:
                seeds = list(meshers.map(lambda i: _surface_seeds(self.shapes[i], grids[i], step),
                                         range(len(self.shapes))))
            seeds += [seeds[0]] * (len(self.slots) - len(self.shapes))
            return seeds, time.perf_counter() - start

        return self.pool.submit(host_work)

    def _use_seeds(self, future: concurrent.futures.Future) -> None:
        start = time.perf_counter()
        seeds, seconds = future.result()
        self.timings["seed_wait_seconds"] += time.perf_counter() - start
        self.timings["seed_mesh_seconds"] += seconds
        self.seed_fallbacks += np.array([s["fallback"] for s in seeds])
        stacked = {k: np.stack([s[k] for s in seeds]) for k in ("seeds", "seed_candidates", "seed_radius")}
        self.data = {**self.data, **jax.device_put(stacked, self.sharding)}

    # -- training ----------------------------------------------------------------------------
    def run(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Train all shapes to the last step; yields (active steps, outputs) after every chunk."""
        total = self.config.schedule.steps
        refresh = self.config.method_config.seed_refresh_every if self.spec.uses_surface_seeds else None
        pending = None
        length = chunk_length(self.config.chunk_steps, refresh)
        breaks = ((refresh, 0),) if refresh else ()
        for step, pieces in chunk_plan(self.step, total, length, self.config.chunk_steps, breaks):
            if refresh and step % refresh == 0:
                if pending is None:  # the first refresh, or every one without overlap
                    pending = self._launch_refresh(step)
                self._use_seeds(pending)
                pending = None
                if self.overlap and step + refresh < total:
                    # Seeds for the next period, from these parameters, while the device trains.
                    pending = self._launch_refresh(step + refresh)
            yield sum(pieces), self._run_chunk(step, pieces)
        if pending is not None:
            pending.cancel()

    def _run_chunk(self, step: int, pieces: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Run the pieces of a chunk back to back (no host sync in between); (steps, K) outputs."""
        start = time.perf_counter()
        compile_seconds = 0.0
        parts = []
        for length in pieces:
            (self.params, self.opt_state, skipped, outputs), seconds = self.program(
                length, self.params, self.opt_state, np.int32(step), self.data, self.weights, self.schedule,
                self.keys)
            compile_seconds += seconds
            parts.append((skipped, outputs))
            step += length
        parts = jax.device_get(parts)  # waits for the chunk
        self.timings["compile_seconds"] += compile_seconds
        self.timings["train_seconds"] += time.perf_counter() - start - compile_seconds
        for skipped, _ in parts:
            self.nan_steps += np.asarray(skipped)
        self.step = step
        return {name: np.concatenate([outputs[name] for _, outputs in parts]) for name in parts[0][1]}

    def result(self, slot: int, wall_start: float, host_params: Any) -> FitResult:
        """Shape `slot`'s FitResult; host_params: the group's parameters, fetched once."""
        shape = self.shapes[slot]
        params = jax.tree_util.tree_map(lambda x: np.asarray(x[slot]), host_params)
        fitted = FittedSDF(
            network=shape.config.network, params=params, normalization=shape.normalization,
            method=shape.config.method, method_config=shape.config.method_config,
            steps=self.step, seed=shape.config.seed,
        )
        train = self.timings["train_seconds"]
        summary = {
            "method": shape.config.method,
            "steps": self.step,
            "target_steps": shape.config.schedule.steps,
            "seed": shape.config.seed,
            "points": int(len(shape.points)),
            "original_points": int(shape.cloud.original_count),
            "compile_seconds": round(self.timings["compile_seconds"], 4),
            "fit_seconds": round(time.perf_counter() - wall_start, 4),
            "train_seconds": round(train, 4),
            "steps_per_second": round(self.step / train, 3) if train > 0 else 0.0,
            "seed_mesh_seconds": round(self.timings["seed_mesh_seconds"], 4),
            "seed_wait_seconds": round(self.timings["seed_wait_seconds"], 4),
            "snapshot_seconds": 0.0,
            "nan_steps_skipped": int(self.nan_steps[slot]),
            "seed_fallbacks": int(self.seed_fallbacks[slot]),
            "cancelled": False,
            "backend": jax.default_backend(),
            "shapes_in_program": len(self.shapes),
            "devices": len(self.devices),
            "overlap_seed_refresh": bool(self.overlap and self.spec.uses_surface_seeds),
        }
        return FitResult(fitted, summary, shape.history)


def fit_many(
    clouds: Sequence[PointCloud | np.ndarray],
    config: FitConfig | Sequence[FitConfig] = FitConfig(),
    *,
    devices: Sequence[jax.Device] | None = None,
    shapes_per_device: int = DEFAULT_SHAPES_PER_DEVICE,
    overlap_seed_refresh: bool = True,
) -> Iterator[ShapeEvent]:
    """Fit every cloud; yields a ShapeEvent per shape after every compiled chunk.

    Each shape's last event has `event.done` and `event.result` (a FitResult, as from
    `Fitter.run`). Fits that can share a compiled program (same method structure, network,
    batch size, chunk and step counts) train together, up to `shapes_per_device` x devices at a
    time; loss weights, learning rates and seeds may differ within a group.

    Args:
      clouds: point clouds (PointCloud or (N, 3) arrays).
      config: one FitConfig for all, or one per cloud.
      devices: devices to shard the shape axis over (default: all local devices).
      shapes_per_device: most shapes per device in one program.
      overlap_seed_refresh: DiffCD: mesh on the host while the device trains (seeds one refresh
        period old); False waits for every refresh, as Fitter does.
    """
    configs = list(config) if isinstance(config, (list, tuple)) else [config] * len(clouds)
    if len(configs) != len(clouds):
        raise ConfigError(f"fit_many got {len(clouds)} clouds but {len(configs)} configs.")
    if shapes_per_device < 1:
        raise ConfigError("shapes_per_device must be at least 1.")
    devices = list(devices) if devices is not None else jax.local_devices()
    if not devices:
        raise ConfigError("fit_many needs at least one device.")
    return _fit_many(clouds, configs, devices, shapes_per_device, overlap_seed_refresh)


def _fit_many(clouds, configs, devices, shapes_per_device, overlap) -> Iterator[ShapeEvent]:
    shapes = [_Shape(i, cloud, cfg) for i, (cloud, cfg) in enumerate(zip(clouds, configs))]
    groups = plan_groups([s.group_key() for s in shapes], shapes_per_device * len(devices))
    steps_total = sum(s.config.schedule.steps for s in shapes)
    steps_done, shapes_done = 0, 0
    wall_start = time.perf_counter()
    train_seconds = 0.0
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="diffcd-seeds") as pool:
        for members in groups:
            group = _Group([shapes[i] for i in members], devices, pool, overlap)
            group_start = time.perf_counter()
            before = group.timings["train_seconds"]
            for active, outputs in group.run():
                steps_done += active * len(members)
                train_seconds += group.timings["train_seconds"] - before
                before = group.timings["train_seconds"]
                elapsed = time.perf_counter() - wall_start
                rate = steps_done / train_seconds if train_seconds > 0 else 0.0
                eta = (steps_total - steps_done) / rate if rate > 0 else math.inf
                group_rate = group.step / max(group.timings["train_seconds"], 1e-9)
                for slot, shape in enumerate(group.shapes):
                    losses = {n: float(np.mean(v[:, slot])) for n, v in outputs.items()}
                    _append_history(shape, group.step - active, outputs, slot, elapsed)
                    event = FitEvent(
                        step=group.step, total_steps=shape.config.schedule.steps, losses=losses,
                        elapsed=time.perf_counter() - group_start,
                        eta=(shape.config.schedule.steps - group.step) / group_rate,
                        steps_per_second=group_rate,
                        valid_surface_fraction=losses.get("valid_surface_fraction"),
                    )
                    yield ShapeEvent(shape.index, event, shapes_done, len(shapes), steps_done,
                                     steps_total, elapsed, eta, len(members))
            host_params = jax.device_get(group.params)
            for slot, shape in enumerate(group.shapes):
                result = group.result(slot, group_start, host_params)
                shapes_done += 1
                event = FitEvent(
                    step=group.step, total_steps=shape.config.schedule.steps,
                    losses=dict(shape.history[-1]) if shape.history else {},
                    elapsed=time.perf_counter() - group_start, eta=0.0,
                    steps_per_second=result.summary["steps_per_second"], done=True, result=result,
                )
                elapsed = time.perf_counter() - wall_start
                rate = steps_done / train_seconds if train_seconds > 0 else 0.0
                eta = (steps_total - steps_done) / rate if rate > 0 else math.inf
                yield ShapeEvent(shape.index, event, shapes_done, len(shapes), steps_done,
                                 steps_total, elapsed, eta, len(members))
                shape.arrays = shape.history = None  # free the host copies early


def _append_history(shape: _Shape, first: int, outputs, slot: int, elapsed: float) -> None:
    for i in range(next(iter(outputs.values())).shape[0]):
        row = {"step": first + i + 1}
        row.update({name: float(values[i, slot]) for name, values in outputs.items()})
        row["elapsed"] = round(elapsed, 4)
        shape.history.append(row)
