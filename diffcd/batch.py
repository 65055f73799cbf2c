"""Fit many shapes at once: K fits of one step structure trained in lockstep.

`fit_many(clouds, config)` groups the fits whose compiled program would be the same (the
`fit.StepStructure`: method and its structural settings, network, batch size, Adam constants and
matmul precision; and the chunk plan: chunk and step counts, refresh interval and lag) and
trains each group in lockstep with `fit.Fitter`'s engine: the same set-up per shape
(`fit.FitSetup`), the same train step under `jax.vmap` over a leading shape axis, the same data
refresh schedule (`fit.DataRefresher`) and the same summary. Clouds of different sizes are padded
to a common length; the padded data carries each cloud's real length ("point_count",
"pair_count") and the batch draws respect it, so a shape's random stream does not depend on its
neighbours or on padding (with JAX's partitionable threefry, the default since 0.5, the first n
random bits of a padded array are those of an array of n). A shape fitted in a group equals the
same shape fitted alone (to float tolerance: vmapped kernels round differently).

The shape axis is sharded over the given devices (default: every local device) with a
`jax.sharding.Mesh`; XLA then runs each device's shapes on that device, with no communication
(the shapes are independent).

A data refresh (DiffCD's seeds) evaluates every shape's grid in one batched program on the
device, then runs the method's host part for each shape in a few threads.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from diffcd import meshing
from diffcd.errors import ConfigError
from diffcd.fit import (DataRefresher, FitConfig, FitEvent, FitResult, FitSetup, fit_plan, fit_summary,
                        new_timings, train_program)
from diffcd.io import PointCloud
from diffcd.networks import NetworkConfig, make_sdf
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


class _Shape(FitSetup):
    """One cloud's fit set-up (Fitter's) and its history."""

    def __init__(self, index: int, cloud: PointCloud | np.ndarray, config: FitConfig):
        super().__init__(cloud, config)
        self.index = index
        self.history: list[dict[str, float]] = []

    def group_key(self) -> tuple:
        """Everything that must be equal for two fits to share one compiled program and train in
        lockstep: the step structure, the chunk plan and the data's shapes."""
        c = self.config
        unpadded = tuple(sorted((k, v.shape) for k, v in self.arrays.items() if k not in PADDED))
        padded = tuple(sorted((k, v.shape[1:]) for k, v in self.arrays.items() if k in PADDED))
        hook = self.spec.refresh
        refresh = (hook.every(c.method_config), hook.resolution(c.method_config)) if hook else None
        return (self.structure, c.chunk_steps, c.schedule.steps, refresh, c.seed_refresh_lag, unpadded, padded)


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


