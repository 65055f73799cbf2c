"""Named size presets: the paper's settings, a GPU demo and a CPU time ladder (cpu-quick one to
two, cpu-5min five to seven, on two cores; the lower figure on a fast desktop
CPU, the higher on a 2-core CI-class machine: benchmarks/results/quality-cpu-quick-cpu.md and
benchmarks/results/quality-cpu-5min-cpu.md).

cpu-quick trains on batches of 1250 points for 1600 steps rather than 2500 for 800: the same
time, and on the thin-part dragon scan a Chamfer distance of 0.72 % of the longest side instead
of 0.88 % (more, smaller steps fit thin parts better in the same budget).

A preset fixes the network, schedule, batch and mesh sizes; the method's loss weights stay the
paper's unless the preset's network measured better with others (`Preset.method_overrides`:
cpu-quick-fourier fits with DiffCD's eikonal weight at 0.02). Short presets refresh DiffCD's
surface seeds proportionally more often than the paper: 50 refreshes per run instead of 40
(every 1000 of 40,000 steps), because in a short schedule the surface moves further between two
refreshes. Their seed meshes are coarser: the seeds are only
starting points that the projection moves onto the surface.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from diffcd.errors import ConfigError
from diffcd.fit import FitConfig, ScheduleConfig
from diffcd.methods import DiffCDConfig, get_method
from diffcd.networks import NetworkConfig


@dataclasses.dataclass(frozen=True)
class NoiseSetting:
    """How a fit treats a noisy cloud: the eikonal weight and the peak learning rate."""

    name: str
    description: str
    eikonal_weight: float | None
    """λ for the methods with an eikonal term (IGR, SIREN, DiffCD); None keeps the method's."""
    learning_rate_factor: float
    """Peak learning rate relative to the preset's: the paper's 5e-5 is 1e-3 x 0.05."""


NOISE_LEVELS: tuple[str, ...] = ("none", "medium", "max")
"""The noise levels a user can name: a clean scan, about 0.5 % and about 1 % of the object's size."""
NOISE_LEVEL_LABELS: dict[str, str] = {
    "none": "None: a clean scan",
    "medium": "Medium: about 0.5 % of the object's size",
    "max": "Max: about 1 % of the object's size",
}
"""How a chooser names each level (what the level says about the cloud, not what it does)."""

PAPER_NOISE_SETTINGS: dict[str, NoiseSetting] = {
    "none": NoiseSetting("none", "Clean scan: the paper's defaults (λ = 0.1).", None, 1.0),
    "medium": NoiseSetting("medium", "Medium noise: eikonal weight λ = 0.5 (the paper's).", 0.5, 1.0),
    "max": NoiseSetting(
        "max", "Maximum noise: λ = 1.0 and a 20x lower peak learning rate (the paper's 5e-5).", 1.0, 0.05
    ),
}
"""The paper's settings (docs/method.md §4), made for its 40,000-step schedule."""

SHORT_SCHEDULE_NOISE_SETTINGS: dict[str, NoiseSetting] = {
    "none": PAPER_NOISE_SETTINGS["none"],
    "medium": NoiseSetting(
        "medium", "Medium noise: at this preset the clean settings fit noisy scans best (λ = 0.5 gave an "
        "18-29 % larger Chamfer distance at 0.5 % noise), so they are kept.", None, 1.0),
    "max": NoiseSetting(
        "max", "Maximum noise: at this preset the clean settings fit noisy scans best (the paper's λ = 1.0 and "
        "20x lower learning rate leave a short fit unconverged), so they are kept.", None, 1.0),
}
"""What measured best at the short presets (benchmarks/results/noise-settings-cpu.md): DiffCD at
cpu-quick on the bunny and dragon scans with 0.5 % and 1 % noise fitted best with the clean
defaults; every stronger eikonal weight and the lower learning rate made the Chamfer distance
larger. In 1,600 steps the network stays smooth enough not to follow the noise, and a stronger
eikonal term only slows its convergence onto the surface."""

