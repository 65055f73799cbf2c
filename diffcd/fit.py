"""The training engine: one pure train step, compiled chunks of it, and the fit loop.

`TrainProgram.train_step` is one Adam step of one fit; it takes the learning rate of each of
the network's parameter groups (and optional masks) as values. `Fitter` runs it for one fit;
`diffcd.batch.fit_many` runs the same step under `jax.vmap` for K fits in lockstep. Both run it
in chunks: a `lax.scan` of steps, compiled once per chunk length for a `StepStructure`
(network, the method's structural settings, batch size, Adam constants, matmul precision) and
reused across fits, so nothing recompiles per request or per chunk; loss weights, learning rates
and step counts are passed in as values.

Python only runs between chunks: to refresh a method's data (DiffCD's surface seeds, the
method's `DataRefresh` hook), to mesh a snapshot and to report progress. Chunks are whole: their
length divides the refresh, refresh-swap and snapshot intervals, so no step inside the compiled
loop is conditional (a per-step `lax.cond` becomes a GPU conditional that copies its predicate
to the host every step). A remainder (the end of a fit that is not a multiple of the chunk
length, or a resume from an odd step) runs as one-step pieces of a second program. A refresh's
host part (marching cubes, area sampling, the nearest-neighbour query) can run in a background
thread while training continues on the previous data (`FitConfig.overlap_seed_refresh`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
import trimesh

from diffcd import meshing
from diffcd.errors import ConfigError, NoSurfaceError
from diffcd.io import Normalization, PointCloud, points_from_array
from diffcd.methods import METHODS, MethodSpec, compile_key, get_method, host_setup, traced_weights
from diffcd.networks import (MATMUL_PRECISIONS, MatmulPrecision, NetworkConfig, Params, init_params,
                             make_training_sdf, parameter_groups)
from diffcd.sdf import FittedSDF, evaluate_in_chunks


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Adam with linear warm-up and cosine decay to 0 at the last step (method.md §5)."""

    steps: int = 40_000
    """Training steps."""
    learning_rate: float = 1e-3
    """Peak learning rate (the paper uses 5e-5 at maximum noise)."""
    warmup_steps: int = 1000
    """Linear warm-up from 0 to the peak."""
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError("steps must be at least 1.")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ConfigError("warm-up steps must lie between 0 and the number of steps.")


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Everything that determines a fit. Defaults are the paper's (use presets for demos)."""

    method: str = "diffcd"
    """One of diffcd, igr, neural-pull, siren."""
    method_config: Any = None
    """The method's config dataclass; None means the method's paper defaults."""
    network: NetworkConfig = NetworkConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    batch_size: int = 5000
    """Cloud points per step (and local samples, seeds and area samples)."""
    seed: int = 0
    """Seed of initialisation and sampling: the same seed gives the same fit."""
    chunk_steps: int = 100
    """Steps per compiled call; progress is reported between chunks."""
    mesh_resolution: int = 512
    """Grid resolution of the final mesh."""
    sigma_neighbors: int = 50
    """Local sigma uses the distance to this nearest neighbour."""
    precision: MatmulPrecision = "highest"
    """Precision of the training passes' matrix products: "highest" (true float32, the default),
    "high" or "default" (the backend's fastest: TF32 on NVIDIA GPUs since Ampere, about twice as
    fast there; float32 on a CPU). DiffCD's projection and validity passes, snapshots and every
    mesh always run at "highest": TF32 changes f by up to ~1e-3, DiffCD's validity threshold."""
    overlap_seed_refresh: bool | None = None
    """DiffCD: mesh new surface seeds in a background thread while training continues on the
    previous ones; they take over `seed_refresh_lag` steps after the refresh began, the same
    steps in every run of the same seed. False: the paper's synchronous refresh (the device
    waits for marching cubes and the nearest-neighbour query on the host). None: on where JAX's
    default backend is an accelerator, off on a CPU (whose cores would do the refresh's work
    beside training anyway, so it gains less there)."""

    def __post_init__(self) -> None:
        spec = get_method(self.method)
        if self.method_config is None:
            object.__setattr__(self, "method_config", spec.config_type())
        elif type(self.method_config) is not spec.config_type:
            raise ConfigError(
                f"method {self.method!r} takes a {spec.config_type.__name__}, "
                f"not a {type(self.method_config).__name__}."
            )
        if self.batch_size < 1 or self.chunk_steps < 1:
            raise ConfigError("batch size and chunk steps must be positive.")
        if self.precision not in MATMUL_PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(MATMUL_PRECISIONS)}, not {self.precision!r}."
            )

    @property
    def spec(self) -> MethodSpec:
        return METHODS[self.method]

    @property
    def seed_refresh_lag(self) -> int:
        """Steps trained on the previous seeds after a refresh begins (0: synchronous refresh).

        About a quarter of the refresh interval, chosen so that whole chunks reach it: seeds are
        then up to 1.25 intervals old instead of one, well inside what the method tolerates (the
        paper refreshes every 1000 steps). Intervals without such a choice (e.g. a prime number
        of steps) refresh synchronously.
        """
        overlap = self.overlap_seed_refresh
        if overlap is None:
            overlap = jax.default_backend() != "cpu"
        hook = self.spec.refresh
        if hook is None or not overlap:
            return 0
        every = hook.every(self.method_config)
        base = chunk_length(self.chunk_steps, every)
        if base <= every // 4:
            return every // 4 - every // 4 % base  # e.g. 200 of 1000, chunks of 100 (paper)
        for share in (4, 2):  # e.g. 4 of 16 (cpu-quick), 20 of 80 (gpu-demo), 5 of 10
            lag = max(d for d in _divisors(every) if share * d <= every)
            if lag >= MIN_CHUNK_FOR_OVERLAP:
                return lag
        return 0