@functools.lru_cache(maxsize=16)
def _batched_grid(network: NetworkConfig, resolution: int) -> Callable:
    """The compiled f of K shapes on the resolution³ refresh grid, (K, n, n, n), slab by slab."""
    apply = make_sdf(network)
    axis, _ = meshing.grid_axis(resolution)
    axis = jnp.asarray(axis)
    slab = max(1, _GRID_POINTS_PER_CALL // (resolution * resolution))
    slabs = math.ceil(resolution / slab)
    xs = jnp.pad(axis, (0, slabs * slab - resolution), mode="edge").reshape(slabs, slab)
    yz = jnp.stack(jnp.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)

    def grid(params):
        def one_slab(x):
            points = jnp.concatenate([jnp.repeat(x, len(yz))[:, None], jnp.tile(yz, (slab, 1))], axis=1)
            return jax.vmap(apply, in_axes=(0, None))(params, points)

        values = jax.lax.map(one_slab, xs)  # (slabs, K, slab * n * n)
        k = values.shape[1]
        values = jnp.moveaxis(values, 1, 0).reshape(k, slabs * slab, resolution, resolution)
        return values[:, :resolution]

    return jax.jit(grid)


class _Group:
    """K shapes training in lockstep in one compiled program, sharded over devices."""

    def __init__(self, shapes: list[_Shape], devices: Sequence[jax.Device]):
        self.shapes = shapes
        self.config = shapes[0].config
        self.spec = self.config.spec
        # The shape axis is padded to a multiple of the device count with copies of shape 0
        # (their results are dropped).
        self.devices = list(devices)[: max(1, len(shapes))] if len(shapes) < len(devices) else list(devices)
        slots = len(self.devices) * math.ceil(len(shapes) / len(self.devices))
        self.slots = shapes + [shapes[0]] * (slots - len(shapes))
        mesh = Mesh(np.array(self.devices), (SHAPE_AXIS,))
        self.sharding = NamedSharding(mesh, PartitionSpec(SHAPE_AXIS))
        self.program = train_program(shapes[0].structure, batched=True)
        put = lambda tree: jax.device_put(tree, self.sharding)
        self.params = put(_stack([x.params for x in self.slots]))
        self.opt_state = self.program.init_optimizer(self.params)
        self.data = put(_padded_data(self.slots))
        self.weights = put(_stack([x.weights for x in self.slots]))
        self.schedule = put(_stack([x.schedule for x in self.slots]))
        self.keys = put(np.stack([np.asarray(x.key) for x in self.slots]))
        self.step = 0
        self.timings = new_timings()
        self.seed_refreshes = 0
        self.nan_steps = np.zeros(len(self.slots), np.int64)
        self.seed_fallbacks = np.zeros(len(self.slots), np.int64)

    # -- the method's data refresh (DataRefresher's engine) -------------------------------------
    def seed_grids(self, params, background: bool) -> Callable[[], list[np.ndarray]]:
        """Dispatch every shape's grid now (before the next chunk donates the parameters); the
        returned function waits for them."""
        resolution = self.spec.refresh.resolution(self.config.method_config)
        values = _batched_grid(self.config.network, resolution)(params)
        return lambda: list(np.array(values)[: len(self.shapes)])  # writable: scikit-image needs it

    def refresh_from_grids(self, grids: list[np.ndarray], step: int) -> list:
        with concurrent.futures.ThreadPoolExecutor(min(len(self.shapes), _HOST_THREADS)) as meshers:
            return list(meshers.map(lambda i: self.shapes[i].refresh(grids[i], step), range(len(self.shapes))))

    def install_refresh(self, results: list) -> None:
        results = results + [results[0]] * (len(self.slots) - len(results))
        self.seed_fallbacks += np.array([fell_back for _, fell_back in results])
        stacked = {k: np.stack([arrays[k] for arrays, _ in results]) for k in results[0][0]}
        self.data = {**self.data, **jax.device_put(stacked, self.sharding)}
        self.seed_refreshes += 1

    # -- training ----------------------------------------------------------------------------
    def run(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Train all shapes to the last step; yields (steps, outputs) after every chunk."""
        refresher = DataRefresher(self, self.config, self.timings) if self.spec.refresh else None
        try:
            for step, pieces in fit_plan(self.config, self.step):
                if refresher is not None:
                    refresher.before_chunk(step, self.params)
                yield sum(pieces), self._run_chunk(step, pieces)
        finally:
            if refresher is not None:
                refresher.close()

    def _run_chunk(self, step: int, pieces: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Run one chunk for every shape; (steps, K) outputs."""
        run = self.program.run_pieces(step, pieces, self.params, self.opt_state, self.data, self.weights,
                                      self.schedule, self.keys)
        self.params, self.opt_state = run.params, run.opt_state
        self.timings["compile_seconds"] += run.compile_seconds
        self.timings["train_seconds"] += run.train_seconds
        self.nan_steps += run.skipped
        self.step = step + run.steps
        return run.outputs

    def result(self, slot: int, wall_start: float, host_params: Any) -> FitResult:
        """Shape `slot`'s FitResult; host_params: the group's parameters, fetched once."""
        shape = self.shapes[slot]
        params = jax.tree_util.tree_map(lambda x: np.asarray(x[slot]), host_params)
        fitted = FittedSDF(
            network=shape.config.network, params=params, normalization=shape.normalization,
            method=shape.config.method, method_config=shape.config.method_config,
            steps=self.step, seed=shape.config.seed,
        )
        summary = fit_summary(
            shape.config, steps=self.step, trained_steps=self.step, points=len(shape.points),
            original_points=shape.cloud.original_count, timings=self.timings,
            wall_seconds=time.perf_counter() - wall_start, seed_refreshes=self.seed_refreshes,
            nan_steps=self.nan_steps[slot], seed_fallbacks=self.seed_fallbacks[slot], cancelled=False)
        summary.update({"shapes_in_program": len(self.shapes), "devices": len(self.devices)})
        return FitResult(fitted, summary, shape.history)


def fit_many(
    clouds: Sequence[PointCloud | np.ndarray],
    config: FitConfig | Sequence[FitConfig] = FitConfig(),
    *,
    devices: Sequence[jax.Device] | None = None,
    shapes_per_device: int = DEFAULT_SHAPES_PER_DEVICE,
) -> Iterator[ShapeEvent]:
    """Fit every cloud; yields a ShapeEvent per shape after every compiled chunk.

    Each shape's last event has `event.done` and `event.result` (a FitResult, as from
    `Fitter.run`, with the same summary keys plus "shapes_in_program" and "devices"). Fits that
    can share a compiled program (same step structure and chunk plan, see the module docstring)
    train together, up to `shapes_per_device` x devices at a time; loss weights, learning rates,
    warm-up and seeds may differ within a group. Every FitConfig field means what it means to
    `Fitter` (precision, overlap_seed_refresh and its lag included).

    Args:
      clouds: point clouds (PointCloud or (N, 3) arrays).
      config: one FitConfig for all, or one per cloud.
      devices: devices to shard the shape axis over (default: all local devices).
      shapes_per_device: most shapes per device in one program.
    """
    configs = list(config) if isinstance(config, (list, tuple)) else [config] * len(clouds)
    if len(configs) != len(clouds):
        raise ConfigError(f"fit_many got {len(clouds)} clouds but {len(configs)} configs.")
    if shapes_per_device < 1:
        raise ConfigError("shapes_per_device must be at least 1.")
    devices = list(devices) if devices is not None else jax.local_devices()
    if not devices:
        raise ConfigError("fit_many needs at least one device.")
    return _fit_many(clouds, configs, devices, shapes_per_device)


def _fit_many(clouds, configs, devices, shapes_per_device) -> Iterator[ShapeEvent]:
    shapes = [_Shape(i, cloud, cfg) for i, (cloud, cfg) in enumerate(zip(clouds, configs))]
    groups = plan_groups([s.group_key() for s in shapes], shapes_per_device * len(devices))
    steps_total = sum(s.config.schedule.steps for s in shapes)
    steps_done, shapes_done = 0, 0
    wall_start = time.perf_counter()
    train_seconds = 0.0
    for members in groups:
        group = _Group([shapes[i] for i in members], devices)
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
