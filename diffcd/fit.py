"""The fit loop: jit-compiled training chunks (lax.scan over steps) driven by a Python iterator.

Python only runs between chunks: to refresh DiffCD's surface seeds, to mesh a snapshot and to
report progress. A chunk's compiled program depends on the network, the method's structural
settings, the batch size, the matmul precision and the chunk length, and is reused across fits
(no per-request or per-chunk recompiles); loss weights, learning rate and step counts are passed
in as values.

Chunks are whole: their length divides the refresh and snapshot intervals, so no step inside
the compiled loop is conditional (a per-step `lax.cond` becomes a GPU conditional that copies
its predicate to the host every step). A remainder (the end of a fit that is not a multiple of
the chunk length) runs as a few shorter chunks whose lengths are powers of two, each compiled
once. DiffCD's seed refreshes (marching cubes, area sampling and the nearest-neighbour query,
all on the host) run in a background thread while training continues on the previous seeds
(`FitConfig.overlap_seed_refresh`).
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

from diffcd import meshing, sampling
from diffcd.errors import ConfigError, MeshError, NoSurfaceError
from diffcd.io import Normalization, PointCloud, points_from_array
from diffcd.metrics import sample_triangles
from diffcd.methods import METHODS, MethodSpec, compile_key, get_method, host_setup, traced_weights
from diffcd.networks import (MATMUL_PRECISIONS, MatmulPrecision, NetworkConfig, Params, init_params,
                             make_training_sdf)
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
        if not (self.spec.uses_surface_seeds and overlap):
            return 0
        every = self.method_config.seed_refresh_every
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


def learning_rate(step: jax.Array, schedule: dict[str, jax.Array]) -> jax.Array:
    """Linear warm-up to the peak, then cosine decay to 0 at the last step."""
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
    `_chunk(length, params, opt_state, ...)`; params and optimiser state are donated.
    Used by `Fitter` (one shape) and `diffcd.batch` (K shapes vmapped)."""

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


class _ChunkProgram(CompiledChunks):
    """The jit-compiled chunks of training steps for one structural configuration.

    One program per chunk length (a static argument); each step of a chunk runs
    unconditionally, so the compiled loop body has no conditional.
    """

    def __init__(self, network, method, method_key, batch_size, adam, precision):
        self.spec = METHODS[method]
        self.apply = make_training_sdf(network, precision)
        self.method_key = method_key
        self.batch_size = batch_size
        self.optimizer = optax.scale_by_adam(*adam)
        super().__init__()

    def init_optimizer(self, params: Params) -> Any:
        return self.optimizer.init(params)

    def _loss_and_gradient(self, params, data, weights, key):
        return jax.value_and_grad(self.spec.loss, argnums=1, has_aux=True)(
            self.apply, params, data, self.method_key, weights, key, self.batch_size
        )

    def step_flops(self, params, data, weights) -> float:
        """XLA's count of floating-point operations in one step's loss and gradient."""
        compiled = jax.jit(self._loss_and_gradient).lower(
            params, data, weights, jax.random.PRNGKey(0)
        ).compile()
        analysis = compiled.cost_analysis()
        if isinstance(analysis, (list, tuple)):  # older JAX: one dict per device program
            analysis = analysis[0]
        return float(analysis["flops"])

    def _train_step(self, carry, step, data, weights, schedule, key):
        params, opt_state, skipped = carry
        (loss, aux), grads = self._loss_and_gradient(
            params, data, weights, jax.random.fold_in(key, step)
        )
        finite = jnp.isfinite(loss) & jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)])
        )
        updates, new_opt_state = self.optimizer.update(grads, opt_state, params)
        rate = learning_rate(step, schedule)
        new_params = jax.tree_util.tree_map(lambda p, u: p - rate * u, params, updates)
        keep = lambda new, old: jax.tree_util.tree_map(
            lambda a, b: jnp.where(finite, a, b), new, old
        )
        carry = (keep(new_params, params), keep(new_opt_state, opt_state), skipped + (~finite))
        return carry, {"loss": loss, **aux}

    def _chunk(self, length, params, opt_state, first_step, data, weights, schedule, key):
        carry = (params, opt_state, jnp.zeros((), jnp.int32))

        def body(carry, i):
            return self._train_step(carry, first_step + i, data, weights, schedule, key)

        (params, opt_state, skipped), outputs = jax.lax.scan(body, carry, jnp.arange(length))
        return params, opt_state, skipped, outputs