@dataclasses.dataclass
class FitEvent:
    """Progress of a running fit, reported between chunks."""

    step: int
    total_steps: int
    losses: dict[str, float]
    elapsed: float
    """Wall seconds since the fit started, compilation included."""
    eta: float
    """Estimated seconds to the last step."""
    steps_per_second: float
    """Training steps per second, compilation and meshing excluded."""
    valid_surface_fraction: float | None = None
    snapshot: trimesh.Trimesh | None = None
    done: bool = False
    result: "FitResult | None" = None


@dataclasses.dataclass
class FitResult:
    fitted: FittedSDF
    summary: dict[str, Any]
    history: list[dict[str, float]]
    """One row per step: step, loss terms, elapsed seconds."""


@dataclasses.dataclass
class TrainState:
    """What a resumed fit needs: parameters, optimiser state and the step count."""

    params: Params
    opt_state: Any
    step: int


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


MIN_CHUNK_FOR_OVERLAP = 4
"""An overlapped refresh needs chunks of at least this many steps (see seed_refresh_lag)."""


def chunk_length(chunk_steps: int, *intervals: int | None) -> int:
    """The longest chunk of at most `chunk_steps` steps that divides every interval given (seed
    refresh, refresh lag, snapshots), so that each of their boundaries falls between chunks."""
    common = 0
    for interval in intervals:
        if interval:
            common = math.gcd(common, interval)
    if common == 0:
        return chunk_steps
    return max(d for d in _divisors(common) if d <= chunk_steps)