@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    description: str
    network: NetworkConfig
    schedule: ScheduleConfig
    batch_size: int
    mesh_resolution: int
    seed_refresh_every: int
    seed_mesh_resolution: int
    seed_count: int
    chunk_steps: int
    noise_settings: dict[str, NoiseSetting] = dataclasses.field(
        default_factory=lambda: SHORT_SCHEDULE_NOISE_SETTINGS)
    """What each noise level does at this preset (see `noise_setting`)."""
    method_overrides: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """Loss settings this preset changes, by method (what measured best with its network); the
    method's own defaults otherwise. A noise level's eikonal weight and the caller's
    `method_overrides` still win over them."""


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        description="The paper's settings: 8x256 network, 40k steps, 512³ final mesh.",
        network=NetworkConfig(),
        schedule=ScheduleConfig(steps=40_000, warmup_steps=1000),
        batch_size=5000,
        mesh_resolution=512,
        seed_refresh_every=1000,
        seed_mesh_resolution=256,
        seed_count=30_000,
        chunk_steps=100,
        noise_settings=PAPER_NOISE_SETTINGS,
    ),
    "gpu-demo": Preset(
        name="gpu-demo",
        description="Paper network, 4k steps: about a minute on a data-centre GPU.",
        network=NetworkConfig(),
        schedule=ScheduleConfig(steps=4000, warmup_steps=200),
        batch_size=5000,
        mesh_resolution=256,
        seed_refresh_every=80,
        seed_mesh_resolution=128,
        seed_count=30_000,
        chunk_steps=100,
    ),
    "cpu-quick": Preset(
        name="cpu-quick",
        description="Small network (4x128), 1600 steps of 1250 points: one and a half to two "
        "minutes on two CPU cores.",
        network=NetworkConfig(hidden_layers=4, width=128, skip_layers=(2,)),
        schedule=ScheduleConfig(steps=1600, learning_rate=2e-3, warmup_steps=80),
        batch_size=1250,
        mesh_resolution=192,
        seed_refresh_every=32,
        seed_mesh_resolution=48,
        seed_count=10_000,
        chunk_steps=50,
    ),
    "cpu-5min": Preset(
        name="cpu-5min",
        description="Medium network (5x160), 1800 steps: five to seven minutes on two CPU cores.",
        network=NetworkConfig(hidden_layers=5, width=160, skip_layers=(3,)),
        schedule=ScheduleConfig(steps=1800, learning_rate=2e-3, warmup_steps=100),
        batch_size=2500,
        mesh_resolution=256,
        seed_refresh_every=36,
        seed_mesh_resolution=64,
        seed_count=10_000,
        chunk_steps=50,
    ),
}
"""cpu-quick is the short rung of the CPU time ladder, cpu-5min the long one. cpu-quick-fourier
is cpu-quick with an input encoding and DiffCD's eikonal weight at 0.02 (docs/encodings.md: on the
bunny and dragon scans a Chamfer distance 1.02x and 1.10x Screened Poisson's, against 1.27x and
1.94x for cpu-quick, for about 11 s more)."""
FOURIER_NOISE_SETTINGS: dict[str, NoiseSetting] = {
    "none": NoiseSetting("none", "Clean scan: with this network DiffCD's eikonal weight is λ = 0.02 (it "
                         "measured best), the other methods keep their defaults.", None, 1.0),
    "medium": NoiseSetting(
        "medium", "Medium noise: this preset's clean settings are kept; with 0.5 % noise they fitted the bunny "
        "and dragon scans better than λ = 0.1 (seed 0: 0.472 % and 0.452 % against 0.481 % and 0.483 %).",
        None, 1.0),
    "max": NoiseSetting(
        "max", "Maximum noise: this preset's clean settings are kept; with 1 % noise they fitted the dragon "
        "scan better than λ = 0.1 (seed 0: 0.557 % against 0.605 %) and the bunny scan within 2 % of it.",
        None, 1.0),
}
"""What measured best at cpu-quick-fourier (benchmarks/results/encodings-cpu.md): the preset's own
λ = 0.02 for DiffCD on noisy scans too."""
PRESETS["cpu-quick-fourier"] = dataclasses.replace(
    PRESETS["cpu-quick"],
    name="cpu-quick-fourier",
    description="cpu-quick's network and schedule, reading 6 octaves of Fourier features of the "
    "input that join coarse to fine: a 19-43 % lower Chamfer distance on two scans for 15-20 % more time.",
    network=dataclasses.replace(PRESETS["cpu-quick"].network, encoding="fourier", encoding_levels=6,
                                encoding_level_steps=100),
    method_overrides={"diffcd": {"eikonal_weight": 0.02}},
    noise_settings=FOURIER_NOISE_SETTINGS,
)