@functools.lru_cache(maxsize=16)
def _chunk_program(network, method, method_key, batch_size, adam, precision) -> _ChunkProgram:
    return _ChunkProgram(network, method, method_key, batch_size, adam, precision)


def _grid_in_background() -> bool:
    """Whether an overlapped refresh also evaluates its grid in the background thread (on a CPU,
    whose cores are the device; see Fitter._start_refresh)."""
    return jax.default_backend() == "cpu"


@dataclasses.dataclass
class _PendingSeeds:
    """A seed refresh running in the background, to be swapped in at `swap_step`."""

    step: int
    swap_step: int
    future: concurrent.futures.Future


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
        report = progress or (lambda stage: None)
        self.cloud = cloud if isinstance(cloud, PointCloud) else points_from_array(cloud)
        self.config = config
        self.spec = config.spec
        self.normalization = Normalization.from_points(self.cloud.points)
        points = self.normalization.apply(self.cloud.points).astype(np.float32)
        method_config = config.method_config
        points, tree, sigma, extra = host_setup(self.spec, points, method_config, config.seed,
                                                config.sigma_neighbors, report)
        self._points = points
        self._tree = tree if self.spec.uses_surface_seeds else None
        self.data = jax.device_put({"points": points, "sigma": sigma, **extra})
        schedule = config.schedule
        self._program = _chunk_program(
            config.network,
            config.method,
            compile_key(method_config),
            min(config.batch_size, len(points)),
            (schedule.adam_b1, schedule.adam_b2, schedule.adam_eps),
            config.precision,
        )
        self._weights = {k: np.float32(v) for k, v in traced_weights(method_config).items()}
        self._schedule = {
            "steps": np.float32(schedule.steps),
            "warmup_steps": np.float32(schedule.warmup_steps),
            "learning_rate": np.float32(schedule.learning_rate),
        }
        init_key, self._key = jax.random.split(jax.random.PRNGKey(config.seed))
        params = init_params(config.network, init_key)
        self.state = TrainState(params, self._program.init_optimizer(params), 0)
        self.history: list[dict[str, float]] = []
        self._cancelled = False
        self._timings = {"compile_seconds": 0.0, "train_seconds": 0.0, "seed_mesh_seconds": 0.0,
                         "seed_wait_seconds": 0.0, "snapshot_seconds": 0.0}
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
        return self._program.step_flops(self.state.params, self.data, self._weights)

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
        train = self._timings["train_seconds"]
        trained_steps = len(self.history)
        refresh = self._timings["seed_mesh_seconds"]
        waited = min(self._timings["seed_wait_seconds"], refresh)
        return {
            "method": self.config.method,
            "steps": self.state.step,
            "target_steps": self.config.schedule.steps,
            "seed": self.config.seed,
            "points": int(len(self._points)),
            "original_points": int(self.cloud.original_count),
            "compile_seconds": round(self._timings["compile_seconds"], 4),
            "fit_seconds": round(
                (time.perf_counter() - self._wall_start) if self._wall_start else 0.0, 4
            ),
            "train_seconds": round(train, 4),
            "steps_per_second": round(trained_steps / train, 3) if train > 0 else 0.0,
            "matmul_precision": self.config.precision,
            "chunk_steps": self._chunk_length(None),
            "seed_refreshes": self._seed_refreshes,
            "seed_mesh_seconds": round(refresh, 4),
            "seed_refresh_overlap": self.config.seed_refresh_lag > 0,
            "seed_refresh_lag_steps": self.config.seed_refresh_lag,
            "seed_refresh_wait_seconds": round(waited, 4),
            "seed_refresh_overlapped_seconds": round(refresh - waited, 4),
            "snapshot_seconds": round(self._timings["snapshot_seconds"], 4),
            "nan_steps_skipped": int(self._nan_steps),
            "seed_fallbacks": int(self._seed_fallbacks),
            "cancelled": self._cancelled,
            "backend": jax.default_backend(),
        }

    # -- the loop ----------------------------------------------------------------------------
    def _chunk_length(self, snapshot_every: int | None) -> int:
        refresh = self.config.method_config.seed_refresh_every if self.spec.uses_surface_seeds else None
        return chunk_length(self.config.chunk_steps, refresh, self.config.seed_refresh_lag, snapshot_every)

    def _plan(self, snapshot_every: int | None) -> list[tuple[int, tuple[int, ...]]]:
        """The chunks from the current step to the end (see chunk_plan)."""
        breaks = [(snapshot_every or 0, 0)]
        if self.spec.uses_surface_seeds:
            every = self.config.method_config.seed_refresh_every
            breaks += [(every, 0), (every, self.config.seed_refresh_lag)]
        return chunk_plan(self.state.step, self.config.schedule.steps,
                          self._chunk_length(snapshot_every), self.config.chunk_steps, tuple(breaks))

    def _chunk_args(self, step: int) -> tuple:
        return (self.state.params, self.state.opt_state, np.int32(step), self.data, self._weights,
                self._schedule, self._key)

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
        refresh = self.config.method_config.seed_refresh_every if self.spec.uses_surface_seeds else None
        lag = self.config.seed_refresh_lag
        pending: _PendingSeeds | None = None
        workers = concurrent.futures.ThreadPoolExecutor(1, "diffcd-seeds") if lag else None
        seeds_stale = True  # seeds belong to the parameters of this run, also after a restore
        try:
            for step, pieces in self._plan(snapshot_every):
                if self._cancelled:
                    break
                if pending is not None and step >= pending.swap_step:
                    self._install_seeds(self._wait_for(pending))
                    pending = None
                if refresh and (seeds_stale or step % refresh == 0):
                    if seeds_stale or not lag:
                        self._refresh_surface_seeds(step)
                    elif step + lag < total:  # seeds that would arrive after the end are skipped
                        pending = self._start_refresh(workers, step, step + lag)
                    seeds_stale = False
                outputs = self._run_chunk(step, pieces)
                event = self._event(outputs)
                if snapshot_every and (self.state.step % snapshot_every == 0 or self.state.step == total):
                    event.snapshot = self._snapshot(snapshot_resolution)
                if callback:
                    callback(event)
                yield event
        finally:
            if workers is not None:
                workers.shutdown(wait=False, cancel_futures=True)
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
        start = time.perf_counter()
        compile_seconds = 0.0
        parts = []
        first = step
        for length in pieces:
            (params, opt_state, skipped, outputs), seconds = self._program(length, *self._chunk_args(first))
            compile_seconds += seconds
            self.state = TrainState(params, opt_state, first + length)
            parts.append((skipped, outputs))
            first += length
        parts = jax.device_get(parts)  # waits for the chunk to finish
        seconds = time.perf_counter() - start
        self._timings["compile_seconds"] += compile_seconds
        self._timings["train_seconds"] += seconds - compile_seconds
        self._nan_steps += sum(int(skipped) for skipped, _ in parts)
        outputs = {name: np.concatenate([part[name] for _, part in parts]) for name in parts[0][1]}
        active = first - step
        elapsed = time.perf_counter() - self._wall_start
        for i in range(active):
            row = {"step": step + i + 1}
            row.update({name: float(values[i]) for name, values in outputs.items()})
            row["elapsed"] = round(elapsed - (seconds - compile_seconds) * (active - 1 - i) / active, 4)
            self.history.append(row)
        return outputs

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

    # -- DiffCD's surface seeds ----------------------------------------------------------------
    # A refresh (method.md §4, step 1) has a device part, f on the seed-mesh grid, and a host
    # part: marching cubes, area-uniform seeds on the mesh, their candidate nearest cloud points.
    # Overlapped, the host part runs in a background thread. On an accelerator the grid is
    # evaluated between two chunks (a few passes over the blocks that may hold the surface):
    # evaluations from another thread would queue behind training chunks on the device's one
    # compute stream, once per block level. On a CPU the cores are the device, and the grid is
    # evaluated in the background thread too, beside training.
    def _refresh_surface_seeds(self, step: int) -> None:
        """DiffCD: new seeds from the current f, before the next chunk runs (synchronous)."""
        start = time.perf_counter()
        self._install_seeds(self._surface_seed_data(self._seed_grid(self.state.params), step))
        self._timings["seed_wait_seconds"] += time.perf_counter() - start

    def _start_refresh(self, workers, step: int, swap_step: int) -> _PendingSeeds:
        """Begin a refresh from the parameters at `step`; its seeds are swapped in at swap_step."""
        if _grid_in_background():
            # The next chunk donates the parameters' buffers: the thread evaluates a copy.
            params = jax.tree_util.tree_map(jnp.copy, self.state.params)
            job = lambda: self._surface_seed_data(self._seed_grid(params), step)
            return _PendingSeeds(step, swap_step, workers.submit(job))
        start = time.perf_counter()
        grid = self._seed_grid(self.state.params)
        self._timings["seed_wait_seconds"] += time.perf_counter() - start
        return _PendingSeeds(step, swap_step, workers.submit(self._surface_seed_data, grid, step))

    def _wait_for(self, pending: _PendingSeeds) -> dict[str, Any]:
        start = time.perf_counter()
        data = pending.future.result()
        self._timings["seed_wait_seconds"] += time.perf_counter() - start
        return data

    def _seed_grid(self, params: Params) -> tuple[np.ndarray, float]:
        """f on the seed mesh's grid (coarse-to-fine: exact where the surface may be), and the
        seconds it took."""
        start = time.perf_counter()
        evaluate = lambda x: evaluate_in_chunks(self.config.network, params, x)
        values, _ = meshing.evaluate_coarse_to_fine(evaluate, self.config.method_config.seed_mesh_resolution)
        return values, time.perf_counter() - start

    def _surface_seed_data(self, grid: tuple[np.ndarray, float], step: int) -> dict[str, Any]:
        """The host part of a refresh: mesh the grid, draw area-uniform seeds on the mesh and find
        each seed's candidate nearest cloud points. Safe in a background thread: it reads, never
        writes, the fitter."""
        start = time.perf_counter()
        values, grid_seconds = grid
        cfg = self.config.method_config
        seed = [self.config.seed, step]
        fell_back = False
        try:
            vertices, faces = meshing.marching_cubes(values)
            seeds = sample_triangles(vertices[faces], cfg.seed_count, seed, "seed mesh")[0]
        except (NoSurfaceError, MeshError):
            # Without a level set, start from the cloud itself: the projection moves these seeds
            # onto whatever surface appears.
            fell_back = True
            rng = np.random.default_rng(seed)
            pick = rng.choice(len(self._points), cfg.seed_count, replace=len(self._points) < cfg.seed_count)
            seeds = self._points[pick]
        seeds = seeds.astype(np.float32)
        candidates, radius = sampling.nearest_candidates(self._tree, seeds, cfg.nn_candidates)
        return {
            "arrays": {"seeds": seeds, "seed_candidates": candidates, "seed_radius": radius},
            "fell_back": fell_back,
            "seconds": grid_seconds + time.perf_counter() - start,
        }

    def _install_seeds(self, refresh: dict[str, Any]) -> None:
        """Swap a refresh's seeds into the training data (between chunks, on the main thread)."""
        self.data = {**self.data, **jax.device_put(refresh["arrays"])}
        self._seed_fallbacks += int(refresh["fell_back"])
        self._seed_refreshes += 1
        self._timings["seed_mesh_seconds"] += refresh["seconds"]


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