def chunk_plan(
    start: int, total: int, length: int, chunk_steps: int, breaks: tuple[tuple[int, int], ...] = ()
) -> list[tuple[int, tuple[int, ...]]]:
    """The chunks from step `start` to `total`: (first step, compiled pieces) per progress event.

    A chunk ends at the next break (every `every` steps, offset by `offset`: refreshes, seed
    swaps, snapshots), at the end, or after about `chunk_steps` steps. It runs as pieces of
    `length` steps, one compiled program dispatched back to back with no host sync in between;
    a remainder (the end of a fit that is not a multiple of `length`, or a resume from an odd
    step) runs as one-step pieces of a second program, compiled only when needed.
    """
    cap = max(length, chunk_steps - chunk_steps % length)
    plan = []
    step = start
    while step < total:
        stop = min(total, step + cap)
        for every, offset in breaks:
            if every:
                stop = min(stop, offset + ((step - offset) // every + 1) * every)
        count = stop - step
        plan.append((step, (length,) * (count // length) + (1,) * (count % length)))
        step = stop
    return plan


def schedule_values(config: "FitConfig") -> dict[str, np.ndarray]:
    """The schedule as the compiled step receives it (values, not structure): step counts and
    the peak learning rate of each of the network's parameter groups."""
    schedule = config.schedule
    scales = np.asarray(parameter_groups(config.network).learning_rate_scales, np.float32)
    return {"steps": np.float32(schedule.steps),
            "warmup_steps": np.float32(schedule.warmup_steps),
            "learning_rate": np.float32(schedule.learning_rate) * scales}


def learning_rates(step: jax.Array, schedule: dict[str, jax.Array]) -> jax.Array:
    """Each parameter group's learning rate at `step`: linear warm-up to its peak, then cosine
    decay to 0 at the last step."""
    step = step.astype(jnp.float32)
    warmup = jnp.maximum(schedule["warmup_steps"], 1.0)
    decay = jnp.maximum(schedule["steps"] - schedule["warmup_steps"], 1.0)
    progress = jnp.clip((step - schedule["warmup_steps"]) / decay, 0.0, 1.0)
    warm = schedule["learning_rate"] * step / warmup
    cool = schedule["learning_rate"] * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return jnp.where(step < schedule["warmup_steps"], warm, cool)


class CompiledChunks:
    """Chunks of training steps compiled ahead of time: one executable per chunk length (a
    static argument) and argument shapes, kept for every later call. Subclasses define
    `_chunk(length, params, opt_state, ...)`; params and optimiser state are donated."""

    def __init__(self):
        self._compiled: dict[Any, Any] = {}
        self._jitted = jax.jit(self._chunk, static_argnums=0, donate_argnums=(1, 2))

    def _chunk(self, length: int, params, opt_state, *args):
        raise NotImplementedError

    @staticmethod
    def _signature(length: int, args: tuple) -> tuple:
        """What an executable is specific to: the length, the arguments' shapes and types and,
        for arrays spread over several devices, their sharding."""
        def spread(a):
            sharding = getattr(a, "sharding", None)
            return sharding if sharding is not None and len(sharding.device_set) > 1 else None

        shapes, structure = jax.tree_util.tree_flatten(
            jax.tree_util.tree_map(lambda a: (jnp.shape(a), jnp.result_type(a), spread(a)), args))
        return length, tuple(shapes), structure

    def lower(self, length: int, *args) -> Any:
        """The lowered chunk program (for inspection: precision attributes, no conditionals)."""
        return self._jitted.lower(length, *args)

    def compile(self, length: int, *args) -> float:
        """Compile the chunk of `length` steps for these arguments' shapes; returns the seconds
        spent (0 when this process compiled it already; near 0 from the persistent cache)."""
        signature = self._signature(length, args)
        if signature in self._compiled:
            return 0.0
        start = time.perf_counter()
        self._compiled[signature] = self._jitted.lower(length, *args).compile()
        return time.perf_counter() - start

    def __call__(self, length: int, *args) -> tuple[Any, float]:
        """Run one chunk; returns (outputs, seconds spent compiling for this call)."""
        compile_seconds = self.compile(length, *args)
        return self._compiled[self._signature(length, args)](*args), compile_seconds


@dataclasses.dataclass(frozen=True)
class StepStructure:
    """What the compiled training step depends on; everything else reaches it as a value."""

    network: NetworkConfig
    method: str
    method_key: Any
    """The method config as far as it changes the program (methods.compile_key)."""
    batch_size: int
    adam: tuple[float, float, float]
    precision: MatmulPrecision

    @classmethod
    def of(cls, config: "FitConfig", point_count: int) -> "StepStructure":
        s = config.schedule
        return cls(config.network, config.method, compile_key(config.method_config),
                   min(config.batch_size, point_count), (s.adam_b1, s.adam_b2, s.adam_eps), config.precision)


class TrainProgram(CompiledChunks):
    """The training step and the compiled chunks that run it, for one step structure.

    One fit (`Fitter`) runs `train_step` as it is; K fits in lockstep (`diffcd.batch`) run the
    same step under `jax.vmap`, every argument but the step number with a leading shape axis.
    A chunk is a `lax.scan` of unconditional steps (one program per chunk length, a static
    argument), so its compiled loop has no conditional.
    """

    def __init__(self, structure: StepStructure, batched: bool = False):
        self.structure = structure
        self.batched = batched
        self.spec = METHODS[structure.method]
        self.sdf = make_training_sdf(structure.network, structure.precision)
        self.groups = parameter_groups(structure.network)
        self.optimizer = optax.scale_by_adam(*structure.adam)
        init = jax.vmap(self.optimizer.init) if batched else self.optimizer.init
        self._init_optimizer = jax.jit(init)
        step = self.scheduled_step
        self._step = jax.vmap(step, in_axes=(0, 0, None, 0, 0, 0, 0)) if batched else step
        super().__init__()

    def init_optimizer(self, params: Params) -> Any:
        return self._init_optimizer(params)

    def loss_and_gradient(self, params, data, weights, key):
        s = self.structure
        return jax.value_and_grad(self.spec.loss, argnums=1, has_aux=True)(
            self.sdf, params, data, s.method_key, weights, key, s.batch_size
        )

    def step_flops(self, params, data, weights) -> float:
        """XLA's count of floating-point operations in one step's loss and gradient."""
        compiled = jax.jit(self.loss_and_gradient).lower(
            params, data, weights, jax.random.PRNGKey(0)
        ).compile()
        analysis = compiled.cost_analysis()
        if isinstance(analysis, (list, tuple)):  # older JAX: one dict per device program
            analysis = analysis[0]
        return float(analysis["flops"])

    def train_step(self, params, opt_state, step, rates, masks, data, weights, key):
        """One Adam step of one fit; pure. Returns (params, opt_state, finite, loss terms).

        Args:
          step: the step number (int32), folded into `key` for this step's draws.
          rates: float32[groups], each parameter group's learning rate at this step.
          masks: None, or a pytree like params of multipliers of each parameter's rate.
          data, weights: the method's arrays and float weights (methods.traced_weights).

        A step whose loss or gradient is not finite changes neither parameters nor optimiser
        state (and `finite` is False): one bad batch does not end a fit.
        """
        (loss, aux), grads = self.loss_and_gradient(params, data, weights, jax.random.fold_in(key, step))
        finite = jnp.isfinite(loss) & jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)])
        )
        updates, new_opt_state = self.optimizer.update(grads, opt_state, params)
        rate = jax.tree_util.tree_map(lambda group: rates[group], self.groups.labels(params))
        if masks is not None:
            rate = jax.tree_util.tree_map(lambda r, m: r * m, rate, masks)
        new_params = optax.apply_updates(params, jax.tree_util.tree_map(lambda u, r: -r * u, updates, rate))
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)
        return keep(new_params, params), keep(new_opt_state, opt_state), finite, {"loss": loss, **aux}

    def scheduled_step(self, params, opt_state, step, data, weights, schedule, key):
        """`train_step` with its learning rates and masks taken from the schedule at `step`."""
        masks = self.groups.masks(step) if self.groups.masks is not None else None
        return self.train_step(params, opt_state, step, learning_rates(step, schedule), masks, data,
                               weights, key)

    def _chunk(self, length, params, opt_state, first_step, data, weights, schedule, key):
        skipped = jnp.zeros(jnp.shape(key)[:-1], jnp.int32)  # per fit: () or (K,)

        def body(carry, i):
            params, opt_state, skipped = carry
            params, opt_state, finite, outputs = self._step(
                params, opt_state, first_step + i, data, weights, schedule, key)
            return (params, opt_state, skipped + (~finite)), outputs

        (params, opt_state, skipped), outputs = jax.lax.scan(
            body, (params, opt_state, skipped), jnp.arange(length))
        return params, opt_state, skipped, outputs

    def run_pieces(self, first_step: int, pieces: tuple[int, ...], params, opt_state, data, weights,
                   schedule, key) -> "ChunkRun":
        """Run a chunk's pieces back to back (no host sync in between) and fetch its outputs."""
        start = time.perf_counter()
        compile_seconds = 0.0
        parts = []
        step = first_step
        for length in pieces:
            (params, opt_state, skipped, outputs), seconds = self(
                length, params, opt_state, np.int32(step), data, weights, schedule, key)
            compile_seconds += seconds
            parts.append((skipped, outputs))
            step += length
        parts = jax.device_get(parts)  # waits for the chunk to finish
        seconds = time.perf_counter() - start
        return ChunkRun(
            params=params, opt_state=opt_state, steps=step - first_step,
            skipped=sum(np.asarray(skipped) for skipped, _ in parts),
            outputs={name: np.concatenate([part[name] for _, part in parts]) for name in parts[0][1]},
            compile_seconds=compile_seconds, train_seconds=seconds - compile_seconds)


@dataclasses.dataclass
class ChunkRun:
    """What one chunk did: the new state, and its per-step outputs on the host ((steps,) for
    one fit, (steps, K) for K)."""

    params: Params
    opt_state: Any
    steps: int
    skipped: np.ndarray
    """Steps skipped as not finite (per fit)."""
    outputs: dict[str, np.ndarray]
    compile_seconds: float
    train_seconds: float


@functools.lru_cache(maxsize=32)
def train_program(structure: StepStructure, batched: bool = False) -> TrainProgram:
    """The program of this structure, shared by every fit (or group) that has it."""
    return TrainProgram(structure, batched)


class FitSetup:
    """What a fit derives from (cloud, config) on the host, once, for `Fitter` and each shape of
    `diffcd.batch` alike: the normalised cloud in spatial order, its KD-tree, the method's
    arrays, the step structure, the traced values and the initial parameters."""

    def __init__(self, cloud: PointCloud | np.ndarray, config: "FitConfig",
                 report: Callable[[str], None] = lambda stage: None):
        self.cloud = cloud if isinstance(cloud, PointCloud) else points_from_array(cloud)
        self.config = config
        self.spec = config.spec
        self.normalization = Normalization.from_points(self.cloud.points)
        points = self.normalization.apply(self.cloud.points).astype(np.float32)
        points, tree, sigma, extra = host_setup(self.spec, points, config.method_config, config.seed,
                                                config.sigma_neighbors, report)
        self.points = points
        self.tree = tree if self.spec.refresh is not None else None
        self.arrays = {"points": points, "sigma": sigma, **extra}
        self.structure = StepStructure.of(config, len(points))
        self.weights = {k: np.float32(v) for k, v in traced_weights(config.method_config).items()}
        self.schedule = schedule_values(config)
        # The first half of the seed's key initialises, the second drives every step's draws.
        init_key, self.key = jax.random.split(jax.random.PRNGKey(config.seed))
        self.params = init_params(config.network, init_key)

    def refresh(self, values: np.ndarray, step: int) -> tuple[dict[str, np.ndarray], bool]:
        """The method's data refresh from f on its grid (on the host; safe in a thread)."""
        return self.spec.refresh.from_grid(values, self.points, self.tree, self.config.method_config,
                                           [self.config.seed, step])


def fit_chunk_length(config: "FitConfig", snapshot_every: int | None = None) -> int:
    """The compiled chunk length of a fit: whole chunks reach every refresh, refresh swap and
    snapshot."""
    hook = config.spec.refresh
    every = hook.every(config.method_config) if hook is not None else None
    return chunk_length(config.chunk_steps, every, config.seed_refresh_lag, snapshot_every)


def fit_plan(config: "FitConfig", start: int, snapshot_every: int | None = None
             ) -> list[tuple[int, tuple[int, ...]]]:
    """The chunks of a fit from step `start` to its end (see chunk_plan)."""
    breaks = [(snapshot_every or 0, 0)]
    hook = config.spec.refresh
    if hook is not None:
        every = hook.every(config.method_config)
        breaks += [(every, 0), (every, config.seed_refresh_lag)]
    return chunk_plan(start, config.schedule.steps, fit_chunk_length(config, snapshot_every),
                      config.chunk_steps, tuple(breaks))


def _grid_in_background() -> bool:
    """Whether an overlapped refresh also evaluates its grid in the background thread (on a CPU,
    whose cores are the device; see Fitter.seed_grids)."""
    return jax.default_backend() == "cpu"


@dataclasses.dataclass
class _PendingRefresh:
    """A data refresh running in the background, to be installed at `swap_step`."""

    swap_step: int
    main_seconds: float
    future: concurrent.futures.Future


class DataRefresher:
    """Runs a method's `DataRefresh` on its schedule, for one fit or K fits in lockstep.

    At the first chunk of a run and then every `every` steps, new arrays are computed from
    the current parameters. Without a lag (FitConfig.seed_refresh_lag 0) the loop waits for
    them; with one, they are computed in a background thread while training continues on the
    previous arrays and are installed `lag` steps after the refresh began (the same steps in
    every run, so a seed still gives one fit); a refresh that would land after the last step
    is skipped.

    The engine supplies `seed_grids(params, background) -> finish` (starts evaluating every
    fit's grid; `finish()` returns the grids), `refresh_from_grids(grids, step) -> [(arrays,
    fell_back)]` and `install_refresh(results)`.
    """

    def __init__(self, engine: Any, config: "FitConfig", timings: dict[str, float]):
        self.engine = engine
        self.every = config.spec.refresh.every(config.method_config)
        self.lag = config.seed_refresh_lag
        self.total = config.schedule.steps
        self.timings = timings
        self._stale = True  # the arrays belong to the parameters of this run, also after a restore
        self._pending: _PendingRefresh | None = None
        self._workers = concurrent.futures.ThreadPoolExecutor(1, "diffcd-refresh") if self.lag else None

    def before_chunk(self, step: int, params: Params) -> None:
        """Install a refresh that is due and start the one this step begins."""
        if self._pending is not None and step >= self._pending.swap_step:
            self._install(self._pending.main_seconds, *self._wait(self._pending.future))
            self._pending = None
        if self._stale or step % self.every == 0:
            if self._stale or not self.lag:
                start = time.perf_counter()
                main_seconds, job = self._job(step, params, background=False)
                self._install(main_seconds, *job())
                self.timings["seed_wait_seconds"] += time.perf_counter() - start - main_seconds
            elif step + self.lag < self.total:
                main_seconds, job = self._job(step, params, background=_grid_in_background())
                self._pending = _PendingRefresh(step + self.lag, main_seconds, self._workers.submit(job))
            self._stale = False

    def close(self) -> None:
        if self._workers is not None:
            self._workers.shutdown(wait=False, cancel_futures=True)

    def _job(self, step: int, params: Params, background: bool) -> tuple[float, Callable]:
        """Start the refresh from `params`: (seconds spent now, the rest as a function)."""
        start = time.perf_counter()
        finish = self.engine.seed_grids(params, background)
        main_seconds = time.perf_counter() - start
        self.timings["seed_wait_seconds"] += main_seconds

        def rest():
            begin = time.perf_counter()
            results = self.engine.refresh_from_grids(finish(), step)
            return results, time.perf_counter() - begin

        return main_seconds, rest

    def _wait(self, future: concurrent.futures.Future) -> tuple[list, float]:
        start = time.perf_counter()
        done = future.result()
        self.timings["seed_wait_seconds"] += time.perf_counter() - start
        return done

    def _install(self, main_seconds: float, results: list, seconds: float) -> None:
        self.engine.install_refresh(results)
        self.timings["seed_mesh_seconds"] += main_seconds + seconds


