"""SDF networks: the paper's softplus MLP with geometric initialisation, a sine option, and input
encodings that capture detail (multiresolution feature grids, Fourier features) trained coarse to
fine.

References: Atzmon & Lipman, "SAL" (geometric init); Gropp et al., "IGR" (architecture);
Sitzmann et al., "SIREN" (sine activation and its initialisation); Müller et al., "Instant
Neural Graphics Primitives" (multiresolution grids); Tancik et al., "Fourier Features Let
Networks Learn High Frequency Functions"; Li et al., "Neuralangelo" (coarse-to-fine levels).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Params = Any

MatmulPrecision = Literal["highest", "high", "default"]
MATMUL_PRECISIONS: tuple[str, ...] = ("highest", "high", "default")
"""Precision of the network's float32 matrix products (jax.lax.Precision): "highest" is true
float32 everywhere; "default" is the backend's fastest (TF32 on NVIDIA GPUs since Ampere,
one bfloat16 pass on TPU, float32 on a CPU); "high" lies between (TF32 on those GPUs, three
bfloat16 passes on TPU)."""


Encoding = Literal["none", "grid", "fourier"]
ENCODINGS: tuple[str, ...] = ("none", "grid", "fourier")

GRID_BOUND = 0.8
"""Half-side of the cube the feature grids cover (diffcd.sampling.BOX, where every sample lies);
points outside take the value at the nearest face."""


def check_precision(precision: str) -> str:
    if precision not in MATMUL_PRECISIONS:
        raise ValueError(
            f"matmul precision must be one of {', '.join(MATMUL_PRECISIONS)}, not {precision!r}"
        )
    return precision


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Architecture of the SDF network. Defaults are the paper's (461,054 parameters)."""

    hidden_layers: int = 8
    """Number of hidden layers."""
    width: int = 256
    """Features per hidden layer."""
    skip_layers: tuple[int, ...] = (4,)
    """Hidden layers whose input is concat(previous features, x) / sqrt(2)."""
    activation: Literal["softplus", "sine"] = "softplus"
    """softplus (paper, with beta below) or sine (a SIREN network)."""
    softplus_beta: float = 100.0
    """Sharpness of the softplus: log(1 + exp(beta z)) / beta."""
    sine_omega: float = 30.0
    """Frequency of the first sine layer (SIREN's omega_0)."""
    init_radius: float = 0.5
    """Radius of the sphere the untrained softplus network approximates (geometric init)."""
    encoding: Encoding = "none"
    """Features of x the first layer reads beside x: "none" (the paper's MLP), "grid"
    (multiresolution dense feature grids, trilinearly interpolated) or "fourier" (sin and cos of
    x at octave frequencies). Either starts at zero, so the untrained network is the plain one."""
    encoding_levels: int = 4
    """Grid levels, or Fourier bands (frequencies pi, 2 pi, 4 pi, ...), coarse to fine."""
    encoding_level_steps: int = 0
    """Coarse to fine: level k trains from step k x this (level 0 from the start); until then its
    parameters' learning rate is 0 (and a grid level, still zero, adds nothing). 0: all at once."""
    encoding_learning_rate_scale: float = 1.0
    """Peak learning rate of the encoding's parameters (grid tables, or the first layer's weights
    of the Fourier features) as a multiple of the MLP's."""
    grid_min_resolution: int = 16
    """Grid points per axis of the coarsest level."""
    grid_max_resolution: int = 128
    """Grid points per axis of the finest level; levels between are spaced geometrically."""
    grid_features: int = 2
    """Features per grid level."""

    def __post_init__(self) -> None:
        if self.hidden_layers < 1 or self.width < 4:
            raise ValueError("a network needs at least one hidden layer and width >= 4")
        if any(not 0 < k < self.hidden_layers for k in self.skip_layers):
            raise ValueError(f"skip layers must lie in 1..{self.hidden_layers - 1}")
        if self.activation not in ("softplus", "sine"):
            raise ValueError("activation must be 'softplus' or 'sine'")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, not {self.encoding!r}")
        if self.encoding_levels < 1 or self.encoding_level_steps < 0:
            raise ValueError("an encoding needs at least one level and a non-negative level_steps")
        if not self.encoding_learning_rate_scale > 0:
            raise ValueError("the encoding's learning-rate scale must be positive")
        if not 2 <= self.grid_min_resolution <= self.grid_max_resolution or self.grid_features < 1:
            raise ValueError("grid resolutions must satisfy 2 <= min <= max, with at least one feature")

    @property
    def encoding_width(self) -> int:
        """Features the encoding adds to the first layer's input (0 without one)."""
        if self.encoding == "grid":
            return self.encoding_levels * self.grid_features
        if self.encoding == "fourier":
            return 6 * self.encoding_levels
        return 0


