"""The fit loop: jit-compiled training chunks (lax.scan over steps) driven by a Python iterator.

Python only runs between chunks: to refresh DiffCD's surface seeds, to mesh a snapshot and to
report progress. A chunk's compiled program depends on the network, the method's structural
settings, the batch size and the chunk length, and is reused across fits (no per-request or
per-chunk recompiles); loss weights, learning rate and step counts are passed in as values.
"""

from __future__ import annotations

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
from diffcd.methods import METHODS, MethodSpec, compile_key, get_method, traced_weights
from diffcd.networks import NetworkConfig, Params, init_params, make_sdf
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

    @property
    def spec(self) -> MethodSpec:
        return METHODS[self.method]


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


def learning_rate(step: jax.Array, schedule: dict[str, jax.Array]) -> jax.Array:
    """Linear warm-up to the peak, then cosine decay to 0 at the last step."""
    step = step.astype(jnp.float32)
    warmup = jnp.maximum(schedule["warmup_steps"], 1.0)
    decay = jnp.maximum(schedule["steps"] - schedule["warmup_steps"], 1.0)
    progress = jnp.clip((step - schedule["warmup_steps"]) / decay, 0.0, 1.0)
    warm = schedule["learning_rate"] * step / warmup
    cool = schedule["learning_rate"] * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return jnp.where(step < schedule["warmup_steps"], warm, cool)


class _ChunkProgram:
    """The jit-compiled chunk of training steps for one structural configuration."""

    def __init__(self, network, method, method_key, batch_size, chunk_steps, adam):
        self.spec = METHODS[method]
        self.apply = make_sdf(network)
        self.method_key = method_key
        self.batch_size = batch_size
        self.chunk_steps = chunk_steps
        self.optimizer = optax.scale_by_adam(*adam)
        self._compiled: dict[Any, Any] = {}
        self._jitted = jax.jit(self._chunk, donate_argnums=(0, 1))

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

    def _chunk(self, params, opt_state, first_step, active_steps, data, weights, schedule, key):
        carry = (params, opt_state, jnp.zeros((), jnp.int32))
        shapes = jax.eval_shape(
            lambda: self._train_step(carry, first_step, data, weights, schedule, key)[1]
        )

        def body(carry, i):
            # Steps past `active_steps` (the end of the fit, a seed refresh) are skipped at run
            # time, so one compiled chunk length serves every chunk.
            step = first_step + i
            run = lambda c: self._train_step(c, step, data, weights, schedule, key)
            skip = lambda c: (c, jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes))
            return jax.lax.cond(i < active_steps, run, skip, carry)

        (params, opt_state, skipped), outputs = jax.lax.scan(
            body, carry, jnp.arange(self.chunk_steps)
        )
        return params, opt_state, skipped, outputs

    def __call__(self, *args) -> tuple[Any, float]:
        """Run one chunk; returns (outputs, seconds spent compiling for this call)."""
        signature = jax.tree_util.tree_map(lambda a: (jnp.shape(a), jnp.result_type(a)), args)
        signature = jax.tree_util.tree_flatten(signature)
        signature = (tuple(signature[0]), signature[1])
        compile_seconds = 0.0
        if signature not in self._compiled:
            start = time.perf_counter()
            self._compiled[signature] = self._jitted.lower(*args).compile()
            compile_seconds = time.perf_counter() - start
        return self._compiled[signature](*args), compile_seconds


@functools.lru_cache(maxsize=16)
def _chunk_program(network, method, method_key, batch_size, chunk_steps, adam) -> _ChunkProgram:
    return _ChunkProgram(network, method, method_key, batch_size, chunk_steps, adam)


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
        report(f"KD-tree and local sigma of {len(points):,} points")
        tree = sampling.cloud_tree(points)
        sigma = sampling.local_sigma(points, k=config.sigma_neighbors, tree=tree)
        method_config = config.method_config
        report(f"{self.spec.title} set-up")
        extra = self.spec.prepare(points, sigma, method_config, config.seed)
        self._points = points
        self._tree = tree if self.spec.uses_surface_seeds else None
        self.data = jax.device_put({"points": points, "sigma": sigma, **extra})
        schedule = config.schedule
        self._program = _chunk_program(
            config.network,
            config.method,
            compile_key(method_config),
            min(config.batch_size, len(points)),
            config.chunk_steps,
            (schedule.adam_b1, schedule.adam_b2, schedule.adam_eps),
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
                         "snapshot_seconds": 0.0}
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
            "seed_mesh_seconds": round(self._timings["seed_mesh_seconds"], 4),
            "snapshot_seconds": round(self._timings["snapshot_seconds"], 4),
            "nan_steps_skipped": int(self._nan_steps),
            "seed_fallbacks": int(self._seed_fallbacks),
            "cancelled": self._cancelled,
            "backend": jax.default_backend(),
        }

    # -- the loop ----------------------------------------------------------------------------
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
        next_snapshot = snapshot_every
        seeds_stale = True  # seeds belong to the parameters of this run, also after a restore
        while self.state.step < total and not self._cancelled:
            step = self.state.step
            if refresh and (seeds_stale or step % refresh == 0):
                self._refresh_surface_seeds(step)
                seeds_stale = False
            active = min(self.config.chunk_steps, total - step)
            if refresh:
                active = min(active, refresh - step % refresh)
            if snapshot_every:
                active = min(active, next_snapshot - step)
            outputs = self._run_chunk(step, active)
            event = self._event(outputs, active)
            if snapshot_every and (self.state.step >= next_snapshot or self.state.step == total):
                event.snapshot = self._snapshot(snapshot_resolution)
                while next_snapshot <= self.state.step:
                    next_snapshot += snapshot_every
            if callback:
                callback(event)
            yield event
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

    def _run_chunk(self, step: int, active: int) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        (params, opt_state, skipped, outputs), compile_seconds = self._program(
            self.state.params, self.state.opt_state, np.int32(step), np.int32(active),
            self.data, self._weights, self._schedule, self._key,
        )
        outputs = jax.device_get(outputs)  # waits for the chunk to finish
        seconds = time.perf_counter() - start
        self._timings["compile_seconds"] += compile_seconds
        self._timings["train_seconds"] += seconds - compile_seconds
        self._nan_steps += int(skipped)
        self.state = TrainState(params, opt_state, step + active)
        elapsed = time.perf_counter() - self._wall_start
        for i in range(active):
            row = {"step": step + i + 1}
            row.update({name: float(values[i]) for name, values in outputs.items()})
            row["elapsed"] = round(elapsed - (seconds - compile_seconds) * (active - 1 - i) / active, 4)
            self.history.append(row)
        return {name: values[:active] for name, values in outputs.items()}

    def _event(self, outputs: dict[str, np.ndarray], active: int) -> FitEvent:
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

    def _refresh_surface_seeds(self, step: int) -> None:
        """DiffCD: mesh the current f and draw area-uniform seeds on it (method.md §4, step 1)."""
        start = time.perf_counter()
        cfg = self.config.method_config
        seed = [self.config.seed, step]
        params = self.state.params
        evaluate = lambda x: evaluate_in_chunks(self.config.network, params, x)
        try:
            mesh = meshing.extract_mesh(evaluate, cfg.seed_mesh_resolution)
            seeds = sample_triangles(mesh.vertices[mesh.faces], cfg.seed_count, seed, "seed mesh")[0]
        except (NoSurfaceError, MeshError):
            # Without a level set, start from the cloud itself: the projection moves these seeds
            # onto whatever surface appears.
            self._seed_fallbacks += 1
            rng = np.random.default_rng(seed)
            pick = rng.choice(len(self._points), cfg.seed_count, replace=len(self._points) < cfg.seed_count)
            seeds = self._points[pick]
        seeds = seeds.astype(np.float32)
        candidates, radius = sampling.nearest_candidates(self._tree, seeds, cfg.nn_candidates)
        self.data = {
            **self.data,
            **jax.device_put({"seeds": seeds, "seed_candidates": candidates, "seed_radius": radius}),
        }
        self._timings["seed_mesh_seconds"] += time.perf_counter() - start


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