def new_timings() -> dict[str, float]:
    return {"compile_seconds": 0.0, "train_seconds": 0.0, "seed_mesh_seconds": 0.0,
            "seed_wait_seconds": 0.0, "snapshot_seconds": 0.0}


def fit_summary(config: "FitConfig", *, steps: int, trained_steps: int, points: int, original_points: int,
                timings: dict[str, float], wall_seconds: float, seed_refreshes: int, nan_steps: int,
                seed_fallbacks: int, cancelled: bool) -> dict[str, Any]:
    """The summary of a fit, the same keys from `Fitter` and from each shape of `fit_many`."""
    train = timings["train_seconds"]
    refresh = timings["seed_mesh_seconds"]
    waited = min(timings["seed_wait_seconds"], refresh)
    return {
        "method": config.method,
        "steps": steps,
        "target_steps": config.schedule.steps,
        "seed": config.seed,
        "points": int(points),
        "original_points": int(original_points),
        "compile_seconds": round(timings["compile_seconds"], 4),
        "fit_seconds": round(wall_seconds, 4),
        "train_seconds": round(train, 4),
        "steps_per_second": round(trained_steps / train, 3) if train > 0 else 0.0,
        "matmul_precision": config.precision,
        "chunk_steps": fit_chunk_length(config),
        "seed_refreshes": int(seed_refreshes),
        "seed_mesh_seconds": round(refresh, 4),
        "seed_refresh_overlap": config.seed_refresh_lag > 0,
        "seed_refresh_lag_steps": config.seed_refresh_lag,
        "seed_refresh_wait_seconds": round(waited, 4),
        "seed_refresh_overlapped_seconds": round(refresh - waited, 4),
        "snapshot_seconds": round(timings["snapshot_seconds"], 4),
        "nan_steps_skipped": int(nan_steps),
        "seed_fallbacks": int(seed_fallbacks),
        "cancelled": cancelled,
        "backend": jax.default_backend(),
    }