def grid_resolutions(config: NetworkConfig) -> tuple[int, ...]:
    """Grid points per axis of each level, coarse to fine (geometric from min to max)."""
    levels, low, high = config.encoding_levels, config.grid_min_resolution, config.grid_max_resolution
    if levels == 1:
        return (high,)
    return tuple(int(round(low * (high / low) ** (k / (levels - 1)))) for k in range(levels))


def trilinear(table: jax.Array, x: jax.Array, bound: float = GRID_BOUND) -> jax.Array:
    """Trilinear interpolation of a dense grid (R, R, R, F) over [-bound, bound]³ at x (..., 3).

    Differentiable in x (piecewise: the gradient jumps across cell faces) and in the table (a
    scatter-add into its 8 corners per point). Points outside the cube take the value at its
    surface.
    """
    resolution, features = table.shape[0], table.shape[-1]
    u = jnp.clip((x + bound) * ((resolution - 1) / (2 * bound)), 0.0, resolution - 1)
    corner = jnp.clip(jnp.floor(jax.lax.stop_gradient(u)), 0, resolution - 2).astype(jnp.int32)
    t = (u - corner)[..., None, :]  # (..., 1, 3) in [0, 1], carries the spatial derivative
    # All 8 corners in one gather (one scatter-add in the parameter gradient): far less to
    # compile than 8 gathers, in each of the several derivative passes a loss makes.
    offsets = jnp.asarray(_CORNERS)
    index = jnp.sum((corner[..., None, :] + offsets) * jnp.array([resolution * resolution, resolution, 1]), -1)
    weights = jnp.prod(jnp.where(offsets == 1, t, 1.0 - t), axis=-1)  # (..., 8)
    values = jnp.take(table.reshape(-1, features), index, axis=0)  # (..., 8, F)
    return jnp.sum(weights[..., None] * values, axis=-2)


_CORNERS = np.array([[dx, dy, dz] for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)], np.int32)


def fourier_features(x: jax.Array, bands: int) -> jax.Array:
    """[sin(2^k pi x), cos(2^k pi x)] for k = 0..bands-1, band by band: (..., 6 bands)."""
    parts = []
    for k in range(bands):
        z = (2.0**k * math.pi) * x
        parts += [jnp.sin(z), jnp.cos(z)]
    return jnp.concatenate(parts, axis=-1)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _softplus(z: jax.Array, beta: float) -> jax.Array:
    """log(1 + exp(beta z)) / beta; PyTorch's Softplus(beta, threshold=20): the identity where
    beta*z > 20."""
    bz = beta * z
    return jnp.where(bz > 20.0, z, jax.nn.softplus(jnp.minimum(bz, 20.0)) / beta)


@_softplus.defjvp
def _softplus_jvp(beta, primals, tangents):
    # The derivative is the logistic sigmoid (exactly 1 past the threshold, in float32 as well).
    # Stating it instead of letting JAX differentiate the guarded formula above spares the
    # spatial gradient and its parameter gradient (the eikonal term differentiates twice
    # through every activation) the where/min/logaddexp derivative ops.
    (z,), (dz,) = primals, tangents
    return _softplus(z, beta), jax.nn.sigmoid(beta * z) * dz


def _normal_init(std: float, mean: float = 0.0) -> Callable:
    def init(key, shape, dtype=jnp.float32):
        return mean + std * jax.random.normal(key, shape, dtype)

    return init