DEFAULT_PRESET = "cpu-quick"


def noise_setting(preset: str, level: str) -> NoiseSetting:
    """What `--noise level` does at `preset`: the paper's settings in the paper preset, the measured
    best at the short ones. ConfigError for an unknown preset or level."""
    if level not in NOISE_LEVELS:
        raise ConfigError(f"Unknown noise setting {level!r}; choose one of {', '.join(NOISE_LEVELS)}.")
    return get_preset(preset).noise_settings[level]


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.") from None


MIN_SEED_REFRESH_EVERY = 10
"""A seed refresh (marching cubes, surface samples, KD-tree query) costs several training steps,
so a shortened run (`steps`) keeps at least this many steps between refreshes."""


def make_config(
    preset: str = DEFAULT_PRESET,
    method: str = "diffcd",
    *,
    steps: int | None = None,
    seed: int = 0,
    resolution: int | None = None,
    method_overrides: dict[str, Any] | None = None,
    network_overrides: dict[str, Any] | None = None,
    batch_size: int | None = None,
    noise: str = "none",
) -> FitConfig:
    """A FitConfig from a preset, a method and optional overrides.

    `steps` rescales the warm-up and, for DiffCD, keeps the preset's number of seed refreshes
    per run, though never more often than every MIN_SEED_REFRESH_EVERY steps.
    `noise` ("none", "medium", "max") applies the preset's setting for that noise level
    (`noise_setting`): in the paper preset the paper's, λ = 0.5 or 1.0 for the methods with an
    eikonal term (Neural-Pull has none and keeps it off) and at "max" a 20x lower peak learning
    rate (5e-5); at the short presets what measured best there, the clean defaults. An explicit
    `eikonal_weight` in `method_overrides` wins over the noise setting.
    """
    p = get_preset(preset)
    setting = noise_setting(preset, noise)
    spec = get_method(method)
    schedule = p.schedule
    if setting.learning_rate_factor != 1.0:
        schedule = dataclasses.replace(
            schedule, learning_rate=schedule.learning_rate * setting.learning_rate_factor
        )
    refresh = p.seed_refresh_every
    if steps is not None:
        if steps < 1:
            raise ConfigError("steps must be at least 1.")
        ratio = steps / p.schedule.steps
        schedule = dataclasses.replace(
            schedule, steps=steps, warmup_steps=min(steps, max(1, round(schedule.warmup_steps * ratio)))
        )
        refresh = max(min(refresh, MIN_SEED_REFRESH_EVERY), round(refresh * ratio))
    method_config = spec.config_type()
    if isinstance(method_config, DiffCDConfig):
        method_config = dataclasses.replace(
            method_config,
            seed_refresh_every=refresh,
            seed_mesh_resolution=p.seed_mesh_resolution,
            seed_count=p.seed_count,
        )
    try:
        method_config = dataclasses.replace(method_config, **p.method_overrides.get(method, {}))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"Preset {preset!r} has an invalid setting for {method}: {error}.") from None
    if setting.eikonal_weight is not None and getattr(method_config, "eikonal_weight", 0.0) != 0.0:
        method_config = dataclasses.replace(method_config, eikonal_weight=setting.eikonal_weight)
    try:
        if method_overrides:
            method_config = dataclasses.replace(method_config, **method_overrides)
        network = dataclasses.replace(p.network, **(network_overrides or {}))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"Invalid setting: {error}.") from None
    return FitConfig(
        method=method,
        method_config=method_config,
        network=network,
        schedule=schedule,
        batch_size=batch_size or p.batch_size,
        seed=seed,
        chunk_steps=p.chunk_steps,
        mesh_resolution=resolution or p.mesh_resolution,
    )