class Fitter:
    """Fits an SDF to a point cloud; `run()` yields progress events between compiled chunks.

    The fitter holds the state of the fit: after `cancel()` (or breaking out of `run()`) the
    parameters of the last finished chunk remain available through `fitted()`.
    """

    def __init__(
        self,
        cloud: PointCloud | np.ndarray,
        config: FitConfig = FitConfig(),
        *,
        progress: Callable[[str], None] | None = None,
    ):
        """`progress` is called with a short description before each set-up stage (the KD-tree
        and local sigma take tens of seconds on a 1M-point cloud)."""
        self.setup = FitSetup(cloud, config, progress or (lambda stage: None))
        self.cloud = self.setup.cloud
        self.config = config
        self.spec = config.spec
        self.normalization = self.setup.normalization
        self.data = jax.device_put(self.setup.arrays)
        self._program = train_program(self.setup.structure)
        params = self.setup.params
        self.state = TrainState(params, self._program.init_optimizer(params), 0)
        self.history: list[dict[str, float]] = []
        self._cancelled = False
        self._timings = new_timings()
        self._seed_refreshes = 0
        self._nan_steps = 0
        self._seed_fallbacks = 0
        self._wall_start: float | None = None

    # -- state -------------------------------------------------------------------------------
    def restore(self, state: TrainState) -> None:
        """Continue from a saved state (same config and cloud)."""
        self.state = state

    def step_flops(self) -> float:
        """Floating-point operations of one training step (loss and gradient) as XLA counts them.

        A machine-independent cost: the speed benchmark compares methods by it next to their
        measured step times. Compiles a separate program; not needed for fitting.
        """
        return self._program.step_flops(self.state.params, self.data, self.setup.weights)

    def cancel(self) -> None:
        """Stop after the chunk that is running; the state stays usable."""
        self._cancelled = True

    def fitted(self) -> FittedSDF:
        return FittedSDF(
            network=self.config.network,
            params=jax.device_get(self.state.params),
            normalization=self.normalization,
            method=self.config.method,
            method_config=self.config.method_config,
            steps=self.state.step,
            seed=self.config.seed,
        )

    def summary(self) -> dict[str, Any]:
        return fit_summary(
            self.config, steps=self.state.step, trained_steps=len(self.history),
            points=len(self.setup.points), original_points=self.cloud.original_count,
            timings=self._timings,
            wall_seconds=(time.perf_counter() - self._wall_start) if self._wall_start else 0.0,
            seed_refreshes=self._seed_refreshes, nan_steps=self._nan_steps,
            seed_fallbacks=self._seed_fallbacks, cancelled=self._cancelled)

    # -- the loop ----------------------------------------------------------------------------
    def _chunk_length(self, snapshot_every: int | None) -> int:
        return fit_chunk_length(self.config, snapshot_every)

    def _plan(self, snapshot_every: int | None) -> list[tuple[int, tuple[int, ...]]]:
        """The chunks from the current step to the end (see chunk_plan)."""
        return fit_plan(self.config, self.state.step, snapshot_every)

    def _chunk_args(self, step: int) -> tuple:
        return (self.state.params, self.state.opt_state, np.int32(step), self.data, self.setup.weights,
                self.setup.schedule, self.setup.key)

    def compile(self, *, snapshot_every: int | None = None) -> float:
        """Compile every chunk program the rest of this fit will run, without running it.

        Returns the seconds spent (near 0 when they come from the persistent compilation
        cache, 0 when this process compiled them already). See `warm_up`.
        """
        seconds = 0.0
        for length in sorted({n for _, pieces in self._plan(snapshot_every) for n in pieces}):
            seconds += self._program.compile(length, *self._chunk_args(self.state.step))
        self._timings["compile_seconds"] += seconds
        return seconds

    def lower_chunk(self, length: int) -> Any:
        """The lowered program of a chunk of `length` steps (jax.stages.Lowered), to inspect."""
        return self._program.lower(length, *self._chunk_args(self.state.step))

    def run(
        self,
        *,
        snapshot_every: int | None = None,
        snapshot_resolution: int = 64,
        callback: Callable[[FitEvent], None] | None = None,
    ) -> Iterator[FitEvent]:
        """Train to the configured number of steps, yielding an event after every chunk.

        Args:
          snapshot_every: attach a mesh of the current fit every this many steps (None: never);
            chunks end at these steps, so snapshots come at exact multiples.
          snapshot_resolution: grid resolution of those snapshot meshes.
          callback: also called with every event (for callers that do not iterate).
        """
        total = self.config.schedule.steps
        self._wall_start = time.perf_counter()
        refresher = DataRefresher(self, self.config, self._timings) if self.spec.refresh else None
        try:
            for step, pieces in self._plan(snapshot_every):
                if self._cancelled:
                    break
                if refresher is not None:
                    refresher.before_chunk(step, self.state.params)
                outputs = self._run_chunk(step, pieces)
                event = self._event(outputs)
                if snapshot_every and (self.state.step % snapshot_every == 0 or self.state.step == total):
                    event.snapshot = self._snapshot(snapshot_resolution)
                if callback:
                    callback(event)
                yield event
        finally:
            if refresher is not None:
                refresher.close()
        result = FitResult(self.fitted(), self.summary(), self.history)
        final = FitEvent(
            step=self.state.step, total_steps=total,
            losses=dict(self.history[-1]) if self.history else {},
            elapsed=time.perf_counter() - self._wall_start, eta=0.0,
            steps_per_second=result.summary["steps_per_second"], done=True, result=result,
        )
        if callback:
            callback(final)
        yield final

    def _run_chunk(self, step: int, pieces: tuple[int, ...]) -> dict[str, np.ndarray]:
        run = self._program.run_pieces(step, pieces, self.state.params, self.state.opt_state, self.data,
                                       self.setup.weights, self.setup.schedule, self.setup.key)
        self.state = TrainState(run.params, run.opt_state, step + run.steps)
        self._timings["compile_seconds"] += run.compile_seconds
        self._timings["train_seconds"] += run.train_seconds
        self._nan_steps += int(run.skipped)
        elapsed = time.perf_counter() - self._wall_start
        for i in range(run.steps):
            row = {"step": step + i + 1}
            row.update({name: float(values[i]) for name, values in run.outputs.items()})
            row["elapsed"] = round(elapsed - run.train_seconds * (run.steps - 1 - i) / run.steps, 4)
            self.history.append(row)
        return run.outputs

    def _event(self, outputs: dict[str, np.ndarray]) -> FitEvent:
        summary = self.summary()
        rate = summary["steps_per_second"]
        losses = {name: float(np.mean(values)) for name, values in outputs.items()}
        remaining = self.config.schedule.steps - self.state.step
        return FitEvent(
            step=self.state.step,
            total_steps=self.config.schedule.steps,
            losses=losses,
            elapsed=time.perf_counter() - self._wall_start,
            eta=remaining / rate if rate > 0 else math.inf,
            steps_per_second=rate,
            valid_surface_fraction=losses.get("valid_surface_fraction"),
        )

    def _snapshot(self, resolution: int) -> trimesh.Trimesh | None:
        start = time.perf_counter()
        try:
            return self.fitted().extract_mesh(resolution)
        except NoSurfaceError:
            return None
        finally:
            self._timings["snapshot_seconds"] += time.perf_counter() - start

    # -- the method's data refresh (DataRefresher's engine) -------------------------------------
    # A refresh has a device part, f on the grid, and a host part (DiffCD: marching cubes,
    # area-uniform seeds on the mesh, their candidate nearest cloud points). Overlapped, the
    # host part runs in a background thread. On an accelerator the grid is evaluated between
    # two chunks (a few passes over the blocks that may hold the surface): evaluations from
    # another thread would queue behind training chunks on the device's one compute stream, once
    # per block level. On a CPU the cores are the device, and the grid is evaluated in the
    # background thread too, beside training.
    def seed_grids(self, params: Params, background: bool) -> Callable[[], list[np.ndarray]]:
        """Start evaluating f on the refresh grid (coarse-to-fine: exact where the surface may
        be); the returned function gives [values]."""
        resolution = self.spec.refresh.resolution(self.config.method_config)

        def grid(params):
            evaluate = lambda x: evaluate_in_chunks(self.config.network, params, x)
            return [meshing.evaluate_coarse_to_fine(evaluate, resolution)[0]]

        if background:
            # The next chunk donates the parameters' buffers: the thread evaluates a copy.
            params = jax.tree_util.tree_map(jnp.copy, params)
            return lambda: grid(params)
        values = grid(params)
        return lambda: values

    def refresh_from_grids(self, grids: list[np.ndarray], step: int) -> list:
        return [self.setup.refresh(grids[0], step)]

    def install_refresh(self, results: list) -> None:
        """Swap a refresh's arrays into the training data (between chunks, on the main thread)."""
        arrays, fell_back = results[0]
        self.data = {**self.data, **jax.device_put(arrays)}
        self._seed_fallbacks += int(fell_back)
        self._seed_refreshes += 1