def _uniform_init(bound: float) -> Callable:
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _layer_dims(config: NetworkConfig) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of every linear layer, output layer last."""
    dims = []
    fan_in = 3
    for layer in range(config.hidden_layers):
        fan_out = config.width
        if layer + 1 in config.skip_layers:
            fan_out = config.width - 3  # leaves room for the concatenated input
        dims.append((fan_in, fan_out))
        fan_in = fan_out + 3 if layer + 1 in config.skip_layers else fan_out
    dims.append((fan_in, 1))
    return dims


class SDFNetwork(nn.Module):
    """MLP mapping points (..., 3) to signed distances (...)."""

    config: NetworkConfig
    precision: MatmulPrecision = "highest"
    """Of every layer's matrix product, and so of its derivatives (JAX transposes a product
    with the precision of the original)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        precision = jax.lax.Precision(check_precision(self.precision))
        dims = _layer_dims(cfg)
        h = x
        for layer, (fan_in, fan_out) in enumerate(dims[:-1]):
            if layer in cfg.skip_layers:
                h = jnp.concatenate([h, x], axis=-1) / math.sqrt(2.0)
            kernel_init, bias_init = self._hidden_init(layer, fan_in, fan_out)
            h = nn.Dense(fan_out, kernel_init=kernel_init, bias_init=bias_init, precision=precision,
                         name=f"layer_{layer}")(h)
            if layer == 0 and cfg.encoding != "none":
                h = h + self._encoded(x, fan_out, precision)
            if cfg.activation == "softplus":
                h = _softplus(h, cfg.softplus_beta)
            else:
                h = jnp.sin(cfg.sine_omega * h if layer == 0 else h)
        fan_in = dims[-1][0]
        kernel_init, bias_init = self._output_init(fan_in)
        out = nn.Dense(1, kernel_init=kernel_init, bias_init=bias_init, precision=precision,
                       name="output")(h)
        return out[..., 0]

    def _encoded(self, x: jax.Array, fan_out: int, precision: jax.lax.Precision) -> jax.Array:
        """The first layer's product with the encoding's features (0 at initialisation: the grid
        tables start at zero beside random weights, the Fourier weights at zero)."""
        cfg = self.config
        if cfg.encoding == "grid":
            tables = [self.param(f"grid_{k}", nn.initializers.zeros, (r, r, r, cfg.grid_features))
                      for k, r in enumerate(grid_resolutions(cfg))]
            features = jnp.concatenate([trilinear(table, x) for table in tables], axis=-1)
            kernel_init = _normal_init(math.sqrt(2.0 / fan_out))
        else:
            features = fourier_features(x, cfg.encoding_levels)
            kernel_init = nn.initializers.zeros
        kernel = self.param("encoding_kernel", kernel_init, (cfg.encoding_width, fan_out))
        return jnp.dot(features, kernel, precision=precision)

    def _hidden_init(self, layer: int, fan_in: int, fan_out: int) -> tuple[Callable, Callable]:
        if self.config.activation == "softplus":
            return _normal_init(math.sqrt(2.0 / fan_out)), nn.initializers.zeros
        if layer == 0:
            return _uniform_init(1.0 / fan_in), _uniform_init(1.0 / fan_in)
        bound = math.sqrt(6.0 / fan_in) / self.config.sine_omega
        return _uniform_init(bound), _uniform_init(1.0 / math.sqrt(fan_in))

    def _output_init(self, fan_in: int) -> tuple[Callable, Callable]:
        if self.config.activation == "softplus":
            mean = math.sqrt(math.pi) / math.sqrt(fan_in)
            return _normal_init(1e-5, mean), nn.initializers.constant(-self.config.init_radius)
        bound = math.sqrt(6.0 / fan_in) / self.config.sine_omega
        return _uniform_init(bound), nn.initializers.zeros


def init_params(config: NetworkConfig, key: jax.Array) -> Params:
    """Initial parameters (geometric init for softplus networks)."""
    return SDFNetwork(config).init(key, jnp.zeros((1, 3), jnp.float32))


def make_sdf(
    config: NetworkConfig, precision: MatmulPrecision = "highest"
) -> Callable[[Params, jax.Array], jax.Array]:
    """The pure function f(params, x) with x of shape (..., 3).

    Every matrix product runs at `precision`; the default, true float32, is what evaluation and
    meshing use everywhere (a fit may train faster at a lower one, see FitConfig.precision).
    """
    module = SDFNetwork(config, precision=precision)
    return module.apply


def make_training_sdf(
    config: NetworkConfig, precision: MatmulPrecision = "highest"
) -> Callable[[Params, jax.Array], jax.Array]:
    """f(params, x) at `precision` for a fit's training passes, with `.exact`, the same network
    at "highest", for the passes a method needs in true float32 (DiffCD's projection and its
    validity test |f(s)| < 1e-3)."""
    fast = make_sdf(config, precision)

    def sdf(params: Params, x: jax.Array) -> jax.Array:
        return fast(params, x)

    sdf.exact = make_sdf(config, "highest")
    sdf.precision = precision
    return sdf