def warm_up(
    config: FitConfig,
    cloud: PointCloud | np.ndarray,
    *,
    snapshot_every: int | None = None,
    mesh_resolution: int = 32,
) -> float:
    """Compile the programs a fit of `config` on this cloud runs, without fitting; returns seconds.

    Training chunks (every length the fit will use), the grid evaluation of meshes and a small
    mesh's marching cubes. With the persistent compilation cache enabled
    (diffcd.compilation_cache) they are also stored for later processes. The app calls this for
    its default preset and example in a background thread at start-up, so that a visitor's first
    fit does not wait for compilation. Programs depend on the cloud's point count: a cloud of
    another size compiles its own.
    """
    start = time.perf_counter()
    fitter = Fitter(cloud, config)
    fitter.compile(snapshot_every=snapshot_every)
    fitted = fitter.fitted()
    fitted.normalized(np.zeros((40_000, 3), np.float32))  # large evaluation chunks
    try:
        fitted.extract_mesh(mesh_resolution)
    except NoSurfaceError:
        pass
    return time.perf_counter() - start


def fit(
    cloud: PointCloud | np.ndarray, config: FitConfig = FitConfig(), **run_options: Any
) -> Iterator[FitEvent]:
    """Fit an SDF; yields progress events, the last with `done=True` and the `FitResult`."""
    return Fitter(cloud, config).run(**run_options)


def fit_sdf(
    cloud: PointCloud | np.ndarray,
    config: FitConfig = FitConfig(),
    *,
    callback: Callable[[FitEvent], None] | None = None,
    **run_options: Any,
) -> FitResult:
    """Fit an SDF to the end and return the result; `callback` sees every progress event."""
    for event in Fitter(cloud, config).run(callback=callback, **run_options):
        if event.done:
            return event.result
    raise AssertionError("a fit always ends with a done event")