@dataclasses.dataclass(frozen=True)
class ParameterGroups:
    """How a network's parameters split into groups, each trained at its own learning rate.

    The training step takes one learning rate per group (from the schedule, at every step) and
    optional masks as traced values, so a network with several groups (e.g. a grid encoding
    beside an MLP, or levels that join coarse to fine) trains with the same compiled step and
    no recompile when the rates change.
    """

    names: tuple[str, ...]
    """One per group, in the order of the learning-rate vector."""
    learning_rate_scales: tuple[float, ...]
    """Each group's peak learning rate as a multiple of ScheduleConfig.learning_rate."""
    labels: Callable[[Params], Any]
    """params -> the same pytree holding each leaf's group index (Python ints: structure only)."""
    masks: Callable[[jax.Array], Any] | None = None
    """The step (a traced int32) -> a pytree like params of multipliers of each parameter's
    learning rate at that step (e.g. 0 for a level not yet trained); None: no masks."""

    def __post_init__(self) -> None:
        if not self.names or len(self.names) != len(self.learning_rate_scales):
            raise ValueError("parameter groups need a name and a learning-rate scale each")


def _is_encoding_parameter(config: NetworkConfig, name: str) -> bool:
    """Whether the flat parameter `name` trains at the encoding's rate: a grid table, or the
    first layer's weights of the Fourier features."""
    leaf = name.rsplit(".", 1)[-1]
    if config.encoding == "grid":
        return leaf.startswith("grid_")
    return config.encoding == "fourier" and leaf == "encoding_kernel"


def level_start_steps(config: NetworkConfig) -> tuple[int, ...]:
    """The step from which each encoding level (grid level, Fourier band) trains."""
    return tuple(k * config.encoding_level_steps for k in range(config.encoding_levels))


def _level_masks(config: NetworkConfig, step: jax.Array) -> Any:
    """Learning-rate multipliers at `step`: 0 for a level not yet started, 1 elsewhere."""
    started = [(step >= start).astype(jnp.float32) for start in level_start_steps(config)]
    masks = {}
    for name, shape in expected_shapes(config).items():
        leaf = name.rsplit(".", 1)[-1]
        if config.encoding == "grid" and leaf.startswith("grid_"):
            masks[name] = started[int(leaf.removeprefix("grid_"))]
        elif config.encoding == "fourier" and leaf == "encoding_kernel":
            masks[name] = jnp.repeat(jnp.stack(started), 6)[:, None]  # a band is 6 rows
        else:
            masks[name] = jnp.ones((), jnp.float32)
    return unflatten_params(masks)


def parameter_groups(config: NetworkConfig) -> ParameterGroups:
    """The parameter groups of the network `config` describes: the MLP, and with an encoding its
    parameters (grid tables, or the Fourier features' weights) at their own rate and, when
    `encoding_level_steps` is set, masked coarse to fine."""
    if config.encoding == "none":
        return ParameterGroups(names=("mlp",), learning_rate_scales=(1.0,),
                               labels=lambda params: jax.tree_util.tree_map(lambda _: 0, params))

    def labels(params: Params) -> Any:
        return unflatten_params({name: int(_is_encoding_parameter(config, name))
                                 for name in flatten_params(params)})

    masks = functools.partial(_level_masks, config) if config.encoding_level_steps else None
    return ParameterGroups(names=("mlp", "grid" if config.encoding == "grid" else "frequency"),
                           learning_rate_scales=(1.0, config.encoding_learning_rate_scale),
                           labels=labels, masks=masks)


def parameter_count(params: Params) -> int:
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))


def expected_shapes(config: NetworkConfig) -> dict[str, tuple[int, ...]]:
    """Flat parameter names and shapes the config implies (used to validate checkpoints)."""
    shapes = {}
    dims = _layer_dims(config)
    for layer, (fan_in, fan_out) in enumerate(dims[:-1]):
        shapes[f"params.layer_{layer}.kernel"] = (fan_in, fan_out)
        shapes[f"params.layer_{layer}.bias"] = (fan_out,)
    shapes["params.output.kernel"] = (dims[-1][0], 1)
    shapes["params.output.bias"] = (1,)
    if config.encoding != "none":
        shapes["params.encoding_kernel"] = (config.encoding_width, dims[0][1])
    if config.encoding == "grid":
        for k, r in enumerate(grid_resolutions(config)):
            shapes[f"params.grid_{k}"] = (r, r, r, config.grid_features)
    return shapes


def flatten_params(params: Params) -> dict[str, jax.Array]:
    """Nested params -> {"params.layer_0.kernel": array, ...}."""
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        flat[".".join(str(getattr(k, "key", k)) for k in path)] = leaf
    return flat


def unflatten_params(flat: dict[str, Any]) -> Params:
    nested: dict = {}
    for name, value in flat.items():
        node = nested
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested
